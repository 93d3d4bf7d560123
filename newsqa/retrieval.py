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
  signals per candidate and against the rest of its article.

Filters (sources, date range) run inside Chroma for the dense side and as a
mask over the same metadata for the keyword side, so both see the same corpus.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import threading
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import keywordcache
from .config import Settings
from .errors import ConfigError, InputError
from .index import in_flight
from .lexical import terms, terms_many
from .models import Passage
from .query import Mention, QueryHints, SourceMatcher, parse_query
from .rerank import (
    MODEL_FILE,
    FirstStage,
    MentionRanking,
    build_features,
    idf_weight,
    load_ranker,
    ranges,
)
from .threads import one_blas_thread

if TYPE_CHECKING:
    from .embedding import Embedder
    from .index import ChunkTable, Index
    from .keywordstore import KeywordStore


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


def date_key(day: dt.date) -> int:
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
            clauses.append({"published_date": {"$gte": date_key(self.since)}})
        if self.until:
            clauses.append({"published_date": {"$lte": date_key(self.until)}})
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
    rows: dict[str, int] = field(default_factory=dict)  # chunk id -> row
    _matcher: SourceMatcher | None = None
    _sentences: SentenceIndex | None = None
    _titles: tuple[Any, np.ndarray] | None = None  # (BM25 over titles, title row per chunk)
    _bigrams: Any = None
    _split: SplitUnits | None = None  # term lists kept for the side indexes
    _doc_freq: Mapping[str, int] | None = None  # chunks holding each term (the reranker's IDF)
    _corpus_size: int | None = None  # chunks those counts are of, when not this table's
    _sentence_ids: SentenceTerms | None = None
    _term_idf: np.ndarray | None = None  # IDF per sentence-term id
    _title_terms: dict[str, frozenset[str]] = field(default_factory=dict)
    _article_rows: dict[str, list[int]] | None = None

    @classmethod
    def build(cls, table: ChunkTable, k1: float = 1.2, b: float = 0.75) -> KeywordIndex:
        import bm25s

        split = _split_units(table)
        bm25 = bm25s.BM25(k1=k1, b=b)
        if len(table):
            bm25.index([doc or ["\x00empty"] for doc in split.chunk_terms], show_progress=False)
        return cls.assemble(table, bm25, _split=split)

    @classmethod
    def assemble(cls, table: ChunkTable, bm25: Any, **parts: Any) -> KeywordIndex:
        """The index around a built or loaded BM25; the filter columns come from the table.

        keywordcache.py loads saved indexes through this too, so the columns it
        does not store are derived exactly as a build derives them.
        """
        sources = np.array([str(m.get("source", "")) for m in table.metadatas], dtype=object)
        dates = np.array([int(m.get("published_date", 0)) for m in table.metadatas], dtype=np.int64)
        names = {str(s).lower(): str(s) for s in set(sources.tolist()) if s}
        rows = {cid: i for i, cid in enumerate(table.ids)}
        return cls(table=table, bm25=bm25, sources=sources, dates=dates, source_names=names,
                   rows=rows, **parts)

    def prepare(self, weights: FusionWeights) -> None:
        """Build the side indexes the weights use now, not inside some later search."""
        if weights.sentence_weight:
            self.sentences()
        if weights.bigram_weight:
            self.bigram_scores([])
        if weights.title_weight:
            self.title_scores([])
        if weights.rerank:
            self.idf("")
            self.term_idf()
            self.article_rows("")

    def units(self) -> SplitUnits:
        """The tokenised chunks and sentences (kept from the build, or split again)."""
        if self._split is None:
            self._split = _split_units(self.table)
        return self._split

    def idf(self, term: str) -> float:
        """BM25's IDF of a term over chunks (an unknown term is as rare as can be)."""
        if self._doc_freq is None:
            split = self.units()
            freq: dict[str, int] = {}
            for found in split.chunk_terms:
                for t in set(found):
                    freq[t] = freq.get(t, 0) + 1
            self._doc_freq = freq
        return idf_weight(self._doc_freq.get(term, 0), self._corpus_size or len(self.table))

    def sentence_terms(self) -> SentenceTerms:
        """Each sentence's distinct terms as ids, flat: the reranker reads them per query."""
        if self._sentence_ids is None:
            self._sentence_ids = SentenceTerms.build(self.units().sentence_terms)
        return self._sentence_ids

    def term_idf(self) -> np.ndarray:
        """IDF of each sentence-term id, so per-query code weighs ids without a dict lookup."""
        if self._term_idf is None:
            vocab = self.sentence_terms().vocab
            idf = np.empty(len(vocab))
            for term, i in vocab.items():
                idf[i] = self.idf(term)
            self._term_idf = idf
        return self._term_idf

    def title_terms(self, row: int) -> frozenset[str]:
        """The terms of the chunk's article title (cached per title)."""
        title = str(self.table.metadatas[row].get("title", ""))
        found = self._title_terms.get(title)
        if found is None:
            found = self._title_terms[title] = frozenset(terms(title))
        return found

    def article_of(self, row: int) -> str:
        return str(self.table.metadatas[row].get("article_id", ""))

    def chunk_index(self, row: int) -> int:
        return int(self.table.metadatas[row].get("chunk_index", 0))

    def article_rows(self, article: str) -> list[int]:
        """The rows of one article's chunks, in table order."""
        if self._article_rows is None:
            grouped: dict[str, list[int]] = {}
            for row in range(len(self.table)):
                grouped.setdefault(self.article_of(row), []).append(row)
            self._article_rows = grouped
        return self._article_rows.get(article, [])

    @property
    def matcher(self) -> SourceMatcher:
        """Publisher names as this index spells them, for reading them out of questions."""
        if self._matcher is None:
            self._matcher = SourceMatcher(self.source_names.values())
        return self._matcher

    def sentences(self) -> SentenceIndex:
        """BM25 over single sentences, built on first need (most searches never ask)."""
        if self._sentences is None:
            split = self.units()
            self._sentences = SentenceIndex.build(
                split.sentence_terms, split.sentence_owner, len(self.table),
                k1=self.bm25.k1, b=self.bm25.b,
            )
        return self._sentences

    def title_scores(self, query_terms: list[str]) -> np.ndarray | None:
        """Per chunk, the BM25 score of its article's title: what the story is about."""
        if self._titles is None:
            import bm25s

            titles = [str(m.get("title", "")) for m in self.table.metadatas]
            unique = list(dict.fromkeys(titles))
            position = {t: i for i, t in enumerate(unique)}
            bm25 = bm25s.BM25(k1=self.bm25.k1, b=self.bm25.b)
            if unique:
                bm25.index([d or ["\x00empty"] for d in terms_many(unique)], show_progress=False)
            self._titles = (bm25, np.asarray([position[t] for t in titles], dtype=np.int64))
        bm25, owner = self._titles
        known = [t for t in query_terms if t in bm25.vocab_dict]
        if not known or not len(owner):
            return None
        return bm25_scores(bm25, known)[owner]

    def bigram_scores(self, query_terms: list[str]) -> np.ndarray | None:
        """BM25 over adjacent term pairs: "class action" is more than "class" and "action"."""
        if self._bigrams is None:
            import bm25s

            split = self.units()
            self._bigrams = bm25s.BM25(k1=self.bm25.k1, b=self.bm25.b)
            docs = [bigrams(d) or ["\x00empty"] for d in split.chunk_terms]
            if docs:
                self._bigrams.index(docs, show_progress=False)
        known = [t for t in bigrams(query_terms) if t in self._bigrams.vocab_dict]
        if not known:
            return None
        return bm25_scores(self._bigrams, known)

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
            keep &= self.dates >= date_key(filters.since)
        if filters.until:
            keep &= (self.dates <= date_key(filters.until)) & (self.dates > 0)
        return keep

    def scores(self, query_terms: list[str]) -> np.ndarray | None:
        """BM25 score of every chunk (None when no term is in the vocabulary)."""
        if not len(self.table) or not query_terms:
            return None
        vocab = self.bm25.vocab_dict
        known = [t for t in query_terms if t in vocab]
        if not known:
            return None
        return bm25_scores(self.bm25, known)

    def search(
        self, query_terms: list[str], k: int, mask: np.ndarray | None
    ) -> list[tuple[int, float]]:
        """Top-k (row, score) pairs with a positive score, best first."""
        return top_rows(self.scores(query_terms), k, mask)


# Words of how questions about news are asked, not of what they ask about: every
# article "reports", so they only pull in chunks that happen to say "report".
QUESTION_WORDS = """article articles report reports reported reporting published publish
according suggest suggests suggested indicate indicates indicated mention mentions mentioned
claim claims claimed both whether consistent consistency inconsistency inconsistent change
portrayal portray portrayed describe described coverage covered discuss discussed""".split()


@lru_cache(maxsize=1)
def _question_terms() -> frozenset[str]:
    return frozenset(t for word in QUESTION_WORDS for t in terms(word))


def query_terms(query: str, drop_question_words: bool) -> list[str]:
    found = terms(query)
    if not drop_question_words:
        return found
    skip = _question_terms()
    return [t for t in found if t not in skip] or found


def bigrams(found: list[str]) -> list[str]:
    return [f"{a}_{b}" for a, b in itertools.pairwise(found)]


@dataclass
class SplitUnits:
    """One tokenisation pass serving three indexes: chunks, their sentences, word pairs."""

    chunk_terms: list[list[str]]
    sentence_terms: list[list[str]]
    sentence_owner: list[int]


def _split_units(table: ChunkTable) -> SplitUnits:
    """A chunk's terms are its header's plus its sentences' (words never cross sentences).

    When a search text is not header + chunk, it is tokenised whole as well.
    """
    from .chunking import sentence_spans

    units: list[str] = []
    layout: list[tuple[int, int, int]] = []  # per chunk: first unit, sentences, whole-text flag
    owner: list[int] = []
    for row, (text, meta) in enumerate(zip(table.texts, table.metadatas, strict=True)):
        passage = passage_text(text, meta)
        tail = text.endswith(passage)
        first = len(units)
        units.append(text[: len(text) - len(passage)] if tail else text)
        spans = sentence_spans(passage)
        units.extend(passage[a:e] for a, e in spans)
        owner.extend([row] * len(spans))
        layout.append((first, len(spans), int(tail)))
    found = terms_many(units)
    chunk_terms, sentence_terms = [], []
    for first, count, is_tail in layout:
        sentences = found[first + 1 : first + 1 + count]
        sentence_terms.extend(sentences)
        whole = list(found[first])
        if is_tail:
            for terms_of in sentences:
                whole.extend(terms_of)
        chunk_terms.append(whole)
    return SplitUnits(chunk_terms, sentence_terms, owner)


@dataclass
class SentenceTerms:
    """Sentence i's distinct term ids are ids[offsets[i]:offsets[i + 1]]."""

    vocab: dict[str, int]
    ids: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, sentence_terms: Sequence[list[str]]) -> SentenceTerms:
        vocab: dict[str, int] = {}
        flat: list[int] = []
        offsets = [0]
        for found in sentence_terms:
            flat.extend({vocab.setdefault(t, len(vocab)) for t in found})
            offsets.append(len(flat))
        return cls(vocab, np.asarray(flat, dtype=np.int64), np.asarray(offsets, dtype=np.int64))


def passage_text(search_text: str, meta: Mapping[str, Any]) -> str:
    """The chunk's own text inside its search text (the header left out)."""
    if "text" in meta:
        return str(meta["text"])
    return search_text[int(meta.get("text_offset", 0)) :]


@dataclass
class SentenceIndex:
    """BM25 over each chunk's sentences; a chunk scores as its best sentence.

    A MultiHop-RAG evidence fact is one sentence of a 256-token chunk; whole-chunk
    BM25 dilutes it with nine other sentences, a sentence-level score does not.
    """

    bm25: Any
    owner: np.ndarray  # chunk row of each sentence, ascending
    starts: np.ndarray  # first sentence of each chunk that has any
    chunk_rows: np.ndarray  # the chunks that have sentences
    size: int

    @classmethod
    def build(
        cls, sentence_terms: Sequence[list[str]], owner: Sequence[int], size: int,
        k1: float, b: float,
    ) -> SentenceIndex:
        """`owner[i]` is the chunk row of sentence i (ascending); `size` the number of chunks."""
        import bm25s

        bm25 = bm25s.BM25(k1=k1, b=b)
        if len(sentence_terms):
            bm25.index([doc or ["\x00empty"] for doc in sentence_terms], show_progress=False)
        owners = np.asarray(owner, dtype=np.int64)
        rows, starts = np.unique(owners, return_index=True)
        return cls(bm25=bm25, owner=owners, starts=starts, chunk_rows=rows, size=size)

    @classmethod
    def from_texts(cls, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> SentenceIndex:
        """Each text is one chunk; its sentences are the units."""
        from .chunking import sentence_spans

        pieces = [(row, text[a:e]) for row, text in enumerate(texts)
                  for a, e in sentence_spans(text)]
        found = terms_many(p for _, p in pieces)
        return cls.build(found, [row for row, _ in pieces], len(texts), k1, b)

    def best(self, query_terms: list[str]) -> np.ndarray | None:
        """Per chunk, the BM25 score of its best-matching sentence."""
        if not len(self.owner):
            return None
        known = [t for t in query_terms if t in self.bm25.vocab_dict]
        if not known:
            return None
        scores = bm25_scores(self.bm25, known)
        out = np.zeros(self.size, dtype=np.float64)
        out[self.chunk_rows] = np.maximum.reduceat(scores, self.starts)
        return out


def bm25_scores(bm25: Any, known: list[str]) -> np.ndarray:
    """bm25s's `get_scores` for terms in its vocabulary, with one np.bincount.

    bm25s adds each query term's postings with its own np.add.at (~25 us a
    call); a search scores ~160 terms over chunks, sentences, word pairs and
    titles, which cost ~4 ms of a ~45 ms search. The sums are the same.
    """
    index = bm25.scores
    ids = np.asarray([bm25.vocab_dict[t] for t in known], dtype=np.int64)
    starts, ends = index["indptr"][ids], index["indptr"][ids + 1]
    postings = ranges(starts.astype(np.int64), (ends - starts).astype(np.int64))
    scores: np.ndarray = np.bincount(index["indices"][postings], weights=index["data"][postings],
                                     minlength=int(index["num_docs"])).astype(np.float64)
    if bm25.nonoccurrence_array is not None:  # the BM25L/BM25+ variants' constant part
        scores = scores + float(bm25.nonoccurrence_array[ids].sum())
    return scores


def top_rows(scores: np.ndarray | None, k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
    """Top-k (row, score) pairs with a positive score inside the mask, best first."""
    if scores is None or k <= 0:
        return []
    if mask is not None:
        scores = np.where(mask, scores, 0.0)
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(i), float(scores[i])) for i in top if scores[i] > 0]


_ENV_PREFIX = "NEWSQA_RETRIEVAL_"


@dataclass(frozen=True)
class FusionWeights:
    """The retrieval levers, each measured on MultiHop-RAG (benchmarks/retrieval_levers.py).

    Every field can be set from the environment as NEWSQA_RETRIEVAL_<FIELD>
    (e.g. NEWSQA_RETRIEVAL_HINTS=0 turns off reading publishers and dates out of
    the question).
    """

    keyword: float = 1.0
    dense: float = 0.1
    rrf_k: int = 60
    candidates: int = 50  # per retriever, before fusion
    max_per_article: int = 5  # first pass of diversity; later slots fill in rank order
    fusion: str = "convex"  # "rrf" (weighted ranks) | "convex" (weighted normalised scores)
    dense_candidates: int = 100  # one dense query; named-source slots reuse its hits
    hints: bool = True  # publishers and days named in the question get their own slots
    mention_slots: int = 5  # passages per named publisher/day before the global ranking
    mention_min_chunks: int = 1  # a derived filter keeping fewer chunks is dropped
    clause_weight: float = 1.0  # extra BM25 weight of the words about that publisher
    drop_question_words: bool = False  # "report", "article", "suggest"... out of BM25 queries
    sentence_weight: float = 0.5  # weight of a chunk's best sentence (BM25) beside the chunk's
    bigram_weight: float = 0.5  # weight of BM25 over adjacent term pairs
    title_weight: float = 0.0  # weight of the article title's BM25 (an article prior)
    dense_in_mentions: bool = True  # dense hits also count inside per-publisher sub-rankings
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    rerank: bool = True  # the learned second stage (rerank.py) reorders the first stage's pool
    rerank_pool: int = 70  # first-stage passages the second stage sees
    rerank_articles: int = 20  # the articles of the pool's first N passages join it whole
    rerank_max: int = 300  # ... until the pool holds this many (long articles at scale)
    ranker: str = ""  # a LightGBM model file for the second stage ("" = the shipped one)
    # The first stage over a pool from the persistent keyword index (keywordpool.py), not
    # over every chunk: no rebuild after a write. Off until its quality is measured.
    pool: bool = False
    pool_candidates: int = 150  # keyword hits under the caller's filters
    pool_mention_candidates: int = 30  # keyword hits per named publisher/day filter

    def keyword_build(self) -> str:
        """What the saved keyword index depends on: other fields change no stored array."""
        sides = (bool(self.sentence_weight), bool(self.bigram_weight), bool(self.title_weight))
        return repr((self.bm25_k1, self.bm25_b, sides, self.rerank))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FusionWeights:
        """Defaults overridden by NEWSQA_RETRIEVAL_* variables; a bad value names its variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(_ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse_field(f.name, str(f.type), raw)
        weights = cls(**values)
        if weights.fusion not in ("rrf", "convex"):
            raise ConfigError(f"{_ENV_PREFIX}FUSION must be rrf or convex, got {weights.fusion!r}")
        return weights


def _parse_field(name: str, kind: str, raw: str) -> Any:
    try:
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{_ENV_PREFIX}{name.upper()}: not a valid {kind}: {raw!r}") from None


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
        weights: FusionWeights | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.weights = weights or FusionWeights.from_env()
        self._keyword: KeywordIndex | None = None
        self._freq: tuple[str, Any] | None = None  # (revision, keywordpool.CollectionFreq)
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
        by_dense: Sequence[tuple[str, float]], committed: Container[str] | None = None,
    ) -> KeywordIndex:
        """The KeywordIndex over one question's pool (benchmarks reuse it with their own hits)."""
        from . import keywordpool

        w = self.weights
        committed = self.index.committed() if committed is None else committed
        ids = keywordpool.pool_ids(store, query, filters, by_dense, w, committed)
        words = query_terms(query, w.drop_question_words)
        hints = parse_query(query, SourceMatcher(store.sources()))
        for mention in hints.mentions():  # the first stage scores each clause's words too
            words = words + query_terms(mention.clause, w.drop_question_words)
        return keywordpool.pool_index(store, ids, w, committed, self.index.revision, words,
                                      self._collection_freq(store))

    def _collection_freq(self, store: KeywordStore) -> Any:
        """Collection document frequencies, kept while the index's revision holds."""
        from .keywordpool import CollectionFreq

        revision = self.index.revision
        with self._lock:
            held = self._freq
            if held is None or held[0] != revision:
                held = self._freq = (revision, CollectionFreq(store))
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
        rows, features = self.candidates(keyword, stage)
        ranker = load_ranker(Path(self.weights.ranker) if self.weights.ranker else MODEL_FILE)
        ranked = ranker.ranked(rows, features)
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
         w: FusionWeights) -> Ranked:
    """Weighted reciprocal-rank fusion: only ranks count, so scales never clash."""
    fused: dict[int, float] = {}
    parts: dict[int, dict[str, float]] = {}
    for name, weight, hits in (("bm25", w.keyword, by_keyword), ("dense", w.dense, dense)):
        for rank, (row, score) in enumerate(hits):
            parts.setdefault(row, {})[name] = score
            fused[row] = fused.get(row, 0.0) + weight / (w.rrf_k + rank + 1)
    return Ranked(sorted(fused, key=lambda r: -fused[r]), fused, parts)


def _convex(by_keyword: list[tuple[int, float]], dense: list[tuple[int, float]],
            scores: np.ndarray | None, w: FusionWeights) -> Ranked:
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
    keyword: KeywordIndex, hints: QueryHints, base: np.ndarray | None, w: FusionWeights
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
