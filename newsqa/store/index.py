"""The Chroma store: chunk vectors, an article manifest, and the model check.

Layout (collection names derive from `Settings.collection`):

- `<name>_chunks`: one record per chunk. The id is `"{article_id}:{content_hash}:{index}"`,
  so rewriting the same content is an idempotent upsert. `document` is the
  *search text* (title/source/date header + chunk text, what was embedded and what
  BM25 indexes); the exact chunk text is `document[text_offset:]`. Metadata holds
  article_id, chunk_index, start, end, n_tokens, title, source, url, content_hash,
  text_offset, and for dated articles published_ts (epoch seconds), published_iso
  and published_date (YYYYMMDD int, UTC, for range filters; absent when undated,
  so a date filter excludes undated articles). Article metadata goes in as
  `meta_<key>`. Nothing is None and nothing is a list: Chroma rejects both.
- `<name>_articles`: the manifest, one record per *committed* article: full text
  as document (citations point into it, so it is stored exactly), facts and
  content_hash as metadata, and a 1-dim dummy vector because Chroma wants one.

Commit protocol (an article is fully indexed or not at all): chunks are written
first under ids carrying the new content_hash, then the manifest record is
written (the commit), then chunks of any other content_hash are deleted. Readers
trust only (article_id, content_hash) pairs named by the manifest, so before the
commit they see the old version whole and after it the new one whole. A crash
can leave unreferenced chunks behind; they are invisible and `sweep()` (run by
every ingest) deletes them.

The chunks collection's metadata records the embedding model, its dimension and
the chunking; opening with different ones raises `ModelMismatch`, because
vectors of two models in one space compare as garbage.

Caches (the keyword index) key on two things. `content_key()` digests the
committed (article id, content_hash) pairs and the model/chunking record: it
changes with every commit by construction, even when a process is killed right
after writing a manifest record. The manifest's metadata carries a `revision`
that a write changes before its first store call and again after its last, so
writes that keep the pairs (a rewrite with other search texts, a sweep) are seen
too. The first bump writes an *in-flight* revision (`in_flight()`), the last a
clean one. A clean revision settles everything: a reader holding a cache built
at it compares the revision and nothing else. An in-flight one does not: the
write may commit behind it, and a writer killed before its last bump leaves it
in place for good, so a reader that built its cache at that revision must
compare `content_key()` (~12 ms) on every use until a clean revision appears;
the manifest cache here checks itself against the ids the same way. The last
bump is clean only if no other write bumped since this one began (else that
write may still be in flight); `sweep()`, which runs when no write is in flight
(it would delete a live write's uncommitted chunks too), settles a revision a
killed writer left in flight.

Readers catch up with a write without reading the manifest whole (27k records,
~4 s at 1M chunks). Each write's first bump also hands out a *stamp*, the
collection's `write_seq` plus one, and its manifest records carry it. A reader
that read the manifest at a clean revision then reads only the records stamped
after that revision's `write_seq` (`_Mark.follows`). A write that began before
that clean revision and commits after it is not found that way, but it cannot
end on a clean revision (a bump came after it began), and a write that ends in
flight draws a new `epoch`, as do removals and sweeps (a deletion leaves no
record to find): a reader whose epoch is not the collection's reads whole. The
stamps and the epoch are one read-modify-write of the collection's metadata,
not atomic, so the catch-up also compares the manifest's record count and reads
whole when it differs.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import os
import uuid
import weakref
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import numpy as np

from ..config import Settings
from ..errors import ArticleNotFound, ConfigError, ModelMismatch, NewsQAError, StoreError
from ..models import Article, ArticleInfo, Chunk, MetadataValue, Passage
from . import folderlock
from .chunking import chunking_signature, search_text
from .keywordstore import KeywordStore, docs_from_records, folder_for, version, write_lock

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection


SCHEMA_VERSION = 1
# A test hook (see `fault_point`): read once, so an unset hook costs one comparison.
_FAULT_AT = os.environ.get("NEWSQA_FAULT_AT") or None
FAULT_POINTS = ("chunks-written", "keywords-written", "manifest-written", "stale-deleted",
                "manifest-removed")
IN_FLIGHT = "w-"  # prefix of the revision a write's first bump writes (see the docstring)
_PAGE = 2000  # records per get() page: bounded memory and request size on a server
_RESTAGE = 50  # articles per Chroma read (and tantivy commit) when the keyword index is refilled
log = logging.getLogger("newsqa.index")  # the name its warnings have always had
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
Metadata = dict[str, MetadataValue]


class EmbedderSpec(Protocol):
    """All the index needs of an embedder: which vectors it makes."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...


@dataclass(frozen=True)
class ChunkTable:
    """Committed chunks as parallel lists, for building a keyword index in one pass."""

    ids: list[str]
    texts: list[str]  # search texts: header + chunk text (what BM25 should index)
    metadatas: list[Metadata]
    revision: str
    content_key: str = ""  # Index.content_key() of the manifest these chunks were read with

    def __len__(self) -> int:
        return len(self.ids)

    def passage(self, i: int, score: float) -> Passage:
        return passage_from(self.ids[i], self.texts[i], self.metadatas[i], score)


@dataclass(frozen=True)
class ArticleWrite:
    """One article ready to store: its chunks, their vectors and (optionally) search texts."""

    article: Article
    chunks: list[Chunk]
    embeddings: np.ndarray
    search_texts: Sequence[str] | None = None


@dataclass(frozen=True)
class _Records:
    ids: list[str]
    documents: list[str]
    metadatas: list[Any]
    vectors: np.ndarray


@dataclass(frozen=True)
class _Mark:
    """The manifest collection's metadata: what a reader compares to catch up (see the
    module docstring). An index written before stamps has seq 0 and no epoch."""

    revision: str
    seq: int = 0  # stamps handed out so far (one a write)
    epoch: str = ""  # changes when stamps cannot tell a reader what changed

    @property
    def clean(self) -> bool:
        return not in_flight(self.revision)

    def follows(self, old: _Mark) -> bool:
        """Whether a reader that read the manifest at `old` catches up by stamps."""
        return (old.clean and self.clean and bool(self.epoch) and self.epoch == old.epoch
                and self.seq >= old.seq)


@dataclass(frozen=True)
class _Entry:
    content_hash: str
    info: ArticleInfo


def passage_from(chunk_id: str, document: str, meta: Mapping[str, Any], score: float) -> Passage:
    """Rebuild a Passage from a stored chunk; its text is the exact article span."""
    text = meta["text"] if "text" in meta else document[int(meta.get("text_offset", 0)) :]
    return Passage(
        chunk_id=chunk_id,
        article_id=str(meta["article_id"]),
        title=str(meta.get("title", "")),
        source=str(meta.get("source", "")),
        published_at=_parse_iso(str(meta.get("published_iso", ""))),
        url=str(meta["url"]) if meta.get("url") else None,
        text=str(text),
        start=int(meta["start"]),
        end=int(meta["end"]),
        score=score,
    )


def fault_point(name: str) -> None:
    """A test hook: with NEWSQA_FAULT_AT=<name>, die here as a SIGKILL would (exit 137).

    Crash safety is a claim about what a kill at each step of a write leaves behind;
    tests (tests/test_index_trust*.py) set the variable in a subprocess to stop a
    write at one exact step of `FAULT_POINTS` and check that the next process
    repairs it. `os._exit` skips every cleanup, as a kill does. Unset (always, in
    normal use) it costs one comparison with None.
    """
    if _FAULT_AT is not None and name == _FAULT_AT:
        os._exit(137)


def in_flight(revision: str) -> bool:
    """Whether a write began at this revision and has not ended (or never will: killed)."""
    return revision.startswith(IN_FLIGHT)


def chunk_id(article_id: str, content_hash: str, index: int) -> str:
    return f"{article_id}:{content_hash}:{index}"


def _store_errors(func: F) -> F:
    """Chroma and transport failures become StoreError: one line in the CLI, not a trace."""

    @functools.wraps(func)
    def wrapper(self: Index, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(self, *args, **kwargs)
        except NewsQAError:
            raise
        except Exception as exc:
            if _is_store_failure(exc):
                raise StoreError(f"{self.location}: {type(exc).__name__}: {exc}") from exc
            raise

    return wrapper  # type: ignore[return-value]


def _is_store_failure(exc: Exception) -> bool:
    import httpx
    from chromadb.errors import ChromaError

    return isinstance(exc, (ChromaError, httpx.HTTPError, ConnectionError, OSError))


class Index:
    """One newsqa index in Chroma: embedded folder or server."""

    def __init__(self, settings: Settings, embedder: EmbedderSpec) -> None:
        self.settings = settings
        self.model = embedder.name
        self.dimension = int(embedder.dimension)
        self.location = settings.chroma_url or str(settings.db)
        key = _hold_folder(settings)
        self._release = weakref.finalize(self, folderlock.release, key) if key else None
        self._cache: dict[str, _Entry] = {}
        self._cache_mark: _Mark | None = None  # where the manifest cache was read
        try:
            self._client = _connect(settings)
            self._chunks_name = f"{settings.collection}_chunks"
            self._manifest_name = f"{settings.collection}_articles"
            # Exists once a process has used a shared keyword folder with this collection.
            self._shared_keywords_name = f"{settings.collection}_keywords"
            self._expected = self._expected_metadata()
            self._manifest = self._open(self._manifest_name, {"newsqa_schema": SCHEMA_VERSION})
            self._chunks = self._open(self._chunks_name, self._expected)
            self._check_model()
            self._max_batch = max(1, int(self._client.get_max_batch_size()))
            self._keywords = self._open_keywords()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Let another process open this embedded folder (also done when garbage-collected)."""
        if self._release is not None:
            self._release()

    # -- opening --------------------------------------------------------------------------

    def _expected_metadata(self) -> Metadata:
        return {
            "newsqa_schema": SCHEMA_VERSION,
            "embedding_model": self.model,
            "embedding_dim": self.dimension,
            "chunk_tokens": self.settings.chunk_tokens,
            "chunk_overlap": self.settings.chunk_overlap,
            "chunker_version": _chunker_version(self.settings),
        }

    def _open(self, name: str, metadata: Metadata) -> Collection:
        try:
            return self._client.get_or_create_collection(
                name,
                metadata=metadata,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
            )
        except Exception as exc:
            if "Validation error" in str(exc) or "Expected a name" in str(exc):
                raise StoreError(
                    f"collection name {self.settings.collection!r} is not usable in Chroma: "
                    "use 3-60 characters from [a-zA-Z0-9._-]"
                ) from exc
            raise StoreError(f"{self.location}: cannot open collection {name}: {exc}") from exc

    def _check_model(self) -> None:
        """Refuse to mix vectors of two models (or two chunkings) in one index."""
        stored = dict(self._chunks.metadata or {})
        keys = [k for k in self._expected if k != "newsqa_schema"]
        if all(stored.get(k) == self._expected[k] for k in keys):
            return
        if self._chunks.count() == 0 and self._manifest.count() == 0:
            # Nothing indexed yet: adopt the new settings (recreate: Chroma fixes the dimension).
            self._client.delete_collection(self._chunks_name)
            self._chunks = self._open(self._chunks_name, self._expected)
            return
        raise ModelMismatch(
            f"the index at {self.location} (collection {self.settings.collection!r}) was built "
            f"with {_describe(stored)}, but this run uses {_describe(self._expected)}. "
            "Use another --db or --collection for these settings, or re-ingest into a fresh "
            "index (delete the folder or pick a new collection)."
        )

    def _open_keywords(self) -> KeywordStore | None:
        """The persistent keyword index: inside an embedded folder, or in the shared
        `keyword_dir` beside a Chroma server (None for a server without one).

        An index written before it existed (or whose keyword folder was lost or
        left half-filled) gets it filled once from the stored chunks, here, with a
        message. The keyword folder's write lock is held meanwhile, so processes
        opening a shared folder at once fill it once, and no write races the fill.
        """
        root = self.settings.keyword_dir if self.settings.chroma_url else self.settings.db
        if root is None:
            return None
        path = folder_for(Path(root), self.settings.collection)
        with write_lock(path):
            store = KeywordStore.open(path)
            # Writers without the folder are refused from now on (`_check_keyword_folder`).
            shared = (self._open(self._shared_keywords_name, {"newsqa_schema": SCHEMA_VERSION})
                      if self.settings.chroma_url else None)
            if shared is not None:
                self._check_folder_id(shared, store)
            if store.fresh:
                count = self._chunks.count()
                if count:
                    log.warning("newsqa: building the keyword index of %s once (%d stored "
                                "chunks; indexes made before it are upgraded in place)",
                                self.location, count)
                self._reconcile_keywords(store, self._entries())
                store.mark_complete()
            if shared is not None:  # once the folder is whole: a fill cut short records nothing
                self._record_folder_id(shared, store)
        return store

    @staticmethod
    def _record_folder_id(shared: Collection, store: KeywordStore) -> None:
        """The first folder used with the collection, its id and where it was."""
        metadata = dict(shared.metadata or {})
        if store.folder_id is not None and metadata.get("keyword_folder_id") is None:
            shared.modify(metadata={**metadata, "keyword_folder_id": store.folder_id,
                                    "keyword_folder": str(store.path)})

    def _check_folder_id(self, shared: Collection, store: KeywordStore) -> None:
        """The collection's processes share one keyword folder: the first to use one records
        its id (`_open_keywords`), and any other folder is refused. A new user's ingest with
        another folder was accepted, and the processes reading the first one never found
        the article."""
        recorded = (shared.metadata or {}).get("keyword_folder_id")
        if store.folder_id is None or recorded is None or recorded == store.folder_id:
            return
        first = (shared.metadata or {}).get("keyword_folder", "another folder")
        raise ConfigError(
            f"the collection {self.settings.collection!r} at {self.location} keeps its keyword "
            f"index in another folder (first used at {first}), not {store.path}: set "
            "NEWSQA_KEYWORD_DIR to that folder (if it is lost, delete the collection "
            f"{self._shared_keywords_name!r} on the server, and a new folder is filled from "
            "Chroma)")

    def _reconcile_keywords(self, store: KeywordStore, entries: dict[str, _Entry]) -> None:
        """Make the keyword index hold exactly the committed versions, each whole.

        Versions the manifest does not name go; committed ones missing or with
        another number of documents than the manifest's chunk count are written
        again from Chroma's stored search texts. Costs the versions' term pass plus
        the missing articles' chunks, so an index that agrees pays little.
        """
        wanted = {version(aid, e.content_hash): e.info.chunks for aid, e in entries.items()
                  if e.info.chunks}
        held = store.versions()
        stale = [name for name, n in held.items() if wanted.get(name) != n]
        store.drop_versions(stale)
        missing = [name for name, n in wanted.items() if held.get(name) != n]
        for lo in range(0, len(missing), _RESTAGE):
            self._restage(store, missing[lo : lo + _RESTAGE], entries)

    def _restage(self, store: KeywordStore, names: list[str], entries: dict[str, _Entry]) -> None:
        articles = [name.rsplit(":", 1)[0] for name in names]
        where: Any = {"article_id": {"$in": articles}}
        got = self._chunks.get(where=where, include=["documents", "metadatas"])
        rows = [(cid, doc, meta) for cid, doc, meta in zip(
            got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True)
            if _committed(meta, entries)]
        store.stage(docs_from_records([r[0] for r in rows], [r[1] for r in rows],
                                      [r[2] for r in rows]))

    # -- revision and manifest cache -----------------------------------------------------

    @property
    @_store_errors
    def revision(self) -> str:
        """Changes on every write by any process; caches compare it, never the data."""
        return self._mark().revision

    def _mark(self) -> _Mark:
        meta = self._client.get_collection(self._manifest_name, embedding_function=None).metadata
        meta = meta or {}
        return _Mark(str(meta.get("revision", "0")), int(meta.get("write_seq", 0)),
                     str(meta.get("epoch", "")))

    def _cache_current(self, mark: _Mark) -> bool:
        """Whether the manifest cache holds what `mark` commits, after catching up by
        stamps where it can (only a clean mark settles it; see the module docstring)."""
        held = self._cache_mark
        if held is None or not mark.clean:
            return False
        if held.revision == mark.revision:
            return True
        return mark.follows(held) and self._catch_up(held, mark)

    def _catch_up(self, held: _Mark, mark: _Mark) -> bool:
        """Read the manifest records stamped after `held`; False if the count disagrees."""
        found = self._read_entries({"write_seq": {"$gt": held.seq}})
        self._cache = {**self._cache, **found}  # a new dict: a `Committed` holds the old one
        if self._manifest.count() != len(self._cache):
            self._cache_mark = None
            return False
        self._cache_mark = mark
        return True

    @_store_errors
    def content_key(self) -> str:
        """A digest of what readers can see: committed (id, content_hash) pairs, model, chunking.

        A commit is the manifest write itself, so this changes with every commit even
        when the process dies before it bumps the revision; a cache keyed on it can
        never serve an index that lacks a committed article or holds a removed one.

        Reading every manifest record's metadata costs ~0.14 ms an article (86 ms for
        609), which every `ask` would pay before its keyword index; ids alone cost
        ~2 us a chunk. Chunk ids carry their content_hash, so the pairs are read from
        ids whenever that is unambiguous (one content per committed article among the
        chunks); two contents of one article (a write in flight, or killed before its
        stale chunks went) send it to the manifest's metadata. The manifest cache
        answers only at a clean revision: commits may hide behind an in-flight one.
        """
        mark = self._mark()
        if self._cache_current(mark):
            return _content_key(_pairs(self._cache), self._expected)
        _, pairs = self._ids()
        if pairs is None:
            pairs = _pairs(self._load_entries(mark))
        return _content_key(pairs, self._expected)

    def _ids(self) -> tuple[set[str], dict[str, str] | None]:
        """Committed ids, and article -> content_hash from chunk ids (None when ambiguous)."""
        committed = {rid for rid, _ in self._iter_records(self._manifest, [])}
        pairs: dict[str, str] = {}
        for cid, _ in self._iter_records(self._chunks, []):
            parts = cid.rsplit(":", 2)
            if len(parts) != 3:
                return committed, None
            if parts[0] in committed and pairs.setdefault(parts[0], parts[1]) != parts[1]:
                return committed, None
        return committed, pairs

    def _bump_revision(self, in_flight: bool, before: _Mark, *, stamp: bool = False,
                       new_epoch: bool = False) -> _Mark:
        """Write a new revision; `stamp` hands out the next write stamp, `new_epoch`
        tells readers that stamps will not show them what changed."""
        mark = _Mark(
            revision=(IN_FLIGHT if in_flight else "") + uuid.uuid4().hex,
            seq=before.seq + int(stamp),
            epoch=uuid.uuid4().hex if new_epoch or not before.epoch else before.epoch,
        )
        # modify() replaces the metadata, so write the whole dict.
        self._manifest.modify(metadata={"newsqa_schema": SCHEMA_VERSION, "revision": mark.revision,
                                        "write_seq": mark.seq, "epoch": mark.epoch})
        return mark

    def _entries(self) -> dict[str, _Entry]:
        return self._entries_at()[0]

    def _entries_at(self) -> tuple[dict[str, _Entry], str]:
        """The manifest, cached per clean revision (under an in-flight one, checked by
        ids), and the revision it was read at."""
        mark = self._mark()
        if self._cache_current(mark) or (
            self._cache_mark == mark and self._cache_matches_ids()
        ):
            return self._cache, mark.revision
        return self._load_entries(mark), mark.revision

    def _cache_matches_ids(self) -> bool:
        committed, pairs = self._ids()
        return committed == self._cache.keys() and pairs == _pairs(self._cache)

    def _load_entries(self, mark: _Mark) -> dict[str, _Entry]:
        """Read every manifest record's metadata (~0.14 ms an article) into the cache."""
        self._cache = self._read_entries()
        self._cache_mark = mark
        if len(self._cache) > _PAGE:
            _return_freed_memory()
        return self._cache

    def _read_entries(self, where: Any = None) -> dict[str, _Entry]:
        """The manifest records (that `where` admits) as cache entries."""
        return {rid: _Entry(str(meta["content_hash"]), _info(rid, meta))
                for rid, meta in self._iter_records(self._manifest, ["metadatas"], where)}

    def _iter_records(
        self, collection: Collection, include: list[str], where: Any = None
    ) -> Iterator[Any]:
        """(id, metadata) or (id, metadata, document) for every record (that `where`
        admits), page by page."""
        offset = 0
        while True:
            page = collection.get(where=where, include=include,  # type: ignore[arg-type]
                                  limit=_PAGE, offset=offset)
            ids = page["ids"]
            metas = page["metadatas"] or [{}] * len(ids)
            if "documents" in include:
                yield from zip(ids, metas, page["documents"] or [""] * len(ids), strict=True)
            else:
                yield from zip(ids, metas, strict=True)
            if len(ids) < _PAGE:
                return
            offset += len(ids)

    # -- reading --------------------------------------------------------------------------

    @_store_errors
    def article_hash(self, article_id: str) -> str | None:
        entry = self._entries().get(article_id)
        return entry.content_hash if entry else None

    @_store_errors
    def article_hashes(self, ids: Iterable[str] | None = None) -> dict[str, str]:
        """Committed content_hash of the articles `ids` (of all when None): an ingest's checks.

        With ids, only their manifest records are read (the cache answers at a clean
        revision): reading every record costs ~0.2 ms an article, 0.5 s of a
        one-article ingest at 2,700 articles and growing with the archive.
        """
        if ids is None:
            return {aid: entry.content_hash for aid, entry in self._entries().items()}
        wanted = list(dict.fromkeys(ids))
        if self._cache_current(self._mark()):
            return {a: self._cache[a].content_hash for a in wanted if a in self._cache}
        found: dict[str, str] = {}
        for lo in range(0, len(wanted), _PAGE):
            got = self._manifest.get(ids=wanted[lo : lo + _PAGE], include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                found[rid] = str(meta["content_hash"])
        return found

    @_store_errors
    def incomplete(self, hashes: Mapping[str, str]) -> list[str]:
        """Of these committed articles (id -> content hash), those whose chunks are not all
        stored, in Chroma or the keyword folder.

        Two ingest workers writing one article's two texts to a Chroma server at once
        could each delete the other's chunks as stale, leaving a manifest record without
        them: listed, never found, and "unchanged" to every later ingest (a new user's
        session). An ingest that finds such an article unchanged writes it again.
        """
        wanted = list(hashes)
        counts: dict[str, int] = {}
        for lo in range(0, len(wanted), _PAGE):
            got = self._manifest.get(ids=wanted[lo : lo + _PAGE], include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                if meta.get("content_hash") == hashes[rid]:
                    counts[rid] = int(meta.get("chunks") or 0)  # type: ignore[arg-type]
        expected = {a: [chunk_id(a, hashes[a], i) for i in range(n)] for a, n in counts.items()}
        every = [cid for ids in expected.values() for cid in ids]
        present: set[str] = set()
        for lo in range(0, len(every), _PAGE):
            present.update(self._chunks.get(ids=every[lo : lo + _PAGE], include=[])["ids"])
        broken = {a for a, ids in expected.items() if not present.issuperset(ids)}
        if self._keywords is not None:
            live = self._keywords.counts([version(a, hashes[a]) for a in counts])
            broken |= {a for a, n in counts.items() if live.get(version(a, hashes[a]), 0) != n}
        return sorted(broken)

    @_store_errors
    def articles(self) -> list[ArticleInfo]:
        """Committed articles, newest first (undated last), then by title."""
        infos = [e.info for e in self._entries().values()]
        return sorted(infos, key=_newest_first)

    @_store_errors
    def outlets(self) -> list[str]:
        """Every publisher of a committed article: what a question names as its sources."""
        return sorted({e.info.source for e in self._entries().values() if e.info.source})

    @_store_errors
    def get_article(self, article_id: str) -> Article:
        got = self._manifest.get(ids=[article_id], include=["documents", "metadatas"])
        if not got["ids"]:
            raise ArticleNotFound(article_id)
        meta = (got["metadatas"] or [{}])[0]
        text = (got["documents"] or [""])[0]
        info = _info(article_id, dict(meta))  # the reading of the manifest `articles()` uses
        return Article(
            id=article_id,
            title=info.title,
            source=info.source,
            published_at=info.published_at,
            url=info.url,
            text=str(text),
            metadata=json.loads(str(meta.get("metadata_json", "{}"))),
        )

    @_store_errors
    def chunk_count(self) -> int:
        """Chunks of committed articles (what retrieval can return)."""
        return sum(e.info.chunks for e in self._entries().values())

    @_store_errors
    def dense_search(
        self, vector: np.ndarray, k: int, where: dict[str, Any] | None = None
    ) -> list[Passage]:
        """Top-k committed chunks by cosine similarity (score = 1 - cosine distance)."""
        entries = self._entries()
        total = self._chunks.count()
        if k <= 0 or total == 0:
            return []
        query = [np.asarray(vector, dtype=np.float32).tolist()]

        def ask(n: int) -> tuple[list[Passage], int]:
            res: Any = self._chunks.query(
                query_embeddings=query,
                n_results=n,
                where=where or None,
                include=["documents", "metadatas", "distances"],
            )
            ids = res["ids"][0]
            kept = [
                passage_from(cid, doc, meta, 1.0 - float(dist))
                for cid, doc, meta, dist in zip(
                    ids,
                    (res["documents"] or [[]])[0],
                    (res["metadatas"] or [[]])[0],
                    (res["distances"] or [[]])[0],
                    strict=True,
                )
                if _committed(meta, entries)
            ]
            return kept, len(ids)

        return _until_enough(k, min(k, total), ask)

    @_store_errors
    def dense_ids(
        self, vector: np.ndarray, k: int, where: dict[str, Any] | None, known: Container[str]
    ) -> list[tuple[str, float]]:
        """Top-k chunk ids in `known` with their cosine scores, without text or metadata.

        The retriever already holds every committed chunk (its keyword table), so it
        asks only for ids: fetching documents and metadata made a 100-hit query ~6x
        slower (12.8 vs 2.1 ms), and counting the collection first costs 2.5 ms more.
        Ids outside `known` (uncommitted, or newer than the caller's table) are
        skipped, and more are asked for until k are found or the store runs out.
        """
        if k <= 0 or not known:
            return []
        query = [np.asarray(vector, dtype=np.float32).tolist()]

        def ask(n: int) -> tuple[list[tuple[str, float]], int]:
            res: Any = self._chunks.query(
                query_embeddings=query, n_results=n, where=where or None, include=["distances"]
            )
            ids = res["ids"][0]
            distances = (res["distances"] or [[]])[0]
            kept = [(cid, 1.0 - float(d)) for cid, d in zip(ids, distances, strict=True)
                    if cid in known]
            return kept, len(ids)

        return _until_enough(k, k, ask)

    @_store_errors
    def all_chunks(self) -> ChunkTable:
        """Every committed chunk, for a keyword index keyed on `revision`."""
        revision = self.revision
        entries = self._entries()
        ids: list[str] = []
        texts: list[str] = []
        metas: list[Metadata] = []
        for cid, meta, doc in self._iter_records(self._chunks, ["metadatas", "documents"]):
            if _committed(meta, entries):
                ids.append(cid)
                texts.append(doc)
                metas.append(dict(meta))
        return ChunkTable(ids=ids, texts=texts, metadatas=metas, revision=revision,
                          content_key=_content_key(_pairs(entries), self._expected))

    # -- writing --------------------------------------------------------------------------

    def write_article(
        self,
        article: Article,
        chunks: list[Chunk],
        embeddings: np.ndarray,
        search_texts: Sequence[str] | None = None,
    ) -> None:
        """Store one article; see `write_articles`."""
        self.write_articles([ArticleWrite(article, chunks, embeddings, search_texts)])

    @_store_errors
    def write_articles(self, batch: Sequence[ArticleWrite]) -> None:
        """Chunks of all, then their manifest records (the commit), then stale chunks go.

        Several articles per call because each Chroma write costs ~40 ms of fixed
        overhead (a SQLite commit): one call per article would spend a quarter of
        the embedding time on bookkeeping. Each manifest record still commits one
        article whole, so a crash anywhere leaves every article old or new, never mixed.
        """
        if not batch:
            return
        article_ids = [item.article.id for item in batch]
        if len(set(article_ids)) != len(article_ids):
            raise StoreError("one write holds the same article twice; deduplicate first")
        records = [self._records(item) for item in batch]
        began = self._begin_write()  # before the first store call: a kill after it is seen
        ids = [i for r in records for i in r.ids]
        docs = [d for r in records for d in r.documents]
        metas = [m for r in records for m in r.metadatas]
        vectors = np.concatenate([r.vectors for r in records])
        for lo in range(0, len(ids), self._max_batch):
            hi = lo + self._max_batch
            self._chunks.upsert(
                ids=ids[lo:hi],
                embeddings=vectors[lo:hi],
                documents=docs[lo:hi],
                metadatas=metas[lo:hi],
            )
        fault_point("chunks-written")
        if self._keywords is not None:
            self._keywords.stage(docs_from_records(ids, docs, metas))
        fault_point("keywords-written")
        manifest = [_manifest_metadata(item.article, len(item.chunks), began.seq)
                    for item in batch]
        for lo in range(0, len(batch), self._max_batch):
            part = batch[lo : lo + self._max_batch]
            self._manifest.upsert(
                ids=[item.article.id for item in part],
                embeddings=np.ones((len(part), 1), dtype=np.float32),
                documents=[item.article.text for item in part],
                metadatas=manifest[lo : lo + self._max_batch],  # type: ignore[arg-type]
            )
        fault_point("manifest-written")
        # A hash names one content of one article, so "other hashes of these ids" is stale.
        stale: Any = {
            "$and": [
                {"article_id": {"$in": article_ids}},
                {"content_hash": {"$nin": [item.article.content_hash for item in batch]}},
            ]
        }
        self._chunks.delete(where=stale)
        if self._keywords is not None:
            self._keywords.keep_only({i.article.id: i.article.content_hash for i in batch})
        fault_point("stale-deleted")
        self._end_write(began)
        if self._cache_mark is not None:  # a new dict: a `Committed` holds the old one
            self._cache = {**self._cache, **{
                item.article.id: _Entry(item.article.content_hash, _info(item.article.id, meta))
                for item, meta in zip(batch, manifest, strict=True)}}

    def _records(self, item: ArticleWrite) -> _Records:
        article, chunks = item.article, item.chunks
        self._check_chunks(article, chunks, item.embeddings)
        texts = item.search_texts
        if texts is None:
            texts = [search_text(article, c) for c in chunks]
        base = _article_facts(article)
        return _Records(
            ids=[chunk_id(article.id, article.content_hash, c.index) for c in chunks],
            documents=list(texts),
            metadatas=[_chunk_metadata(base, c, t) for c, t in zip(chunks, texts, strict=True)],
            vectors=np.asarray(item.embeddings, dtype=np.float32).reshape(
                len(chunks), self.dimension
            ),
        )

    def _check_chunks(self, article: Article, chunks: list[Chunk], embeddings: np.ndarray) -> None:
        """Wrong vectors or spans would poison the index silently; refuse them loudly."""
        shape = np.shape(embeddings)
        if len(chunks) and shape != (len(chunks), self.dimension):
            raise StoreError(
                f"article {article.id}: expected embeddings of shape "
                f"({len(chunks)}, {self.dimension}), got {shape}"
            )
        for c in chunks:
            if c.article_id != article.id or article.text[c.start : c.end] != c.text:
                raise StoreError(
                    f"article {article.id}: chunk {c.index} does not match the article text"
                )

    def _begin_write(self) -> _Mark:
        """Before a write's first store call: bump to an in-flight revision and return it.

        Readers that cached the revision before the write see a change even if the
        writer is killed in the middle; one that looks between this bump and the
        last sees an in-flight revision and keeps checking the content key. Our
        cache stays valid unless someone else wrote since it was read.
        """
        self._check_keyword_folder()
        current = self._mark()
        fresh = self._cache_current(current)
        began = self._bump_revision(True, current, stamp=True)
        self._cache_mark = began if fresh else None
        return began

    def _check_keyword_folder(self) -> None:
        """Refuse to write a Chroma server's collection whose keyword index lives in a
        shared folder this process was not given: the write would reach Chroma only, and
        every process reading that folder would miss the article for good (a new user's
        ingest without NEWSQA_KEYWORD_DIR; the next ingest with it said "unchanged")."""
        from chromadb.errors import NotFoundError

        if not self.settings.chroma_url or self._keywords is not None:
            return
        try:
            self._client.get_collection(self._shared_keywords_name, embedding_function=None)
        except NotFoundError:
            return
        raise ConfigError(
            f"the collection {self.settings.collection!r} at {self.location} keeps its keyword "
            "index in a shared folder: set NEWSQA_KEYWORD_DIR to that folder to write it (a "
            "write without it would never reach the processes that read the folder)")

    def _end_write(self, began: _Mark, new_epoch: bool = False) -> None:
        """After a write's last store call: a clean revision, if no other write bumped since.

        Another write's bump since `began` means that write may still be in flight
        (its last bump came first, or is yet to come, or never will): the revision
        stays in flight then, until a write ends alone or a sweep settles it. The
        check and the bump are two calls, not one atomic step: another write that
        begins between them is hidden until its own last bump (or a sweep). Ending in
        flight, or `new_epoch` (a removal, a sweep), sends readers to read whole.
        """
        now = self._mark()
        alone = now.revision == began.revision
        mark = self._bump_revision(not alone, now, new_epoch=new_epoch or not alone)
        self._cache_mark = mark if alone and self._cache_mark == began else None

    @_store_errors
    def remove(self, article_id: str) -> None:
        """Uncommit first (the article vanishes for readers at once), then drop its chunks."""
        if not self._manifest.get(ids=[article_id], include=[])["ids"]:
            raise ArticleNotFound(article_id)
        began = self._begin_write()
        self._manifest.delete(ids=[article_id])
        fault_point("manifest-removed")
        self._chunks.delete(where={"article_id": article_id})
        if self._keywords is not None:
            self._keywords.remove([article_id])
        self._end_write(began, new_epoch=True)
        self._cache = {aid: e for aid, e in self._cache.items() if aid != article_id}

    @_store_errors
    def sweep(self) -> int:
        """Delete chunks no manifest record names (left by a crash); return how many.

        Also settles a revision a killed write left in flight: run before a write
        (never during one), it reads the manifest whole, so what it read is final.
        """
        began = self._mark()
        entries = self._load_entries(began)
        orphans = [
            cid
            for cid, meta in self._iter_records(self._chunks, ["metadatas"])
            if not _committed(meta, entries)
        ]
        for lo in range(0, len(orphans), self._max_batch):
            self._chunks.delete(ids=orphans[lo : lo + self._max_batch])
        if self._keywords is not None:
            self._reconcile_keywords(self._keywords, entries)
        if orphans or not began.clean:
            self._end_write(began, new_epoch=True)
        return len(orphans)

    @property
    def keywords(self) -> KeywordStore | None:
        """The persistent keyword index (embedded folders only)."""
        return self._keywords

    @_store_errors
    def committed(self) -> Committed:
        """Which chunk ids readers may trust now (their version is the manifest's), with
        the revision they were read at: one search reads the revision once (~2 ms)."""
        return Committed(*self._entries_at())

    @_store_errors
    def settle(self) -> int:
        """What an ingest runs first: `sweep()` only if a write may have died, else nothing.

        Every write leaves a clean revision when it ends alone (see the module
        docstring), and a killed one leaves its in-flight revision behind, so a
        clean revision says there is nothing to sweep. Sweeping anyway read every
        chunk's metadata: 14 s of a 17 s one-article ingest at 100k chunks.
        """
        if self._mark().clean:
            return 0
        return self.sweep()

    @_store_errors
    def stored_chunk_count(self) -> int:
        """Physical chunk records, committed or not (for checks and diagnostics)."""
        return int(self._chunks.count())


# -- helpers -------------------------------------------------------------------------------


class Committed:
    """A container of the chunk ids whose (article, content_hash) the manifest names.

    It holds the index's manifest cache itself, not a copy (copying 27k entries was
    16 ms of every search at 1M chunks): the index replaces that dict on a change and
    never edits it in place."""

    def __init__(self, entries: Mapping[str, _Entry], revision: str) -> None:
        self.revision = revision
        self._entries = entries

    def __contains__(self, chunk: object) -> bool:
        parts = str(chunk).rsplit(":", 2)
        entry = self._entries.get(parts[0]) if len(parts) == 3 else None
        return entry is not None and entry.content_hash == parts[1]

    def chunk_ids(self, article_id: str) -> list[str]:
        """The chunk ids of an article's committed version, in order (none if it has none)."""
        entry = self._entries.get(article_id)
        if entry is None:
            return []
        return [chunk_id(article_id, entry.content_hash, i) for i in range(entry.info.chunks)]


def _hold_folder(settings: Settings) -> str | None:
    """The process lock on an embedded folder (see folderlock); servers need none."""
    if settings.chroma_url:
        return None
    db = Path(settings.db)
    if db.exists() and not db.is_dir():
        raise StoreError(f"{db}: index path exists and is not a folder")
    return folderlock.acquire(db)


def _connect(settings: Settings) -> ClientAPI:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = settings.chroma_url
        parts = urlsplit(url)
        ssl = parts.scheme == "https"
        try:
            port = parts.port or (443 if ssl else 8000)
            return chromadb.HttpClient(
                host=parts.hostname or "localhost", port=port, ssl=ssl, settings=chroma_settings
            )
        except Exception as exc:
            raise StoreError(f"cannot reach Chroma server at {url}: {exc}") from exc
    db = Path(settings.db)  # Settings built by hand may carry a str
    if db.exists() and not db.is_dir():
        raise StoreError(f"{db}: index path exists and is not a folder")
    try:
        return chromadb.PersistentClient(path=str(db), settings=chroma_settings)
    except Exception as exc:
        raise StoreError(f"cannot open the index at {db}: {exc}") from exc


def _chunker_version(settings: Settings) -> str:
    """The chunker's own version and tokenizer: a new chunker means new chunk boundaries."""
    sig = chunking_signature(settings.chunk_tokens, settings.chunk_overlap)
    return f"{sig.get('version', 1)}-{sig.get('encoding', '')}"


def _describe(meta: dict[str, Any]) -> str:
    if "embedding_model" not in meta:
        return "no newsqa model record (not a newsqa collection?)"
    return (
        f"embedding model {meta.get('embedding_model')!r} (dimension {meta.get('embedding_dim')}), "
        f"chunking {meta.get('chunk_tokens')} tokens / overlap {meta.get('chunk_overlap')} "
        f"(chunker v{meta.get('chunker_version')})"
    )


def _article_facts(article: Article) -> Metadata:
    facts: Metadata = {
        "article_id": article.id,
        "title": article.title,
        "source": article.source,
        "url": article.url or "",
        "content_hash": article.content_hash,
    }
    facts.update(_date_fields(article.published_at))
    facts.update({f"meta_{key}": value for key, value in article.metadata.items()})
    return facts


def _date_fields(value: dt.datetime | dt.date | None) -> Metadata:
    if value is None:
        return {}
    if isinstance(value, dt.datetime):
        moment = value.astimezone(dt.timezone.utc)
        day = moment.date()
    else:
        moment = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
        day = value
    return {
        "published_ts": int(moment.timestamp()),
        "published_iso": value.isoformat(),
        "published_date": day.year * 10000 + day.month * 100 + day.day,
    }


def _manifest_metadata(article: Article, chunks: int, stamp: int = 0) -> Metadata:
    return {
        **_article_facts(article),
        "chunks": chunks,
        "write_seq": stamp,  # which write committed it: readers catch up by it
        "metadata_json": json.dumps(article.metadata, sort_keys=True, ensure_ascii=False),
    }


def _chunk_metadata(base: Metadata, chunk: Chunk, search: str) -> Metadata:
    meta: Metadata = {
        **base,
        "chunk_index": chunk.index,
        "start": chunk.start,
        "end": chunk.end,
        "n_tokens": chunk.n_tokens,
    }
    if search.endswith(chunk.text):
        meta["text_offset"] = len(search) - len(chunk.text)
    else:  # a search text that is not header + chunk: keep the exact text on its own
        meta["text"] = chunk.text
    return meta


def _info(article_id: str, meta: dict[str, Any]) -> ArticleInfo:
    return ArticleInfo(
        id=article_id,
        title=str(meta.get("title", "")),
        source=str(meta.get("source", "")),
        published_at=_parse_iso(str(meta.get("published_iso", ""))),
        url=str(meta["url"]) if meta.get("url") else None,
        chunks=int(meta.get("chunks", 0)),
    )


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS).

    Looked up among the symbols the process already has loaded: `find_library`
    would run `ldconfig` in a subprocess to find the C library's file."""
    import ctypes

    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


def _return_freed_memory() -> None:
    """Hand back to the system the heap a whole-manifest read freed.

    Chroma's paged `get` of the manifest builds and frees ~180 MB a page of 2,000
    records, and glibc keeps what was freed: a reader at 1M chunks (27k articles)
    held ~400 MB more than its cache needs until it exited (benchmarks/RESULTS.md,
    "Memory at 1M"). One trim after the read (milliseconds, once per whole read)
    returns it; smaller pages would hold less but read slower.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _until_enough(k: int, n: int, ask: Callable[[int], tuple[list[T], int]]) -> list[T]:
    """Ask for n hits until k of them are kept, doubling n, or the store runs out.

    Uncommitted chunks (a crash, a write in flight) hide results, so a query that
    kept too few asks again for more. `ask(n)` returns what it kept and how many
    the store returned.
    """
    while True:
        kept, got = ask(n)
        if len(kept) >= k or got < n:
            return kept[:k]
        n *= 2


def _pairs(entries: Mapping[str, _Entry]) -> dict[str, str]:
    """Committed article -> content_hash, for articles with chunks (all a keyword index sees)."""
    return {aid: entry.content_hash for aid, entry in entries.items() if entry.info.chunks}


def _content_key(pairs: Mapping[str, str], expected: Metadata) -> str:
    """sha256 of the sorted committed (id, content_hash) pairs and the model/chunking record."""
    raw = json.dumps([expected, sorted(pairs.items())], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


def _committed(meta: Mapping[str, Any] | None, entries: dict[str, _Entry]) -> bool:
    if not meta:
        return False
    entry = entries.get(str(meta.get("article_id")))
    return entry is not None and entry.content_hash == meta.get("content_hash")


def _parse_iso(value: str) -> dt.datetime | dt.date | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value) if "T" in value else dt.date.fromisoformat(value)
    except ValueError:
        return None


def _newest_first(info: ArticleInfo) -> tuple[int, float, str]:
    value = info.published_at
    if value is None:
        return (1, 0.0, info.title)
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    return (0, -value.timestamp(), info.title)
