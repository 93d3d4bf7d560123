"""The LLM engine: retrieved passages -> a model's draft -> grounded claims -> `Answer`.

`LLMEngine` is how `NewsQA` reaches it (the `Engine` protocol, engines/base.py): it
answers here, and hands summaries and timelines to llm_summary.py and follow-ups to
condense.py with its `LLM`. `answer`/`stream_answer` with `llm=None` still answer
offline (extractive.py), for callers that hold no engine.

The LLM engine asks the model for a `DraftAnswer` (grounding/drafts.py): the short direct
answer first (yes/no, a name, a number, a date), then claims, each with quotes that
name a source label (S1, S2, ... as `grounding.sources.format_sources` numbers the passages).
The draft is untrusted; what the reader gets is decided by `grounding.Grounder`:

- every quote is checked against the FULL text of its article and snapped to the
  article's exact characters; a quote under the wrong label is found in the other
  sources of the prompt and re-attributed (`Citation.reattributed_from`);
- a claim is kept only if its verified quotes support it (`support.check_support`);
  what failed goes to `Answer.rejected_citations` with its reason;
- claims that failed get ONE re-ask listing what failed and why; what it wins back
  is appended (`Answer.reask` counts it);
- the direct answer is kept only when the first kept claim's quotes support it; the
  answer text is the direct answer, then the kept claims with markers [1], [2] that
  index `Answer.citations`;
- with no kept claim the answer is `answerable=False`, reason "no verified
  citation": nothing unverified appears in the `Answer`.

Passages are fitted to the model's context window with tiktoken: the lowest-ranked
whole passages are dropped first; a single passage too big for the window is cut at
a sentence boundary.

Streaming shows only what is verified: each claim is parsed out of the JSON as soon
as it is complete (jiter's partial mode), grounded, and its sentence yielded if
kept; the direct answer comes just before the first kept claim. The final `Answer`
comes last and is authoritative; its text is exactly what was streamed, plus any
claims the re-ask won back.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from ..aio import in_thread, iterate_in_thread
from ..errors import ArticleNotFound, LLMError
from ..grounding import (
    DraftAnswer,
    DraftClaim,
    Grounder,
    format_sources,
    is_no_answer,
    is_yes_no,
    reask_message,
)
from ..models import Answer, Article, Passage, Reask, Usage
from ..text.lexical import terms
from .base import drain
from .condense import Rewrite, Turn, condense_with_llm
from .extractive import extractive_answer
from .llm import StreamStats
from .llm_summary import summary_with_llm, timeline_with_llm
from .prompts import render
from .summarize import SummarySources

if TYPE_CHECKING:
    from ..config import Settings
    from ..models import Summary, Timeline
    from ..store.index import Index
    from .llm import LLM

NOT_IN_SOURCES = "The sources do not contain the answer."
NOT_VERIFIED = (
    "No answer can be given: none of the model's claims could be checked against the sources."
)
NOT_SHOWN = "No answer can be given: no quote from the sources shows the model's answer."
NO_PASSAGES = "no passages were retrieved for the question"
MODEL_ABSTAINED = "the model found no answer in the sources"
NO_VERIFIED_CITATION = "no verified citation"
# Tokens kept free besides the reply: message framing, the schema the lower rungs add.
_PROMPT_MARGIN = 64
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+")


# -- entry points -------------------------------------------------------------------------


def answer(
    question: str, passages: Sequence[Passage], index: Index, llm: LLM | None, settings: Settings
) -> Answer:
    """Answer from the passages; every citation in the result is a verified span.

    The stream drained: one path, with the model's reply asked for in one piece."""
    return drain(stream_answer(question, passages, index, llm, settings, live=False))


async def aanswer(
    question: str, passages: Sequence[Passage], index: Index, llm: LLM | None, settings: Settings
) -> Answer:
    """`answer` for an event loop: the same code, in a worker thread."""
    return await in_thread(answer, question, passages, index, llm, settings)


def stream_answer(
    question: str, passages: Sequence[Passage], index: Index, llm: LLM | None, settings: Settings,
    *, live: bool = True,
) -> Iterator[str | Answer]:
    """Each claim's text once it is verified and supported, then the final `Answer`.

    `live=False`: the model's reply comes in one piece (`LLM.stream`), for `answer`."""
    used = _settled(question, passages, index, llm, settings)
    if isinstance(used, Answer):
        yield used.answer
        yield used
        return
    assert llm is not None  # _settled answers without a model

    messages = build_messages(question, used)
    stats = StreamStats()
    shown = _Shown(Grounder(question, used, _articles(index, used), index.outlets()))
    for delta in llm.stream(messages, schema=DraftAnswer, stats=stats, live=live):
        if live:  # else nothing was shown: the claims come from the parsed (or repaired) draft
            yield from shown.feed(delta)
    draft, usage = llm.parsed(messages, DraftAnswer, stats)
    yield from shown.finish(draft)
    shown.grounder.close()
    reask = _reask(llm, messages, draft, shown.grounder) if settings.llm_reask else None
    yield from shown.more()
    result = _result(shown.grounder, draft, llm.model, usage, reask)
    if shown.sent == 0 and not result.answerable:
        result = _agreed(result, draft, index, settings) or result
    yield from _closing(result, shown.sent)


def astream_answer(
    question: str, passages: Sequence[Passage], index: Index, llm: LLM | None, settings: Settings
) -> AsyncIterator[str | Answer]:
    """`stream_answer` for an event loop: the same code, advanced in a worker thread."""
    return iterate_in_thread(partial(stream_answer, question, passages, index, llm, settings))


# -- the engine NewsQA calls (the protocol: engines/base.py) ------------------------------


class LLMEngine:
    """`Engine` (engines/base.py) over one `LLM`."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    @property
    def model(self) -> str | None:
        return self.llm.model

    def warm(self) -> None:
        _ = self.llm.client  # the client's import and set-up, before the first request

    def window(self, settings: Settings) -> int:
        """The tokens the model reads: the explicit setting wins over the model's own."""
        return settings.context_window or self.llm.context_window

    def answer(
        self, question: str, passages: Sequence[Passage], index: Index, settings: Settings,
        *, streaming: bool = True,
    ) -> Iterator[str | Answer]:
        items = stream_answer(question, passages, index, self.llm, settings, live=streaming)
        if streaming:
            yield from items
        else:
            yield drain(items)

    def summarize(
        self, sources: SummarySources, settings: Settings, *, query: str | None,
        bullets: int, max_words: int | None, focus: str | None, template: str = "summarize",
    ) -> Iterator[str | Summary]:
        yield summary_with_llm(self.llm, sources, self.window(settings), query=query,
                               bullets=bullets, max_words=max_words, focus=focus,
                               template=template)

    def timeline(
        self, query: str, sources: SummarySources, settings: Settings, *, max_events: int
    ) -> Iterator[str | Timeline]:
        yield timeline_with_llm(self.llm, sources, self.window(settings), query,
                                max_events=max_events)

    def condense(self, question: str, history: Sequence[Turn]) -> Iterator[str | Rewrite]:
        standalone, usage = condense_with_llm(question, history, self.llm)
        yield Rewrite(standalone, usage)


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
    return render("answer", sources=format_sources(passages), question=question)


def _reask(
    llm: LLM, messages: list[dict[str, str]], draft: DraftAnswer, grounder: Grounder
) -> Reask | None:
    """One more try for the claims that failed, as instructor re-asks on a validation error.

    Best effort: a model error here keeps the answer as it stands rather than losing it.
    Called with the grounder closed (the draft's waiting claims settled); closes it again.
    """
    if not draft.answerable or not grounder.failures:
        return None
    failed = len(grounder.failures)
    kept = len(grounder.sentences)
    follow_up = [
        *messages,
        {"role": "assistant", "content": draft.model_dump_json()},
        {"role": "user", "content": reask_message(grounder.failures)},
    ]
    try:
        repaired, usage = llm.structured(follow_up, DraftAnswer)
    except LLMError:
        return Reask(failed_claims=failed, recovered_claims=0)
    for claim in repaired.claims:
        grounder.add(claim)
    grounder.close()
    return Reask(failed_claims=failed, recovered_claims=len(grounder.sentences) - kept, usage=usage)


def _result(
    grounder: Grounder, draft: DraftAnswer, model: str, usage: Usage, reask: Reask | None
) -> Answer:
    """The `Answer` a reader gets: only what the grounder kept."""
    total = usage + reask.usage if reask is not None else usage
    common: dict[str, Any] = dict(
        question=grounder.question, passages=list(grounder.used), mode="llm", model=model,
        usage=total, reask=reask, rejected_citations=grounder.rejected,
    )
    if not draft.answerable or (is_no_answer(draft.answer) and not draft.claims):
        # Not the model's own reason: it is unchecked text, and a weak model writes its
        # answer there ("The World Cup was won by Brazil in 2018 ...").
        return Answer(answer=NOT_IN_SOURCES, answerable=False, reason=MODEL_ABSTAINED,
                      **{**common, "rejected_citations": []})
    if not grounder.sentences:
        return Answer(answer=NOT_VERIFIED, answerable=False, reason=NO_VERIFIED_CITATION, **common)
    # A claim the re-ask retried and lost again is one claim left out, not two.
    dropped = reask.failed_claims - reask.recovered_claims if reask else len(grounder.failures)
    notes = []
    if dropped > 0:
        notes.append(f"{dropped} claim{'s' if dropped > 1 else ''} without a supported "
                     "citation left out")
    if grounder.trimmed:
        notes.append(f"{grounder.trimmed} claim{'s' if grounder.trimmed > 1 else ''} cut to "
                     "the part the quotes support")
    if grounder.searched:
        notes.append(f"{grounder.searched} claim{'s' if grounder.searched > 1 else ''} quoted "
                     "by newsqa: the model's own quotes failed")
    direct = grounder.direct(draft.answer)
    if direct is None and not is_no_answer(draft.answer):
        # Quoted as what was left out (as rejected quotes are listed), never as an answer.
        withheld = (f"the short answer {draft.answer.strip()[:80]!r} left out: the kept "
                    "claims' quotes do not show it")
        if _must_show(draft.answer):
            return Answer(answer=NOT_SHOWN, answerable=False, reason=withheld, **common)
        notes.append(withheld)
    note = "; ".join(notes) or None
    return Answer(answer=_text(direct, grounder.sentences), answerable=True, reason=note,
                  direct_answer=direct, citations=grounder.citations, **common)


def _agreed(lost: Answer, draft: DraftAnswer, index: Index, settings: Settings) -> Answer | None:
    """The offline engine's answer, when no kept claim of the model's shows its short
    answer (none held, or none names it) but that answer is the one the offline
    engine finds on its own in the same passages.

    A small model often names the right answer and then garbles every claim and quote,
    re-ask included (issue 15's runs: 25 of 26 drafts right, 10 kept). Its name alone
    is not enough (benchmarks/answer_evidence.py: a sentence that states a wrong name
    is easy to find), but two independent readers agreeing is: the offline engine
    abstains on 97% of null questions by its own calibrated rule, and its claims are
    source sentences, verified as quoted. The reader sees those sentences and a note
    saying so. Never for a yes or no, which the offline engine does not give.
    """
    if not draft.answerable or is_no_answer(draft.answer) or is_yes_no(draft.answer):
        return None
    offline = extractive_answer(lost.question, lost.passages, index, settings)
    if not (offline.answerable and offline.direct_answer
            and _same_answer(draft.answer, offline.direct_answer)):
        return None
    note = ("the model's own claims could not be verified; its answer is the one newsqa's "
            "offline engine found in the same passages, shown on the sentences it quoted")
    return offline.model_copy(update={
        "mode": "llm", "model": lost.model, "usage": lost.usage, "reask": lost.reask,
        "reason": note, "rejected_citations": [*lost.rejected_citations,
                                               *offline.rejected_citations],
    })


def _same_answer(ours: str, theirs: str) -> bool:
    """The same short answer, one perhaps fuller ("Sam Bankman-Fried", "Bankman-Fried")."""
    a, b = set(terms(ours)), set(terms(theirs))
    return bool(a and b) and (a <= b or b <= a)


def _text(direct: str | None, sentences: Sequence[str]) -> str:
    lead = [direct if direct.rstrip().endswith((".", "!", "?")) else direct + "."] if direct else []
    return " ".join([*lead, *sentences])


class _Shown:
    """What a stream has shown: kept claims as they complete, the direct answer before them.

    Nothing is shown until the draft has said it is answerable and given its direct
    answer (a model may write the keys in any order below the json_schema rung):
    otherwise the stream could show claims the final answer discards, or miss the
    lead the final text starts with.
    """

    def __init__(self, grounder: Grounder) -> None:
        self.grounder = grounder
        self.sent = 0  # pieces of answer text yielded
        self._drafts = DraftStream()
        self._done = 0  # claims handed to the grounder
        self._kept = 0  # sentences yielded
        self._lead: str | None = None  # the draft's direct answer, once known
        self._open = False  # answerable, lead known: kept claims may be shown

    def feed(self, delta: str) -> list[str]:
        self._ground(self._drafts.feed(delta))
        if not self._open and self._drafts.answerable is True and self._drafts.direct is not None:
            self._lead, self._open = self._drafts.direct, True
        return self._pieces()

    def finish(self, draft: DraftAnswer) -> list[str]:
        """The claims the stream had not completed (all of them, if the reply was repaired)."""
        rest = draft.claims[self._done:] if self._drafts.matches(draft) else [
            c for c in draft.claims if c.text not in self._drafts.seen
        ]
        self._ground(rest)
        if not self._open:
            self._lead, self._open = draft.answer, draft.answerable
        return self._pieces()

    def more(self) -> list[str]:
        """Sentences the re-ask added after the stream."""
        return self._pieces()

    def _ground(self, claims: Sequence[DraftClaim]) -> None:
        for claim in claims:
            self._done += 1
            self.grounder.add(claim)

    def _pieces(self) -> list[str]:
        new = self.grounder.sentences[self._kept:]
        if not self._open or not new or not self._lead_shown():
            return []
        if self._kept == 0:
            new = [_text(self.grounder.direct(self._lead or ""), new[:1]), *new[1:]]
        self._kept = len(self.grounder.sentences)
        pieces = [(" " if self.sent else "") + new[0], *(" " + s for s in new[1:])]
        self.sent += len(pieces)
        return pieces

    def _lead_shown(self) -> bool:
        """Whether the kept quotes show the name or number the draft answers with, where
        the final answer requires it (`_must_show`): until they do, nothing is shown. A new user's
        stream showed a verified claim, then "[note: ... the text above is withdrawn]",
        when the claim's quotes did not hold the short answer ("5,200" for a claim about
        3,000 troops)."""
        lead = self._lead or ""
        return bool(self._kept) or not _must_show(lead) or self.grounder.direct(lead) is not None


def _articles(index: Index, used: Sequence[Passage]) -> dict[str, Article]:
    """The full articles behind the passages; one removed meanwhile is simply absent."""
    articles: dict[str, Article] = {}
    for article_id in dict.fromkeys(p.article_id for p in used):
        try:
            articles[article_id] = index.get_article(article_id)
        except ArticleNotFound:
            continue
    return articles


def _must_show(lead: str) -> bool:
    """Whether an answer stands only if a kept claim's quotes show its short answer: a name
    or a number must be shown (claims that do not show it answer nothing: issue 15's run,
    "Which Greek letter ...?" -> 'alpha', kept "The article mentions Dolby Atmos"); a
    yes/no question's claims each answer one of its parts, and "no answer" shows nothing.
    The final answer (`_result`) and the stream (`_Shown`) ask the same."""
    return not is_no_answer(lead) and not is_yes_no(lead)


def _no_passages(question: str, passages: Sequence[Passage], llm: LLM) -> Answer:
    reason = NO_PASSAGES if not passages else "the passages do not fit the model's context window"
    return Answer(question=question, answer=NOT_IN_SOURCES, answerable=False, reason=reason,
                  mode="llm", model=llm.model)


def _extractive(
    question: str, passages: Sequence[Passage], index: Index, settings: Settings
) -> Answer:
    return extractive_answer(question, passages, index, settings)


def _closing(result: Answer, streamed: int) -> Iterator[str | Answer]:
    """What follows the streamed claims: the text when none was shown, a note, then it."""
    if streamed == 0:
        yield result.answer
    elif not result.answerable:  # only a repaired reply can contradict what was shown
        yield f"\n[note: {result.reason}; the text above is withdrawn]"
    elif result.rejected_citations:
        n = len(result.rejected_citations)
        yield (f"\n[note: {n} citation{'s' if n > 1 else ''} could not be verified or did not "
               f"support {'its' if n == 1 else 'their'} claim, and {'was' if n == 1 else 'were'} "
               "removed]")
    yield result


# -- token budget -------------------------------------------------------------------------


def fit_passages(
    question: str, passages: Sequence[Passage], llm: LLM, settings: Settings | None = None
) -> list[Passage]:
    """The best-ranked passages that fit the context window with room for the reply."""
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


class DraftStream:
    """Complete claims out of a `DraftAnswer` reply while it streams (jiter's partial mode).

    Every claim but the last one seen is complete, and so is the last once the text
    so far closes with it (the claims list would end there); the direct answer is
    complete once the partial parse shows it (incomplete strings are left out in this
    mode). Parsed only when a delta closes an object: a reply costs a few dozen parses.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.answerable: bool | None = None  # once the reply has said
        self.direct: str | None = None  # the direct answer, once complete
        self._text = ""
        self._claims = 0

    def feed(self, delta: str) -> list[DraftClaim]:
        """The claims this delta completed."""
        self._text += delta
        if not any(ch in delta for ch in "},el"):  # no value can have closed
            return []
        document = self._partial()
        if isinstance(document.get("answerable"), bool):
            self.answerable = document["answerable"]
        if isinstance(document.get("answer"), str):
            self.direct = document["answer"]
        raw = document.get("claims")
        claims = raw if isinstance(raw, list) else []
        if claims and not self._closes_last():
            claims = claims[:-1]
        new = [c for c in (_claim(item) for item in claims[self._claims:]) if c is not None]
        self._claims = max(self._claims, len(claims))
        self.seen.update(c.text for c in new)
        return new

    def matches(self, draft: DraftAnswer) -> bool:
        """Whether the final draft starts with the claims this stream already handed out."""
        return all(c.text in self.seen for c in draft.claims[: self._claims])

    def _partial(self) -> dict[str, Any]:
        import jiter

        start = self._text.find("{")
        if start < 0:
            return {}
        try:
            value = jiter.from_json(self._text[start:].encode(), partial_mode="on")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def _closes_last(self) -> bool:
        """Whether the last claim is closed: the text parses whole once the list and object end."""
        import jiter

        body = self._text[self._text.find("{"):].rstrip().rstrip(",")
        for ending in ("]}", ""):  # the list would close here, or the whole reply is in
            try:
                jiter.from_json((body + ending).encode())
            except ValueError:
                continue
            return True
        return False


def _claim(item: object) -> DraftClaim | None:
    from pydantic import ValidationError

    try:
        return DraftClaim.model_validate(item)
    except ValidationError:
        return None
