"""Hybrid retrieval: BM25 keywords + dense vectors, filtered, fused, diversified.

Why this shape (each choice measured on MultiHop-RAG dev ids with
benchmarks/retrieval_levers.py; the table is in benchmarks/RESULTS.md):

- BM25 over chunks with a title/source/date header beats the small dense model
  on news (names, numbers and publishers are exact-match facts). The keyword
  score of a chunk also counts its best single sentence (an evidence fact is
  one sentence among ten) and adjacent word pairs ("class action").
- Dense vectors rescue paraphrases but rank worse, so they enter a convex
  combination of normalised scores with a small weight; plain reciprocal-rank
  fusion let the weaker retriever drag the stronger one down.
- Questions name publishers and days ("as reported by The Verge", "published on
  October 7, 2023"). Each named publisher/day gets its own sub-ranking, weighted
  toward the words about it, and the results take turns at the top, so every
  evidence article gets a slot. Derived filters never override the caller's
  and are dropped when they would keep nothing.
- That first stage ranks *an* evidence chunk first often but rarely *all* of a
  question's facts near the top, so a learned second stage (rerank.py) reorders
  its best 70 plus the other chunks of their leading articles, weighing the same
  signals per candidate and against the rest of its article. A one-part question
  naming no publisher or day (a reader's question about one story) keeps the first
  stage's order: the ranker learned from other questions (`single_story`).

Filters (sources, date range) run inside Chroma for the dense side and as a
mask over the same metadata for the keyword side, so both see the same corpus.
"""


from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import RetrievalSettings, Settings
from ..errors import InputError
from ..models import Passage
from ..store.index import Committed, in_flight
from ..threads import one_blas_thread
from . import keywordcache, keywordpool
from .keywords import Filters, KeywordIndex, date_key, query_terms, top_rows
from .query import Mention, QueryHints, matcher_for, parse_query
from .rerank import (
    MODEL_FILE,
    FirstStage,
    MentionRanking,
    build_features,
    load_ranker,
    segments,
)

if TYPE_CHECKING:
    from ..store.embedding import Embedder
    from ..store.index import Index
    from ..store.keywordstore import KeywordStore


@dataclass
class Ranked:
    """A fused ranking of table rows, with each retriever's score kept for explanations."""

    rows: list[int]
    fused: dict[int, float]
    parts: dict[int, dict[str, float]]


class Retriever:
    """Finds the passages for a question. Thread-safe: the keyword index is rebuilt under a lock."""

    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        settings: Settings,
        weights: RetrievalSettings | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.weights = weights or settings.retrieval  # the levers: read once, with the settings
        self._keyword: KeywordIndex | None = None
        self._freq: tuple[str, keywordpool.CollectionFreq] | None = None
        self._records = keywordpool.RecordCache(self.weights.pool_cache_chunks)
        self._lock = threading.Lock()

    def keyword_index(self) -> KeywordIndex:
        """The BM25 index for the current revision of the store, built on first need.

        At a clean revision the revision settles it (no other read). At an in-flight
        one (see newsqa.index) a write may have committed since the index was built
        without the revision moving, and stays so if the writer was killed before
        its last bump: each call then compares the content key (~12 ms) as well.
        """
        revision = self.index.revision
        with self._lock:
            held, content = self._keyword, None
            if held is not None and held.table.revision == revision:
                if not in_flight(revision):
                    return held
                content = self.index.content_key()
                if content == held.table.content_key:
                    return held
            self._keyword = self._saved_or_built(revision, content)
            return self._keyword

    def _saved_or_built(self, revision: str, content: str | None = None) -> KeywordIndex:
        """The index saved for the committed articles at this revision, else a new one saved.

        Keyed on the manifest's content (Index.content_key) as well as the revision:
        a writer killed after a commit but before its revision bump leaves the
        revision as it was, and the index saved for it must not be reused then.
        A new index is saved under the key of what it was built from, which a
        write between reading the key and building may have moved on.
        """
        folder = keywordcache.cache_folder(self.settings)
        shape = self.weights.keyword_build()
        content = self.index.content_key() if content is None else content
        key = keywordcache.cache_key(content, revision, shape)
        saved = keywordcache.load(folder, key)
        if saved is not None and saved.table.revision == revision:
            return saved
        built = self._build_keyword_index()
        table = built.table
        keywordcache.save(folder, keywordcache.cache_key(table.content_key, table.revision, shape),
                          built)
        return built

    def _build_keyword_index(self) -> KeywordIndex:
        keyword = KeywordIndex.build(
            self.index.all_chunks(), k1=self.weights.bm25_k1, b=self.weights.bm25_b
        )
        keyword.prepare(self.weights)
        return keyword

    @one_blas_thread()
    def search(self, query: str, *, top_k: int, filters: Filters | None = None) -> list[Passage]:
        filters = filters or Filters()
        if not query.strip():
            raise InputError("question", "is empty")
        if self.weights.pool and self.index.keywords is not None:
            return self._pool_search(self.index.keywords, query, top_k, filters)
        keyword = self.keyword_index()
        if not len(keyword.table):
            return []
        n = max(self.weights.dense_candidates, self.weights.candidates, top_k * 3)
        where = filters.where(keyword.resolve_sources(filters.sources))
        by_dense = (  # NEWSQA_RETRIEVAL_DENSE=0 saves the query embedding (most of the latency)
            self.index.dense_ids(self.embedder.embed_query(query), n, where, keyword.rows)
            if self.weights.dense > 0
            else []
        )
        return self.rank(keyword, query, by_dense, top_k=top_k, filters=filters)

    def _pool_search(
        self, store: KeywordStore, query: str, top_k: int, filters: Filters
    ) -> list[Passage]:
        """`search` over a pool from the persistent keyword index (see keywordpool.py)."""
        with store.snapshot():
            return self._pool_search_in(store, query, top_k, filters)

    def _pool_search_in(
        self, store: KeywordStore, query: str, top_k: int, filters: Filters
    ) -> list[Passage]:
        w = self.weights
        committed = self.index.committed()
        wanted = {s.lower() for s in filters.sources}
        where = filters.where([s for s in store.sources() if s.lower() in wanted])
        n = max(w.dense_candidates, w.candidates, top_k * 3)
        by_dense = (self.index.dense_ids(self.embedder.embed_query(query), n, where, committed)
                    if w.dense > 0 else [])
        keyword = self.pool_keyword(store, query, filters, by_dense, committed)
        if not len(keyword.table):
            return []
        return self.rank(keyword, query, by_dense, top_k=top_k, filters=filters)

    def pool_keyword(
        self, store: KeywordStore, query: str, filters: Filters,
        by_dense: Sequence[tuple[str, float]], committed: Committed | None = None,
    ) -> KeywordIndex:
        """The KeywordIndex over one question's pool (benchmarks reuse it with their own hits)."""
        w = self.weights
        committed = self.index.committed() if committed is None else committed
        ids = keywordpool.pool_ids(store, query, filters, by_dense, w, committed)
        words = query_terms(query, w.drop_question_words)
        hints = parse_query(query, matcher_for(store.sources()))
        for mention in hints.mentions():  # the first stage scores each clause's words too
            words = words + query_terms(mention.clause, w.drop_question_words)
        return keywordpool.pool_index(store, ids, w, committed, words,
                                      self._collection_freq(store, committed.revision),
                                      self._records)

    def _collection_freq(self, store: KeywordStore, revision: str) -> keywordpool.CollectionFreq:
        """Collection document frequencies, kept while the index's revision holds."""
        with self._lock:
            held = self._freq
            if held is None or held[0] != revision:
                held = self._freq = (revision, keywordpool.CollectionFreq(store))
            return held[1]

    def rank(
        self,
        keyword: KeywordIndex,
        query: str,
        by_dense: Sequence[tuple[str, float]],
        *,
        top_k: int,
        filters: Filters,
    ) -> list[Passage]:
        """Everything after the dense query (chunk id, cosine pairs): benchmarks reuse those."""
        stage = self.first_stage(keyword, query, by_dense, filters)
        if not self.weights.rerank:
            return self._passages(keyword, stage, stage.order, top_k)
        single = single_story(stage)
        weight = self.weights.rerank_single  # see RetrievalSettings.rerank_single
        if single and weight <= 0:
            return self._passages(keyword, stage, stage.order, top_k)
        rows, features = self.candidates(keyword, stage)
        ranker = load_ranker(Path(self.weights.ranker) if self.weights.ranker else MODEL_FILE)
        ranked = ranker.ranked(rows, features)
        if single and weight < 1:
            ranked = blend(rows, ranked, weight)
        second = dict(ranked)  # kept in Passage.scores["rerank"], to explain an order
        rest = [r for r in stage.order if r not in second]  # past the pool: first stage's order
        return self._passages(keyword, stage, [r for r, _ in ranked] + rest, top_k, second)

    def candidates(self, keyword: KeywordIndex, stage: FirstStage) -> tuple[list[int], np.ndarray]:
        """The second stage's pool (first stage's best, spread over articles) and its features."""
        order = diversify(stage.order, [keyword.article_of(r) for r in stage.order],
                          self.weights.rerank_pool, self.weights.max_per_article)
        order += whole_articles(keyword, order, self.weights.rerank_articles, stage.base,
                                self.weights.rerank_max)
        return build_features(keyword, replace(stage, order=order))

    def first_stage(
        self, keyword: KeywordIndex, query: str, by_dense: Sequence[tuple[str, float]],
        filters: Filters,
    ) -> FirstStage:
        """Fused keyword + dense ranking, with a turn at the top for each named publisher/day."""
        w = self.weights
        found = query_terms(query, w.drop_question_words)
        chunk, sentence, pairs, scores = self._keyword_parts(keyword, found)
        base = keyword.mask(filters)
        rows = keyword.rows
        dense = [(rows[cid], score) for cid, score in by_dense if cid in rows]
        overall = self._fuse(scores, dense, base)
        mentions: list[MentionRanking] = []
        if w.hints and w.mention_slots > 0:
            hints = parse_query(query, keyword.matcher)
            for mention, mask in mention_masks(keyword, hints, base, w):
                sub, clause_chunk, clause_sentence = scores, None, None
                if w.clause_weight and mention.clause and scores is not None:
                    clause_chunk, clause_sentence, _, extra = self._keyword_parts(
                        keyword, query_terms(mention.clause, w.drop_question_words)
                    )
                    if extra is not None:
                        sub = scores + w.clause_weight * extra
                own = dense if w.dense_in_mentions else []
                ranking = self._fuse(sub, own, mask).rows
                mentions.append(
                    MentionRanking(mention, mask, clause_chunk, clause_sentence, ranking)
                )
        order = interleave([*(m.ranking[: w.mention_slots] for m in mentions), overall.rows])
        return FirstStage(
            question=query, question_terms=found, order=order, chunk=chunk, sentence=sentence,
            pairs=pairs, dense=dict(dense), mentions=mentions, base=base,
            fused=overall.fused, parts=overall.parts,
        )

    def _passages(
        self, keyword: KeywordIndex, stage: FirstStage, order: Sequence[int], top_k: int,
        second: Mapping[int, float] | None = None,
    ) -> list[Passage]:
        rows = diversify(order, [keyword.article_of(r) for r in order], top_k,
                         self.weights.max_per_article)
        out = []
        for row in rows:
            fused = stage.fused.get(row, 0.0)
            scores = {**stage.parts.get(row, {}), "fused": fused}
            if second is not None and row in second:
                scores["rerank"] = second[row]
            out.append(keyword.table.passage(row, fused).model_copy(update={"scores": scores}))
        return out

    def _keyword_parts(
        self, keyword: KeywordIndex, found: list[str]
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """BM25 of the chunk, of its best sentence, of word pairs; and their weighted sum."""
        w = self.weights
        chunk = keyword.scores(found)
        if chunk is None:
            return None, None, None, None
        sentence = keyword.sentences().best(found) if w.sentence_weight else None
        pairs = keyword.bigram_scores(found) if w.bigram_weight else None
        total = chunk
        if sentence is not None:
            total = total + w.sentence_weight * sentence
        if pairs is not None:
            total = total + w.bigram_weight * pairs
        if w.title_weight:
            titles = keyword.title_scores(found)
            if titles is not None:
                total = total + w.title_weight * titles
        return chunk, sentence, pairs, total

    def _fuse(
        self,
        scores: np.ndarray | None,
        dense: list[tuple[int, float]],
        mask: np.ndarray | None,
    ) -> Ranked:
        w = self.weights
        by_keyword = top_rows(scores, w.candidates, mask)
        if mask is not None:
            dense = [(row, s) for row, s in dense if mask[row]]
        if w.fusion == "convex":
            return _convex(by_keyword, dense, scores, w)
        return _rrf(by_keyword, dense, w)


def _rrf(by_keyword: list[tuple[int, float]], dense: list[tuple[int, float]],
         w: RetrievalSettings) -> Ranked:
    """Weighted reciprocal-rank fusion: only ranks count, so scales never clash."""
    fused: dict[int, float] = {}
    parts: dict[int, dict[str, float]] = {}
    for name, weight, hits in (("bm25", w.keyword, by_keyword), ("dense", w.dense, dense)):
        for rank, (row, score) in enumerate(hits):
            parts.setdefault(row, {})[name] = score
            fused[row] = fused.get(row, 0.0) + weight / (w.rrf_k + rank + 1)
    return Ranked(sorted(fused, key=lambda r: -fused[r]), fused, parts)


def _convex(by_keyword: list[tuple[int, float]], dense: list[tuple[int, float]],
            scores: np.ndarray | None, w: RetrievalSettings) -> Ranked:
    """Weighted sum of scores scaled to [0, 1]: keeps how far apart candidates are."""
    top_bm25 = by_keyword[0][1] if by_keyword else 0.0
    cos = [s for _, s in dense]
    lo, hi = (min(cos), max(cos)) if cos else (0.0, 0.0)
    span = hi - lo or 1.0
    dense_norm = {row: (s - lo) / span for row, s in dense}
    parts: dict[int, dict[str, float]] = {}
    for row, score in by_keyword:
        parts.setdefault(row, {})["bm25"] = score
    for row, score in dense:
        parts.setdefault(row, {})["dense"] = score
    fused = {}
    for row in parts:
        bm25 = float(scores[row]) if scores is not None else 0.0
        fused[row] = (w.keyword * (bm25 / top_bm25 if top_bm25 else 0.0)
                      + w.dense * dense_norm.get(row, 0.0))
    return Ranked(sorted(fused, key=lambda r: -fused[r]), fused, parts)


def mention_masks(
    keyword: KeywordIndex, hints: QueryHints, base: np.ndarray | None, w: RetrievalSettings
) -> list[tuple[Mention, np.ndarray]]:
    """One chunk mask per publisher or day the question names, inside the caller's filters.

    A derived filter may be wrong (a day the paper did not publish on, a name
    that is also a word), so one that keeps too few chunks falls back to a
    looser one and is dropped when even that keeps too few.
    """
    out = []
    everything = np.ones(len(keyword.table), dtype=bool) if base is None else base
    for mention in hints.mentions():
        by_source = (
            np.isin(keyword.sources, list(mention.sources)) if mention.sources else everything
        )
        tries = [by_source]
        if mention.day is not None:
            on_day = keyword.dates == date_key(mention.day)
            tries = [by_source & on_day, on_day, by_source] if mention.sources else [on_day]
        for candidate in tries:
            mask = candidate & everything
            if int(mask.sum()) >= w.mention_min_chunks and not candidate.all():
                out.append((mention, mask))
                break
    return out


def whole_articles(
    keyword: KeywordIndex, order: Sequence[int], first: int, base: np.ndarray | None,
    limit: int | None = None,
) -> list[int]:
    """The other chunks of the articles among the first passages, inside the caller's filters.

    Most of the second stage's misses are the right article's wrong chunk: the fact
    sits in a neighbour the first stage ranked out of the pool, so the pool takes
    those articles whole and the ranker compares chunks within each article. An
    article that would take the pool past `limit` is left out, with all after it:
    the second stage's cost grows with the pool, and long articles at scale would
    otherwise fill it with one story's chunks.
    """
    taken = set(order)
    out: list[int] = []
    for article in dict.fromkeys(keyword.article_of(r) for r in order[:first]):
        rows = [r for r in keyword.article_rows(article)
                if r not in taken and (base is None or base[r])]
        if limit is not None and len(taken) + len(rows) > limit:
            break
        out += rows
        taken.update(rows)
    return out


def single_story(stage: FirstStage) -> bool:
    """A reader's question about one story: it names no publisher or day and asks one thing.

    The ranker learned from MultiHop-RAG's questions, which name publishers or days
    (1,132 of 1,139 dev questions) or ask for several facts (all of the other 7). On
    crowd questions about single stories ("Who was sentenced to death in February?")
    it put the answer chunk below where the first stage had it, while on MultiHop-RAG
    questions stripped of their publishers and dates it still helped a lot
    (benchmarks/RESULTS.md, issue 16): what sets the two apart is the parts.
    """
    return not stage.mentions and len(segments(stage.question)) <= 1


BLEND_K = 5.0  # rank offset of `blend`: the first few ranks weigh most


def blend(
    rows: Sequence[int], ranked: Sequence[tuple[int, float]], weight: float
) -> list[tuple[int, float]]:
    """The second stage's (row, score) list reordered by a blend of both stages' ranks.

    `rows` is the first stage's order of the candidates, `ranked` the ranker's.
    Each row scores weight / (BLEND_K + its rank by the ranker) + (1 - weight) /
    (BLEND_K + its first-stage rank); ties keep the first stage's order. Why: the
    ranker learned from MultiHop-RAG's questions, which nearly all name a publisher
    or a day, or ask for several facts; on a reader's one-part question naming neither
    it ranked the answer lower than the first stage did (`single_story`).
    """
    first = {row: i for i, row in enumerate(rows)}
    second = {row: i for i, (row, _) in enumerate(ranked)}
    score = dict(ranked)
    mixed = {row: weight / (BLEND_K + second[row]) + (1 - weight) / (BLEND_K + first[row])
             for row in rows}
    return [(row, score[row]) for row in sorted(rows, key=lambda r: (-mixed[r], first[r]))]


def interleave(lists: Sequence[Sequence[int]]) -> list[int]:
    """Round-robin over the lists (first of each, then second of each...), no repeats."""
    seen: set[int] = set()
    out: list[int] = []
    for depth in range(max((len(x) for x in lists), default=0)):
        for items in lists:
            if depth < len(items) and items[depth] not in seen:
                seen.add(items[depth])
                out.append(items[depth])
    return out


def diversify(
    order: Sequence[int], articles: Sequence[str], top_k: int, max_per_article: int
) -> list[int]:
    """Keep rank order but let no article take more than its share until others had a turn."""
    chosen: list[int] = []
    per_article: dict[str, int] = {}
    later: list[int] = []
    for row, article in zip(order, articles, strict=True):
        if per_article.get(article, 0) < max_per_article:
            chosen.append(row)
            per_article[article] = per_article.get(article, 0) + 1
        else:
            later.append(row)
        if len(chosen) == top_k:
            return chosen
    return chosen + later[: top_k - len(chosen)]
