"""Chat sessions: follow-up questions rewritten into standalone ones, history on a budget.

Each turn is first condensed into a standalone question by the archive's engine
(`Engine.condense`: by its model, or offline, engines/condense.py). The rewritten
question is what gets retrieved and answered, and it is shown on the `Answer`
(`rewritten_question`) so a reader can see what was actually asked.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from ..aio import in_thread, iterate_in_thread
from ..engines.base import Engine, drain
from ..engines.condense import Turn, condense_offline
from ..errors import ConfigError, InputError, NewsQAError
from ..models import (
    Answer,
    Citation,
    SearchOptions,
    Usage,
    check_options,
    check_question,
    utc_day,
)
from ..store.chunking import count_tokens

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

DEFAULT_HISTORY_TOKENS = 1500
# Earlier turns only steer the follow-up rewrite, whose offline form costs the square
# of the previous reply (20 KB: 0.5 s; 300 KB: minutes), and replaying a client's
# history runs it once a turn: whatever history a session takes in keeps a bounded
# part of each turn, and only the latest turns (`clip_history`, `replay_history`).
MAX_HISTORY_CHARS = 4000
MAX_HISTORY_PAIRS = 16


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
    day = utc_day(citation.published_at)
    if day is not None:
        facts.append(day.isoformat())
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
    the API that opens sessions (issue 17: api <-> chat was an import cycle). Follow-ups
    are condensed by its engine, the one that answers."""

    @property
    def engine(self) -> Engine: ...

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
        rewrite = drain(self.qa.engine.condense(question, self._history))
        return rewrite.question, rewrite.usage

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
    check_question(question)
    if not question.strip():
        raise InputError("question", "is empty")


# -- the terminal ------------------------------------------------------------------------------

_EXIT_WORDS = frozenset({"exit", "quit", ":q", "/exit", "/quit"})
_HELP = "Ask about the archive. /reset forgets the conversation; exit quits."


def run_terminal(session: ChatSession, *, console: Any = None) -> None:
    """A read-answer loop for `newsqa chat`: streams each answer, then its sources.

    Ends on EOF (Ctrl-D), Ctrl-C or "exit"; "/reset" forgets the conversation; any other
    "/word" is no question (a new user's "/help" was answered from the archive) and shows
    the help. Errors of ours end the turn, not the loop, so one bad question costs nothing.
    """
    from rich.console import Console
    from rich.prompt import Prompt

    console = console or Console()
    console.print(f"[dim]{_HELP}[/]")
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
        if re.fullmatch(r"/\w*", question):
            console.print(f"[dim]{_HELP}[/]")
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
