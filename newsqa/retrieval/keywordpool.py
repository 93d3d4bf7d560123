"""The first stage over a candidate pool from the persistent keyword index (issue 16).

On by default for an index with a keyword folder (NEWSQA_RETRIEVAL_POOL=0 turns it
off): cross-validated on MultiHop-RAG dev with the shipped ranker it is within
0.004 of the whole-collection path on Hits@4/10, MRR@10 and MAP@10, and ties it on
crowd questions about single stories (benchmarks/RESULTS.md, issue 16).

Why: the in-memory keyword index (keywords.KeywordIndex) covers every chunk, so
each write throws it away and the next search rebuilds it (minutes at 100k
chunks). Here a search asks the persistent index (keywordstore.py, tantivy) for
its best chunks under the caller's filters, and for each publisher or day the
question names, adds the dense hits and the leading articles' other chunks, reads
those chunks' stored records from the index, and builds a KeywordIndex over that
pool alone. The existing first stage, second stage and ranker features then run
unchanged, with one correction: BM25 and the ranker's IDF over a pool would count document
frequencies inside the pool (where every candidate holds the query's words), so
the query terms' weights are rescaled to the collection's frequencies, read from
the index (`doc_freq`, and phrase counts for word pairs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import RetrievalSettings
from ..store.index import ChunkTable
from .keywords import (
    Filters,
    KeywordIndex,
    SentenceIndex,
    SplitUnits,
    bigrams,
    date_key,
    idf_weight,
    query_terms,
)
from .query import SourceMatcher, parse_query

if TYPE_CHECKING:
    from ..store.keywordstore import KeywordStore


class CollectionFreq(Mapping[str, int]):
    """Chunk document frequencies of the whole collection, asked of the index on first need."""

    def __init__(self, store: KeywordStore) -> None:
        self._searcher = store.searcher()
        self._known: dict[str, int] = {}
        self.size = int(self._searcher.num_docs)

    def __getitem__(self, term: str) -> int:
        found = self._known.get(term)
        if found is None:
            found = self._known[term] = int(self._searcher.doc_freq("body", term))
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)


def pool_ids(
    store: KeywordStore, query: str, filters: Filters, dense: Sequence[tuple[str, float]],
    weights: RetrievalSettings, committed: Any,
) -> list[str]:
    """Chunk ids of the pool: keyword hits (overall and per named publisher/day), then dense."""
    found = query_terms(query, weights.drop_question_words)
    stored = store.sources()
    wanted = {s.lower() for s in filters.sources}
    sources = [s for s in stored if s.lower() in wanted] if filters.sources else []
    if filters.sources and not sources:
        return []
    since = date_key(filters.since) if filters.since else 0
    until = date_key(filters.until) if filters.until else 0
    ids = [cid for cid, _ in store.search(found, weights.pool_candidates, sources=sources,
                                          since=since, until=until)]
    if weights.hints and weights.mention_slots > 0:
        hints = parse_query(query, SourceMatcher(stored))
        for mention in hints.mentions():
            named = [s for s in mention.sources if not sources or s in sources]
            words = found + (query_terms(mention.clause, weights.drop_question_words)
                             if mention.clause else [])
            for srcs, day in _tries(named, mention.day):
                if day is not None:
                    key = date_key(day)
                    if (since and key < since) or (until and key > until):
                        continue
                    lo, hi = key, key
                else:
                    lo, hi = since, until
                ids += [cid for cid, _ in store.search(
                    words, weights.pool_mention_candidates, sources=srcs or sources,
                    since=lo, until=hi)]
    ids += [cid for cid, _ in dense]
    return [cid for cid in dict.fromkeys(ids) if cid in committed]


def _tries(sources: list[str], day: Any) -> list[tuple[list[str], Any]]:
    """The filters `search.mention_masks` would try for a mention, all at once."""
    if day is None:
        return [(sources, None)] if sources else []
    return [(sources, day), ([], day), (sources, None)] if sources else [([], day)]


@dataclass
class QueryBM25:
    """BM25 postings of a pool for the query's words only, with collection IDF.

    Stands in for a bm25s model where KeywordIndex reads one (`vocab_dict`, CSC
    `scores`, `k1`, `b`): indexing a pool of ~1,000 chunks and ~8,000 sentences with
    bm25s cost ~2 s a search, and would weigh words by the pool's own counts. The
    same Lucene formula as bm25s (idf x tf / (tf + k1 (1 - b + b dl/avgdl))), with
    document lengths averaged over the pool.
    """

    k1: float
    b: float
    vocab_dict: dict[str, int]
    scores: dict[str, Any]
    nonoccurrence_array: None = None

    @classmethod
    def build(cls, docs: Sequence[Sequence[str]], words: Sequence[str],
              idf: Callable[[str], float], k1: float, b: float) -> QueryBM25:
        vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
        lengths = np.fromiter((max(len(d), 1) for d in docs), dtype=np.float64, count=len(docs))
        norm = k1 * (1 - b + b * lengths / (lengths.mean() if len(docs) else 1.0))
        rows: list[list[int]] = [[] for _ in vocab]
        tfs: list[list[int]] = [[] for _ in vocab]
        for row, doc in enumerate(docs):
            if vocab.keys().isdisjoint(doc):
                continue
            counts: dict[int, int] = {}
            for token in doc:
                i = vocab.get(token)
                if i is not None:
                    counts[i] = counts.get(i, 0) + 1
            for i, tf in counts.items():
                rows[i].append(row)
                tfs[i].append(tf)
        data, indices, indptr = [], [], [0]
        for word, i in vocab.items():
            r = np.asarray(rows[i], dtype=np.int64)
            counted = np.asarray(tfs[i], dtype=np.float64)
            data.append(idf(word) * counted / (counted + norm[r]))
            indices.append(r)
            indptr.append(indptr[-1] + len(r))
        scores = {"data": np.concatenate(data) if data else np.zeros(0),
                  "indices": np.concatenate(indices) if indices else np.zeros(0, np.int64),
                  "indptr": np.asarray(indptr, dtype=np.int64), "num_docs": len(docs)}
        return cls(k1, b, vocab, scores)


def pool_index(
    store: KeywordStore, ids: list[str], weights: RetrievalSettings, committed: Any, revision: str,
    words: Sequence[str], freq: CollectionFreq,
) -> KeywordIndex:
    """A KeywordIndex over the pool and its leading articles' chunks, from the index's
    stored records (no Chroma read, no tokenising), BM25 for `words` with collection IDF."""
    rows = _pool_records(store, ids, weights, committed)
    chunk_terms, sentence_terms, owner = [], [], []
    for row, record in enumerate(rows):
        units = [u.split() for u in record.units]
        sentence_terms.extend(units[1:])
        owner.extend([row] * (len(units) - 1))
        chunk_terms.append([t for u in (units if record.tail else units[:1]) for t in u])
    table = ChunkTable(ids=[r.chunk_id for r in rows], texts=[r.text for r in rows],
                       metadatas=[r.metadata for r in rows], revision=revision)
    k1, b = weights.bm25_k1, weights.bm25_b

    def idf(word: str) -> float:
        return idf_weight(freq.get(word, 0), freq.size)

    pairs = pair_counts(store, words)

    def pair_idf(pair: str) -> float:
        return idf_weight(pairs.get(pair, 0), freq.size)

    owners = np.asarray(owner, dtype=np.int64)
    chunk_rows, starts = np.unique(owners, return_index=True)
    sentences = SentenceIndex(bm25=QueryBM25.build(sentence_terms, words, idf, k1, b),
                              owner=owners, starts=starts, chunk_rows=chunk_rows, size=len(rows))
    wanted = set(words)  # a chunk holding none of the query's words holds none of its pairs
    pair_docs = ([bigrams(d) if not wanted.isdisjoint(d) else [] for d in chunk_terms]
                 if weights.bigram_weight else [])
    keyword = KeywordIndex.assemble(
        table, QueryBM25.build(chunk_terms, words, idf, k1, b),
        _split=SplitUnits(chunk_terms, sentence_terms, owner), _sentences=sentences,
        _bigrams=QueryBM25.build(pair_docs, list(pairs), pair_idf, k1, b),
    )
    keyword._doc_freq = freq  # the ranker's IDF: collection counts
    keyword._corpus_size = freq.size
    return keyword


def _pool_records(
    store: KeywordStore, ids: list[str], weights: RetrievalSettings, committed: Any
) -> list[Any]:
    """The pool's records in pool order, then up to `rerank_max` chunks of leading articles."""
    leading = list(dict.fromkeys(cid.rsplit(":", 2)[0] for cid in ids))[: weights.rerank_articles]
    records = {r.chunk_id: r for r in store.records(ids, leading) if r.chunk_id in committed}
    asked = set(ids)
    position = {article: i for i, article in enumerate(leading)}
    extra = sorted((r for cid, r in records.items() if cid not in asked),
                   key=lambda r: (position.get(str(r.metadata.get("article_id", "")), 0),
                                  int(r.metadata.get("chunk_index", 0))))
    return [records[cid] for cid in ids if cid in records] + extra[: weights.rerank_max]


def pair_counts(store: KeywordStore, words: Sequence[str]) -> dict[str, int]:
    """Chunks holding each adjacent pair of the query's words, counted by phrase queries."""
    out: dict[str, int] = {}
    for pair in dict.fromkeys(bigrams(list(words))):
        a, b = pair.split("_", 1)
        out[pair] = store.phrase_count([a, b])
    return out
