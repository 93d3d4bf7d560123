"""`NewsQA`: the one entry point. It wires the rooms together and holds no logic of its own.

Reading order for a question: `NewsQA.ask` -> `retrieval.Retriever.search` ->
`NewsQA.engine.answer` (engines/base.py: the LLM engine or the extractive one) ->
`grounding` -> `Answer`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..aio import in_thread, iterate_in_thread
from ..config import Settings
from ..engines.base import Engine, drain
from ..engines.extractive import ExtractiveEngine
from ..engines.llm import LLM
from ..engines.llm_answer import LLMEngine
from ..engines.prompts import check_template
from ..engines.summarize import SummaryParts, gather_summary, gather_timeline
from ..errors import IndexMissing, InputError, NewsQAError, SetupError, StoreError, quote
from ..models import (
    Answer,
    Article,
    ArticleInfo,
    DateLike,
    IngestReport,
    Passage,
    SearchOptions,
    Summary,
    Timeline,
    check_options,
    check_question,
)
from ..retrieval import Filters, Retriever
from ..store.embedding import get_embedder
from ..store.index import Index, _connect
from ..store.ingest import ingest
from .chat import ChatSession

if TYPE_CHECKING:
    from llama_index.core.llms import LLM as LlamaIndexLLM  # typing only: never imported
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

    from ..store.embedding import Embedder

T = TypeVar("T")

class _built_once(Generic[T]):
    """Like functools.cached_property, but safe when threads race to build.

    A server shares one NewsQA across request threads; two threads opening the
    Chroma client or loading the ONNX model at once would waste seconds or worse.
    (cached_property lost its lock in Python 3.12.) `step` names the build in a
    `SetupError` when it fails for a reason of a dependency's (e.g. an ImportError).
    """

    def __init__(self, build: Callable[[Any], T], step: str) -> None:
        self.build = build
        self.step = step
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        return obj._part(self.name, self.step, lambda: self.build(obj))


def _step(step: str) -> Callable[[Callable[[Any], T]], _built_once[T]]:
    """`@_step("loading the embedding model")`: a part built once, named for errors."""

    def wrap(build: Callable[[Any], T]) -> _built_once[T]:
        return _built_once(build, step)

    return wrap


def _as_step(step: str, build: Callable[[], T]) -> T:
    """Run `build`; anything that is not already one of ours becomes a SetupError naming
    the step, so a broken dependency reads "loading the embedding model failed: ..."."""
    try:
        return build()
    except NewsQAError:
        raise
    except Exception as exc:
        raise SetupError(step, exc) from exc


class NewsQA:
    """A news archive you can question.

    `db` is a folder for embedded Chroma; `chroma_url` a Chroma server instead.
    `llm` is a model name served over the OpenAI API, an `LLM`, a LlamaIndex LLM
    (wrapped by `newsqa.engines.llama_index_llm.LlamaIndexLLM`), or None/"extractive" for the
    offline engine (the default when no OPENAI_* variable is set).
    `create=False` is for reading tools: a missing index raises `IndexMissing` instead
    of being created empty (so a typo in a path is an error, not an empty archive);
    `ingest` still creates it.
    """

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        chroma_url: str | None = None,
        collection: str | None = None,
        llm: str | LLM | LlamaIndexLLM | None = None,
        embedding: str | None = None,
        settings: Settings | None = None,
        create: bool = True,
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
        self._llm_override = None if isinstance(llm, str) or llm is None else _as_llm(llm)
        self.create = create
        self._build_lock = threading.RLock()

    # -- the parts, built on first use -------------------------------------------------

    def _part(self, name: str, step: str, build: Callable[[], T]) -> T:
        """The part called `name`, built once under the lock by `build`."""
        try:
            return self.__dict__[name]
        except KeyError:
            pass
        with self._build_lock:
            if name not in self.__dict__:
                self.__dict__[name] = _as_step(step, build)
            return self.__dict__[name]

    @_step("loading the embedding model")
    def embedder(self) -> Embedder:
        return get_embedder(self.settings.embedding, self.settings)

    @_step("opening the index")
    def index(self) -> Index:
        """The index; with create=False only an existing one (checked before the model loads)."""
        if not self.create:
            self.require_index()
        return self._open_index()

    def _open_index(self) -> Index:
        return Index(self.settings, self.embedder)

    def _index_for_writing(self) -> Index:
        """Ingest is the one operation that may create the index, whatever `create` says."""
        return self._part("index", "opening the index", self._open_index)

    @_step("preparing retrieval")
    def retriever(self) -> Retriever:
        return Retriever(self.index, self.embedder, self.settings)

    @_step("setting up the language model")
    def llm(self) -> LLM | None:
        """The configured language model, or None for the extractive engine."""
        if self._llm_override is not None:
            return self._llm_override
        if self.settings.llm is None:
            return None

        return LLM.from_settings(self.settings)

    @_step("setting up the engine")
    def engine(self) -> Engine:
        """The engine every task goes through, picked once: a new engine is chosen here."""
        llm = self.llm
        return ExtractiveEngine() if llm is None else LLMEngine(llm)

    def require_index(self) -> None:
        """Raise `IndexMissing` unless the configured index exists; creates nothing.

        Embedded: the folder must hold Chroma's chroma.sqlite3 and, when that file can
        be read, newsqa's collection. Server: the collection must exist there.
        """
        if self.settings.chroma_url:
            self._require_server_collection()
        else:
            self._require_folder()

    def _manifest_name(self) -> str:
        return f"{self.settings.collection}_articles"  # the commit marker index.py writes

    def _require_folder(self) -> None:
        db = Path(self.settings.db)
        if db.exists() and not db.is_dir():
            raise IndexMissing(f"no newsqa index at {quote(db)}: it is a file, not a folder")
        if not (db / "chroma.sqlite3").is_file():
            raise IndexMissing(
                f"no newsqa index at {quote(db)} (run newsqa ingest first, or pass --db)"
            )
        names = _embedded_collections(db / "chroma.sqlite3")
        if names is not None and self._manifest_name() not in names:
            raise IndexMissing(
                f"no collection {quote(self.settings.collection)} in the newsqa index at "
                f"{quote(db)} (run newsqa ingest first, or pass --collection)"
            )

    def _require_server_collection(self) -> None:
        from chromadb.errors import NotFoundError


        url = self.settings.chroma_url
        client = _connect(self.settings)
        try:
            client.get_collection(self._manifest_name(), embedding_function=None)
        except NotFoundError:
            raise IndexMissing(
                f"no collection {quote(self.settings.collection)} on the Chroma server at "
                f"{url} (run newsqa ingest --chroma-url {url} first, or pass --collection)"
            ) from None
        except Exception as exc:
            raise StoreError(f"Chroma server at {url}: {type(exc).__name__}: {exc}") from exc

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
        """Add files, folders, `Article`s or LlamaIndex `Document`s (`NewsReader`'s, say);
        unchanged ones cost nothing."""
        if isinstance(items, (str, Path, Article)):
            items = [items]
        index = self._index_for_writing()
        return ingest(map(_ingestable, items), index, self.embedder, self.settings,
                      progress=progress)

    def articles(self) -> list[ArticleInfo]:
        return self.index.articles()

    def get_article(self, article_id: str) -> Article:
        return self.index.get_article(article_id)

    def remove(self, article_id: str) -> None:
        self.index.remove(article_id)

    # -- ask -----------------------------------------------------------------------------

    def search(self, query: str, **options: Unpack[SearchOptions]) -> list[Passage]:
        """The passages a question retrieves, best first (no LLM involved)."""
        check_question(query)
        check_options(options)
        return self.retriever.search(
            query, top_k=options.get("top_k") or self.settings.top_k,
            filters=self._filters(options.get("sources"), options.get("since"),
                                  options.get("until")),
        )

    def ask(self, question: str, **options: Unpack[SearchOptions]) -> Answer:
        """Answer with citations that are verified verbatim spans of named articles."""
        return drain(self._answering(question, options, streaming=False))

    async def aask(self, question: str, **options: Unpack[SearchOptions]) -> Answer:
        """`ask` for an event loop: the same code, in a worker thread."""
        return await in_thread(partial(self.ask, question, **options))

    def stream(self, question: str, **options: Unpack[SearchOptions]) -> Iterator[str | Answer]:
        """Text deltas as the model writes them, then the final verified `Answer`."""
        return self._answering(question, options, streaming=True)

    def _answering(
        self, question: str, options: SearchOptions, *, streaming: bool
    ) -> Iterator[str | Answer]:
        check_question(question)
        passages = self.search(question, **options)
        found = self.engine.answer(question, passages, self.index, self.settings,
                                   streaming=streaming)
        if passages:
            return found
        filters = self._filters(options.get("sources"), options.get("since"),
                                options.get("until"))  # parsed again only when nothing came
        if not filters.active:
            return found
        # "--source Reuterz" said only "no retrieved passage matches the question".
        return _with_reason(found, f"no stored article matches the filters: {filters}")

    def astream(
        self, question: str, **options: Unpack[SearchOptions]
    ) -> AsyncIterator[str | Answer]:
        """`stream` for an event loop: the same code, advanced in a worker thread."""
        return iterate_in_thread(partial(self.stream, question, **options))

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
        template: str = "summarize",
    ) -> Summary:
        """One article by id, or what the archive says about `query`.

        `template` names the prompt a model summarises with (prompts/<template>.md, for
        example "compare": how the outlets' coverage differs); see CONTRIBUTING.md.
        """
        check_question(query, "query", required=False)
        check_question(focus, "focus", required=False)
        check_template(template)
        found = gather_summary(self._summary_parts(), article_id=article_id, query=query,
                               filters=self._filters(sources, since, until), bullets=bullets,
                               max_words=max_words)
        return drain(self.engine.summarize(found, self.settings, query=query, bullets=bullets,
                                           max_words=max_words, focus=focus, template=template))

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
        check_question(query, "query")
        found = gather_timeline(self._summary_parts(), query,
                                filters=self._filters(sources, since, until), max_events=max_events)
        return drain(self.engine.timeline(query, found, self.settings, max_events=max_events))

    def chat(self, **options: Any) -> ChatSession:
        """A multi-turn session that rewrites follow-ups into standalone questions."""
        return ChatSession(self, **options)

    # -- helpers ---------------------------------------------------------------------------

    def _summary_parts(self) -> SummaryParts:
        """What gathering a summary's sources uses, handed over explicitly (never NewsQA)."""
        return SummaryParts(index=self.index, retriever=self.retriever, embedder=self.embedder,
                            top_k=self.settings.top_k)

    def _filters(
        self, sources: Sequence[str] | None, since: DateLike, until: DateLike
    ) -> Filters:
        return Filters.build(sources=sources, since=since, until=until)


def _with_reason(found: Iterator[str | Answer], reason: str) -> Iterator[str | Answer]:
    """The same items, an abstaining `Answer` saying `reason`."""
    for item in found:
        if isinstance(item, Answer) and not item.answerable:
            item = item.model_copy(update={"reason": reason})
        yield item


_DOCUMENT_FACTS = frozenset({"article_id", "title", "source", "published_at", "url", "origin"})


def _ingestable(item: object) -> str | Path | Article:
    """A path or an Article as given; a LlamaIndex `Document` (text and metadata, as
    `NewsReader` loads it: a new user passed those and got a TypeError) as an Article;
    anything else an InputError naming its type. Duck-typed: llama_index is not imported."""
    if isinstance(item, (str, Path, Article)):
        return item
    text, meta = getattr(item, "text", None), getattr(item, "metadata", None)
    if isinstance(text, str) and isinstance(meta, dict):
        published = meta.get("published_at") or None
        if isinstance(published, str) and len(published) == 10:  # a day, as it was read
            published = dt.date.fromisoformat(published)
        return Article(text=text, title=str(meta.get("title") or ""),
                       source=str(meta.get("source") or ""), published_at=published,
                       url=meta.get("url") or None,
                       metadata={k: v for k, v in meta.items() if k not in _DOCUMENT_FACTS})
    raise InputError("ingest", f"expected a file or folder path, an Article or a Document, "
                               f"got {type(item).__name__}")


def _as_llm(llm: LLM | LlamaIndexLLM) -> LLM:
    """A newsqa `LLM` as given; anything else goes to newsqa.engines.llama_index_llm, which wraps
    a LlamaIndex LLM (llama_index is imported only here, only for such an object)."""
    if isinstance(llm, LLM):
        return llm
    from ..engines.llama_index_llm import as_newsqa_llm  # deferred: llama_index is a heavy import

    return as_newsqa_llm(llm)


def _embedded_collections(sqlite_file: Path) -> set[str] | None:
    """Collection names in an embedded Chroma folder, read-only, without Chroma itself
    (opening Chroma would create what is missing); None when the file cannot be read
    this way (garbage, another schema), which leaves the verdict to opening the index."""
    import sqlite3

    try:
        with contextlib.closing(
            sqlite3.connect(f"{sqlite_file.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
        ) as db:
            return {str(row[0]) for row in db.execute("SELECT name FROM collections")}
    except sqlite3.Error:
        return None
