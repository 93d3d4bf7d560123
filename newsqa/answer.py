"""Ask: retrieved passages -> engine (LLM or extractive) -> verified citations -> `Answer`.

The LLM engine asks the model for a `DraftAnswer`: the answer as a list of claims,
each with quotes that name a source label (S1, S2, ... as `prompts.format_sources`
numbers the passages). The draft is untrusted; what the reader gets is decided here:

- every quote is checked by `citations.verify_one` against the FULL text of its
  article (not only the passage), and snapped to the article's exact characters;
  a label that names no source ("unknown source S9") or a quote that is not there is
  rejected with its reason in `Answer.rejected_citations`;
- a claim is kept only if at least one of its quotes verified; the answer text is
  the kept claims in order, each followed by markers [1], [2] that index
  `Answer.citations`;
- if no quote verifies, the answer is `answerable=False` with reason
  "no verified citation". The model's unverified claim texts are dropped: they
  appear nowhere in the `Answer` (its quotes remain, clearly labelled, only in
  `rejected_citations`), so nothing unverified can be mistaken for a grounded answer.

Passages are fitted to the model's context window with tiktoken: the lowest-ranked
whole passages are dropped first; a single passage too big for the window is cut at
a sentence boundary.

Streaming asks for the same JSON and, as it arrives, yields the text of each claim
(parsed incrementally from the JSON string values); the final verified `Answer`
comes last and is authoritative (its text has markers and only verified claims).
When citations were rejected, a note saying so is yielded just before it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from .errors import ArticleNotFound
from .models import Answer, Article, Citation, Passage, RejectedCitation, Usage

if TYPE_CHECKING:
    from .config import Settings
    from .index import Index
    from .llm import LLM

NOT_IN_SOURCES = "The sources do not contain the answer."
NOT_VERIFIED = "No answer can be given: none of the model's quotes could be found in the sources."
NO_PASSAGES = "no passages were retrieved for the question"
NO_VERIFIED_CITATION = "no verified citation"
# Tokens kept free besides the reply: message framing, the schema the lower rungs add.
_PROMPT_MARGIN = 64
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+")
_INLINE_MARKER = re.compile(r"\s*\[(?:S?\d+)(?:\s*,\s*S?\d+)*\]")


class DraftCitation(BaseModel):
    source_id: str
    quote: str


class DraftClaim(BaseModel):
    text: str
    citations: list[DraftCitation] = Field(default_factory=list)


class DraftAnswer(BaseModel):
    """What the model fills in. Field order matters: claims stream in this order."""

    answerable: bool
    reason: str | None = None
    claims: list[DraftClaim] = Field(default_factory=list)


# -- entry points -------------------------------------------------------------------------


def answer(
    question: str, passages: Sequence[Passage], index: Index, llm: LLM | None, settings: Settings
) -> Answer:
    """Answer from the passages; every citation in the result is a verified span."""
    if llm is None:
        return _extractive(question, passages, index, settings)
    used = fit_passages(question, passages, llm, settings)
    if not used:
        return _no_passages(question, passages, llm)
    messages = build_messages(question, used)
    draft, usage = llm.structured(messages, DraftAnswer)
    return finalise(question, draft, used, _articles(index, used), llm.model, usage)


async def aanswer(
    question: str, passages: Sequence[Passage], index: Index, llm: LLM | None, settings: Settings
) -> Answer:
    if llm is None:
        return await asyncio.to_thread(_extractive, question, passages, index, settings)
    used = fit_passages(question, passages, llm, settings)
    if not used:
        return _no_passages(question, passages, llm)
    messages = build_messages(question, used)
    draft, usage = await llm.astructured(messages, DraftAnswer)
    articles = await asyncio.to_thread(_articles, index, used)
    return finalise(question, draft, used, articles, llm.model, usage)


def stream_answer(
    question: str, passages: Sequence[Passage], index: Index, llm: LLM | None, settings: Settings
) -> Iterator[str | Answer]:
    """Text deltas as the model writes its claims, then the final verified `Answer`."""
    used = _settled(question, passages, index, llm, settings)
    if isinstance(used, Answer):
        yield used.answer
        yield used
        return
    assert llm is not None  # _settled answers without a model
    from .llm import InvalidReply, StreamStats, parse_reply

    messages = build_messages(question, used)
    stats = StreamStats()
    claims = ClaimTextStream()
    for delta in llm.stream(messages, schema=DraftAnswer, stats=stats):
        text = claims.feed(delta)
        if text:
            yield text
    usage = stats.usage
    try:
        draft = parse_reply(stats.content, DraftAnswer)
    except InvalidReply as bad:
        draft, more = llm.repair(messages, DraftAnswer, stats.content, str(bad))
        usage = usage + more
    result = finalise(question, draft, used, _articles(index, used), llm.model, usage)
    yield from _closing(result, claims.emitted)


async def astream_answer(
    question: str, passages: Sequence[Passage], index: Index, llm: LLM | None, settings: Settings
) -> AsyncIterator[str | Answer]:
    used = await asyncio.to_thread(_settled, question, passages, index, llm, settings)
    if isinstance(used, Answer):
        yield used.answer
        yield used
        return
    assert llm is not None  # _settled answers without a model
    from .llm import InvalidReply, StreamStats, parse_reply

    messages = build_messages(question, used)
    stats = StreamStats()
    claims = ClaimTextStream()
    async for delta in llm.astream(messages, schema=DraftAnswer, stats=stats):
        text = claims.feed(delta)
        if text:
            yield text
    usage = stats.usage
    try:
        draft = parse_reply(stats.content, DraftAnswer)
    except InvalidReply as bad:
        draft, more = await llm.arepair(messages, DraftAnswer, stats.content, str(bad))
        usage = usage + more
    articles = await asyncio.to_thread(_articles, index, used)
    result = finalise(question, draft, used, articles, llm.model, usage)
    for item in _closing(result, claims.emitted):
        yield item


# -- the engine's parts -------------------------------------------------------------------


def _settled(
    question: str, passages: Sequence[Passage], index: Index, llm: LLM | None, settings: Settings
) -> Answer | list[Passage]:
    """The whole answer when no model call is needed, else the passages that fit its window."""
    if llm is None:
        return _extractive(question, passages, index, settings)
    used = fit_passages(question, passages, llm, settings)
    return list(used) if used else _no_passages(question, passages, llm)


def build_messages(question: str, passages: Sequence[Passage]) -> list[dict[str, str]]:
    from .prompts import format_sources, render

    return render("answer", sources=format_sources(passages), question=question)


def finalise(
    question: str,
    draft: DraftAnswer,
    used: Sequence[Passage],
    articles: Mapping[str, Article],
    model: str,
    usage: Usage,
) -> Answer:
    """Turn the model's draft into an `Answer` holding only what verified."""

    def make(text: str, answerable: bool, reason: str | None, citations: list[Citation],
             rejected: list[RejectedCitation]) -> Answer:
        return Answer(question=question, answer=text, answerable=answerable, reason=reason,
                      citations=citations, rejected_citations=rejected, passages=list(used),
                      mode="llm", model=model, usage=usage)

    if not draft.answerable:
        reason = (draft.reason or "").strip() or "the sources do not contain the answer"
        return make(NOT_IN_SOURCES, False, reason, [], [])
    citations, rejected, sentences, dropped = _verify_claims(draft, used, articles)
    if not citations:
        return make(NOT_VERIFIED, False, NO_VERIFIED_CITATION, [], rejected)
    note = None
    if dropped:
        note = f"{dropped} claim{'s' if dropped > 1 else ''} without a verified citation left out"
    return make(" ".join(sentences), True, note, citations, rejected)


def _verify_claims(
    draft: DraftAnswer, used: Sequence[Passage], articles: Mapping[str, Article]
) -> tuple[list[Citation], list[RejectedCitation], list[str], int]:
    """Verified citations (numbered by first use), rejections, kept sentences, dropped count."""
    citations: list[Citation] = []
    numbers: dict[tuple[str, int, int], int] = {}
    rejected: list[RejectedCitation] = []
    sentences: list[str] = []
    dropped = 0
    for claim in draft.claims:
        markers: list[int] = []
        for cited in claim.citations:
            result = _check(cited, used, articles)
            if isinstance(result, RejectedCitation):
                rejected.append(result)
                continue
            key = (result.article_id, result.start, result.end)
            if key not in numbers:
                citations.append(result)
                numbers[key] = len(citations)
            if numbers[key] not in markers:
                markers.append(numbers[key])
        text = _INLINE_MARKER.sub("", claim.text).strip()
        if markers and text:
            sentences.append(text + " " + "".join(f"[{n}]" for n in markers))
        elif text:
            dropped += 1
            if not claim.citations:
                rejected.append(RejectedCitation(quote=text, reason="claim cites no source"))
    return citations, rejected, sentences, dropped


def _check(
    cited: DraftCitation, used: Sequence[Passage], articles: Mapping[str, Article]
) -> Citation | RejectedCitation:
    from .citations import ClaimedQuote, verify_one
    from .prompts import unescape_quote

    label = cited.source_id.strip()
    passage = passage_for_label(label, used)
    if passage is None:
        return RejectedCitation(quote=cited.quote, reason=f"unknown source {label or '(none)'}")
    if passage.article_id not in articles:
        return RejectedCitation(article_id=passage.article_id, quote=cited.quote,
                                reason=f"the article of {label} is not in the index")
    claim = ClaimedQuote(article_id=passage.article_id, quote=unescape_quote(cited.quote),
                         label=label, hint=(passage.start, passage.end))
    return verify_one(claim, articles)


def passage_for_label(label: str, used: Sequence[Passage]) -> Passage | None:
    """"S2", "[S2]", "s2", "Source 2" or "2" name the second passage; anything else none."""
    clean = label.strip().strip("[]()").strip()
    found = re.fullmatch(r"(?:s|source|src)?\s*#?\s*(\d+)", clean, re.IGNORECASE)
    if found is None:
        return None
    number = int(found.group(1))
    return used[number - 1] if 1 <= number <= len(used) else None


def _articles(index: Index, used: Sequence[Passage]) -> dict[str, Article]:
    """The full articles behind the passages; one removed meanwhile is simply absent."""
    articles: dict[str, Article] = {}
    for article_id in dict.fromkeys(p.article_id for p in used):
        try:
            articles[article_id] = index.get_article(article_id)
        except ArticleNotFound:
            continue
    return articles


def _no_passages(question: str, passages: Sequence[Passage], llm: LLM) -> Answer:
    reason = NO_PASSAGES if not passages else "the passages do not fit the model's context window"
    return Answer(question=question, answer=NOT_IN_SOURCES, answerable=False, reason=reason,
                  mode="llm", model=llm.model)


def _extractive(
    question: str, passages: Sequence[Passage], index: Index, settings: Settings
) -> Answer:
    from .extractive import extractive_answer

    return extractive_answer(question, passages, index, settings)


def _closing(result: Answer, streamed: int) -> Iterator[str | Answer]:
    """What follows the streamed claims: a note when the final answer differs, then it."""
    if streamed == 0:
        yield result.answer
    elif not result.answerable:
        yield f"\n[note: {result.reason}; the text above is not supported by the sources]"
    elif result.rejected_citations:
        n = len(result.rejected_citations)
        yield (f"\n[note: {n} citation{'s' if n > 1 else ''} could not be verified and "
               f"{'was' if n == 1 else 'were'} removed]")
    yield result


# -- token budget -------------------------------------------------------------------------


def fit_passages(
    question: str, passages: Sequence[Passage], llm: LLM, settings: Settings | None = None
) -> list[Passage]:
    """The best-ranked passages that fit the context window with room for the reply."""
    from .prompts import format_sources

    if not passages:
        return []
    window = (settings.context_window if settings else None) or llm.context_window
    frame = llm.count_message_tokens(build_messages(question, []))
    schema = llm.count_tokens(json.dumps(DraftAnswer.model_json_schema()))
    budget = window - llm.max_output_tokens - frame - schema - _PROMPT_MARGIN
    empty = llm.count_tokens(format_sources([]))
    used: list[Passage] = []
    for passage in passages:
        cost = llm.count_tokens(format_sources([passage])) - empty
        if cost > budget:
            break
        used.append(passage)
        budget -= cost
    if not used and budget > 0:
        cut = _cut_to_budget(passages[0], budget, llm)
        return [cut] if cut is not None else []
    return used


def _cut_to_budget(passage: Passage, budget: int, llm: LLM) -> Passage | None:
    """The passage's longest leading run of whole sentences within `budget` tokens.

    A first sentence bigger than the whole budget is cut at a word boundary: the
    alternative is no source at all.
    """
    from .prompts import format_sources

    empty = llm.count_tokens(format_sources([]))
    ends = [m.start() for m in _SENTENCE_END.finditer(passage.text)] + [len(passage.text)]
    words = [m.start() for m in re.finditer(r"\s+", passage.text)]
    best: Passage | None = None
    for candidates in (ends, words):
        for end in candidates:
            piece = passage.text[:end].rstrip()
            if not piece:
                continue
            trial = passage.model_copy(update={"text": piece, "end": passage.start + len(piece)})
            if llm.count_tokens(format_sources([trial])) - empty > budget:
                break
            best = trial
        if best is not None:
            return best
    return None


# -- incremental parsing of streamed JSON -------------------------------------------------


class ClaimTextStream:
    """Pulls the value of every "text" key out of JSON as it streams in.

    Characters are decoded as they arrive (escapes included), so a reader sees each
    claim while the model is still writing it. Claims are joined by one space.
    """

    def __init__(self) -> None:
        self.emitted = 0  # claims started
        self._in_string = False
        self._escape = ""
        self._emitting = False
        self._key_pending = False
        self._last_string: list[str] = []

    def feed(self, delta: str) -> str:
        out: list[str] = []
        for ch in delta:
            if self._in_string:
                self._string_char(ch, out)
            else:
                self._structure_char(ch, out)
        return "".join(out)

    def _string_char(self, ch: str, out: list[str]) -> None:
        target = out if self._emitting else self._last_string
        if self._escape:
            self._escape += ch
            if self._escape[1] != "u" or len(self._escape) == 6:
                try:
                    target.append(json.loads(f'"{self._escape}"'))
                except ValueError:
                    target.append(self._escape)
                self._escape = ""
        elif ch == "\\":
            self._escape = ch
        elif ch == '"':
            self._in_string = False
            self._emitting = False
        else:
            target.append(ch)

    def _structure_char(self, ch: str, out: list[str]) -> None:
        if ch == '"':
            self._in_string = True
            if self._key_pending:
                self._emitting = True
                if self.emitted:
                    out.append(" ")
                self.emitted += 1
            else:
                self._last_string = []
            self._key_pending = False
        elif ch == ":":
            self._key_pending = "".join(self._last_string) == "text"
            self._last_string = []
        elif not ch.isspace():
            self._key_pending = False
