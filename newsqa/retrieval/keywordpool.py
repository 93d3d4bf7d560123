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

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import RetrievalSettings
from ..store.index import ChunkTable, Committed
from ..store.keywordstore import PoolRecord
from .keywords import (
    Filters,
    KeywordIndex,
    SentenceIndex,
    SentenceTerms,
    bigrams,
    date_key,
    idf_weight,
    match_sources,
    query_terms,
)
from .query import matcher_for, parse_query

if TYPE_CHECKING:
    from ..store.keywordstore import KeywordStore


class CollectionFreq(Mapping[str, int]):
    """Chunk document frequencies of the whole collection, asked of the index on first need."""

    def __init__(self, store: KeywordStore) -> None:
        self._store = store
        self._searcher = store.searcher()
        self._known: dict[str, int] = {}
        self._pairs: dict[str, int] = {}
        self.size = int(self._searcher.num_docs)
        self._idf = np.zeros(0)  # by term id of `_idf_of`, NaN until first asked
        self._idf_of: list[str] | None = None
        self._lock = threading.Lock()

    def idf_of_ids(self, ids: np.ndarray, terms: list[str]) -> np.ndarray:
        """BM25 IDF of term ids numbered by `terms` (a RecordCache vocabulary), kept by id.

        The ranker weighs every distinct term of a pool (~5,000) and one lookup each
        was ~12 ms of a search (benchmarks/RESULTS.md); by id it is one numpy gather
        once a term has been seen. A fresh vocabulary starts a fresh table.
        """
        with self._lock:
            if self._idf_of is not terms:
                self._idf_of, self._idf = terms, np.zeros(0)
            if len(self._idf) < len(terms):
                grown = np.full(len(terms), np.nan)
                grown[: len(self._idf)] = self._idf
                self._idf = grown
            for i in np.unique(ids[np.isnan(self._idf[ids])]).tolist():
                self._idf[i] = idf_weight(self[terms[i]], self.size)
            return self._idf[ids]

    def __getitem__(self, term: str) -> int:
        found = self._known.get(term)
        if found is None:
            found = self._known[term] = int(self._searcher.doc_freq("body", term))
        return found

    def pair_count(self, pair: str) -> int:
        """Chunks holding a word pair (`first_second`) next to each other, by a phrase query,
        kept like the terms' counts: MultiHop-RAG's dev questions repeat half their pairs,
        and each query was ~0.4 ms of the ~25 a search asks at 100k chunks."""
        found = self._pairs.get(pair)
        if found is None:
            found = self._store.phrase_count(pair.split("_", 1), self._searcher)
            self._pairs[pair] = found
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)


def pool_ids(
    store: KeywordStore, query: str, filters: Filters, dense: Sequence[tuple[str, float]],
    weights: RetrievalSettings, committed: Committed,
) -> list[str]:
    """Chunk ids of the pool: keyword hits (overall and per named publisher/day), then dense."""
    found = query_terms(query, weights.drop_question_words)
    stored = store.sources()
    sources = match_sources(filters.sources, stored) if filters.sources else []
    if filters.sources and not sources:
        return []
    since = date_key(filters.since) if filters.since else 0
    until = date_key(filters.until) if filters.until else 0
    ids = [cid for cid, _ in store.search(found, weights.pool_candidates, sources=sources,
                                          since=since, until=until)]
    if weights.hints and weights.mention_slots > 0:
        hints = parse_query(query, matcher_for(stored))
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
    def build(cls, tokens: np.ndarray, doc_of: np.ndarray, lengths: np.ndarray,
              words: Sequence[str], word_ids: Sequence[int], idf: np.ndarray,
              k1: float, b: float) -> QueryBM25:
        """BM25 for `words` over documents given as term ids (`tokens`, each one's document
        in `doc_of`, ascending), `lengths` the documents' lengths and `idf` one per word.

        `word_ids[i]` is word i's id in the tokens' vocabulary (-1: in no document).
        Numpy throughout: a Python loop over the pool's ~300k tokens was a fifth of a search.
        """
        vocab = {w: i for i, w in enumerate(words)}
        n = len(lengths)
        dl = np.maximum(lengths, 1).astype(np.float64)
        norm = k1 * (1 - b + b * dl / (dl.mean() if n else 1.0))
        cols, rows, tfs = _term_counts(tokens, doc_of, np.asarray(word_ids, dtype=np.int64), n)
        data = idf[cols] * tfs / (tfs + norm[rows])
        indptr = np.searchsorted(cols, np.arange(len(vocab) + 1))
        scores = {"data": data, "indices": rows, "indptr": indptr.astype(np.int64),
                  "num_docs": n}
        return cls(k1, b, vocab, scores)

    @classmethod
    def empty(cls, k1: float, b: float) -> QueryBM25:
        return cls(k1, b, {}, {"data": np.zeros(0), "indices": np.zeros(0, np.int64),
                               "indptr": np.zeros(1, np.int64), "num_docs": 0})


def _term_counts(
    tokens: np.ndarray, doc_of: np.ndarray, word_ids: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(word column, document, count) of each word in each document that holds it,
    by column then document."""
    columns = np.flatnonzero(word_ids >= 0)
    if not len(columns) or not len(tokens):
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    known = word_ids[columns]
    order = np.argsort(known)
    keep = np.isin(tokens, known)
    column = columns[order[np.searchsorted(known[order], tokens[keep])]]
    width = max(n, 1)
    pairs, counts = np.unique(column * width + doc_of[keep], return_counts=True)
    return pairs // width, pairs % width, counts.astype(np.float64)


def pool_index(
    store: KeywordStore, ids: list[str], weights: RetrievalSettings, committed: Committed,
    words: Sequence[str], freq: CollectionFreq, cache: RecordCache,
) -> KeywordIndex:
    """A KeywordIndex over the pool and its leading articles' chunks, from the index's
    stored records (no Chroma read, no tokenising), BM25 for `words` with collection IDF."""
    docs, vocab, terms = _pool_docs(store, ids, weights, committed, cache)
    rows = [d.record for d in docs]
    table = ChunkTable(ids=[r.chunk_id for r in rows], texts=[r.text for r in rows],
                       metadatas=[r.metadata for r in rows], revision=committed.revision)
    k1, b = weights.bm25_k1, weights.bm25_b
    pool = PoolTokens.of(docs)
    sentence_terms, global_ids = pool.sentence_terms(terms)
    unique = list(dict.fromkeys(words))
    word_ids = [vocab.get(w, -1) for w in unique]
    idf = np.asarray([idf_weight(freq.get(w, 0), freq.size) for w in unique])
    sentences = SentenceIndex(
        bm25=QueryBM25.build(pool.sentences, pool.sentence_of, pool.sentence_lengths, unique,
                             word_ids, idf, k1, b),
        owner=pool.owner, starts=pool.first_sentence, chunk_rows=pool.rows_with_sentences,
        size=len(rows))
    keyword = KeywordIndex.assemble(
        table, QueryBM25.build(pool.chunks, pool.chunk_of, pool.chunk_lengths, unique, word_ids,
                               idf, k1, b),
        _sentences=sentences, _sentence_ids=sentence_terms,
        _matcher=matcher_for(store.sources()).within(r.metadata.get("source", "") for r in rows),
        _bigrams=_pair_bm25(pool, words, vocab, freq, weights)
        if weights.bigram_weight else QueryBM25.empty(k1, b),
    )
    keyword._doc_freq = freq  # the ranker's IDF: collection counts
    keyword._corpus_size = freq.size
    keyword._term_idf = freq.idf_of_ids(global_ids, terms)
    return keyword


def _pair_bm25(
    pool: PoolTokens, words: Sequence[str], vocab: Mapping[str, int], freq: CollectionFreq,
    weights: RetrievalSettings,
) -> QueryBM25:
    """BM25 over adjacent pairs of the chunks' terms for the query's pairs, with
    collection IDF from phrase counts. A chunk holding none of the query's words counts
    as empty, as `KeywordIndex` counts it (it holds none of the query's pairs either).

    Only the pairs some chunk of the pool holds are counted: another pair's IDF weighs
    nothing, and its phrase query was most of the ~28 ms a search spent counting at 1M
    chunks (~22 pairs a question, ~1 ms each).
    """
    pairs = list(dict.fromkeys(bigrams(list(words))))
    where = {w: vocab.get(w, -1) for w in words}
    word_ids = list(where.values())
    size = int(max(word_ids, default=-1)) + 1
    ends = [(where.get(a, -1), where.get(b, -1)) for a, b in (p.split("_", 1) for p in pairs)]
    pair_ids = [x * size + y if x >= 0 and y >= 0 else -1 for x, y in ends]
    t, d = pool.chunks, pool.chunk_of
    inside = d[:-1] == d[1:]  # no pair across two chunks
    first, second = t[:-1][inside], t[1:][inside]
    useful = (first < size) & (second < size)  # both could be query words
    keys = np.where(useful, first * size + second, -1)
    holds = np.zeros(len(pool.chunk_lengths), dtype=bool)
    holds[d[np.isin(t, [i for i in word_ids if i >= 0])]] = True
    lengths = np.where(holds, np.maximum(pool.chunk_lengths - 1, 0), 0)
    held = set(np.unique(keys[np.isin(keys, [i for i in pair_ids if i >= 0])]).tolist())
    idf = np.asarray([idf_weight(freq.pair_count(p), freq.size) if i in held else 0.0
                      for p, i in zip(pairs, pair_ids, strict=True)])
    return QueryBM25.build(keys, d[:-1][inside], lengths, pairs, pair_ids, idf,
                           weights.bm25_k1, weights.bm25_b)


@dataclass
class PoolTokens:
    """The pool's chunks and sentences as term ids, flat, with what belongs to what."""

    chunks: np.ndarray
    chunk_of: np.ndarray
    chunk_lengths: np.ndarray
    sentences: np.ndarray
    sentence_of: np.ndarray
    sentence_lengths: np.ndarray
    owner: np.ndarray  # the chunk row of each sentence
    first_sentence: np.ndarray
    rows_with_sentences: np.ndarray
    distinct: np.ndarray  # each sentence's distinct terms, ascending, one after another
    distinct_lengths: np.ndarray

    @classmethod
    def of(cls, docs: Sequence[PoolDoc]) -> PoolTokens:
        chunk_lengths = np.asarray([len(d.chunk) for d in docs], dtype=np.int64)
        sentence_lengths = (np.concatenate([d.lengths for d in docs]) if docs
                            else np.zeros(0, np.int64))
        per_chunk = np.asarray([len(d.lengths) for d in docs], dtype=np.int64)
        owner = np.repeat(np.arange(len(docs)), per_chunk)
        rows, starts = np.unique(owner, return_index=True)
        return cls(
            chunks=_joined([d.chunk for d in docs]),
            chunk_of=np.repeat(np.arange(len(docs)), chunk_lengths),
            chunk_lengths=chunk_lengths,
            sentences=_joined([d.sentences for d in docs]),
            sentence_of=np.repeat(np.arange(len(sentence_lengths)), sentence_lengths),
            sentence_lengths=sentence_lengths, owner=owner, first_sentence=starts,
            rows_with_sentences=rows, distinct=_joined([d.distinct for d in docs]),
            distinct_lengths=_joined([d.distinct_lengths for d in docs]))

    def sentence_terms(self, terms: Sequence[str]) -> tuple[SentenceTerms, np.ndarray]:
        """Each sentence's distinct terms, numbered within the pool, as the ranker reads them;
        and the vocabulary id of each pool number."""
        present = np.zeros(len(terms), dtype=bool)
        present[self.distinct] = True
        found = np.flatnonzero(present)
        number = np.zeros(len(terms), dtype=np.int64)
        number[found] = np.arange(len(found))
        local = number[self.distinct]  # ascending within each sentence, as ids are
        offsets = np.concatenate([[0], np.cumsum(self.distinct_lengths)])
        vocab = {terms[g]: i for i, g in enumerate(found.tolist())}
        return SentenceTerms(vocab, local.astype(np.int64), offsets.astype(np.int64)), found


def _joined(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if len(arrays) else np.zeros(0, np.int64)


def _pool_docs(
    store: KeywordStore, ids: list[str], weights: RetrievalSettings, committed: Committed,
    cache: RecordCache,
) -> tuple[list[PoolDoc], dict[str, int], list[str]]:
    """The pool's records in pool order, then up to `rerank_max` chunks of leading articles,
    with the vocabulary their term ids number.

    Pool ids are committed ids, so each leading article's committed version is the one
    they name, and the manifest says its chunk ids: only the records the pool keeps are read and
    decoded (reading the leading articles whole, then dropping past `rerank_max`, was
    ~900 decoded records a search at 100k chunks for ~650 kept).
    """
    leading = list(dict.fromkeys(cid.rsplit(":", 2)[0] for cid in ids))[: weights.rerank_articles]
    asked = set(ids)
    extra = [cid for article_id in leading for cid in committed.chunk_ids(article_id)
             if cid not in asked][: weights.rerank_max]
    docs, vocab, terms = cache.read(store, [*ids, *extra])
    return [docs[cid] for cid in [*ids, *extra] if cid in docs], vocab, terms


@dataclass(frozen=True)
class PoolDoc:
    """A stored record with its terms as ids of the cache's vocabulary (~7.5 KB a chunk)."""

    record: PoolRecord
    chunk: np.ndarray  # the chunk's terms, as BM25 over chunks reads them
    sentences: np.ndarray  # its sentences' terms, one sentence after another
    lengths: np.ndarray  # terms per sentence
    distinct: np.ndarray  # each sentence's distinct terms, ascending (the ranker's table)
    distinct_lengths: np.ndarray

    @classmethod
    def of(cls, record: PoolRecord, ids: Callable[[list[str]], np.ndarray]) -> PoolDoc:
        """One vocabulary pass and one sort for the whole record: at 100k chunks most of a
        pool is read afresh (~900 records a search), and a pass and a sort per sentence
        were most of the search (benchmarks/RESULTS.md)."""
        split = [u.split() for u in record.units]
        every = ids([t for unit in split for t in unit])
        head = len(split[0])
        chunk = every if record.tail else every[:head]
        sentences = every[head:]
        lengths = np.asarray([len(u) for u in split[1:]], dtype=np.int64)
        # Each sentence's distinct terms, ascending: unique (sentence, term) keys.
        width = int(sentences.max()) + 1 if len(sentences) else 1
        keys = np.repeat(np.arange(len(lengths)), lengths) * width + sentences
        keys.sort()
        if len(keys):
            first = np.empty(len(keys), dtype=bool)
            first[0] = True
            np.not_equal(keys[1:], keys[:-1], out=first[1:])
            keys = keys[first]
        distinct_lengths = np.bincount(keys // width, minlength=len(lengths))
        # The unit strings are kept only as the ids above (half a record's memory).
        kept = PoolRecord(record.chunk_id, record.text, record.metadata, [], record.tail)
        return cls(kept, chunk, sentences, lengths, keys % width, distinct_lengths)


class RecordCache:
    """Parsed pool records by chunk id, kept across one Retriever's searches.

    Reading ~350 records from the index, decoding their JSON and splitting their
    units was a quarter of a pool search (benchmarks/RESULTS.md, issue 16). A chunk
    id names its article's content hash (`store.index.chunk_id`), so the record
    under an id never changes: the cache needs a bound, never an invalidation
    (ids a write retires are simply no longer asked for).

    Terms are numbered in one vocabulary the cached records share. It only grows, so
    once it holds `max_terms` (an archive read far beyond the cache's records) the
    cache starts afresh with a new one; a search holding the old one keeps it whole.
    """

    def __init__(self, max_chunks: int, max_terms: int | None = None) -> None:
        self.max_chunks = max_chunks
        self.max_terms = max_terms if max_terms is not None else max(100_000, 50 * max_chunks)
        self._docs: OrderedDict[str, PoolDoc] = OrderedDict()
        self.vocab: dict[str, int] = {}  # every term of the cached records, numbered
        self.terms: list[str] = []
        self._lock = threading.Lock()

    def read(
        self, store: KeywordStore, chunk_ids: Sequence[str]
    ) -> tuple[dict[str, PoolDoc], dict[str, int], list[str]]:
        """The records of these chunks by chunk id, and the vocabulary their term ids
        number (taken under the same lock: another thread may start a fresh one right
        after). One index read for those not cached, none when all are."""
        with self._lock:
            if len(self.terms) > self.max_terms:
                self._docs.clear()
                self.vocab, self.terms = {}, []
            missing = [c for c in chunk_ids if c not in self._docs]
            if missing:
                for record in store.records(missing):
                    self._docs[record.chunk_id] = PoolDoc.of(record, self._ids)
            docs = {c: self._docs[c] for c in chunk_ids if c in self._docs}
            for cid in docs:
                self._docs.move_to_end(cid)
            while len(self._docs) > self.max_chunks:
                self._docs.popitem(last=False)
            return docs, self.vocab, self.terms

    def _ids(self, found: list[str]) -> np.ndarray:
        vocab, terms = self.vocab, self.terms
        out = list(map(vocab.get, found))
        if None in out:  # new terms: the next ids, in order of first appearance
            for term in [t for t in dict.fromkeys(found) if t not in vocab]:
                vocab[term] = len(terms)
                terms.append(term)
            out = list(map(vocab.__getitem__, found))
        return np.fromiter(out, dtype=np.int64, count=len(out))
