"""The persistent keyword index: tantivy segments in the index folder, written article by article.

Why tantivy (measured against SQLite FTS5 on the same 100k real chunks by
benchmarks/scale.py; figures in benchmarks/RESULTS.md): a well-kept BM25 engine
with immutable segments, one writer and any number of readers that reload on
commit, filters inside the engine, and a layout (segment files plus a
`meta.json` swapped atomically on commit) that readers on shared storage can
open read-only. PaperQA2 keeps its paper index in it the same way.

What it holds: one document per stored chunk, keyed by its chunk id and by its
*version* `article_id:content_hash` (the two halves of a chunk id that name one
content of one article). The text field holds newsqa's own terms
(`lexical.terms` of the chunk's search text, joined by spaces, split again by
tantivy's whitespace tokenizer), so BM25 here counts exactly the words the
in-memory keyword index counts; source and date are filter fields. A stored
`record` (JSON bytes: search text, Chroma metadata, terms per sentence) lets a
search over a candidate pool (keywordpool.py) run without Chroma or a tokenizer.

How it joins the Chroma commit protocol (see newsqa.store.index): a write stages the
new version's documents (any documents of that same version go first, so a
re-run after a crash never doubles them) and commits tantivy *before* the
manifest record is written; after the manifest, documents of the article's
other versions are deleted. Readers trust only versions the manifest names, as
they do for Chroma's chunks, so before the manifest commit they see the old
version whole and after it the new one. `reconcile` makes the index agree with
the manifest (drops versions it does not name, adds committed versions that are
missing or incomplete, from Chroma's stored search texts): it runs when the
store's revision says a write may have died (in flight), and once when an index
of an older layout (no keyword folder yet) is opened.

Nothing here runs code on load: tantivy's files are data read by tantivy; the
small `newsqa-keyword.json` beside them is JSON.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from ..errors import StoreError
from ..text.lexical import terms_many
from ..text.sentences import sentence_spans
from . import folderlock

if TYPE_CHECKING:
    import tantivy

LAYOUT = 3  # the schema and the term analysis below; another layout is rebuilt once
# (3: CJK text read as character pairs, Arabic vowel marks folded, Indic marks kept)
FOLDER = "newsqa-keyword"
MARKER = "newsqa-keyword.json"
WRITER_HEAP = 32_000_000  # tantivy's per-thread indexing buffer (15 MB is its minimum)
_UNDATED = 0
# The searcher `KeywordStore.snapshot` pinned for the current thread or task, with its store.
_PINNED: contextvars.ContextVar[tuple[KeywordStore, Any] | None] = contextvars.ContextVar(
    "newsqa_keyword_snapshot", default=None)
log = logging.getLogger("newsqa.keywordstore")  # the name its warnings have always had
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class KeywordDoc:
    """One chunk as the keyword index sees it."""

    chunk_id: str
    article_id: str
    content_hash: str
    source: str
    date: int  # YYYYMMDD, 0 when undated
    text: str  # the search text (header + chunk), analysed by `lexical.terms`
    metadata: Mapping[str, Any] = field(default_factory=dict)  # the chunk's Chroma metadata


def chunk_units(text: str, meta: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The texts a chunk is tokenised as: its header (or whole search text), then sentences.

    The same split as retrieval.keywords._split_units (a chunk's terms are its header's plus its
    sentences'; words never cross sentences); the flag says the header is only a header.
    """
    passage = str(meta["text"]) if "text" in meta else text[int(meta.get("text_offset", 0)):]
    tail = text.endswith(passage)
    head = text[: len(text) - len(passage)] if tail else text
    return [head, *(passage[a:e] for a, e in sentence_spans(passage))], tail


@dataclass(frozen=True)
class PoolRecord:
    """A chunk as stored for pool searches: its search text, metadata and terms per unit."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    units: list[str]  # space-joined terms: header (or whole search text), then sentences
    tail: bool  # units[0] is only the header: the chunk's terms are all units'


def _engine_errors(func: F) -> F:
    """tantivy reports I/O and lock failures as ValueError: make them one-line StoreErrors."""

    @functools.wraps(func)
    def wrapper(self: KeywordStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(self, *args, **kwargs)
        except ValueError as exc:
            raise StoreError(f"keyword index {self.path}: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def version(article_id: str, content_hash: str) -> str:
    return f"{article_id}:{content_hash}"


def folder_for(db: Path, collection: str) -> Path:
    return Path(db) / FOLDER / collection


def schema() -> tantivy.Schema:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw")
    builder.add_text_field("version", tokenizer_name="raw")
    builder.add_text_field("article_id", tokenizer_name="raw")
    builder.add_text_field("source", tokenizer_name="raw")
    builder.add_integer_field("date", indexed=True, fast=True)
    builder.add_text_field("body", tokenizer_name="whitespace")
    # Stored only, for a search over a candidate pool (keywordpool.py): the chunk as
    # Chroma holds it, and its terms per unit, so a search never tokenises a chunk again.
    builder.add_bytes_field("record", stored=True)
    return builder.build()


class KeywordStore:
    """One tantivy index; a writer is opened per write and closed after its commit.

    A writer per write keeps tantivy's writer lock held only while writing, so
    readers (and a later writer in another process) never find it taken by an
    idle process; it costs ~30 ms a write, less than the Chroma calls it joins.
    """

    def __init__(self, path: Path, *, fresh: bool, folder_id: str | None = None) -> None:
        self.path = path
        self.fresh = fresh  # created now: it holds nothing yet, whatever the store holds
        # Names this folder wherever it is mounted: a Chroma collection records the one
        # its processes share (Index._check_folder_id). None: unknown (`_folder_id`).
        self.folder_id = folder_id
        self.schema = schema()
        self._index = _open_or_create(path, self.schema)

    @classmethod
    def open(cls, path: Path) -> KeywordStore:
        """Open (or create) the index at `path`; another layout is moved aside and rebuilt."""
        marker = path / MARKER
        layout = _read_marker(marker)
        if layout is not None and layout != LAYOUT:
            log.warning("the keyword index at %s has layout %s, this newsqa writes %s: "
                        "rebuilding it from the stored chunks", path, layout, LAYOUT)
            shutil.rmtree(path)
        fresh = not marker.exists()
        if fresh and path.exists():
            shutil.rmtree(path)  # a folder without its marker was never finished
        path.mkdir(parents=True, exist_ok=True)
        return cls(path, fresh=fresh, folder_id=_folder_id(path))

    def mark_complete(self) -> None:
        """After the first reconcile: the folder holds every committed article from now on.

        Until then it has no marker, and a process that dies while filling it leaves a
        folder the next `open` throws away and fills again.
        """
        _write_marker(self.path / MARKER)
        self.fresh = False

    # -- writing --------------------------------------------------------------------------

    @_engine_errors
    def stage(self, docs: Sequence[KeywordDoc]) -> None:
        """Before the manifest commit: each version's documents, replacing any of that version."""
        if not docs:
            return
        import tantivy

        with self._writer() as writer:
            for name in dict.fromkeys(version(d.article_id, d.content_hash) for d in docs):
                writer.delete_documents_by_term("version", name)
            for doc, (units, tail) in zip(docs, _tokenised(docs), strict=True):
                body = [t for u in (units if tail else units[:1]) for t in u.split()]
                record = {"text": doc.text, "meta": dict(doc.metadata), "units": units,
                          "tail": tail}
                writer.add_document(tantivy.Document(
                    chunk_id=doc.chunk_id, version=version(doc.article_id, doc.content_hash),
                    article_id=doc.article_id, source=doc.source, date=doc.date,
                    body=" ".join(body), record=json.dumps(record, ensure_ascii=False).encode(),
                ))

    @_engine_errors
    def keep_only(self, current: Mapping[str, str]) -> None:
        """After the manifest commit: drop each article's versions other than `current`'s.

        Looks first (one query, well under a millisecond) and opens a writer only when
        something is to go: new articles, most of an ingest, cost no second commit.
        """
        if not current:
            return
        import tantivy

        Q, Occur = tantivy.Query, tantivy.Occur
        articles = [(Occur.Should, Q.term_query(self.schema, "article_id", a)) for a in current]
        versions = [(Occur.Should, Q.term_query(self.schema, "version", version(a, h)))
                    for a, h in current.items()]
        stale = Q.boolean_query([(Occur.Must, Q.boolean_query(articles)),
                                 (Occur.MustNot, Q.boolean_query(versions))])
        if not self.searcher().search(stale, 1, count=True).count:  # type: ignore[attr-defined]
            return
        with self._writer() as writer:
            writer.delete_documents_by_query(stale)

    @_engine_errors
    def remove(self, article_ids: Iterable[str]) -> None:
        with self._writer() as writer:
            for article_id in article_ids:
                writer.delete_documents_by_term("article_id", article_id)

    @_engine_errors
    def drop_versions(self, names: Iterable[str]) -> None:
        with self._writer() as writer:
            for name in names:
                writer.delete_documents_by_term("version", name)

    def _writer(self) -> _Writer:
        return _Writer(self._index, self.path)

    # -- reading --------------------------------------------------------------------------

    def searcher(self) -> tantivy.Searcher:
        """A searcher over the last commit of any process (reloads first: cheap when unchanged).

        Inside `snapshot()` the one searcher taken there: a question asks the index
        ~35 times, and each reload costs ~0.15 ms; one view per question is also
        what a reader expects (no commit landing between its pool and its counts).
        """
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] is self:
            return pinned[1]
        self._index.reload()
        return self._index.searcher()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read in this block (this thread or task) sees the same commit."""
        token = _PINNED.set((self, self.searcher()))
        try:
            yield
        finally:
            _PINNED.reset(token)

    @_engine_errors
    def versions(self) -> dict[str, int]:
        """Every version held, with its live document count (one pass over the term dictionary;
        its doc_freq counts deleted documents until a merge drops them, so `counts`)."""
        names = [name for name, _ in self.searcher().terms_with_prefix("version", "")]
        return {name: n for name, n in self.counts(names).items() if n}

    @_engine_errors
    def counts(self, names: Sequence[str]) -> dict[str, int]:
        """The live document count of each of these versions (`version`)."""
        import tantivy

        searcher = self.searcher()
        out: dict[str, int] = {}
        for name in names:
            query = tantivy.Query.term_query(self.schema, "version", name)
            out[name] = int(searcher.search(query, 1, count=True).count)  # type: ignore[attr-defined]
        return out

    @_engine_errors
    def sources(self) -> list[str]:
        """Every publisher spelling the index holds (its term dictionary, not its documents)."""
        return [name for name, _ in self.searcher().terms_with_prefix("source", "")]

    @_engine_errors
    def phrase_count(self, words: Sequence[str], searcher: tantivy.Searcher | None = None) -> int:
        """How many chunks hold the words next to each other, in this order (in `searcher`'s
        view of the index, by default the current one)."""
        import tantivy

        query = tantivy.Query.phrase_query(self.schema, "body", list(words))
        searcher = searcher or self.searcher()
        return int(searcher.search(query, 1, count=True).count)  # type: ignore[attr-defined]

    @_engine_errors
    def records(self, chunk_ids: Sequence[str]) -> list[PoolRecord]:
        """Stored records of these chunks."""
        import tantivy

        if not chunk_ids:
            return []
        searcher = self.searcher()
        query = tantivy.Query.term_set_query(self.schema, "chunk_id", list(chunk_ids))
        # One document a chunk id (a version is staged only after its old documents are
        # deleted); twice that bounds the hits without a counting query (~1.3 ms at 100k).
        out = []
        for _, address in searcher.search(query, 2 * len(chunk_ids), count=False).hits:
            doc = searcher.doc(address)
            raw = orjson.loads(doc["record"][0])
            out.append(PoolRecord(str(doc["chunk_id"][0]), raw["text"], raw["meta"],
                                  raw["units"], bool(raw["tail"])))
        return out

    @_engine_errors
    def chunk_ids(self) -> list[str]:
        """Every live document's chunk id, repeats kept (for checks, not for queries)."""
        import tantivy

        searcher = self.searcher()
        if not searcher.num_docs:
            return []
        hits = searcher.search(tantivy.Query.all_query(), searcher.num_docs, count=False).hits
        return [str(searcher.doc(address)["chunk_id"][0]) for _, address in hits]

    @_engine_errors
    def search(
        self, words: Sequence[str], k: int, *, sources: Sequence[str] = (), since: int = 0,
        until: int = 0,
    ) -> list[tuple[str, float]]:
        """Top-k (chunk id, BM25) for the terms, filtered inside the engine.

        `words` are `lexical.terms`; sources are stored spellings; since/until are
        YYYYMMDD (0: open). A date bound keeps dated chunks only, as the Chroma
        filter does. Callers still drop ids whose version the manifest does not name.
        """
        query = self._query(words, sources, since, until)
        if query is None or k <= 0:
            return []
        searcher = self.searcher()
        hits = searcher.search(query, k, count=False).hits
        return [(str(searcher.doc(address)["chunk_id"][0]), float(score))
                for score, address in hits]

    def _query(
        self, words: Sequence[str], sources: Sequence[str], since: int, until: int
    ) -> tantivy.Query | None:
        import tantivy

        Q, Occur = tantivy.Query, tantivy.Occur
        unique = list(dict.fromkeys(w for w in words if w))
        if not unique:
            return None
        words_query = Q.boolean_query(
            [(Occur.Should, Q.term_query(self.schema, "body", w)) for w in unique])
        if not sources and not (since or until):
            # The same hits and scores; unwrapped, tantivy's top-k pruning applies to the
            # union itself (1M chunks: 10.0 ms a search against 12.4 nested).
            return words_query
        parts = [(Occur.Must, words_query)]
        if sources:
            either = Q.boolean_query(
                [(Occur.Should, Q.term_query(self.schema, "source", s)) for s in sources])
            parts.append((Occur.Must, Q.const_score_query(either, 0.0)))
        if since or until:
            dated = Q.range_query(self.schema, "date", tantivy.FieldType.Integer,
                                  max(since, 1), until or 99_991_231)
            parts.append((Occur.Must, Q.const_score_query(dated, 0.0)))
        return Q.boolean_query(parts)


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the right to write the keyword index at `path` (waiting NEWSQA_LOCK_TIMEOUT).

    tantivy admits one writer and fails a second at once; processes sharing a keyword
    folder beside a Chroma server (an ingest worker, a server filling a fresh folder)
    wait their turn here instead. The lock file sits in the parent folder, which
    outlives a rebuild of the index folder itself. Counted per process, so nesting
    it (a fill, then its writes) costs nothing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    key = folderlock.acquire(path.parent, advice="one process writes a keyword index at a "
                             "time; this one waited NEWSQA_LOCK_TIMEOUT seconds for the other")
    try:
        yield
    finally:
        folderlock.release(key)


class _Writer:
    """A tantivy writer under the folder's write lock: it commits and lets go of both
    locks on success, rolls back on error."""

    def __init__(self, index: tantivy.Index, path: Path) -> None:
        self.index, self.path = index, path
        self._lock = write_lock(path)

    def __enter__(self) -> tantivy.IndexWriter:
        self._lock.__enter__()
        try:
            self.writer = self.index.writer(heap_size=WRITER_HEAP, num_threads=1)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self.writer

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            if kind is None:
                self.writer.commit()
            else:
                self.writer.rollback()
            self.writer.wait_merging_threads()  # ends the writer: its lock goes with it
        finally:
            self._lock.__exit__(None, None, None)


def _open_or_create(path: Path, built: tantivy.Schema) -> tantivy.Index:
    import tantivy

    return tantivy.Index(built, path=str(path), reuse=True)


def _read_marker(marker: Path) -> int | None:
    """The layout the folder was written with: None without a marker, -1 for a bad one."""
    try:
        raw = json.loads(marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return -1
    layout = raw.get("layout") if isinstance(raw, dict) else None
    return layout if type(layout) is int else -1


def _write_marker(marker: Path) -> None:
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"layout": LAYOUT}), encoding="utf-8")
    os.replace(tmp, marker)


def _folder_id(path: Path) -> str | None:
    """The folder's id, in a file beside it (`<collection>.id`) so that rebuilding the folder
    (another layout, a fill a crash cut short) keeps it; made at first use. None when it
    cannot be written: a read-only mount of a folder made before ids."""
    file = path.with_name(f"{path.name}.id")
    with contextlib.suppress(FileNotFoundError):
        if found := file.read_text(encoding="utf-8").strip():
            return found
    made = uuid.uuid4().hex
    try:
        tmp = file.with_name(f"{file.name}.tmp")
        tmp.write_text(made, encoding="utf-8")
        os.replace(tmp, file)
    except OSError:
        return None
    return made


def _tokenised(docs: Sequence[KeywordDoc]) -> list[tuple[list[str], bool]]:
    """Each chunk's units as space-joined terms (one terms_many call for the batch)."""
    split = [chunk_units(d.text, d.metadata) for d in docs]
    found = iter(terms_many(u for units, _ in split for u in units))
    return [([" ".join(next(found)) for _ in units], tail) for units, tail in split]


def docs_from_records(
    ids: Sequence[str], documents: Sequence[str], metadatas: Sequence[Mapping[str, Any]]
) -> list[KeywordDoc]:
    """Keyword documents from stored Chroma chunk records (what a rebuild reads)."""
    return [
        KeywordDoc(chunk_id=cid, article_id=str(meta.get("article_id", "")),
                   content_hash=str(meta.get("content_hash", "")),
                   source=str(meta.get("source", "")),
                   date=int(meta.get("published_date", _UNDATED) or _UNDATED), text=doc,
                   metadata=meta)
        for cid, doc, meta in zip(ids, documents, metadatas, strict=True)
    ]
