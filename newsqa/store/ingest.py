"""Files, folders and `Article`s -> committed articles in the index.

Why it is shaped this way:

- Unchanged articles must cost nothing, so each article's content_hash is
  compared with the manifest before it is chunked or embedded.
- Embedding is the bottleneck (~18 chunks/s on two cores), and the model runs
  faster on full batches, so chunks of several articles are embedded in one
  call. The first batch is small so the first articles commit (and the progress
  bar moves) within a second or two; later batches grow to `batch_chunks`.
- A batch is written in one store round (chunks, then manifest records, the
  commit): Chroma charges ~40 ms per call whatever its size, mostly waiting on
  SQLite's fsync. One writer thread stores batch N while batch N+1 embeds, so
  that wait hides behind the model instead of adding to it. A crash loses at
  most the batches in flight, never half an article; `Index.settle()` at the
  start removes what a crash left uncommitted (a crash leaves the store's
  revision in flight; a clean one costs nothing, so one new article costs its
  own chunks, not a pass over the collection).
- One bad file never stops the rest: failures are collected with their path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import Settings
from ..errors import InputError, NewsQAError
from ..models import Article, Chunk, IngestFailure, IngestReport
from ..threads import one_blas_thread
from .articles import read_paths
from .chunking import chunk_article, search_text
from .index import ArticleWrite

if TYPE_CHECKING:
    from .embedding import Embedder
    from .index import Index

DEFAULT_BATCH_CHUNKS = 64
FIRST_BATCH_CHUNKS = 8
MAX_BATCH_CHUNKS = 1024  # where a fast embedder's batches stop growing

Progress = Callable[[int, int], None]


@dataclass
class _Pending:
    origin: str
    article: Article
    chunks: list[Chunk]
    texts: list[str]
    update: bool


@dataclass
class _Run:
    """State of one ingest call: the report, what waits to be embedded, the write in flight."""

    index: Index
    embedder: Embedder
    report: IngestReport
    total: int
    progress: Progress | None
    stored: dict[str, str]  # article id -> content_hash of the inputs, read once before the run
    writer: ThreadPoolExecutor
    batch_chunks: int
    done: int = 0
    pending: list[_Pending] = field(default_factory=list)  # staged, not yet embedded
    inflight: Future[None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pending_chunks(self) -> int:
        return sum(len(p.chunks) for p in self.pending)

    def tick(self) -> None:
        with self.lock:  # the writer thread ticks too
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, self.total)

    def fail(self, origin: str, reason: str) -> None:
        self.report.failed.append(IngestFailure(path=origin, error=reason))

    def wait(self) -> None:
        """Let the write in flight finish; its StoreError surfaces here."""
        inflight, self.inflight = self.inflight, None
        if inflight is not None:
            inflight.result()


@one_blas_thread()
def ingest(
    items: Iterable[str | Path | Article],
    index: Index,
    embedder: Embedder,
    settings: Settings,
    progress: Progress | None = None,
    *,
    batch_chunks: int = DEFAULT_BATCH_CHUNKS,
) -> IngestReport:
    """Add or update what changed; report added/updated/unchanged/duplicates/failed."""
    report = IngestReport()
    index.settle()
    loaded = list(_load(items, report))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="newsqa-ingest-writer") as writer:
        stored = index.article_hashes(article.id for _, article in loaded)
        unchanged = {a.id: stored[a.id] for _, a in loaded if stored.get(a.id) == a.content_hash}
        for article_id in index.incomplete(unchanged):  # written again, as an update
            stored[article_id] = ""
        run = _Run(index, embedder, report, len(loaded), progress, stored, writer, batch_chunks)
        try:
            _pipeline(run, _batches(run, loaded, settings))
        finally:
            run.wait()  # a write in flight always finishes: no half-submitted batch
    report.chunks = index.stored_chunk_count()  # committed ones: settled, and all written
    return report


_Ready = list[tuple[_Pending, np.ndarray]]


def _pipeline(run: _Run, batches: Iterator[list[_Pending]]) -> None:
    """Write batch N while batch N+1 embeds.

    Chroma's bindings hold the GIL while they write, so the write overlaps only
    the model (onnxruntime releases the GIL), never the Python chunking: the next
    batch is staged before the previous one is handed to the writer.

    When the write outlasts the embedding (a fast embeddings server, not the local
    model), the store is the bottleneck and its fixed cost per batch (Chroma's and
    the keyword index's commits, ~0.15 s) dominates, so batches double up to
    MAX_BATCH_CHUNKS. A crash still loses only whole articles of the batches in flight.
    """
    previous: _Ready = []
    for batch in batches:
        if previous:
            run.inflight = run.writer.submit(_commit, run, previous)
        began = time.perf_counter()
        previous = _embed_batch(run, batch)
        embedded = time.perf_counter()
        run.wait()
        if run.batch_chunks < MAX_BATCH_CHUNKS and _store_bound(began, embedded):
            run.batch_chunks = min(run.batch_chunks * 2, MAX_BATCH_CHUNKS)
    if previous:
        run.inflight = run.writer.submit(_commit, run, previous)
        run.wait()


def _store_bound(began: float, embedded: float) -> bool:
    """Did waiting for the write take longer than embedding the next batch?"""
    return time.perf_counter() - embedded > embedded - began


def _batches(
    run: _Run, loaded: list[tuple[str, Article]], settings: Settings
) -> Iterator[list[_Pending]]:
    """Changed articles in batches of about `run.batch_chunks` chunks (smaller at first)."""
    if run.progress is not None:
        run.progress(0, run.total)
    seen: dict[str, tuple[str, str]] = {}  # article id -> (origin, content hash)
    latest = _latest_lines(loaded)
    limit = min(FIRST_BATCH_CHUNKS, run.batch_chunks)
    for origin, article in loaded:
        newer = latest.get((_feed_of(origin), article.id), origin)
        if newer != origin:  # an append-only feed's correction comes later in the same file
            run.report.duplicates += 1
            run.report.duplicate_of[origin] = newer
            run.tick()
            continue
        if article.id in seen:
            first, content = seen[article.id]
            if content == article.content_hash:
                run.report.duplicates += 1
                run.report.duplicate_of[origin] = first
            else:  # one URL, two texts: which is the update is not ours to guess
                run.fail(origin, f"same URL as {first} with other text: not ingested (ingest "
                                 "the newer one on its own to update the article)")
            run.tick()
            continue
        seen[article.id] = (origin, article.content_hash)
        _stage(run, origin, article, settings)
        if run.pending_chunks >= limit:
            yield _take(run)
            limit = min(limit * 2, run.batch_chunks)
    if run.pending:
        yield _take(run)


def _feed_of(origin: str) -> str | None:
    """The file a record came from when it is one line of a feed ("feed.jsonl:12")."""
    path, _, line = origin.rpartition(":")
    return path if path and line.isdigit() else None


def _latest_lines(loaded: list[tuple[str, Article]]) -> dict[tuple[str | None, str], str]:
    """(feed file, article id) -> the last line holding it: a feed that appends a corrected
    record under the same URL failed on every run (the correction never stored)."""
    return {(_feed_of(origin), article.id): origin for origin, article in loaded
            if _feed_of(origin) is not None}


def _take(run: _Run) -> list[_Pending]:
    batch, run.pending = run.pending, []
    return batch


def _stage(run: _Run, origin: str, article: Article, settings: Settings) -> None:
    """Skip an unchanged article; otherwise chunk it and queue it for embedding."""
    stored = run.stored.get(article.id)
    if stored == article.content_hash:
        run.report.unchanged += 1
        run.tick()
        return
    try:
        chunks = chunk_article(
            article, max_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap
        )
    except (NewsQAError, ValueError) as exc:
        run.fail(origin, f"cannot chunk: {exc}")
        run.tick()
        return
    texts = [search_text(article, c) for c in chunks]
    run.pending.append(_Pending(origin, article, chunks, texts, update=stored is not None))


def _embed_batch(run: _Run, batch: list[_Pending]) -> _Ready:
    """One model call for the whole batch; if the model refuses it, find who it refuses."""
    try:
        vectors = _embed(run.embedder, [t for p in batch for t in p.texts])
    except NewsQAError:
        return _embed_each(run, batch)
    ready, offset = [], 0
    for item in batch:
        n = len(item.chunks)
        ready.append((item, vectors[offset : offset + n]))
        offset += n
    return ready


def _embed_each(run: _Run, batch: list[_Pending]) -> _Ready:
    ready = []
    for item in batch:
        try:
            ready.append((item, _embed(run.embedder, item.texts)))
        except NewsQAError as exc:
            run.fail(item.origin, f"cannot embed: {exc}")
            run.tick()
    return ready


def _embed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    return embedder.embed_documents(texts)


def _commit(run: _Run, ready: _Ready) -> None:
    run.index.write_articles(
        [ArticleWrite(item.article, item.chunks, vectors, item.texts) for item, vectors in ready]
    )
    for item, _ in ready:
        if item.update:
            run.report.updated += 1
        else:
            run.report.added += 1
        run.tick()


def _load(
    items: Iterable[str | Path | Article], report: IngestReport
) -> Iterator[tuple[str, Article]]:
    """(origin, article) in input order; unreadable inputs go to the report instead."""
    for item in items:
        if isinstance(item, Article):
            yield f"article:{item.id}", item
            continue
        yield from _load_path(item, report)


def _load_path(path: str | Path, report: IngestReport) -> Iterator[tuple[str, Article]]:
    try:
        for loaded in read_paths([path]):
            if isinstance(loaded, InputError):
                report.failed.append(IngestFailure(path=loaded.where, error=loaded.reason))
            else:
                yield loaded.origin, loaded.article
    except (NewsQAError, OSError, ValueError) as exc:
        # A loader bug or an OS error must not cost the other inputs.
        reason = exc.reason if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        report.failed.append(IngestFailure(path=str(path), error=reason))
