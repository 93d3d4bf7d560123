"""Chat sessions: follow-up questions rewritten into standalone ones, history on a budget.

Retrieval only sees one question, so "what did he warn?" would retrieve nothing
useful. Each turn is first condensed into a standalone question: by the LLM when
one is configured, offline by carrying the previous turn's named entities and key
words into the question. The rewritten question is what gets retrieved and
answered, and it is shown on the `Answer` (`rewritten_question`) so a reader can
see what was actually asked.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field

from ..aio import in_thread, iterate_in_thread
from ..engines.prompts import render
from ..errors import ConfigError, InputError, LLMError, NewsQAError
from ..models import Answer, Citation, SearchOptions, Usage, check_options, check_question
from ..store.chunking import count_tokens

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

    from ..engines.llm import LLM

DEFAULT_HISTORY_TOKENS = 1500
MAX_CONTEXT_TERMS = 5
MAX_STANDALONE_CHARS = 1000
# Earlier turns only steer the follow-up rewrite, whose offline form costs the square
# of the previous reply (20 KB: 0.5 s; 300 KB: minutes), and replaying a client's
# history runs it once a turn: whatever history a session takes in keeps a bounded
# part of each turn, and only the latest turns (`clip_history`, `replay_history`).
MAX_HISTORY_CHARS = 4000
MAX_HISTORY_PAIRS = 16


@dataclass(frozen=True)
class Turn:
    """One exchange as the session remembers it."""

    question: str
    answer: str
    rewritten_question: str | None = None

    @property
    def standalone(self) -> str:
        return self.rewritten_question or self.question


# -- the offline rewrite ---------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that point back at something said before: their presence is what makes a
# question a follow-up rather than a new topic.
_ANAPHORA = _words(
    """he him his himself she her hers herself it its itself they them their theirs
    themselves this that these those there such the former the latter"""
)
_FOLLOW_UP_OPENERS = (
    "and ", "also ", "what about", "how about", "but ", "so ", "then ", "why", "when",
    "where", "how come", "what else", "anything else", "more on", "tell me more",
)
_QUESTION_WORDS = _words(
    "who whom whose what which when where why how is are was were do does did can could "
    "will would should shall may might has have had"
)
_STOPWORDS = _words(
    """a an the and or but if of in on at to for from by with about into over after before
    under between through during without within than then so as is are was were be been
    being do does did done have has had having will would should could can may might must
    shall not no nor yes it its this that these those there here he him his she her they
    them their we us our you your i me my who whom whose what which when where why how
    said say says tell told also any some all more most other such only own same very just
    up down out off again further once both each few many much there's what's let's
    one two according report reports reported reportedly source sources mr mrs ms
    happen happened happens going"""
)
_WORD = re.compile(r"[A-Za-z][\w'’\-]*")
# A run of capitalised words (with particles like al-/bin inside names), or an acronym.
_ENTITY = re.compile(
    r"(?:\b(?:al|el|bin|ibn|de|van|von)-?)?\b[A-Z][\w’'\-]*"
    r"(?:\s+(?:(?:al|el|bin|ibn|de|da|van|von|of|the)[\s\-])?(?:al-|el-)?[A-Z][\w’'\-]*)*"
)
_POSSESSIVE = re.compile(r"['’]s?$")
_SENTENCE_START = re.compile(r"(?:^|[.!?;\"“”]\s+|\n\s*)$")


def is_follow_up(question: str) -> bool:
    """Does the question lean on the conversation (pronouns, "and ...", a bare "why?")?"""
    text = question.strip().lower()
    words = [w.strip("'’") for w in _WORD.findall(text)]
    if any(w in _ANAPHORA for w in words):
        return True
    if any(text.startswith(opener) for opener in _FOLLOW_UP_OPENERS) and not named_entities(
        question
    ):
        return True
    content = [w for w in words if w not in _STOPWORDS and w not in _QUESTION_WORDS]
    return len(content) <= 1 and not named_entities(question)


_CALENDAR = _words(
    """monday tuesday wednesday thursday friday saturday sunday january february march
    april may june july august september october november december today yesterday"""
)


def _mid_sentence_words(text: str) -> set[str]:
    words: set[str] = set()
    for match in _ENTITY.finditer(text):
        if not _SENTENCE_START.search(text[: match.start()]):
            words.update(_POSSESSIVE.sub("", w) for w in match.group(0).split())
    return words


def named_entities(text: str, *, context: str = "") -> list[str]:
    """Capitalised spans, most salient first, without sentence-initial common words.

    No tagger is available offline, so a lone capitalised word at the start of a
    sentence counts only if it is an acronym ("US") or is capitalised mid-sentence
    somewhere in `text` or `context`; otherwise "Sources revealed ..." would yield
    "Sources".
    """
    known = _mid_sentence_words(text) | _mid_sentence_words(context)
    counts: Counter[str] = Counter()
    order: dict[str, int] = {}
    for match in _ENTITY.finditer(text):
        at_start = bool(_SENTENCE_START.search(text[: match.start()]))
        words = [_POSSESSIVE.sub("", w) for w in match.group(0).split()]
        while words and words[0].lower() in _QUESTION_WORDS | _STOPWORDS:
            words, at_start = words[1:], False  # "What Qaani said" -> "Qaani"
        if not words or all(w.lower() in _STOPWORDS | _CALENDAR for w in words):
            continue
        span = " ".join(words)
        if at_start and len(words) == 1 and not span.isupper() and span not in known:
            continue
        counts[span] += 1
        order.setdefault(span, len(order))
    return sorted(counts, key=lambda s: (-counts[s], order[s]))


def key_words(text: str) -> list[str]:
    """Lower-case content words, for carrying a topic that has no proper name."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text):
        lowered = _POSSESSIVE.sub("", word.lower())
        if len(lowered) > 3 and lowered not in _STOPWORDS and lowered not in _QUESTION_WORDS:
            seen.setdefault(lowered, None)
    return list(seen)


def context_terms(turn: Turn, question: str, limit: int = MAX_CONTEXT_TERMS) -> list[str]:
    """What the previous turn was about: its question's entities first, then its answer's.

    The question's entities (including those it carried itself) are the user's own
    topic, so they rank above whatever the answer happened to mention; names the
    new question already contains are skipped.
    """
    present = {w.lower() for w in _WORD.findall(question)}
    terms: list[str] = []

    def add(candidates: Iterable[str]) -> None:
        for term in candidates:
            lowered = term.lower()
            if len(terms) >= limit or lowered.split()[-1] in present:
                continue
            if any(lowered in t.lower() or t.lower() in lowered for t in terms):
                continue
            terms.append(term)

    asked, answer = turn.standalone, turn.answer
    add(named_entities(asked, context=answer))
    add(named_entities(answer, context=asked)[:2])
    if not terms:
        add(key_words(_CONTEXT_NOTE.sub("", asked))[:3])
    return terms


_CONTEXT_NOTE = re.compile(r"\s*\(context: [^()]*\)\s*$")


_SINGULAR_PERSONAL = re.compile(r"\b(he|she|him|his|hers|her|himself|herself)\b", re.I)
_POSSESSIVE_PRONOUNS = frozenset({"his", "hers"})


def subject_of(turn: Turn, question: str) -> str | None:
    """The name "he"/"she" most likely means: the first name the previous turn asked about.

    A question names its subject first ("Who did Qaani meet in Baghdad?"), so the
    previous question's first entity wins; its answer's first entity is the fallback,
    and wins when the question asked for the subject ("Who leads the Quds Force?").
    Names the new question has are skipped: in "What did he urge al-Sudani to do?",
    "he" is not al-Sudani.
    """
    present = {w.lower() for w in _WORD.findall(question)}
    asked = turn.standalone
    candidates = [*_in_order(asked, turn.answer), *_in_order(turn.answer, asked)]
    if _asks_who_did(asked):  # "Who leads the Quds Force?": the answer names the subject
        candidates = [*_in_order(turn.answer, asked), *_in_order(asked, turn.answer)]
    for entity in candidates:
        if entity.lower().split()[-1] not in present:
            return entity
    return None


_WHO_VERB = re.compile(r"^\W*who\s+(\w+)", re.I)


def _asks_who_did(question: str) -> bool:
    """ "Who leads X?" asks for a subject; "Who is X?"/"Who did X meet?" are about X."""
    match = _WHO_VERB.match(question)
    return match is not None and match.group(1).lower() not in _QUESTION_WORDS


def _in_order(text: str, context: str) -> list[str]:
    found = named_entities(text, context=context)
    return sorted(found, key=lambda e: text.find(e) if e in text else len(text))


def _substitute(question: str, subject: str) -> str:
    """Replace singular personal pronouns by `subject` ("his" -> "Qaani's")."""

    def replace(match: re.Match[str]) -> str:
        word = match.group(0).lower()
        after = question[match.end():].lstrip()
        next_word = after.split()[0].lower() if after.split() else ""
        possessive = word in _POSSESSIVE_PRONOUNS or (
            word == "her" and next_word.isalpha() and next_word not in _STOPWORDS
        )
        if word in ("himself", "herself"):
            return subject
        return f"{subject}'s" if possessive and word != "hers" else subject

    return _SINGULAR_PERSONAL.sub(replace, question)


def condense_offline(question: str, history: Sequence[Turn]) -> str:
    """Make a follow-up standalone from what the previous turn was about.

    "he"/"she" become the previous turn's subject, so "What did he warn?" is
    asked as "What did Qaani warn?": the engines score sentences by the question's
    terms, and a substituted name keeps the question as sharp as the user's.
    Other references ("that", "they", a bare "why?") cannot be bound to one name
    without a parser, so the previous turn's salient names are appended instead.
    A rewritten question carries its names along, so a chain of follow-ups stays
    on topic.
    """
    question = question.strip()
    if not history or not is_follow_up(question):
        return question
    previous = history[-1]
    subject = subject_of(previous, question)
    rewritten = _substitute(question, subject) if subject else question
    if rewritten != question and not is_follow_up(rewritten):
        return rewritten
    terms = context_terms(previous, rewritten)
    if not terms:
        return rewritten
    return f"{rewritten} (context: {', '.join(terms)})"


def exchanges(messages: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(question, answer) pairs from a chat client's (role, text) messages.

    A user message answered by an assistant message is one exchange; the reply
    loses its citation markers and sources (`strip_reply`). Other roles are
    skipped, and an empty user message leaves the one before it standing.
    """
    pairs: list[tuple[str, str]] = []
    pending: str | None = None
    for role, text in messages:
        if role == "user":
            pending = text.strip() or pending
        elif role == "assistant" and pending is not None:
            pairs.append((pending, strip_reply(text)))
            pending = None
    return pairs


def replay_history(pairs: Iterable[tuple[str, str]]) -> list[Turn]:
    """Turns from (question, answer) pairs a client kept, with the offline rewrites redone.

    A chat client sends back only what was said, not what each question was
    rewritten to; replaying the (cheap, deterministic) offline rewrite restores the
    topic that a chain of follow-ups carries. Only the latest pairs are replayed,
    each clipped first (see MAX_HISTORY_CHARS): the rewrite is what costs.
    """
    turns: list[Turn] = []
    for question, answer in deque(pairs, maxlen=MAX_HISTORY_PAIRS):
        turn = clip_turn(Turn(question, answer))
        turns.append(Turn(turn.question, turn.answer, condense_offline(turn.question, turns)))
    return turns


# -- the LLM rewrite --------------------------------------------------------------------------


class Condensed(BaseModel):
    """What the model returns for a rewrite: one question, nothing else."""

    standalone_question: str = Field(
        description="The user's last question rewritten to be understood without the chat."
    )


def _format_history(history: Sequence[Turn]) -> str:
    lines = []
    for turn in history:
        lines.append(f"User: {turn.question}")
        lines.append(f"Assistant: {turn.answer}")
    return "\n".join(lines)


def _checked_rewrite(candidate: str, question: str) -> str | None:
    """The model's rewrite is untrusted: keep it only if it is one plausible question."""
    text = " ".join(candidate.split())
    if not text or len(text) > MAX_STANDALONE_CHARS or len(text) > 10 * max(len(question), 40):
        return None
    return text


def _condense_messages(question: str, history: Sequence[Turn]) -> list[dict[str, str]]:
    return render("condense", history=_format_history(history), question=question)


def condense_with_llm(question: str, history: Sequence[Turn], llm: LLM) -> tuple[str, Usage]:
    """Ask the model for a standalone question; fall back to the offline rewrite."""
    if not history:
        return question.strip(), Usage()
    try:
        result, usage = llm.structured(_condense_messages(question, history), Condensed)
    except LLMError:
        return condense_offline(question, history), Usage()
    rewrite = _checked_rewrite(result.standalone_question, question)
    return (rewrite or condense_offline(question, history)), usage


# -- history budget ---------------------------------------------------------------------------


def turn_tokens(turn: Turn) -> int:
    return count_tokens(turn.question) + count_tokens(turn.answer)


def clip_turn(turn: Turn) -> Turn:
    """The turn as history keeps it: each text cut to MAX_HISTORY_CHARS."""
    texts = (turn.question, turn.answer, turn.rewritten_question or "")
    if all(len(text) <= MAX_HISTORY_CHARS for text in texts):
        return turn
    rewritten = turn.rewritten_question
    return Turn(
        turn.question[:MAX_HISTORY_CHARS],
        turn.answer[:MAX_HISTORY_CHARS],
        None if rewritten is None else rewritten[:MAX_HISTORY_CHARS],
    )


def clip_history(history: Iterable[Turn]) -> list[Turn]:
    """The latest MAX_HISTORY_PAIRS turns, each clipped: the bound on any history taken in."""
    return [clip_turn(turn) for turn in deque(history, maxlen=MAX_HISTORY_PAIRS)]


def trim_history(history: list[Turn], budget: int) -> list[Turn]:
    """Drop the oldest turns until the rest fit the token budget (the newest always stays)."""
    kept: list[Turn] = []
    total = 0
    for turn in reversed(history):
        cost = turn_tokens(turn)
        if kept and total + cost > budget:
            break
        kept.append(turn)
        total += cost
    return list(reversed(kept))


# -- replies as text --------------------------------------------------------------------------

_MARKER = re.compile(r"\[\d+\]")
_SOURCES_HEAD = "\nSources:\n"


def _source_line(number: int, citation: Citation) -> str:
    facts = [citation.title or citation.article_id, citation.source]
    if citation.published_at is not None:
        facts.append(citation.published_at.isoformat()[:10])
    named = ", ".join(f for f in facts if f)
    return f'[{number}] {named}: "{citation.quote}"'


def _body(answer: Answer) -> str:
    text = answer.answer.strip() or (answer.reason or "")
    if not answer.answerable and answer.reason and answer.reason not in text:
        text = f"{text} ({answer.reason})" if text else answer.reason
    return text


def _markers(answer: Answer, body: str) -> str:
    if not answer.citations or _MARKER.search(body):
        return ""
    return " " + "".join(f"[{i}]" for i in range(1, len(answer.citations) + 1))


def _sources(answer: Answer) -> str:
    if not answer.citations:
        return ""
    lines = [_source_line(i, c) for i, c in enumerate(answer.citations, 1)]
    return "\n\nSources:\n" + "\n".join(lines)


def answer_text(answer: Answer) -> str:
    """The answer with citation markers; the engine's own markers are kept if present."""
    body = _body(answer)
    return body + _markers(answer, body)


def format_reply(answer: Answer) -> str:
    """What a person reads: the answer, then where each citation comes from."""
    return answer_text(answer) + _sources(answer)


def reply_remainder(answer: Answer, sent: str) -> str:
    """What to print after `sent` was streamed, so the whole reads as `format_reply`.

    If the streamed text was not the start of the final answer (an engine may
    tidy it once verified), text already shown cannot be taken back: only the
    markers and sources follow.
    """
    full = format_reply(answer)
    if full.startswith(sent):
        return full[len(sent):]
    return _markers(answer, _body(answer)) + _sources(answer)


def strip_reply(content: str) -> str:
    """A previous reply as conversation history: the answer without markers and sources."""
    # str.find, not a regex: "\n+Sources:" backtracked quadratically over a run of newlines.
    at = content.find(_SOURCES_HEAD)
    body = content[:at] if at >= 0 else content
    return _MARKER.sub("", body).strip()


# -- the session ------------------------------------------------------------------------------


class Archive(Protocol):
    """What a session asks: `NewsQA` is one. Named here, not imported, so chat sits below
    the API that opens sessions (issue 17: api <-> chat was an import cycle)."""

    @property
    def llm(self) -> LLM | None: ...

    def ask(self, question: str, **options: Unpack[SearchOptions]) -> Answer: ...

    def stream(self, question: str, **options: Unpack[SearchOptions]) -> Iterator[str | Answer]: ...


class ChatSession:
    """A conversation over a `NewsQA` archive; one per user, not shared across threads.

    Search options given here (`sources`, `since`, `until`, `top_k`) apply to every
    turn. `history_tokens` bounds what is remembered: the oldest turns go first. Any
    history (given here, to `use_history` or `add_turn`) is clipped (`clip_history`).
    """

    def __init__(
        self,
        qa: Archive,
        *,
        history_tokens: int = DEFAULT_HISTORY_TOKENS,
        history: Iterable[Turn] = (),
        **search_options: Unpack[SearchOptions],
    ) -> None:
        if history_tokens < 1:
            raise ConfigError(f"history_tokens must be positive, got {history_tokens}")
        check_options(search_options)
        self.qa = qa
        self.history_tokens = history_tokens
        self.search_options = search_options
        self._history: list[Turn] = []
        self.use_history(history)

    @property
    def history(self) -> list[Turn]:
        """The remembered turns, oldest first (a copy: edit with `add_turn`/`reset`)."""
        return list(self._history)

    def reset(self) -> None:
        self._history = []

    def use_history(self, history: Iterable[Turn]) -> None:
        """Replace the remembered turns (e.g. with `replay_history` of a client's messages)."""
        self._history = trim_history(clip_history(history), self.history_tokens)

    def add_turn(self, question: str, answer: str, rewritten_question: str | None = None) -> None:
        """Record an exchange that happened elsewhere (e.g. replayed from a chat client)."""
        self.use_history([*self._history, Turn(question, answer, rewritten_question)])

    # -- rewriting

    def condense(self, question: str) -> tuple[str, Usage]:
        """The standalone form of `question` given this session's history."""
        _check_question(question)
        llm = self.qa.llm
        if llm is None:
            return condense_offline(question, self._history), Usage()
        return condense_with_llm(question, self._history, llm)

    async def acondense(self, question: str) -> tuple[str, Usage]:
        """`condense` for an event loop: the same code, in a worker thread."""
        return await in_thread(self.condense, question)

    # -- asking

    def ask(self, question: str) -> Answer:
        standalone, usage = self.condense(question)
        result = self.qa.ask(standalone, **self.search_options)
        return self._finish(question, standalone, result, usage)

    async def aask(self, question: str) -> Answer:
        """`ask` for an event loop: the same code, in a worker thread."""
        return await in_thread(self.ask, question)

    def stream(self, question: str) -> Iterator[str | Answer]:
        """Text deltas, then the final verified `Answer` (recorded in the history)."""
        standalone, usage = self.condense(question)
        for item in self.qa.stream(standalone, **self.search_options):
            if isinstance(item, Answer):
                yield self._finish(question, standalone, item, usage)
            else:
                yield item

    def astream(self, question: str) -> AsyncIterator[str | Answer]:
        """`stream` for an event loop: the same code, advanced in a worker thread."""
        return iterate_in_thread(partial(self.stream, question))

    def _finish(self, question: str, standalone: str, result: Answer, usage: Usage) -> Answer:
        final = result.model_copy(
            update={
                "question": question.strip(),
                "rewritten_question": standalone,
                "usage": result.usage + usage,
            }
        )
        self.add_turn(final.question, final.answer, standalone)
        return final


def _check_question(question: str) -> None:
    if not isinstance(question, str) or not question.strip():
        raise InputError("question", "is empty")
    check_question(question)


# -- the terminal ------------------------------------------------------------------------------

_EXIT_WORDS = frozenset({"exit", "quit", ":q", "/exit", "/quit"})


def run_terminal(session: ChatSession, *, console: Any = None) -> None:
    """A read-answer loop for `newsqa chat`: streams each answer, then its sources.

    Ends on EOF (Ctrl-D), Ctrl-C or "exit"; "/reset" forgets the conversation.
    Errors of ours end the turn, not the loop, so one bad question costs nothing.
    """
    from rich.console import Console
    from rich.prompt import Prompt


    console = console or Console()
    console.print("[dim]Ask about the archive. /reset forgets the conversation; exit quits.[/]")
    while True:
        try:
            question = Prompt.ask("[bold cyan]you[/]", console=console).strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if question.lower() in _EXIT_WORDS:
            return
        if question.lower() == "/reset":
            session.reset()
            console.print("[dim]conversation forgotten[/]")
            continue
        if not question:
            continue
        try:
            _print_turn(session, question, console)
        except NewsQAError as exc:
            console.print(f"[red]error:[/] {exc}", markup=True, highlight=False)


def _print_turn(session: ChatSession, question: str, console: Any) -> None:
    streamed = ""
    final: Answer | None = None
    for item in session.stream(question):
        if isinstance(item, Answer):
            final = item
        else:
            streamed += item
            console.print(item, end="", markup=False, highlight=False)
    if final is None:
        return
    console.print(reply_remainder(final, streamed), markup=False, highlight=False)
    if final.rewritten_question and final.rewritten_question != final.question:
        console.print(f"(asked as: {final.rewritten_question})", style="dim", markup=False)
