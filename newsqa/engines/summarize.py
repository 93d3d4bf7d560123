"""Summaries and timelines: their sources, and the offline engine's, sentences picked.

The extractive engine (offline, the default without an LLM) picks sentences rather
than writing them, so every bullet is its own citation. News puts the gist first, so
a position prior is blended with centrality; across articles, MMR keeps one copy of a
wire fact that several outlets repeat. The LLM's summaries and timelines, grounded
like its answers, are llm_summary.py; both start from the `SummarySources` gathered
here.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..errors import InputError
from ..grounding import citation_for, is_instruction
from ..models import (
    Article,
    Bullet,
    Passage,
    Summary,
    Timeline,
    TimelineEvent,
    utc_day,
)
from ..text.dates import find_dates
from ..text.lexical import name_terms, terms
from ..text.sentences import sentence_spans

if TYPE_CHECKING:
    from ..retrieval import Filters, Retriever
    from ..store.embedding import Embedder
    from ..store.index import Index

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


# Page furniture a feed's text carries along: no fact of the story ("Please try again
# later {{ /verifyErrors }}", "Read our privacy notice" were a new user's summary bullets).
_FURNITURE = re.compile(
    r"\{\{|\}\}|privacy (?:notice|policy)|terms of (?:use|service)|sign up (?:for|to)\b"
    r"|subscribe to (?:our|the)\b|try again later|enable javascript|cookie (?:policy|settings)",
    re.IGNORECASE)


def article_sentences(article: Article, min_words: int = 4) -> list[Sentence]:
    """Sentences worth showing: fragments (bylines, captions) carry no fact to summarise,
    page furniture none of the story's, and a sentence addressed to an AI ("Ignore
    previous instructions ...") is an attack or a story about one, never a bullet."""
    kept = [(start, end) for start, end in sentence_spans(article.text)
            if len(article.text[start:end].split()) >= min_words
            and not _FURNITURE.search(article.text[start:end])
            and not is_instruction(article.text[start:end])]
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




def clean_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def trim_words(text: str, max_words: int) -> str:
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


_PRONOUN_OPENING = re.compile(r"^\W*(?:he|she|they|his|her|their|it|its|this|these|those)\b",
                              re.IGNORECASE)


def _attached(scores: np.ndarray, sentences: Sequence[Sentence]) -> np.ndarray:
    """Scores with no sentence that opens with a pronoun: alone as a bullet, its "He"
    reads as whoever the bullet before names ("He cautioned that ..." under a bullet
    about Qaani was Hegseth's warning, in a new user's summary)."""
    out = np.array(scores, dtype=np.float32, copy=True)
    for i, sentence in enumerate(sentences):
        if _PRONOUN_OPENING.match(sentence.text):
            out[i] = -np.inf
    return out


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
        return Summary(headline=article.title or trim_words(clean_text(article.text), 20),
                       article_ids=[article.id], mode="extractive")
    vectors = _tfidf([s.text for s in sentences])
    scores = rank_sentences(sentences, vectors, weights, _focus_similarity(focus, embedder,
                                                                           sentences))
    picked = select_sentences(_attached(scores, sentences), vectors, bullets, weights)
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
    text = clean_text(lead.text)
    words = text.split()
    if len(words) <= max_words:
        return text.rstrip(".")
    cut = re.split(r"(?<=\w)[,;:]\s|\s[-–—]\s", text)[0]
    if 5 <= len(cut.split()) <= max_words:
        return cut
    return article.title or trim_words(text, max_words)


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
        out.append(Bullet(text=clean_text(article.text[start:end]) + suffix,
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
        f"Sources differ: {_name(first)} reports “{clean_text(a.text)}”, while "
        f"{_name(second)} reports “{clean_text(b.text)}”"
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
    scores = _attached(_relevance(query, focus, sentences, vectors, embedder, list(groups),
                                  weights), sentences)
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


def published_date(article: Article | Passage) -> dt.date | None:
    return utc_day(article.published_at)


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
    picked = mmr(_attached(scores, chosen_sentences), vectors, max_events,
                 weights.redundancy + 0.3)
    events = [
        TimelineEvent(
            date=dated[i][1],
            date_source=dated[i][2],
            text=clean_text(dated[i][0].text),
            citations=[citation_for(articles[dated[i][0].article_id],
                                    dated[i][0].start, dated[i][0].end)],
        )
        for i in picked
    ]
    events.sort(key=event_order)
    return Timeline(
        query=query,
        events=events,
        article_ids=list(dict.fromkeys(e.citations[0].article_id for e in events)),
        mode="extractive",
    )


def event_order(event: TimelineEvent) -> tuple[dt.date, str, int]:
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
    articles = on_topic(query, _fetch_articles(parts, groups))
    return {i: ps for i, ps in groups.items() if i in articles}, articles


def on_topic(query: str, articles: Mapping[str, Article]) -> dict[str, Article]:
    """The articles that hold a word of the query, and one of its names when it names any.

    Retrieval always returns its nearest passages, even for a query the archive knows
    nothing of: "quantum chromodynamics lattice" was summarised from a newsletter blurb
    and game reviews, "Soleimani killing" got a timeline of game spells, each bullet a
    verified quote about something else. A summary or timeline of nothing says "Nothing
    found" instead. Lenient on purpose (the whole article is read, not the passage):
    over MultiHop-RAG dev questions taken as queries, 2,935 of the 2,940 retrieved
    passages holding gold evidence are kept (RESULTS.md).
    """
    wanted = set(terms(query))
    names = set(name_terms(query, first_word=True))
    out = {}
    for article_id, article in articles.items():
        held = set(terms(f"{article.title}\n{article.source}\n{article.text}"))
        if held & wanted and (not names or held & names):
            out[article_id] = article
    return out
