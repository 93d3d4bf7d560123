"""Quote location and verification: the one place that decides what counts as "cited".

A model's quote is untrusted. It is accepted only when it can be pinned to a span of
the named article; the citation then carries the article's own characters, never the
model's, so a reader always sees text that really is in the article.

Matching runs in three stages, cheapest and strictest first:
1. exact substring;
2. normalised (case, whitespace, punctuation and quote style ignored), mapped back to
   original offsets through an index map;
3. fuzzy (rapidfuzz partial alignment over the normalised text, threshold ~90) for
   small typos, snapped outward to word boundaries.
A paraphrase or an invented sentence scores well below the threshold and is rejected.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..models import Article, Citation, RejectedCitation

if TYPE_CHECKING:
    from rapidfuzz.distance import Opcode

DEFAULT_THRESHOLD = 90.0
# Below this many normalised characters a fuzzy match is too likely to be chance.
MIN_FUZZY_CHARS = 12
# The snapped fuzzy window may score a little under the alignment score (it grew to
# whole words); more than this slack means the alignment was a fluke.
_SNAP_SLACK = 8.0
# Two spellings of one word at or above this score count as a typo, not another word.
_WORD_TYPO_SCORE = 80.0
_WORD = re.compile(r"[^ ]+")


@dataclass(frozen=True)
class ClaimedQuote:
    """A quote somebody says is in an article.

    `label` is how the claimant named the source (e.g. "S1"), kept for messages.
    `hint` is a (start, end) region of the article to search first (the passage the
    model saw), so a sentence repeated in the article resolves to the passage's copy.
    """

    article_id: str
    quote: str
    label: str | None = None
    hint: tuple[int, int] | None = None


def locate(
    quote: str, text: str, *, threshold: float = DEFAULT_THRESHOLD
) -> tuple[int, int] | None:
    """Where `quote` is in `text`, as (start, end) offsets of `text`, or None.

    The span is always non-empty and within `text`; `text[start:end]` is the
    verbatim form of the quote (which may differ from `quote` in case, spacing,
    punctuation or a typo when the stricter stages failed).
    """
    if not quote.strip() or not text:
        return None
    exact = _exact(quote, text)
    if exact is not None:
        return exact
    norm_text, index_map = _normalise(text)
    norm_quote, _ = _normalise(quote)
    if not norm_quote:
        return None
    span = _normalised(norm_quote, norm_text)
    if span is None:
        span = _fuzzy(norm_quote, norm_text, threshold)
    if span is None:
        return None
    start, end = span
    return index_map[start], index_map[end - 1] + 1


def verify(
    claims: Sequence[ClaimedQuote],
    articles: Mapping[str, Article],
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[list[Citation], list[RejectedCitation]]:
    """Split claimed quotes into verified citations and rejections with reasons.

    Order is preserved; duplicates are kept (callers number citations and may merge).
    """
    citations: list[Citation] = []
    rejected: list[RejectedCitation] = []
    for claim in claims:
        result = verify_one(claim, articles, threshold=threshold)
        if isinstance(result, Citation):
            citations.append(result)
        else:
            rejected.append(result)
    return citations, rejected


def verify_one(
    claim: ClaimedQuote,
    articles: Mapping[str, Article],
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> Citation | RejectedCitation:
    """One claim: a `Citation` on the article's exact characters, or the reason it failed."""
    name = claim.label or claim.article_id
    if not claim.quote.strip():
        return RejectedCitation(article_id=claim.article_id, quote=claim.quote,
                                reason=f"empty quote for {name}")
    article = articles.get(claim.article_id)
    if article is None:
        return RejectedCitation(article_id=claim.article_id, quote=claim.quote,
                                reason=f"unknown article {name}")
    span = _locate_with_hint(claim, article.text, threshold)
    if span is None:
        return RejectedCitation(article_id=claim.article_id, quote=claim.quote,
                                reason=f"quote not found in {name}")
    return citation_for(article, *span)


def citation_for(article: Article, start: int, end: int) -> Citation:
    """A citation on the article's own characters at a span already known to be right."""
    return Citation(
        article_id=article.id,
        title=article.title,
        source=article.source,
        published_at=article.published_at,
        url=article.url,
        quote=article.text[start:end],
        start=start,
        end=end,
    )


def _locate_with_hint(claim: ClaimedQuote, text: str, threshold: float) -> tuple[int, int] | None:
    if claim.hint is not None:
        lo, hi = max(0, claim.hint[0]), min(len(text), claim.hint[1])
        if lo < hi:
            span = locate(claim.quote, text[lo:hi], threshold=threshold)
            if span is not None:
                return span[0] + lo, span[1] + lo
    return locate(claim.quote, text, threshold=threshold)


def _exact(quote: str, text: str) -> tuple[int, int] | None:
    # The raw quote first (so any substring is found as itself), then without the
    # wrapping a model adds: surrounding spaces and quotation marks.
    for candidate in (quote, quote.strip(), quote.strip().strip("\"'“”‘’«»").strip()):
        if candidate:
            at = text.find(candidate)
            if at >= 0:
                return at, at + len(candidate)
    return None


def _normalise(text: str) -> tuple[str, list[int]]:
    """Lowercase words separated by single spaces, plus each character's source offset.

    Everything that is not a letter or digit (whitespace, punctuation, quote marks,
    dashes, symbols) becomes one separator, so curly vs straight quotes, doubled
    spaces, line breaks and case cannot stop a match.
    """
    chars: list[str] = []
    index_map: list[int] = []
    pending_space = False
    for i, ch in enumerate(text):
        if not ch.isalnum():
            pending_space = True
            continue
        if pending_space and chars:
            chars.append(" ")
            index_map.append(i)
        pending_space = False
        for piece in unicodedata.normalize("NFKC", ch).lower():
            chars.append(piece)
            index_map.append(i)
    return "".join(chars), index_map


def _normalised(norm_quote: str, norm_text: str) -> tuple[int, int] | None:
    """First match on word boundaries if any, else the first match snapped to whole words."""
    first: int | None = None
    at = norm_text.find(norm_quote)
    while at >= 0:
        end = at + len(norm_quote)
        if _is_word_start(norm_text, at) and _is_word_end(norm_text, end):
            return at, end
        if first is None:
            first = at
        at = norm_text.find(norm_quote, at + 1)
    if first is None:
        return None
    return _snap_words(norm_text, first, first + len(norm_quote))


def _fuzzy(norm_quote: str, norm_text: str, threshold: float) -> tuple[int, int] | None:
    if len(norm_quote) < MIN_FUZZY_CHARS or len(norm_quote) > len(norm_text):
        return None
    from rapidfuzz import fuzz

    found = fuzz.partial_ratio_alignment(norm_quote, norm_text, score_cutoff=threshold)
    if found is None or found.dest_end <= found.dest_start:
        return None
    start, end = _snap_words(norm_text, found.dest_start, found.dest_end)
    if start >= end:
        return None
    span = _word_aligned(norm_quote, norm_text, start, end)
    if span is None or fuzz.ratio(norm_quote, norm_text[span[0]:span[1]]) < threshold - _SNAP_SLACK:
        return None
    return span


def _word_aligned(norm_quote: str, norm_text: str, start: int, end: int) -> tuple[int, int] | None:
    """Accept a fuzzy window only if every difference is a typo inside words.

    A character score alone passes "prices fell" for "prices rose" (one word in a
    long quote) or drops a "not"; comparing word by word rejects any substituted,
    added or missing word, and any changed number.
    """
    from rapidfuzz.distance import Levenshtein

    quote_words = norm_quote.split(" ")
    spans = [(m.start() + start, m.end() + start) for m in _WORD.finditer(norm_text[start:end])]
    window_words = [norm_text[a:b] for a, b in spans]
    ops = list(Levenshtein.opcodes(quote_words, window_words))
    # Extra words at the window's edges are the alignment overreaching: trim them.
    while ops and ops[0].tag == "insert":
        ops.pop(0)
    while ops and ops[-1].tag == "insert":
        ops.pop()
    if not ops:
        return None
    for quoted, seen in _difference_blocks(ops, quote_words, window_words):
        if not _is_typo(quoted, seen):
            return None
    return spans[ops[0].dest_start][0], spans[ops[-1].dest_end - 1][1]


def _difference_blocks(
    ops: Sequence[Opcode], quote_words: list[str], window_words: list[str]
) -> list[tuple[str, str]]:
    """Consecutive non-equal opcodes merged, as (quoted words, article words) joined."""
    blocks: list[tuple[str, str]] = []
    quoted: list[str] = []
    seen: list[str] = []
    for op in ops:
        if op.tag == "equal":
            if quoted or seen:
                blocks.append(("".join(quoted), "".join(seen)))
                quoted, seen = [], []
            continue
        quoted.extend(quote_words[op.src_start:op.src_end])
        seen.extend(window_words[op.dest_start:op.dest_end])
    if quoted or seen:
        blocks.append(("".join(quoted), "".join(seen)))
    return blocks


def _is_typo(quoted: str, seen: str) -> bool:
    from rapidfuzz import fuzz

    if not quoted or not seen:
        return False  # a whole word added or dropped ("not") changes meaning
    if [c for c in quoted if c.isdigit()] != [c for c in seen if c.isdigit()]:
        return False
    if min(len(quoted), len(seen)) < 4:
        return quoted == seen
    return fuzz.ratio(quoted, seen) >= _WORD_TYPO_SCORE


def _is_word_start(text: str, at: int) -> bool:
    return at == 0 or text[at - 1] == " "


def _is_word_end(text: str, end: int) -> bool:
    return end == len(text) or text[end] == " "


def _snap_words(text: str, start: int, end: int) -> tuple[int, int]:
    """Grow [start, end) to whole words and trim separators at the edges."""
    while start > 0 and text[start - 1] != " ":
        start -= 1
    while end < len(text) and text[end] != " ":
        end += 1
    while start < end and text[start] == " ":
        start += 1
    while end > start and text[end - 1] == " ":
        end -= 1
    return start, end
