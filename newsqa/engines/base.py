"""The one engine protocol: what turns the sources it is handed into text and a result.

An engine answers a question, summarises, builds a timeline, or condenses a chat
follow-up. Each task is one method that yields text as it streams, then its result
(`Answer`, `Summary`, `Timeline`, `Rewrite`) last; a caller that wants only the
result drains it (`drain`). An engine is handed the question, the sources (passages
and the index to look their articles up in, or `SummarySources`) and the settings;
it retrieves nothing and never sees `NewsQA`, which picks one engine once
(`NewsQA.engine`) and sends every task through it.

Two engines implement it: `LLMEngine` (engines/llm_answer.py: a model drafts, the
grounding layer keeps what its quotes support) and `ExtractiveEngine`
(engines/extractive.py: source sentences picked and cited, offline). A new engine is
one class like them, picked in `NewsQA.engine` (app/api.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from ..config import Settings
    from ..models import Answer, Passage, Summary, Timeline
    from ..store.index import Index
    from .condense import Rewrite, Turn
    from .summarize import SummarySources

R = TypeVar("R")


class Engine(Protocol):
    """What every engine does; see the module docstring."""

    @property
    def model(self) -> str | None:
        """The model that drafts (`Answer.model`), None for an engine without one."""
        ...

    def warm(self) -> None:
        """Get ready to answer (a server calls it before taking requests)."""
        ...

    def answer(
        self, question: str, passages: Sequence[Passage], index: Index, settings: Settings,
        *, streaming: bool = True,
    ) -> Iterator[str | Answer]:
        """Each verified piece of the answer's text, then the `Answer`.

        `streaming=False` asks for the result alone, as cheaply as the engine can give
        it (the LLM engine then makes one structured request instead of a stream).
        """
        ...

    def summarize(
        self, sources: SummarySources, settings: Settings, *, query: str | None,
        bullets: int, max_words: int | None, focus: str | None, template: str = "summarize",
    ) -> Iterator[str | Summary]:
        """A summary of one article or of what the sources say about `query`.

        `template` names the prompt (prompts/<template>.md) a model summarises with: a new
        summary-shaped task, such as "compare", is one template file.
        """
        ...

    def timeline(
        self, query: str, sources: SummarySources, settings: Settings, *, max_events: int
    ) -> Iterator[str | Timeline]:
        """Dated events about a story, oldest first, each cited."""
        ...

    def condense(self, question: str, history: Sequence[Turn]) -> Iterator[str | Rewrite]:
        """A chat follow-up rewritten to stand alone, for retrieval."""
        ...


def drain(stream: Iterator[str | R]) -> R:
    """The result a task's stream ends with: what the non-streaming call returns."""
    last: str | R | None = None
    for item in stream:
        last = item
    if last is None or isinstance(last, str):
        raise TypeError("an engine's stream must end with its result")
    return last
