"""The keyword side's data and the helpers every retrieval stage shares.

The bottom of the retrieval package: the caller's `Filters`, the in-memory
`KeywordIndex` (BM25 over chunks, with its sentence, word-pair, title and term
tables built on first need) and the small scoring helpers (`top_rows`,
`bm25_scores`, `idf_weight`). keywordcache.py saves these indexes, keywordpool.py
builds them over a pool, rerank.py reads them for its features and search.py
ranks with them; this module imports none of those.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import RetrievalSettings
from ..errors import InputError
from ..models import utc_day
from ..text.lexical import terms, terms_many
from ..text.sentences import sentence_spans
from .query import SourceMatcher, matcher_for

if TYPE_CHECKING:
    from ..store.index import ChunkTable


def parse_date(value: dt.date | dt.datetime | str | None, what: str) -> dt.date | None:
    """Accept dates, datetimes and ISO strings (YYYY, YYYY-MM, YYYY-MM-DD or an ISO date
    and time). Filters are whole days in UTC, as stored: a time with an offset counts for
    its UTC day ("2024-01-01T00:00+09:00" is 2023-12-31), and anything after the date that
    is no time is an error (it was dropped silently)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return utc_day(value)
    text = value.strip()
    if len(text) > 10:
        try:
            return utc_day(dt.datetime.fromisoformat(text))
        except ValueError:
            raise InputError(f"--{what}", f"not a date: {value!r} (use YYYY-MM-DD)") from None
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


def match_sources(wanted: Iterable[str], stored: Sequence[str]) -> list[str]:
    """The stored spellings of the wanted publishers: the same name in any case, else the
    one stored name that holds it as whole words ("Shafaq" for "Shafaq News").

    A new user's `--source Shafaq` found nothing, silently. A part that several names
    hold is refused, naming them: filtering by all of them ("News") was not asked for. A
    name no stored one holds keeps matching nothing (the archive may not have it yet).
    """
    by_lower = {name.lower(): name for name in stored}
    out: list[str] = []
    for name in wanted:
        exact = by_lower.get(name.lower())
        if exact is not None:
            out.append(exact)
            continue
        part = re.compile(rf"(?<!\w){re.escape(name.strip())}(?!\w)", re.IGNORECASE)
        holding = sorted(s for s in stored if part.search(s))
        if len(holding) > 1:
            raise InputError("--source", f"{name!r} is part of several publishers' names: "
                             f"{', '.join(holding)}; give more of the name")
        out += holding
    return list(dict.fromkeys(out))


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

    def __str__(self) -> str:
        """As a reader would say them: "from 'Reuters', since 2025-01-01"."""
        parts = [f"from {' or '.join(repr(s) for s in self.sources)}"] if self.sources else []
        parts += [f"since {self.since}"] if self.since else []
        parts += [f"until {self.until}"] if self.until else []
        return ", ".join(parts)

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
        import bm25s  # deferred (it loads scipy): only when an index is built

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

    def prepare(self, weights: RetrievalSettings) -> None:
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
            self._matcher = matcher_for(self.source_names.values())
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
            import bm25s  # deferred (it loads scipy): only when an index is built

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
            import bm25s  # deferred (it loads scipy): only when an index is built

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
        """Stored spellings of the wanted sources (`match_sources`)."""
        return match_sources(wanted, list(self.source_names.values()))

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


def bigrams(found: Sequence[str]) -> list[str]:
    return [f"{a}_{b}" for a, b in itertools.pairwise(found)]


@dataclass
class SplitUnits:
    """One tokenisation pass serving three indexes: chunks, their sentences, word pairs."""

    chunk_terms: Sequence[Sequence[str]]
    sentence_terms: Sequence[Sequence[str]]
    sentence_owner: Sequence[int]


def _split_units(table: ChunkTable) -> SplitUnits:
    """A chunk's terms are its header's plus its sentences' (words never cross sentences).

    When a search text is not header + chunk, it is tokenised whole as well.
    """
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
    def build(cls, sentence_terms: Sequence[Sequence[str]]) -> SentenceTerms:
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
        cls, sentence_terms: Sequence[Sequence[str]], owner: Sequence[int], size: int,
        k1: float, b: float,
    ) -> SentenceIndex:
        """`owner[i]` is the chunk row of sentence i (ascending); `size` the number of chunks."""
        import bm25s  # deferred (it loads scipy): only when an index is built

        bm25 = bm25s.BM25(k1=k1, b=b)
        if len(sentence_terms):
            bm25.index([doc or ["\x00empty"] for doc in sentence_terms], show_progress=False)
        owners = np.asarray(owner, dtype=np.int64)
        rows, starts = np.unique(owners, return_index=True)
        return cls(bm25=bm25, owner=owners, starts=starts, chunk_rows=rows, size=size)

    @classmethod
    def from_texts(cls, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> SentenceIndex:
        """Each text is one chunk; its sentences are the units."""
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



def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges: starts[i] .. starts[i] + lengths[i] - 1, for every i."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return shift + np.arange(total)


def idf_weight(doc_freq: int, size: int) -> float:
    """BM25's IDF, always positive."""
    return math.log((size - doc_freq + 0.5) / (doc_freq + 0.5) + 1.0)
