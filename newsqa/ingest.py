"""Files, folders and `Article`s -> committed articles in the index.

Why it is shaped this way:

- Unchanged articles must cost nothing, so each article's content_hash is
  compared with the manifest before it is chunked or embedded.
- Embedding is the bottleneck (~18 chunks/s on two cores), and the model runs
  faster on full batches, so chunks of several articles are embedded in one
  call. The first batch is small so the first articles commit (and the progress
  bar moves) within a second or two; later batches grow to `batch_chunks`.
- Each article is still written on its own (chunks, then manifest) so a crash
  loses at most the batch in flight, never half an article; `Index.sweep()`
  at the start removes what a crash left uncommitted.
- One bad file never stops the rest: failures are collected with their path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import Settings
from .errors import InputError, NewsQAError
from .models import Article, Chunk, IngestFailure, IngestReport

if TYPE_CHECKING:
    from .embedding import Embedder
    from .index import Index

DEFAULT_BATCH_CHUNKS = 64
FIRST_BATCH_CHUNKS = 8

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
    """State of one ingest call: the report plus what is waiting to be embedded."""

    index: Index
    embedder: Embedder
    report: IngestReport
    total: int
    progress: Progress | None
    done: int = 0
    pending: list[_Pending] = field(default_factory=list)

    @property
    def pending_chunks(self) -> int:
        return sum(len(p.chunks) for p in self.pending)

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def fail(self, origin: str, reason: str) -> None:
        self.report.failed.append(IngestFailure(path=origin, error=reason))


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
    index.sweep()
    loaded = list(_load(items, report))
    run = _Run(index, embedder, report, total=len(loaded), progress=progress)
    if progress is not None:
        progress(0, run.total)
    seen: dict[str, str] = {}
    limit = min(FIRST_BATCH_CHUNKS, batch_chunks)
    for origin, article in loaded:
        if article.id in seen:
            report.duplicates += 1
            report.duplicate_of[origin] = seen[article.id]
            run.tick()
            continue
        seen[article.id] = origin
        _stage(run, origin, article, settings)
        if run.pending_chunks >= limit:
            _flush(run)
            limit = min(limit * 2, batch_chunks)
    _flush(run)
    report.chunks = index.chunk_count()
    return report


def _stage(run: _Run, origin: str, article: Article, settings: Settings) -> None:
    """Skip an unchanged article; otherwise chunk it and queue it for embedding."""
    from .chunking import chunk_article, search_text

    stored = run.index.article_hash(article.id)
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


def _flush(run: _Run) -> None:
    """Embed the queued chunks in one call, then commit article by article."""
    batch, run.pending = run.pending, []
    if not batch:
        return
    try:
        vectors = _embed(run.embedder, [t for p in batch for t in p.texts])
    except NewsQAError:
        _flush_each(run, batch)
        return
    offset = 0
    for item in batch:
        n = len(item.chunks)
        _commit(run, item, vectors[offset : offset + n])
        offset += n


def _flush_each(run: _Run, batch: list[_Pending]) -> None:
    """The model refused a batch: find the article it refuses instead of failing its neighbours."""
    for item in batch:
        try:
            vectors = _embed(run.embedder, item.texts)
        except NewsQAError as exc:
            run.fail(item.origin, f"cannot embed: {exc}")
            run.tick()
            continue
        _commit(run, item, vectors)


def _embed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    return embedder.embed_documents(texts)


def _commit(run: _Run, item: _Pending, vectors: np.ndarray) -> None:
    run.index.write_article(item.article, item.chunks, vectors, item.texts)
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
    from .articles import read_paths

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
