"""Hybrid retrieval: BM25 keywords + dense vectors, filtered, fused, diversified.

Why both: on news, BM25 over chunks with a title/source/date header beats a
small dense model (names, numbers and publishers are exact-match facts), while
the dense model rescues paraphrases. Plain reciprocal-rank fusion lets the
weaker retriever drag the stronger one down, so the fusion is weighted.

Filters (sources, date range) run inside Chroma for the dense side and as a
mask over the same metadata for the keyword side, so both see the same corpus.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import Settings
from .errors import InputError
from .lexical import terms, terms_many
from .models import Passage

if TYPE_CHECKING:
    from .embedding import Embedder
    from .index import ChunkTable, Index


def parse_date(value: dt.date | dt.datetime | str | None, what: str) -> dt.date | None:
    """Accept dates, datetimes and ISO strings (YYYY, YYYY-MM or YYYY-MM-DD)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = value.strip()
    try:
        if len(text) == 4 and text.isdigit():
            return dt.date(int(text), 1 if what == "since" else 12, 1 if what == "since" else 31)
        if len(text) == 7:
            year, month = (int(p) for p in text.split("-"))
            if what == "since":
                return dt.date(year, month, 1)
            nxt = dt.date(year + month // 12, month % 12 + 1, 1)
            return nxt - dt.timedelta(days=1)
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise InputError(f"--{what}", f"not a date: {value!r} (use YYYY-MM-DD)") from None


def _date_key(day: dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


@dataclass(frozen=True)
class Filters:
    """Which articles a search may return. Empty means no restriction."""

    sources: tuple[str, ...] = ()
    since: dt.date | None = None
    until: dt.date | None = None

    @classmethod
    def build(
        cls,
        *,
        sources: Sequence[str] | str | None = None,
        since: dt.date | dt.datetime | str | None = None,
        until: dt.date | dt.datetime | str | None = None,
    ) -> Filters:
        if isinstance(sources, str):
            sources = [sources]
        start, stop = parse_date(since, "since"), parse_date(until, "until")
        if start and stop and start > stop:
            raise InputError("--since/--until", f"{start} is after {stop}")
        names = tuple(s.strip() for s in (sources or ()) if s and s.strip())
        return cls(sources=names, since=start, until=stop)

    @property
    def active(self) -> bool:
        return bool(self.sources or self.since or self.until)

    def where(self, sources: Sequence[str]) -> dict[str, Any] | None:
        """The Chroma `where` clause, with sources resolved to their stored spelling."""
        clauses: list[dict[str, Any]] = []
        if self.sources:
            clauses.append({"source": {"$in": list(sources) or ["\x00no-such-source"]}})
        if self.since:
            clauses.append({"published_date": {"$gte": _date_key(self.since)}})
        if self.until:
            clauses.append({"published_date": {"$lte": _date_key(self.until)}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


@dataclass
class KeywordIndex:
    """BM25 over the chunks' search texts, with metadata arrays for filter masks."""

    table: ChunkTable
    bm25: Any
    sources: np.ndarray  # source name per chunk (object array)
    dates: np.ndarray  # YYYYMMDD per chunk, 0 when undated
    source_names: dict[str, str] = field(default_factory=dict)  # lower-case -> stored

    @classmethod
    def build(cls, table: ChunkTable, k1: float = 1.2, b: float = 0.75) -> KeywordIndex:
        import bm25s

        bm25 = bm25s.BM25(k1=k1, b=b)
        if len(table):
            corpus = [doc or ["\x00empty"] for doc in terms_many(table.texts)]
            bm25.index(corpus, show_progress=False)
        sources = np.array([str(m.get("source", "")) for m in table.metadatas], dtype=object)
        dates = np.array([int(m.get("published_date", 0)) for m in table.metadatas], dtype=np.int64)
        names = {str(s).lower(): str(s) for s in set(sources.tolist()) if s}
        return cls(table=table, bm25=bm25, sources=sources, dates=dates, source_names=names)

    def resolve_sources(self, wanted: Iterable[str]) -> list[str]:
        """Stored spellings of the wanted sources (case-insensitive)."""
        return [self.source_names[w.lower()] for w in wanted if w.lower() in self.source_names]

    def mask(self, filters: Filters) -> np.ndarray | None:
        if not filters.active:
            return None
        keep = np.ones(len(self.table), dtype=bool)
        if filters.sources:
            keep &= np.isin(self.sources, self.resolve_sources(filters.sources))
        if filters.since:
            keep &= self.dates >= _date_key(filters.since)
        if filters.until:
            keep &= (self.dates <= _date_key(filters.until)) & (self.dates > 0)
        return keep

    def search(
        self, query_terms: list[str], k: int, mask: np.ndarray | None
    ) -> list[tuple[int, float]]:
        """Top-k (row, score) pairs with a positive score, best first."""
        if not len(self.table) or not query_terms:
            return []
        vocab = self.bm25.vocab_dict
        known = [t for t in query_terms if t in vocab]
        if not known:
            return []
        scores = self.bm25.get_scores(known)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]


@dataclass(frozen=True)
class FusionWeights:
    """How much each retriever's rank counts; BM25 is the stronger one on news."""

    keyword: float = 1.0
    dense: float = 0.5
    rrf_k: int = 60
    candidates: int = 50  # per retriever, before fusion
    max_per_article: int = 2  # first pass of diversity; later slots fill in rank order


class Retriever:
    """Finds the passages for a question. Thread-safe: the keyword index is rebuilt under a lock."""

    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        settings: Settings,
        weights: FusionWeights | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.weights = weights or FusionWeights()
        self._keyword: KeywordIndex | None = None
        self._lock = threading.Lock()

    def keyword_index(self) -> KeywordIndex:
        """The BM25 index for the current revision of the store, built on first need."""
        revision = self.index.revision
        with self._lock:
            if self._keyword is None or self._keyword.table.revision != revision:
                self._keyword = KeywordIndex.build(self.index.all_chunks())
            return self._keyword

    def search(self, query: str, *, top_k: int, filters: Filters | None = None) -> list[Passage]:
        filters = filters or Filters()
        if not query.strip():
            raise InputError("question", "is empty")
        keyword = self.keyword_index()
        if not len(keyword.table):
            return []
        n = max(self.weights.candidates, top_k * 3)
        by_keyword = keyword.search(terms(query), n, keyword.mask(filters))
        where = filters.where(keyword.resolve_sources(filters.sources))
        by_dense = self.index.dense_search(self.embedder.embed_query(query), n, where)
        fused = self._fuse(keyword, by_keyword, by_dense)
        return diversify(fused, top_k, self.weights.max_per_article)

    def _fuse(
        self,
        keyword: KeywordIndex,
        by_keyword: list[tuple[int, float]],
        by_dense: list[Passage],
    ) -> list[Passage]:
        w = self.weights
        fused: dict[str, float] = {}
        passages: dict[str, Passage] = {}
        scores: dict[str, dict[str, float]] = {}
        for rank, (row, score) in enumerate(by_keyword):
            passage = keyword.table.passage(row, score)
            passages[passage.chunk_id] = passage
            scores.setdefault(passage.chunk_id, {})["bm25"] = score
            fused[passage.chunk_id] = fused.get(passage.chunk_id, 0.0) + w.keyword / (
                w.rrf_k + rank + 1
            )
        for rank, passage in enumerate(by_dense):
            passages.setdefault(passage.chunk_id, passage)
            scores.setdefault(passage.chunk_id, {})["dense"] = passage.score
            fused[passage.chunk_id] = fused.get(passage.chunk_id, 0.0) + w.dense / (
                w.rrf_k + rank + 1
            )
        ranked = sorted(fused, key=lambda cid: -fused[cid])
        return [
            passages[cid].model_copy(
                update={"score": fused[cid], "scores": {**scores[cid], "fused": fused[cid]}}
            )
            for cid in ranked
        ]


def diversify(ranked: list[Passage], top_k: int, max_per_article: int) -> list[Passage]:
    """Keep rank order but let no article take more than its share until others had a turn."""
    chosen: list[Passage] = []
    per_article: dict[str, int] = {}
    later: list[Passage] = []
    for passage in ranked:
        if per_article.get(passage.article_id, 0) < max_per_article:
            chosen.append(passage)
            per_article[passage.article_id] = per_article.get(passage.article_id, 0) + 1
        else:
            later.append(passage)
        if len(chosen) == top_k:
            return chosen
    return chosen + later[: top_k - len(chosen)]
