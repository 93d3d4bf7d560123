"""Summaries and timelines whose every bullet and event cites a verified span.

Two engines, one output type:

- LLM: passages are grouped by article; when the groups do not fit the model's
  window they are summarised in batches (map) and the partial summaries, with the
  quotes they verified, are combined (reduce), so no article is silently dropped.
  Every quote the model returns goes through `citations.verify`; what fails lands
  in `rejected_citations`, never in a bullet.
- Extractive (offline, the default without an LLM): sentences are picked, not
  written, so every bullet is its own citation. News puts the gist first, so a
  position prior is blended with centrality; across articles, MMR keeps one copy
  of a wire fact that several outlets repeat.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from ..errors import InputError
from ..grounding import (
    DraftCitation,
    DraftClaim,
    Grounder,
    citation_for,
    format_sources,
    quotes_required,
)
from ..models import (
    Article,
    Bullet,
    Passage,
    RejectedCitation,
    Summary,
    Timeline,
    TimelineEvent,
    Usage,
)
from ..store.chunking import chunk_article, count_tokens
from ..text.sentences import sentence_spans
from .prompts import available, render

if TYPE_CHECKING:
    from ..retrieval import Filters, Retriever
    from ..store.embedding import Embedder
    from ..store.index import Index
    from .llm import LLM

# ----------------------------------------------------------------------------------------
# Sentences
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sentence:
    """A sentence of one article, by character span, so a pick is already a citation."""

    article_id: str
    start: int
    end: int
    text: str
    position: int  # index of the sentence in its article
    total: int  # sentences in the article


def article_sentences(article: Article, min_words: int = 4) -> list[Sentence]:
    """Sentences worth showing: fragments (bylines, captions) carry no fact to summarise."""
    kept = [(start, end) for start, end in sentence_spans(article.text)
            if len(article.text[start:end].split()) >= min_words]
    return [
        Sentence(article.id, s, e, article.text[s:e], i, len(kept))
        for i, (s, e) in enumerate(kept)
    ]


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end




def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _trim_words(text: str, max_words: int) -> str:
    words = text.split()
    if len(words) <= max_words:
        return text
    return " ".join(words[:max_words]).rstrip(",;:") + "…"


# ----------------------------------------------------------------------------------------
# Vectors: the embedder when there is one, else TF-IDF (the benchmark can run either)
# ----------------------------------------------------------------------------------------


def sentence_vectors(texts: Sequence[str], embedder: Embedder | None) -> np.ndarray:
    if not texts:
        return np.zeros((0, 1), dtype=np.float32)
    if embedder is not None:
        return np.asarray(embedder.embed_documents(list(texts)), dtype=np.float32)
    return _tfidf(texts)


_WORD = re.compile(r"[a-z0-9]+")


def _tfidf(texts: Sequence[str]) -> np.ndarray:
    docs = [_WORD.findall(t.lower()) for t in texts]
    vocab: dict[str, int] = {}
    for doc in docs:
        for word in doc:
            vocab.setdefault(word, len(vocab))
    matrix = np.zeros((len(docs), max(len(vocab), 1)), dtype=np.float32)
    for row, doc in enumerate(docs):
        for word in doc:
            matrix[row, vocab[word]] += 1.0
    df = (matrix > 0).sum(axis=0)
    matrix *= np.log((1 + len(docs)) / (1 + df)) + 1.0
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


# ----------------------------------------------------------------------------------------
# Extractive single-article summary
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractiveWeights:
    """Tuned on the summ dev ids only (benchmarks/summarize.py --grid).

    Within one article, centrality and redundancy are lexical (TF-IDF): on the dev ids
    that beat MiniLM sentence vectors (mean R1/R2/RL 28.97 vs 28.72, lead-3 28.48) and
    costs no model call; the embedder is still used for a focus string, whose words
    need not appear in the article.
    """

    position: float = 1.0  # weight of the lead prior
    decay: float = 1.5  # prior = 1 / (1 + i / decay): how fast the lead advantage fades
    centrality: float = 1.5  # similarity to the article centroid
    focus: float = 2.0  # similarity to the focus string: an explicit ask outweighs the lead
    redundancy: float = 0.6  # MMR penalty: max similarity to what is already picked
    max_sentence_words: int = 60  # longer "sentences" are usually run-on lists or captions


def position_prior(position: int, decay: float) -> float:
    return 1.0 / (1.0 + position / decay)


def rank_sentences(
    sentences: Sequence[Sentence],
    vectors: np.ndarray,
    weights: ExtractiveWeights,
    focus_similarity: np.ndarray | None = None,
) -> np.ndarray:
    """Lead prior + centrality (+ focus): the lead matters in news, the centroid says
    which of the later sentences still carry the story."""
    centroid = _unit(vectors.mean(axis=0))
    scores = weights.centrality * (vectors @ centroid)
    scores += weights.position * np.array(
        [position_prior(s.position, weights.decay) for s in sentences], dtype=np.float32
    )
    if focus_similarity is not None:
        scores += weights.focus * focus_similarity
    too_long = np.array([len(s.text.split()) > weights.max_sentence_words for s in sentences])
    return np.where(too_long, scores - 1.0, scores)


def mmr(
    scores: np.ndarray, vectors: np.ndarray, k: int, redundancy: float, duplicate: float = 0.92
) -> list[int]:
    """Greedy maximal marginal relevance; near-copies (a wire fact reprinted) never both pass."""
    chosen: list[int] = []
    candidates = list(range(len(scores)))
    while candidates and len(chosen) < k:
        best, best_value = -1, -math.inf
        for i in candidates:
            overlap = max((float(vectors[i] @ vectors[j]) for j in chosen), default=0.0)
            if overlap >= duplicate:
                continue
            value = float(scores[i]) - redundancy * overlap
            if value > best_value:
                best, best_value = i, value
        if best < 0:
            break
        chosen.append(best)
        candidates.remove(best)
    return chosen


def select_sentences(
    scores: np.ndarray, vectors: np.ndarray, k: int, weights: ExtractiveWeights
) -> list[int]:
    """The k sentences to show, in reading order: a summary that jumps about reads badly."""
    return sorted(mmr(scores, vectors, k, weights.redundancy))


def extractive_article_summary(
    article: Article,
    embedder: Embedder | None,
    *,
    bullets: int = 5,
    max_words: int | None = None,
    focus: str | None = None,
    weights: ExtractiveWeights | None = None,
) -> Summary:
    """Pick the sentences that carry one article, in reading order, each its own citation."""
    weights = weights or ExtractiveWeights()
    sentences = article_sentences(article)
    if not sentences:
        return Summary(headline=article.title or _trim_words(_clean(article.text), 20),
                       article_ids=[article.id], mode="extractive")
    vectors = _tfidf([s.text for s in sentences])
    scores = rank_sentences(sentences, vectors, weights, _focus_similarity(focus, embedder,
                                                                           sentences))
    picked = select_sentences(scores, vectors, bullets, weights)
    made = _bullets_within([sentences[i] for i in picked], {article.id: article}, max_words)
    lead = range(min(3, len(sentences)))
    headline = _headline(article, sentences[max(lead, key=lambda i: scores[i])])
    return Summary(headline=headline, bullets=made, article_ids=[article.id], mode="extractive")


def _focus_similarity(
    focus: str | None, embedder: Embedder | None, sentences: Sequence[Sentence]
) -> np.ndarray | None:
    if not focus or not focus.strip():
        return None
    if embedder is not None:
        vectors = sentence_vectors([s.text for s in sentences], embedder)
        return vectors @ np.asarray(embedder.embed_query(focus), dtype=np.float32)
    # TF-IDF has no query side: vectorise the focus alongside the sentences.
    matrix = _tfidf([*(s.text for s in sentences), focus])
    return matrix[:-1] @ matrix[-1]


def _headline(article: Article, lead: Sentence, max_words: int = 20) -> str:
    """A lead sentence cut at a clause boundary reads like a headline; a long one does not."""
    text = _clean(lead.text)
    words = text.split()
    if len(words) <= max_words:
        return text.rstrip(".")
    cut = re.split(r"(?<=\w)[,;:]\s|\s[-–—]\s", text)[0]
    if 5 <= len(cut.split()) <= max_words:
        return cut
    return article.title or _trim_words(text, max_words)


def _bullets_within(
    sentences: Sequence[Sentence], articles: Mapping[str, Article], max_words: int | None
) -> list[Bullet]:
    """Bullets until the word budget is spent; a cut bullet cites exactly the words it keeps."""
    out: list[Bullet] = []
    left = max_words if max_words is not None else math.inf
    for sentence in sentences:
        if left <= 0:
            break
        article = articles[sentence.article_id]
        start, end = sentence.start, sentence.end
        words = list(re.finditer(r"\S+", article.text[start:end]))
        suffix = ""
        if len(words) > left:
            keep = int(left)
            if keep < 4:
                break
            end = start + words[keep - 1].end()
            suffix = "…"
            left = 0
        else:
            left -= len(words)
        start, end = _strip_span(article.text, start, end)
        out.append(Bullet(text=_clean(article.text[start:end]) + suffix,
                          citations=[citation_for(article, start, end)]))
    return out


# ----------------------------------------------------------------------------------------
# Grouping passages by article
# ----------------------------------------------------------------------------------------


def group_by_article(passages: Iterable[Passage]) -> dict[str, list[Passage]]:
    """Best-ranked article first; within an article, reading order (the story's own order)."""
    groups: dict[str, list[Passage]] = {}
    for passage in passages:
        groups.setdefault(passage.article_id, []).append(passage)
    for group in groups.values():
        group.sort(key=lambda p: p.start)
    return groups


def _fetch_articles(parts: SummaryParts, ids: Iterable[str]) -> dict[str, Article]:
    return {i: parts.index.get_article(i) for i in ids}


def passage_sentences(
    groups: Mapping[str, Sequence[Passage]], articles: Mapping[str, Article]
) -> list[Sentence]:
    """Whole sentences that overlap a retrieved passage: chunk edges cut sentences, citations
    should not."""
    out: list[Sentence] = []
    for article_id, passages in groups.items():
        for sentence in article_sentences(articles[article_id]):
            if any(sentence.start < p.end and p.start < sentence.end for p in passages):
                out.append(sentence)
    return out


# ----------------------------------------------------------------------------------------
# Extractive multi-article summary and disagreements
# ----------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?!\w)")


def numbers_in(text: str) -> frozenset[str]:
    """Figures a claim rests on; years are dates, not figures, and would flag every pair."""
    found = set()
    for match in _NUMBER.finditer(text):
        value = match.group().replace(",", "").rstrip(".")
        if re.fullmatch(r"(19|20)\d\d", value):
            continue
        found.add(value)
    return frozenset(found)


def find_disagreements(
    sentences: Sequence[Sentence],
    vectors: np.ndarray,
    articles: Mapping[str, Article],
    *,
    similarity: float = 0.7,
    limit: int = 3,
) -> list[Bullet]:
    """Two articles saying nearly the same sentence with different figures disagree on them."""
    numbers = [numbers_in(s.text) for s in sentences]
    pairs: list[tuple[float, int, int]] = []
    for i in range(len(sentences)):
        for j in range(i + 1, len(sentences)):
            if sentences[i].article_id == sentences[j].article_id:
                continue
            if not numbers[i] or not numbers[j] or numbers[i] == numbers[j]:
                continue
            sim = float(vectors[i] @ vectors[j])
            if sim >= similarity:
                pairs.append((sim, i, j))
    pairs.sort(reverse=True)
    used: set[int] = set()
    out: list[Bullet] = []
    for _, i, j in pairs:
        if i in used or j in used or len(out) >= limit:
            continue
        used.update((i, j))
        out.append(_disagreement(sentences[i], sentences[j], articles))
    return out


def _disagreement(a: Sentence, b: Sentence, articles: Mapping[str, Article]) -> Bullet:
    first, second = articles[a.article_id], articles[b.article_id]
    text = (
        f"Sources differ: {_name(first)} reports “{_clean(a.text)}”, while "
        f"{_name(second)} reports “{_clean(b.text)}”"
    )
    return Bullet(text=text, citations=[citation_for(first, a.start, a.end),
                                        citation_for(second, b.start, b.end)])


def _name(article: Article) -> str:
    return article.source or article.title or article.id


def extractive_multi_summary(
    query: str,
    groups: Mapping[str, Sequence[Passage]],
    articles: Mapping[str, Article],
    embedder: Embedder | None,
    *,
    bullets: int = 5,
    max_words: int | None = None,
    focus: str | None = None,
    weights: ExtractiveWeights | None = None,
) -> Summary:
    """Relevant sentences across articles, MMR so a fact repeated by several outlets shows once."""
    weights = weights or ExtractiveWeights()
    sentences = passage_sentences(groups, articles)
    if not sentences:
        return Summary(headline=f"Nothing found about {query!r}", mode="extractive")
    vectors = sentence_vectors([s.text for s in sentences], embedder)
    scores = _relevance(query, focus, sentences, vectors, embedder, list(groups), weights)
    picked = mmr(scores, vectors, bullets, weights.redundancy + 0.3)
    picked.sort(key=lambda i: -scores[i])
    chosen = [sentences[i] for i in picked]
    made = _bullets_within(chosen, articles, max_words)
    headline = _headline(articles[chosen[0].article_id], chosen[0]) if chosen else query
    used = list(dict.fromkeys(s.article_id for s in chosen))
    return Summary(
        headline=headline,
        bullets=made,
        article_ids=used,
        disagreements=find_disagreements(sentences, vectors, articles),
        mode="extractive",
    )


def _relevance(
    query: str, focus: str | None, sentences: Sequence[Sentence], vectors: np.ndarray,
    embedder: Embedder | None, article_rank: Sequence[str], weights: ExtractiveWeights,
) -> np.ndarray:
    asked = f"{query} {focus}" if focus else query
    if embedder is not None:
        q = np.asarray(embedder.embed_query(asked), dtype=np.float32)
    else:
        q = _tfidf([*(s.text for s in sentences), asked])[-1]
    rank = {a: r for r, a in enumerate(article_rank)}
    prior = np.array(
        [0.3 * position_prior(s.position, weights.decay) + 0.1 / (1 + rank[s.article_id])
         for s in sentences],
        dtype=np.float32,
    )
    return (vectors @ q) + prior


# ----------------------------------------------------------------------------------------
# Dates in text
# ----------------------------------------------------------------------------------------

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DATE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("iso", re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")),
    ("mdy", re.compile(rf"\b{_MONTH}\.?\s+{_DAY}(?:,?\s+\d{{4}})?\b")),
    ("dmy", re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}\.?(?:,?\s+\d{{4}})?\b")),
    ("weekday", re.compile(
        r"\b(?:(last|next|this|on|since|until|by)\s+)?(Monday|Tuesday|Wednesday|Thursday|"
        r"Friday|Saturday|Sunday)\b")),
    ("relative", re.compile(r"\b(yesterday|today|tomorrow|tonight|last night)\b", re.I)),
)


@dataclass(frozen=True)
class FoundDate:
    date: dt.date
    start: int  # span of the date expression within the searched text
    end: int
    kind: str


def published_date(article: Article | Passage) -> dt.date | None:
    value = article.published_at
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).date()
    return value


def find_dates(text: str, published: dt.date | None) -> list[FoundDate]:
    """Dates a sentence states, normalised; relative ones ("on Sunday") need `published`.

    Weekdays resolve to the latest such day on or before publication (news reports the
    past), unless "next" or a "will" earlier in the sentence points forward.
    """
    found: list[FoundDate] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            if any(match.start() < e and s < match.end() for s, e in taken):
                continue
            value = _resolve(kind, match, text, published)
            if value is not None:
                taken.append((match.start(), match.end()))
                found.append(FoundDate(value, match.start(), match.end(), kind))
    found.sort(key=lambda f: f.start)
    return found


def _resolve(
    kind: str, match: re.Match[str], text: str, published: dt.date | None
) -> dt.date | None:
    if kind in ("iso", "mdy", "dmy"):
        return _parse_explicit(match.group(), published)
    if published is None:
        return None
    if kind == "weekday":
        target = _WEEKDAYS.index(match.group(2).lower())
        forward = (match.group(1) or "").lower() == "next" or bool(
            re.search(r"\b(will|due|scheduled|expected)\b", text[: match.start()], re.I)
        )
        if forward:
            return published + dt.timedelta(days=(target - published.weekday()) % 7 or 7)
        return published - dt.timedelta(days=(published.weekday() - target) % 7)
    offsets = {"yesterday": -1, "today": 0, "tonight": 0, "last night": -1, "tomorrow": 1}
    return published + dt.timedelta(days=offsets[match.group(1).lower()])


def _parse_explicit(expression: str, published: dt.date | None) -> dt.date | None:
    """dateutil parses the expression; a missing year comes from publication, and a date that
    would then lie far after publication belongs to the year before."""
    from dateutil import parser

    has_year = bool(re.search(r"\d{4}", expression))
    if not has_year and published is None:
        return None
    anchor = published or dt.date(2000, 1, 1)
    default = dt.datetime(anchor.year, 1, 1)
    try:
        value = parser.parse(expression.replace(" of ", " "), default=default, fuzzy=False).date()
    except (ValueError, OverflowError):
        return None
    if not has_year and published is not None and value - published > dt.timedelta(days=183):
        value = value.replace(year=value.year - 1)
    return value


# ----------------------------------------------------------------------------------------
# Extractive timeline
# ----------------------------------------------------------------------------------------


def extractive_timeline(
    query: str,
    groups: Mapping[str, Sequence[Passage]],
    articles: Mapping[str, Article],
    embedder: Embedder | None,
    *,
    max_events: int = 12,
) -> Timeline:
    """Relevant sentences become events: dated by the text when it says when, else by the
    article's publication date. Sentences that state a date are preferred."""
    sentences = passage_sentences(groups, articles)
    dated: list[tuple[Sentence, dt.date, Literal["text", "published_at"]]] = []
    for sentence in sentences:
        article = articles[sentence.article_id]
        published = published_date(article)
        stated = find_dates(sentence.text, published)
        if stated:
            dated.append((sentence, stated[0].date, "text"))
        elif published is not None:
            dated.append((sentence, published, "published_at"))
    if not dated:
        return Timeline(query=query, mode="extractive")
    chosen_sentences = [d[0] for d in dated]
    vectors = sentence_vectors([s.text for s in chosen_sentences], embedder)
    weights = ExtractiveWeights()
    scores = _relevance(query, None, chosen_sentences, vectors, embedder, list(groups), weights)
    scores += np.array([0.15 if d[2] == "text" else 0.0 for d in dated], dtype=np.float32)
    picked = mmr(scores, vectors, max_events, weights.redundancy + 0.3)
    events = [
        TimelineEvent(
            date=dated[i][1],
            date_source=dated[i][2],
            text=_clean(dated[i][0].text),
            citations=[citation_for(articles[dated[i][0].article_id],
                                    dated[i][0].start, dated[i][0].end)],
        )
        for i in picked
    ]
    events.sort(key=_event_order)
    return Timeline(
        query=query,
        events=events,
        article_ids=list(dict.fromkeys(e.citations[0].article_id for e in events)),
        mode="extractive",
    )


def _event_order(event: TimelineEvent) -> tuple[dt.date, str, int]:
    first = event.citations[0] if event.citations else None
    return (event.date, first.article_id if first else "", first.start if first else 0)


# ----------------------------------------------------------------------------------------
# Entry points (called by NewsQA)
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SummaryParts:
    """What gathering a summary's sources uses, wired by `NewsQA` and handed over.

    Why not `NewsQA` itself: passed down, it was a service locator and an import cycle
    (api -> summarize -> api); these are the parts used, and nothing else is reachable.
    """

    index: Index
    retriever: Retriever
    embedder: Embedder
    top_k: int


@dataclass(frozen=True)
class SummarySources:
    """What an engine summarises: one `article`, or the retrieved passages grouped by
    article with the articles behind them. The engine never retrieves; `embedder` is
    what the extractive engine ranks sentences with."""

    groups: dict[str, list[Passage]]
    articles: dict[str, Article]
    embedder: Embedder
    article: Article | None = None


def gather_summary(
    parts: SummaryParts,
    *,
    article_id: str | None = None,
    query: str | None = None,
    filters: Filters | None = None,
    bullets: int = 5,
    max_words: int | None = None,
) -> SummarySources:
    """One article by id, or the articles retrieved for `query`: a summary's sources."""
    _check_controls(article_id, query, bullets, max_words)
    if article_id is not None:
        article = parts.index.get_article(article_id)
        return SummarySources({}, {article.id: article}, parts.embedder, article)
    assert query is not None
    groups, articles = _retrieve(parts, query, filters, top_k=max(parts.top_k, 3 * bullets))
    return SummarySources(groups, articles, parts.embedder)


def gather_timeline(
    parts: SummaryParts, query: str, *, filters: Filters | None = None, max_events: int = 12
) -> SummarySources:
    """The articles retrieved for `query`: a timeline's sources."""
    if not query or not query.strip():
        raise InputError("timeline", "the query is empty")
    if max_events < 1:
        raise InputError("timeline", f"max_events must be at least 1, got {max_events}")
    groups, articles = _retrieve(parts, query, filters, top_k=max(parts.top_k, 2 * max_events))
    return SummarySources(groups, articles, parts.embedder)


def summary_offline(
    sources: SummarySources, *, query: str | None, bullets: int, max_words: int | None,
    focus: str | None,
) -> Summary:
    """The extractive engine's summary: source sentences picked, no model."""
    if sources.article is not None:
        return extractive_article_summary(sources.article, sources.embedder, bullets=bullets,
                                          max_words=max_words, focus=focus)
    assert query is not None
    return extractive_multi_summary(query, sources.groups, sources.articles, sources.embedder,
                                    bullets=bullets, max_words=max_words, focus=focus)


def summary_with_llm(
    llm: LLM, sources: SummarySources, window: int, *, query: str | None, bullets: int,
    max_words: int | None, focus: str | None, template: str = "summarize",
) -> Summary:
    """The LLM engine's summary; `window` is the tokens the model reads."""
    article = sources.article
    if article is not None:
        budget = source_budget(window, template, llm.max_output_tokens,
                               **_controls_text(bullets, max_words, focus))
        groups = {article.id: _article_passages(article, max(budget - 40, 32))}
        return llm_summary(llm, groups, sources.articles, bullets=bullets, max_words=max_words,
                           focus=focus, query=None, window=window, template=template)
    if not sources.groups:
        return Summary(headline=f"Nothing found about {query!r}", mode="llm", model=llm.model)
    return llm_summary(llm, sources.groups, sources.articles, bullets=bullets,
                       max_words=max_words, focus=focus, query=query, window=window,
                       template=template)


def timeline_with_llm(
    llm: LLM, sources: SummarySources, window: int, query: str, *, max_events: int
) -> Timeline:
    """The LLM engine's timeline; `window` is the tokens the model reads."""
    if not sources.groups:
        return Timeline(query=query, mode="llm", model=llm.model)
    return llm_timeline(llm, query, sources.groups, sources.articles, max_events=max_events,
                        window=window)


def _check_controls(
    article_id: str | None, query: str | None, bullets: int, max_words: int | None
) -> None:
    if (article_id is None) == (query is None or not query.strip()):
        raise InputError("summarize", "give exactly one of an article id or a non-empty query")
    if bullets < 1:
        raise InputError("summarize", f"bullets must be at least 1, got {bullets}")
    if max_words is not None and max_words < 5:
        raise InputError("summarize", f"max_words must be at least 5, got {max_words}")


def _retrieve(
    parts: SummaryParts, query: str, filters: Filters | None, *, top_k: int
) -> tuple[dict[str, list[Passage]], dict[str, Article]]:
    if filters is None:
        passages = parts.retriever.search(query, top_k=top_k)
    else:
        passages = parts.retriever.search(query, top_k=top_k, filters=filters)
    groups = group_by_article(passages)
    return groups, _fetch_articles(parts, groups)


def _article_passages(article: Article, max_tokens: int) -> list[Passage]:
    """The whole article as one source when it fits, else its chunks, so a long article goes
    through map-reduce instead of overflowing the window."""
    if count_tokens(article.text) <= max_tokens:
        spans = [(0, len(article.text))]
    else:
        spans = [(c.start, c.end) for c in chunk_article(article, max_tokens=max_tokens)]
    return [
        Passage(chunk_id=f"{article.id}:{start}", article_id=article.id, title=article.title,
                source=article.source, published_at=article.published_at, url=article.url,
                text=article.text[start:end], start=start, end=end, score=1.0)
        for start, end in spans
    ]


# ----------------------------------------------------------------------------------------
# LLM engine: schemas the model fills, then verification
# ----------------------------------------------------------------------------------------


class QuotedSource(BaseModel):
    source: str = Field(description="the id of the source the quote is copied from")
    quote: str = Field(description="a verbatim span copied from that source")


class DraftBullet(BaseModel):
    model_config = quotes_required("quotes")

    text: str
    quotes: list[QuotedSource] = Field(default_factory=list)


class DraftSummary(BaseModel):
    headline: str
    bullets: list[DraftBullet] = Field(default_factory=list)
    disagreements: list[DraftBullet] = Field(default_factory=list)


class DraftEvent(BaseModel):
    model_config = quotes_required("quotes")

    date: str = Field(description="YYYY-MM-DD")
    date_source: Literal["text", "published_at"] = "published_at"
    text: str
    quotes: list[QuotedSource] = Field(default_factory=list)


class DraftTimeline(BaseModel):
    events: list[DraftEvent] = Field(default_factory=list)


# Room kept for the model's reply when packing sources into the window.
REPLY_TOKENS = 1200


def source_budget(window: int, template: str, reply: int = REPLY_TOKENS, **values: str) -> int:
    """Tokens left for sources once the template's own words and the reply are counted."""
    messages = render(template, **{"sources": "", "partials": "", "topic": "", **values})
    framing = sum(count_tokens(m["content"]) + 4 for m in messages) + 3
    return max(window - framing - reply, 64)


def pack_groups(
    groups: Mapping[str, Sequence[Passage]],
    budget: int,
    count: Callable[[str], int],
) -> list[dict[str, list[Passage]]]:
    """Batches of whole article groups that fit `budget`; a group too big alone is split by
    passage, and a passage too big alone still gets its own batch (never dropped)."""
    batches: list[dict[str, list[Passage]]] = []
    current: dict[str, list[Passage]] = {}
    used = 0
    for article_id, passages in groups.items():
        for passage in passages:
            cost = count(passage.text) + 40  # the source header
            if current and used + cost > budget:
                batches.append(current)
                current, used = {}, 0
            current.setdefault(article_id, []).append(passage)
            used += cost
    if current:
        batches.append(current)
    return batches


def _token_count() -> Callable[[str], int]:
    return count_tokens


def _controls_text(bullets: int, max_words: int | None, focus: str | None) -> dict[str, str]:
    return {
        "bullets": str(bullets),
        "max_words": f"at most {max_words} words in all" if max_words else "no word limit",
        "focus": focus.strip() if focus and focus.strip() else "none",
    }


def llm_summary(
    llm: LLM,
    groups: Mapping[str, Sequence[Passage]],
    articles: Mapping[str, Article],
    *,
    bullets: int,
    max_words: int | None,
    focus: str | None,
    query: str | None,
    window: int,
    template: str = "summarize",
) -> Summary:
    """One call when the sources fit; else map over batches and reduce the partials.

    `template` is the map step's prompt; the reduce uses `<template>_reduce` where the
    template ships one, else the general `summarize_reduce`.
    """
    count = _token_count()
    controls = _controls_text(bullets, max_words, focus)
    topic = query or "the article"
    reply = llm.max_output_tokens
    batches = pack_groups(groups, source_budget(window, template, reply, **controls), count)
    usage = Usage()
    rejected: list[RejectedCitation] = []
    partials: list[Summary] = []
    for batch in batches:
        passages = [p for group in batch.values() for p in group]
        messages = render(template, topic=topic, sources=format_sources(passages), **controls)
        draft, used = llm.structured(messages, DraftSummary)
        usage += used
        partial, bad = _verified_summary(draft, passages, articles)
        rejected += bad
        partials.append(partial)
    if len(partials) == 1:
        final = partials[0]
    else:
        reduce = f"{template}_reduce" if f"{template}_reduce" in available() else (
            "summarize_reduce")
        final, used, bad = _reduce(llm, topic, partials, articles, controls, window, count,
                                   reduce)
        usage += used
        rejected += bad
    bullets_out = _limit_words(final.bullets[:bullets], max_words)
    return Summary(
        headline=final.headline,
        bullets=bullets_out,
        article_ids=list(groups),
        disagreements=final.disagreements,
        rejected_citations=rejected,
        mode="llm",
        model=llm.model,
        usage=usage,
    )


def _reduce(
    llm: LLM,
    topic: str,
    partials: list[Summary],
    articles: Mapping[str, Article],
    controls: dict[str, str],
    window: int,
    count: Callable[[str], int],
    template: str = "summarize_reduce",
) -> tuple[Summary, Usage, list[RejectedCitation]]:
    """Combine partial summaries; their verified quotes are the sources the reduce may cite.
    Partials that do not fit one window are reduced in rounds."""
    usage = Usage()
    rejected: list[RejectedCitation] = []
    budget = source_budget(window, template, llm.max_output_tokens, **controls)
    while len(partials) > 1:
        rounds = _pack_partials(partials, budget, count)
        if len(rounds) == len(partials) and len(partials) > 1:
            rounds = [partials]  # each partial alone fills a window: combine anyway, not drop
        merged: list[Summary] = []
        for group in rounds:
            text, passages = _partials_as_sources(group)
            messages = render(template, topic=topic, partials=text, **controls)
            draft, used = llm.structured(messages, DraftSummary)
            usage += used
            summary, bad = _verified_summary(draft, passages, articles)
            rejected += bad
            merged.append(summary)
        partials = merged
    return partials[0], usage, rejected


def _pack_partials(
    partials: list[Summary], budget: int, count: Callable[[str], int]
) -> list[list[Summary]]:
    rounds: list[list[Summary]] = [[]]
    used = 0
    for partial in partials:
        cost = count(_partials_as_sources([partial])[0])
        if rounds[-1] and used + cost > budget:
            rounds.append([])
            used = 0
        rounds[-1].append(partial)
        used += cost
    return rounds


def _partials_as_sources(partials: Sequence[Summary]) -> tuple[str, list[Passage]]:
    """Partial bullets, each with the quotes it verified, labelled by the quote's article:
    the reduce step can only cite what the map step verified."""
    passages: list[Passage] = []
    for part in partials:
        for bullet in [*part.bullets, *part.disagreements]:
            for citation in bullet.citations:
                passages.append(Passage(
                    chunk_id=f"{citation.article_id}:{citation.start}",
                    article_id=citation.article_id, title=citation.title,
                    source=citation.source, published_at=citation.published_at,
                    url=citation.url, text=citation.quote, start=citation.start,
                    end=citation.end, score=1.0,
                ))
    lines = []
    for n, part in enumerate(partials, 1):
        lines.append(f"Partial summary {n}: {part.headline}")
        lines += [f"- {b.text}" for b in part.bullets]
        lines += [f"- (disagreement) {b.text}" for b in part.disagreements]
    return "\n".join(lines) + "\n\nQuotes they rest on:\n" + format_sources(passages), passages


def _verified_summary(
    draft: DraftSummary, passages: Sequence[Passage], articles: Mapping[str, Article]
) -> tuple[Summary, list[RejectedCitation]]:
    grounder = Grounder("", passages, articles)
    bullets = [b for b in (_verified_bullet(item, grounder) for item in draft.bullets) if b]
    disagreements: list[Bullet] = []
    for item in draft.disagreements:
        bullet = _verified_bullet(item, grounder)
        # A disagreement needs both sides: one verified quote is only a claim.
        if bullet is not None and len({c.article_id for c in bullet.citations}) >= 2:
            disagreements.append(bullet)
    summary = Summary(headline=_clean(draft.headline) or "Summary", bullets=bullets,
                      disagreements=disagreements, mode="llm")
    return summary, grounder.rejected


def _verified_bullet(item: DraftBullet | DraftEvent, grounder: Grounder) -> Bullet | None:
    """A bullet survives only with verified quotes that support it (grounding.Grounder):
    an uncited or unsupported bullet is a claim the reader cannot check."""
    claim = DraftClaim(
        text=item.text,
        citations=[DraftCitation(source_id=q.source, quote=q.quote) for q in item.quotes],
    )
    text, citations = grounder.supported(claim)
    return Bullet(text=_clean(text), citations=citations) if citations else None


def _limit_words(bullets: list[Bullet], max_words: int | None) -> list[Bullet]:
    if max_words is None:
        return bullets
    out: list[Bullet] = []
    left = max_words
    for bullet in bullets:
        words = bullet.text.split()
        if left < 4:
            break
        text = _trim_words(bullet.text, left)
        left -= min(len(words), left)
        out.append(Bullet(text=text, citations=bullet.citations))
    return out


def llm_timeline(
    llm: LLM,
    query: str,
    groups: Mapping[str, Sequence[Passage]],
    articles: Mapping[str, Article],
    *,
    max_events: int,
    window: int,
) -> Timeline:
    """Events per batch of sources (map), then merged by date: a timeline needs no reduce call."""
    usage = Usage()
    rejected: list[RejectedCitation] = []
    events: list[TimelineEvent] = []
    budget = source_budget(window, "timeline", llm.max_output_tokens, max_events=str(max_events))
    for batch in pack_groups(groups, budget, _token_count()):
        passages = [p for group in batch.values() for p in group]
        messages = render("timeline", topic=query, max_events=str(max_events),
                          sources=format_sources(passages))
        draft, used = llm.structured(messages, DraftTimeline)
        usage += used
        grounder = Grounder("", passages, articles)  # a topic, not a question to answer
        for item in draft.events:
            event = _verified_event(item, grounder)
            if event is not None:
                events.append(event)
        rejected += grounder.rejected
    events = _dedupe_events(sorted(events, key=_event_order))[:max_events]
    return Timeline(
        query=query, events=events,
        article_ids=list(dict.fromkeys(c.article_id for e in events for c in e.citations)),
        rejected_citations=rejected, mode="llm", model=llm.model, usage=usage,
    )


def _verified_event(item: DraftEvent, grounder: Grounder) -> TimelineEvent | None:
    """The model's date is untrusted: an unparseable one falls back to publication."""
    bullet = _verified_bullet(item, grounder)
    if bullet is None:
        return None
    cited = grounder.articles[bullet.citations[0].article_id]
    published = published_date(cited)
    try:
        date = dt.date.fromisoformat(item.date.strip()[:10])
        source: Literal["text", "published_at"] = item.date_source
    except ValueError:
        if published is None:
            grounder.rejected.append(RejectedCitation(article_id=cited.id, quote=item.text,
                                                      reason=f"unusable date {item.date!r}"))
            return None
        date, source = published, "published_at"
    return TimelineEvent(date=date, date_source=source, text=bullet.text,
                         citations=bullet.citations)


def _dedupe_events(events: list[TimelineEvent]) -> list[TimelineEvent]:
    seen: set[tuple[dt.date, str]] = set()
    out = []
    for event in events:
        key = (event.date, event.citations[0].quote if event.citations else event.text)
        if key not in seen:
            seen.add(key)
            out.append(event)
    return out
