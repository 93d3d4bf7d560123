"""Sentence-aware, token-bounded chunks that point back into the article by offset.

Citations are verified against `article.text`, so every chunk carries exact
character offsets: `article.text[c.start:c.end] == c.text`, always. Sizes are
counted with the same tiktoken encoding the rest of newsqa budgets with.

Speed: the article is tokenised once; token byte lengths (from a per-vocabulary
table) give every token's character span, so sentence sizes are read off that
single pass. Because BPE merges across a chunk's edges can differ from the
whole-text tokenisation, each chunk is then counted exactly once on its own
text, and shrunk in the rare case the estimate was short.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..models import Article, Chunk
from ..text.sentences import sentence_spans, trim_span

if TYPE_CHECKING:
    import numpy as np
    import tiktoken

ENCODING = "cl100k_base"
# tiktoken_ext.openai_public's cl100k_base: the file's hash, its cache name (sha1 of the
# URL tiktoken would fetch it from), the split pattern and the special tokens.
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_CACHE_NAME = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
MIN_MAX_TOKENS = 8  # one character can take up to 4 byte-level tokens; keep room above that
HEADER_TITLE_CHARS = 160

_SURROGATE = re.compile("[\ud800-\udfff]")
# ASCII on both sides, so Unicode-version differences between Python and tiktoken cannot matter.
_WORD_END = re.compile(r"[A-Za-z](?=[\x00-\x40\x5b-\x60\x7b-\x7f])")


# --------------------------------------------------------------------------- tokens


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    """cl100k_base from the copy llama-index-core ships, so nothing downloads.

    tiktoken would fetch its BPE file on first use unless TIKTOKEN_CACHE_DIR points
    at a cache; setting that variable would change the host process's environment,
    so the shipped file is read directly (sha256-checked as tiktoken checks it) and
    only tiktoken's own lookup is used when llama-index-core is absent.
    """
    import tiktoken  # heavy: loads the BPE ranks

    ranks = _shipped_ranks()
    if ranks is None:
        return tiktoken.get_encoding(ENCODING)
    return tiktoken.Encoding(
        ENCODING, pat_str=CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=CL100K_SPECIAL
    )


def _shipped_ranks() -> dict[bytes, int] | None:
    """The BPE ranks in llama-index-core's tiktoken cache, if it ships a verified copy."""
    try:
        spec = importlib.util.find_spec("llama_index.core")
    except (ImportError, ValueError):
        return None
    for location in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "_static" / "tiktoken_cache" / CL100K_CACHE_NAME
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() == CL100K_SHA256:
            return {
                base64.b64decode(token): int(rank)
                for token, rank in (line.split() for line in data.splitlines() if line)
            }
    return None


def count_tokens(text: str) -> int:
    """Token count as budgets see it; special-token text is counted as plain text."""
    if not text:
        return 0
    return len(_encoding().encode_ordinary(text))


@lru_cache(maxsize=1)
def _token_byte_lengths() -> np.ndarray:
    """Byte length of every token id, so one encode yields all token offsets."""
    import numpy as np

    enc = _encoding()
    lengths = np.zeros(enc.n_vocab, dtype=np.int64)
    for token in range(enc.n_vocab):
        try:
            lengths[token] = len(enc.decode_single_token_bytes(token))
        except KeyError:  # holes in the id space
            continue
    return lengths


@dataclass(frozen=True)
class _TokenMap:
    """Character span of each token of one text, from a single encode."""

    starts: np.ndarray  # first character touched by token t
    ends: np.ndarray  # one past the last character touched by token t
    clean: np.ndarray  # token t ends on a character boundary (not inside a UTF-8 sequence)
    reliable: bool  # False when lone surrogates make the single pass differ from count_tokens

    def count(self, text: str, start: int, end: int) -> int:
        """Exactly `count_tokens(text[start:end])`, re-encoding only the two edge words.

        cl100k's pre-tokeniser never joins an ASCII letter to a following ASCII
        non-letter, in any scan, so between the first and last such break inside
        the span the whole-text tokens are exactly the span's tokens.
        """
        if self.reliable:
            first, last = _word_breaks(text, start, end)
            if first < last:
                inner = int(self.starts.searchsorted(last) - self.starts.searchsorted(first))
                return count_tokens(text[start:first]) + inner + count_tokens(text[last:end])
        return count_tokens(text[start:end])

    def first_tokens(self, positions: np.ndarray) -> np.ndarray:
        """Index of the first token overlapping each position onwards."""
        return self.ends.searchsorted(positions, side="right")

    def stop_tokens(self, positions: np.ndarray) -> np.ndarray:
        """One past the last token starting before each position."""
        return self.starts.searchsorted(positions, side="left")


def _token_map(text: str) -> _TokenMap:
    import numpy as np

    # tiktoken replaces lone surrogates with U+FFFD (3 bytes); mirror that one-for-one.
    safe = _SURROGATE.sub("\ufffd", text)
    tokens = _encoding().encode_to_numpy(safe, disallowed_special=())
    token_bytes = _token_byte_lengths()[tokens]
    token_end_byte = np.cumsum(token_bytes, dtype=np.int64)
    token_start_byte = token_end_byte - token_bytes
    if safe.isascii():  # bytes are characters: no mapping needed
        clean = np.ones(len(tokens), dtype=bool)
        return _TokenMap(token_start_byte, token_end_byte, clean, safe == text)
    codepoints = np.frombuffer(safe.encode("utf-32-le"), dtype="<u4")
    char_bytes = 1 + (codepoints >= 0x80) + (codepoints >= 0x800) + (codepoints >= 0x10000)
    char_end_byte = np.cumsum(char_bytes, dtype=np.int64)
    starts = char_end_byte.searchsorted(token_start_byte, side="right")
    ends = np.minimum(char_end_byte.searchsorted(token_end_byte - 1, side="right") + 1, len(safe))
    clean = char_end_byte[np.maximum(ends - 1, 0)] == token_end_byte
    return _TokenMap(starts, ends, clean, safe == text)


def _word_breaks(text: str, start: int, end: int) -> tuple[int, int]:
    """First and last universal token break in (start, end]; first >= last if none useful."""
    head = _WORD_END.search(text, start, min(end + 1, len(text)))
    if head is None:
        return 0, 0
    last = head.end()
    for match in _WORD_END.finditer(text, max(head.end(), end - 48), min(end + 1, len(text))):
        last = match.end()
    return head.end(), last


# -------------------------------------------------------------------------- packing


def chunk_article(article: Article, *, max_tokens: int = 256, overlap: int = 20) -> list[Chunk]:
    """Chunks of one article; see `chunk_text` for the guarantees."""
    return chunk_text(article.text, article_id=article.id, max_tokens=max_tokens, overlap=overlap)


def chunk_text(
    text: str, *, article_id: str, max_tokens: int = 256, overlap: int = 20
) -> list[Chunk]:
    """Pack whole sentences into chunks of at most `max_tokens` tokens.

    Guarantees: `text[c.start:c.end] == c.text`; no chunk starts or ends with
    whitespace; `count_tokens(c.text) <= max_tokens`; every non-whitespace
    character is in some chunk; the same input gives the same chunks. Up to
    `overlap` tokens of trailing sentences repeat at the start of the next chunk,
    so a fact that straddles a boundary is still whole somewhere.
    """
    if max_tokens < MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens must be at least {MIN_MAX_TOKENS}, got {max_tokens}")
    if not 0 <= overlap < max_tokens:
        raise ValueError(f"overlap must be in [0, max_tokens), got {overlap}")
    if not text.strip():
        return []
    tokens = _token_map(text)
    units = _units(text, tokens, max_tokens)
    spans = _pack(text, units, tokens, max_tokens, overlap)
    return [
        Chunk(article_id=article_id, index=i, text=text[s:e], start=s, end=e, n_tokens=n)
        for i, (s, e, n) in enumerate(spans)
    ]


@dataclass
class _Units:
    """Packable pieces (sentences, or cuts of long ones) with their token index ranges."""

    starts: list[int]
    ends: list[int]
    lo: list[int]  # first token overlapping the unit
    hi: list[int]  # one past its last token

    def estimate(self, i: int, j: int) -> int:
        """Tokens of units[i:j] from the single pass: near the exact count, not equal to it."""
        return self.hi[j - 1] - self.lo[i]

    def replace(self, i: int, spans: list[tuple[int, int]], tokens: _TokenMap) -> None:
        import numpy as np

        starts = np.array([s for s, _ in spans], dtype=np.int64)
        ends = np.array([e for _, e in spans], dtype=np.int64)
        self.starts[i : i + 1] = starts.tolist()
        self.ends[i : i + 1] = ends.tolist()
        self.lo[i : i + 1] = tokens.first_tokens(starts).tolist()
        self.hi[i : i + 1] = tokens.stop_tokens(ends).tolist()


def _units(text: str, tokens: _TokenMap, max_tokens: int) -> _Units:
    """Sentences, with any sentence too long for a chunk cut into pieces that fit."""
    import numpy as np

    spans = np.array(sentence_spans(text), dtype=np.int64).reshape(-1, 2)
    units = _Units(
        spans[:, 0].tolist(),
        spans[:, 1].tolist(),
        tokens.first_tokens(spans[:, 0]).tolist(),
        tokens.stop_tokens(spans[:, 1]).tolist(),
    )
    for i in reversed(range(len(units.starts))):
        if units.estimate(i, i + 1) > max_tokens:
            pieces = _split_long(text, units.starts[i], units.ends[i], tokens, max_tokens)
            units.replace(i, pieces, tokens)
    return units


def _split_long(
    text: str, start: int, end: int, tokens: _TokenMap, max_tokens: int
) -> list[tuple[int, int]]:
    """Cut at token boundaries (on whole characters), preferring the last space in range."""
    budget = max(1, max_tokens - 4)  # room for edge re-tokenisation; the exact check follows
    pieces: list[tuple[int, int]] = []
    n = len(tokens.ends)
    while start < end:
        first = int(tokens.ends.searchsorted(start, side="right"))
        last = min(first + budget, n) - 1
        limit = int(tokens.ends[last]) if first < n else end
        cut = end if limit >= end else _cut_point(text, start, limit, tokens, first, last)
        span = trim_span(text, start, cut)
        if span is not None:
            pieces.append(span)
        start = cut
    return pieces


def _cut_point(
    text: str, start: int, limit: int, tokens: _TokenMap, first: int, last: int
) -> int:
    """Last whitespace in the second half of (start, limit], else the last clean token end."""
    space = max(text.rfind(" ", start, limit + 1), text.rfind("\n", start, limit + 1))
    if space > start + (limit - start) // 2:
        return space
    for index in tokens.clean[first : last + 1].nonzero()[0][::-1]:
        end = int(tokens.ends[first + index])
        if start < end <= limit:
            return end
    return start + 1


def _pack(
    text: str, units: _Units, tokens: _TokenMap, max_tokens: int, overlap: int
) -> list[tuple[int, int, int]]:
    spans: list[tuple[int, int, int]] = []
    i, done = 0, 0  # the next chunk starts at unit i; units before `done` are covered
    while done < len(units.starts):
        j = i + 1
        while j < len(units.starts) and units.estimate(i, j + 1) <= max_tokens:
            j += 1
        before = len(units.starts)
        j, n = _fit(text, units, tokens, i, j, max_tokens)
        if len(units.starts) > before and i < done:
            done += 1  # a unit already covered was split in two: indices shifted
        if j <= done:  # the overlap left no room for anything new: start afresh
            i = done
            continue
        spans.append((units.starts[i], units.ends[j - 1], n))
        done = j
        i = _overlap_start(units, i, j, overlap)
    return spans


def _fit(
    text: str, units: _Units, tokens: _TokenMap, i: int, j: int, max_tokens: int
) -> tuple[int, int]:
    """Shrink units[i:j] until its exact count fits; split a lone unit that does not."""
    while True:
        n = tokens.count(text, units.starts[i], units.ends[j - 1])
        if n <= max_tokens:
            return j, n
        if j > i + 1:
            j -= 1
            continue
        head, tail = _exact_split(text, (units.starts[i], units.ends[i]), max_tokens)
        units.replace(i, [head, *([tail] if tail else [])], tokens)
        return i + 1, count_tokens(text[head[0] : head[1]])


def _exact_split(
    text: str, unit: tuple[int, int], max_tokens: int
) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """Longest prefix that fits by exact count (binary search); the rarely needed slow path."""
    start, end = unit
    lo, hi = start + 1, end  # a single character is at most 4 tokens, so lo always fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text[start:mid].rstrip()) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    head = trim_span(text, start, lo)
    assert head is not None  # text[start] is not whitespace
    return head, trim_span(text, lo, end)


def _overlap_start(units: _Units, i: int, j: int, overlap: int) -> int:
    """First unit of the trailing run of units[i:j] that fits in `overlap` tokens."""
    k = j
    while k - 1 > i and units.estimate(k - 1, j) <= overlap:
        k -= 1
    return k


# --------------------------------------------------------------------------- search


def search_text(article: Article, chunk: Chunk) -> str:
    """Title, source and date above the chunk: retrieval needs what the passage is from."""
    header = " | ".join(part for part in _header_parts(article) if part)
    return f"{header}\n{chunk.text}" if header else chunk.text


def _header_parts(article: Article) -> list[str]:
    title = " ".join(article.title.split())
    if len(title) > HEADER_TITLE_CHARS:
        title = title[:HEADER_TITLE_CHARS].rsplit(" ", 1)[0] + "…"
    return [title, " ".join(article.source.split()), _iso_date(article.published_at)]


def _iso_date(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return ""
    return value.date().isoformat() if isinstance(value, dt.datetime) else value.isoformat()


def chunking_signature(max_tokens: int, overlap: int) -> dict[str, Any]:
    """What the index records so it can refuse to mix chunkings."""
    return {"encoding": ENCODING, "max_tokens": max_tokens, "overlap": overlap, "version": 1}
