"""`NewsQA`: the one entry point. It wires the rooms together and holds no logic of its own.

Reading order for a question: `NewsQA.ask` -> `retrieval.Retriever.search` ->
`answer.answer` (LLM engine or extractive) -> `citations.verify` -> `Answer`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .config import Settings
from .models import Answer, Article, ArticleInfo, IngestReport, Passage, Summary, Timeline

if TYPE_CHECKING:
    from .chat import ChatSession
    from .embedding import Embedder
    from .index import Index
    from .llm import LLM
    from .retrieval import Filters, Retriever

DateLike = dt.date | dt.datetime | str | None
T = TypeVar("T")


class _built_once(Generic[T]):
    """Like functools.cached_property, but safe when threads race to build.

    A server shares one NewsQA across request threads; two threads opening the
    Chroma client or loading the ONNX model at once would waste seconds or worse.
    (cached_property lost its lock in Python 3.12.)
    """

    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        try:
            return obj.__dict__[self.name]
        except KeyError:
            pass
        with obj._build_lock:
            if self.name not in obj.__dict__:
                obj.__dict__[self.name] = self.build(obj)
            return obj.__dict__[self.name]


class NewsQA:
    """A news archive you can question.

    `db` is a folder for embedded Chroma; `chroma_url` a Chroma server instead.
    `llm` is a model name served over the OpenAI API, an `LLM`, or None/"extractive"
    for the offline engine (the default when no OPENAI_* variable is set).
    """

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        chroma_url: str | None = None,
        collection: str | None = None,
        llm: str | LLM | None = None,
        embedding: str | None = None,
        settings: Settings | None = None,
        **options: Any,
    ) -> None:
        model_name = llm if isinstance(llm, str) else None
        self.settings = settings or Settings.from_env(
            db=db,
            chroma_url=chroma_url,
            collection=collection,
            llm=model_name,
            embedding=embedding,
            **options,
        )
        self._llm_override = None if isinstance(llm, str) or llm is None else llm
        self._build_lock = threading.RLock()

    # -- the parts, built on first use -------------------------------------------------

    @_built_once
    def embedder(self) -> Embedder:
        from .embedding import get_embedder

        return get_embedder(self.settings.embedding, self.settings)

    @_built_once
    def index(self) -> Index:
        from .index import Index

        return Index(self.settings, self.embedder)

    @_built_once
    def retriever(self) -> Retriever:
        from .retrieval import Retriever

        return Retriever(self.index, self.embedder, self.settings)

    @_built_once
    def llm(self) -> LLM | None:
        """The configured language model, or None for the extractive engine."""
        if self._llm_override is not None:
            return self._llm_override
        if self.settings.llm is None:
            return None
        from .llm import LLM

        return LLM.from_settings(self.settings)

    def close(self) -> None:
        """Let go of an embedded index so another process can open it."""
        index = self.__dict__.get("index")
        if index is not None:
            index.close()

    def __enter__(self) -> NewsQA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingest and manage ---------------------------------------------------------------

    def ingest(
        self,
        items: Iterable[str | Path | Article] | str | Path | Article,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Add files, folders or `Article`s; unchanged ones cost nothing."""
        from .ingest import ingest

        if isinstance(items, (str, Path, Article)):
            items = [items]
        return ingest(items, self.index, self.embedder, self.settings, progress=progress)

    def articles(self) -> list[ArticleInfo]:
        return self.index.articles()

    def get_article(self, article_id: str) -> Article:
        return self.index.get_article(article_id)

    def remove(self, article_id: str) -> None:
        self.index.remove(article_id)

    # -- ask -----------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        sources: Sequence[str] | None = None,
        since: DateLike = None,
        until: DateLike = None,
        top_k: int | None = None,
    ) -> list[Passage]:
        """The passages a question retrieves, best first (no LLM involved)."""
        return self.retriever.search(
            query, top_k=top_k or self.settings.top_k, filters=self._filters(sources, since, until)
        )

    def ask(
        self,
        question: str,
        *,
        sources: Sequence[str] | None = None,
        since: DateLike = None,
        until: DateLike = None,
        top_k: int | None = None,
    ) -> Answer:
        """Answer with citations that are verified verbatim spans of named articles."""
        from .answer import answer

        passages = self.search(question, sources=sources, since=since, until=until, top_k=top_k)
        return answer(question, passages, self.index, self.llm, self.settings)

    async def aask(
        self,
        question: str,
        *,
        sources: Sequence[str] | None = None,
        since: DateLike = None,
        until: DateLike = None,
        top_k: int | None = None,
    ) -> Answer:
        from .answer import aanswer

        passages = await self._asearch(question, sources, since, until, top_k)
        return await aanswer(question, passages, self.index, self.llm, self.settings)

    def stream(
        self,
        question: str,
        *,
        sources: Sequence[str] | None = None,
        since: DateLike = None,
        until: DateLike = None,
        top_k: int | None = None,
    ) -> Iterator[str | Answer]:
        """Text deltas as the model writes them, then the final verified `Answer`."""
        from .answer import stream_answer

        passages = self.search(question, sources=sources, since=since, until=until, top_k=top_k)
        return stream_answer(question, passages, self.index, self.llm, self.settings)

    async def astream(
        self,
        question: str,
        *,
        sources: Sequence[str] | None = None,
        since: DateLike = None,
        until: DateLike = None,
        top_k: int | None = None,
    ) -> AsyncIterator[str | Answer]:
        from .answer import astream_answer

        passages = await self._asearch(question, sources, since, until, top_k)
        async for item in astream_answer(question, passages, self.index, self.llm, self.settings):
            yield item

    # -- summaries, timelines, chat ----------------------------------------------------------

    def summarize(
        self,
        article_id: str | None = None,
        *,
        query: str | None = None,
        sources: Sequence[str] | None = None,
        since: DateLike = None,
        until: DateLike = None,
        bullets: int = 5,
        max_words: int | None = None,
        focus: str | None = None,
    ) -> Summary:
        """One article by id, or what the archive says about `query`."""
        from .summarize import summarize

        return summarize(
            self,
            article_id=article_id,
            query=query,
            filters=self._filters(sources, since, until),
            bullets=bullets,
            max_words=max_words,
            focus=focus,
        )

    def timeline(
        self,
        query: str,
        *,
        sources: Sequence[str] | None = None,
        since: DateLike = None,
        until: DateLike = None,
        max_events: int = 12,
    ) -> Timeline:
        """Dated events about a story, oldest first, each cited."""
        from .summarize import timeline

        return timeline(
            self, query, filters=self._filters(sources, since, until), max_events=max_events
        )

    def chat(self, **options: Any) -> ChatSession:
        """A multi-turn session that rewrites follow-ups into standalone questions."""
        from .chat import ChatSession

        return ChatSession(self, **options)

    # -- helpers ---------------------------------------------------------------------------

    def _filters(
        self, sources: Sequence[str] | None, since: DateLike, until: DateLike
    ) -> Filters:
        from .retrieval import Filters

        return Filters.build(sources=sources, since=since, until=until)

    async def _asearch(
        self,
        question: str,
        sources: Sequence[str] | None,
        since: DateLike,
        until: DateLike,
        top_k: int | None,
    ) -> list[Passage]:
        # Retrieval is CPU-bound (ONNX, BM25) and thread-safe; keep the event loop free.
        import asyncio

        return await asyncio.to_thread(
            self.search, question, sources=sources, since=since, until=until, top_k=top_k
        )
