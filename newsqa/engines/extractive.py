"""The offline engine: answers made only of source sentences, each one cited.

`ExtractiveEngine` is how `NewsQA` reaches it (the `Engine` protocol, engines/base.py):
it answers here, and hands summaries and timelines to summarize.py's extractive side
and follow-ups to condense.py's offline rewrite.

No model writes anything here, so nothing can be invented: the answer is the
best-supported sentences of the retrieved passages, verbatim, in the order a
reader would want them. It abstains when the evidence looks like that of a
question the archive does not hold (`NullModel`), and when the question asks
for a name, a number or a date it picks that span out of the cited sentences
(`direct_answer`).

A sentence's support is the IDF-weighted share of the question's content terms
it contains; the sentence before it counts at half weight, because news writes
"Qaani met ... However, he warned ..." and the name lives one sentence back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import RetrievalSettings, Settings
from ..errors import ConfigError
from ..grounding import ClaimedQuote, verify
from ..models import Answer, Article, Citation, Passage, RejectedCitation, Usage
from ..text.dates import MONTH_NAMES, WEEKDAY_NAMES
from ..text.lexical import name_terms, terms
from ..text.sentences import sentence_spans
from .condense import Rewrite, Turn, condense_offline
from .direct import LEAD_WITH, direct_answer, kind_bonus, question_kind
from .summarize import SummarySources, extractive_timeline, summary_offline

if TYPE_CHECKING:
    from ..models import Summary, Timeline
    from ..store.index import Index

MAX_SENTENCES = 3
MIN_GAIN = 0.1  # share of the question's term weight a further sentence must add
POOL = 40  # sentences considered for the answer after the best one
CONTEXT_WEIGHT = 0.5


# -- the engine NewsQA calls (the protocol: engines/base.py) ---------------------------------


class ExtractiveEngine:
    """`Engine` (engines/base.py) without a model: the default when none is configured."""

    @property
    def model(self) -> str | None:
        return None

    def warm(self) -> None:
        """Nothing to set up: the embedder it ranks with is retrieval's, warmed by a search."""

    def answer(
        self, question: str, passages: Sequence[Passage], index: Index, settings: Settings,
        *, streaming: bool = True,
    ) -> Iterator[str | Answer]:
        result = extractive_answer(question, passages, index, settings)
        if streaming:  # the whole text at once: it is verified as it is picked
            yield result.answer
        yield result

    def summarize(
        self, sources: SummarySources, settings: Settings, *, query: str | None,
        bullets: int, max_words: int | None, focus: str | None, template: str = "summarize",
    ) -> Iterator[str | Summary]:
        if template != "summarize":  # a template is instructions, and no model reads them here
            raise ConfigError(f"the summary template {template!r} needs an LLM; the offline "
                              "engine summarises by its own rules (configure a model, see "
                              "README)")
        yield summary_offline(sources, query=query, bullets=bullets, max_words=max_words,
                              focus=focus)

    def timeline(
        self, query: str, sources: SummarySources, settings: Settings, *, max_events: int
    ) -> Iterator[str | Timeline]:
        yield extractive_timeline(query, sources.groups, sources.articles, sources.embedder,
                                  max_events=max_events)

    def condense(self, question: str, history: Sequence[Turn]) -> Iterator[str | Rewrite]:
        yield Rewrite(condense_offline(question, history), Usage())


# -- abstention ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signals:
    """What the abstention rule weighs; each is cheap and says something a reader can check.

    - support: the IDF-weighted share of the question's terms the chosen
      sentences cover (an answer that misses what was asked is no answer);
    - names_found: the share of the question's names (capitalised words: people,
      companies, outlets) found anywhere in the retrieved passages, their titles
      or publishers; a question about someone the archive never mentions cannot
      be answered from it, however well its other words match;
    - dense: the best cosine between the question and a retrieved passage;
    - rerank: the learned ranker's best score (rerank.py): how much the best
      passage looks like the evidence of a question.
    dense and rerank are None when their scale is not the one the models were
    fitted on (another embedding model or ranker, the ranker off).
    """

    support: float
    names_found: float
    names: int
    dense: float | None
    rerank: float | None
    question_terms: int

    def value(self, name: str) -> float:
        found = getattr(self, name)
        return float(found) if found is not None else 0.0


@dataclass(frozen=True)
class NullModel:
    """A logistic model of "the archive does not hold this": P(null) from some `Signals`.

    Constants fitted by `python benchmarks/abstention.py --fit` on MultiHop-RAG dev
    queries (null = the corpus lacks the answer); the threshold is the one with
    the best balanced accuracy there. Cross-validated figures: benchmarks/RESULTS.md,
    "Extractive abstention".
    """

    name: str
    intercept: float
    weights: Mapping[str, float]
    abstain_at: float  # abstain when P(null) reaches this

    def probability(self, signals: Signals) -> float:
        z = self.intercept + sum(w * signals.value(n) for n, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def applies(self, signals: Signals) -> bool:
        return all(getattr(signals, n) is not None for n in self.weights)


# Best first; a question gets the first model whose signals it has (`null_model`).
FULL = NullModel("ranker+dense+lexical", 12.97,
                 {"rerank": -0.6141, "dense": -15.75, "names_found": -6.725, "support": -1.423},
                 0.09)
DENSE = NullModel("dense+lexical", 18.85,
                  {"dense": -22.64, "names_found": -9.763, "support": -4.111}, 0.09)
LEXICAL = NullModel("lexical", 8.419, {"names_found": -10.39, "support": -5.809}, 0.10)
MODELS = (FULL, DENSE, LEXICAL)
# Cosines and ranker scores were fitted on MultiHop-RAG questions, all of 12 or more
# content terms; shorter questions score far lower on both even when answerable (NewsQA's
# crowd questions), so below that length only the lexical model decides.
MIN_TERMS = 12
# Nor do those models know short questions without names: there the old rule stays as a
# floor (chosen on MultiHop-RAG dev before; NewsQA's answerable questions all clear it).
SHORT_MIN_SUPPORT = 0.30
DENSE_MODEL = "all-MiniLM-L6-v2"  # the embedding model whose cosines DENSE and FULL know


def evidence_signals(
    question: str, passages: Sequence[Passage], chosen: Sequence[Candidate], *,
    named: Mapping[str, set[str]], dense: bool, rerank: bool,
) -> Signals:
    """The abstention rule's inputs; `named`: each article's names (`_names_by_article`);
    `dense`/`rerank`: whether those scores are calibrated."""
    names = name_terms(question)
    seen = set().union(*named.values())
    size = len(set(terms(question)))
    cosines = [p.scores["dense"] for p in passages if "dense" in p.scores]
    ranked = [p.scores["rerank"] for p in passages if "rerank" in p.scores]
    long_enough = size >= MIN_TERMS
    return Signals(
        support=evidence_support(chosen),
        names_found=sum(n in seen for n in names) / len(names) if names else 1.0,
        names=len(names),
        dense=max(cosines) if cosines and dense and long_enough else None,
        rerank=max(ranked) if ranked and rerank and dense and long_enough else None,
        question_terms=size,
    )


def null_model(signals: Signals) -> NullModel:
    """The best model whose signals are there (the lexical one always is)."""
    return next(m for m in MODELS if m.applies(signals))


def dense_calibrated(index: Index) -> bool:
    """Whether the index's cosines are on the scale the models were fitted on."""
    return str(getattr(index, "model", "")).startswith(DENSE_MODEL)


def rerank_calibrated(weights: RetrievalSettings) -> bool:
    """Whether rerank scores come from the shipped ranker (another model has its own scale)."""
    return weights.rerank and not weights.ranker


@dataclass(frozen=True)
class Assessment:
    """What the engine decided from the passages, before any citation is verified."""

    chosen: list[Candidate]
    signals: Signals
    model: NullModel
    p_null: float
    unnamed: list[str]  # a short question's names that no chosen sentence's article writes

    @property
    def abstains(self) -> bool:
        return (not self.chosen or self.p_null >= self.model.abstain_at or self.too_thin
                or bool(self.unnamed))

    @property
    def too_thin(self) -> bool:
        s = self.signals
        return s.question_terms < MIN_TERMS and s.support < SHORT_MIN_SUPPORT


def assess(
    question: str, passages: Sequence[Passage], *, dense: bool = True, rerank: bool = True
) -> Assessment:
    """The chosen sentences and the abstention decision (benchmarks/abstention.py reuses it)."""
    candidates = rank_sentences(question, passages)
    names = asked_names(question) if len(set(terms(question))) < MIN_TERMS else []
    named = _names_by_article(passages)
    if names:  # a short question is answered from articles that name what it asks about
        candidates = _naming(candidates, named, names)
    chosen = choose(candidates) if candidates else []
    signals = evidence_signals(question, passages, chosen, named=named, dense=dense,
                               rerank=rerank)
    model = null_model(signals)
    written = set().union(*(named[c.passage.article_id] for c in chosen))
    return Assessment(chosen, signals, model, model.probability(signals) if chosen else 1.0,
                      [n for n in names if n not in written])


def asked_names(question: str) -> list[str]:
    """The question's names (`name_terms`) but months and weekdays, which dates answer."""
    return [n for n in name_terms(question) if n not in _CALENDAR]


_CALENDAR = frozenset(t for day in (*MONTH_NAMES, *WEEKDAY_NAMES) for t in terms(day))


def _naming(
    candidates: list[Candidate], named: Mapping[str, set[str]], names: Sequence[str]
) -> list[Candidate]:
    """The sentences of the articles that write all the names, else of those writing one.

    "Who refereed Chelsea's Carabao Cup win over Blackburn?" was answered from an article
    on Chelsea's win over Brighton; "How many troops were sent to Greenland?" from one on
    Kuwait (a new user's session over MultiHop-RAG and NewsQA articles).
    """
    wanted = set(names)
    full = {a for a, got in named.items() if wanted <= got}
    some = full or {a for a, got in named.items() if wanted & got}
    return [c for c in candidates if c.passage.article_id in some]


def _names_by_article(passages: Sequence[Passage]) -> dict[str, set[str]]:
    """The name terms each article's retrieved passages, title and publisher write."""
    named: dict[str, set[str]] = {}
    for p in passages:
        named.setdefault(p.article_id, set()).update(_written_names(p))
    return named


def _written_names(item: Passage | Article) -> set[str]:
    """The names a passage or article writes with its title and publisher (capitalised:
    "bears" in "the poem bears the truth" is no "Bears")."""
    return set(name_terms(f"{item.title}\n{item.source}\n{item.text}", first_word=True))


def _abstain_reason(question: str, found: Assessment) -> str:
    s = found.signals
    if found.unnamed:
        asked = [w for w in re.findall(r"[\w'’-]+", question)
                 if set(terms(w)) & set(found.unnamed)]
        return (f"no retrieved article that matches the question writes "
                f"{', '.join(repr(w) for w in dict.fromkeys(asked))} (the extractive engine "
                f"abstains on questions of fewer than {MIN_TERMS} distinct terms when the "
                "articles it would cite do not write all the names they ask about)")
    if found.too_thin:
        return (f"the best supporting sentences cover {s.support:.0%} of the question's terms "
                f"(the extractive engine abstains below {SHORT_MIN_SUPPORT:.0%} on questions "
                f"of fewer than {MIN_TERMS} distinct terms)")
    parts = [f"the chosen sentences cover {s.support:.0%} of the question's terms"]
    if s.names:
        parts.append(f"{s.names_found:.0%} of the names it asks about appear in the "
                     "retrieved articles")
    if "dense" in found.model.weights:
        parts.append(f"the closest passage has similarity {s.value('dense'):.2f}")
    if "rerank" in found.model.weights:
        parts.append(f"the ranker scores the best passage {s.value('rerank'):.1f}")
    return (f"the evidence looks like that of a question the archive does not hold "
            f"({'; '.join(parts)}): {found.p_null:.0%} likely unanswerable by the "
            f"{found.model.name} model, and the extractive engine abstains from "
            f"{found.model.abstain_at:.0%}")


# -- the answer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One sentence of one passage, with how well it supports the question."""

    passage: Passage
    rank: int
    start: int  # offsets within the passage text
    end: int
    support: float
    score: float
    matched: frozenset[str]
    context: frozenset[str]
    weights: Mapping[str, float]  # the question's term weights, shared by all candidates

    @property
    def text(self) -> str:
        return self.passage.text[self.start : self.end]


def extractive_answer(
    question: str, passages: Sequence[Passage], index: Index, settings: Settings
) -> Answer:
    """Answer from source sentences, or abstain saying why."""
    found = assess(question, passages, dense=dense_calibrated(index),
                   rerank=rerank_calibrated(settings.retrieval))
    if not found.chosen and not found.unnamed:
        return _abstain(question, passages, "no retrieved passage matches the question")
    if found.abstains:
        return _abstain(question, passages, _abstain_reason(question, found))
    articles = {i: index.get_article(i)
                for i in dict.fromkeys(c.passage.article_id for c in found.chosen)}
    citations, rejected = _cite(found.chosen, articles)
    if not citations:
        return _abstain(question, passages, "no sentence could be verified", rejected)
    text = " ".join(f"{c.quote} [{i}]" for i, c in enumerate(citations, 1))
    cited = [articles[i].text for i in dict.fromkeys(c.article_id for c in citations)]
    direct = direct_answer(question, _answer_quotes(question, citations, found, articles),
                           _by_article(passages), cited)
    if direct is not None and question_kind(question) in LEAD_WITH:
        text = f"{direct}. {text}"
    return Answer(
        question=question,
        answer=text,
        answerable=True,
        direct_answer=direct,
        citations=citations,
        rejected_citations=rejected,
        passages=list(passages),
        mode="extractive",
        model="extractive",
    )


def rank_sentences(question: str, passages: Sequence[Passage]) -> list[Candidate]:
    """Every sentence of the passages, best support first."""
    wanted = set(terms(question))
    if not wanted:
        return []
    split = [(p, rank, sentence_spans(p.text)) for rank, p in enumerate(passages)]
    sentence_terms = [[set(terms(p.text[s:e])) for s, e in spans] for p, _, spans in split]
    weights = _idf(wanted, [t for per_passage in sentence_terms for t in per_passage])
    total = sum(weights.values())
    kind = question_kind(question)
    out: list[Candidate] = []
    for (passage, rank, spans), per_sentence in zip(split, sentence_terms, strict=True):
        for i, (start, end) in enumerate(spans):
            own = per_sentence[i] & wanted
            context = (per_sentence[i - 1] & wanted) - own if i else set()
            support = (
                sum(weights[t] for t in own) + CONTEXT_WEIGHT * sum(weights[t] for t in context)
            ) / total
            score = support + kind_bonus(kind, passage.text[start:end]) + 0.02 / (1 + rank)
            out.append(Candidate(passage, rank, start, end, support, score, frozenset(own),
                                 frozenset(context), weights))
    out.sort(key=lambda c: (-c.score, c.rank, c.start))
    return out


def evidence_support(chosen: Sequence[Candidate]) -> float:
    """Share of the question's term weight the chosen sentences cover together.

    Multi-hop questions spread their terms over sentences of several articles, so
    no single sentence covers much; what matters is what the answer covers.
    """
    if not chosen:
        return 0.0
    weights = chosen[0].weights
    own = set().union(*(c.matched for c in chosen))
    context = set().union(*(c.context for c in chosen)) - own
    covered = sum(weights[t] for t in own) + CONTEXT_WEIGHT * sum(weights[t] for t in context)
    return covered / (sum(weights.values()) or 1.0)


def _idf(wanted: set[str], sentences: list[set[str]]) -> dict[str, float]:
    """Rare question terms matter more; a term no sentence has weighs the most."""
    n = len(sentences) or 1
    return {t: math.log(1 + n / (1 + sum(t in s for s in sentences))) for t in wanted}


def choose(candidates: list[Candidate]) -> list[Candidate]:
    """The best sentence, then greedily those that cover question terms it lacks.

    A sentence joins only if it adds real weight (`MIN_GAIN`) and is itself a
    decent match, so the answer grows for multi-hop questions, not for padding.
    """
    best = candidates[0]
    chosen = [best]
    covered = set(best.matched)
    total = sum(best.weights.values()) or 1.0
    short = len(best.weights) < MIN_TERMS
    # A short question's answer is one story's: another article's sentence joins only
    # when it holds two of its words ("Goff comes under heavy pressure" joined "How heavy
    # was the gryphon statue?" by one).
    pool = [c for c in candidates[1:POOL] if c.score >= 0.4 * best.score
            and not (short and c.passage.article_id != best.passage.article_id
                     and len(c.matched) < 2)]
    while len(chosen) < MAX_SENTENCES:
        gains = [
            (sum(c.weights[t] for t in c.matched - covered) / total, c.score, i)
            for i, c in enumerate(pool)
            if not any(_same_sentence(c, d) for d in chosen)
        ]
        if not gains:
            break
        gain, _, i = max(gains)
        if gain < MIN_GAIN:
            break
        chosen.append(pool[i])
        covered |= pool[i].matched
    follow = _continuation(best, candidates)
    if follow is not None and not any(_same_sentence(follow, c) for c in chosen):
        chosen.append(follow)
    return sorted(chosen, key=lambda c: (c.passage.article_id != best.passage.article_id,
                                         c.passage.article_id, c.passage.start + c.start))


_PRONOUN_START = re.compile(r"^(?:He|She|They|It|This|That|These|Those|His|Her|Their)\b")


def _continuation(best: Candidate, candidates: list[Candidate]) -> Candidate | None:
    """The sentence right after the best one when it goes on about the same subject.

    News often announces then explains: "Hegseth ... issued a strong warning. He
    cautioned that ..."; the second sentence is the content and says "He".
    """
    end = best.passage.start + best.end  # article offsets: the next one may open a new chunk
    after = [
        c for c in candidates
        if c.passage.article_id == best.passage.article_id and c.passage.start + c.start >= end
    ]
    if not after:
        return None
    nxt = min(after, key=lambda c: c.passage.start + c.start)
    return nxt if _PRONOUN_START.match(nxt.text) else None


def _same_sentence(a: Candidate, b: Candidate) -> bool:
    # Overlapping chunks repeat sentences; the same words twice is no extra evidence.
    return a.text == b.text


def _by_article(passages: Sequence[Passage]) -> list[str]:
    """The passages' texts joined per article: a name counts once for each article that
    names it (what a multi-hop answer's articles share), not once per passage, so a
    story retrieved in five passages does not outvote the question's own words."""
    texts: dict[str, list[str]] = {}
    for p in passages:
        texts.setdefault(p.article_id, []).append(p.text)
    return ["\n".join(parts) for parts in texts.values()]


def _cite(
    chosen: list[Candidate], articles: Mapping[str, Article]
) -> tuple[list[Citation], list[RejectedCitation]]:
    claims = [
        ClaimedQuote(
            article_id=c.passage.article_id,
            quote=c.text,
            hint=(c.passage.start + c.start, c.passage.start + c.end),
        )
        for c in chosen
    ]
    return verify(claims, articles)


def _abstain(
    question: str,
    passages: Sequence[Passage],
    reason: str,
    rejected: list[RejectedCitation] | None = None,
) -> Answer:
    return Answer(
        question=question,
        answer="The articles retrieved do not answer this question.",
        answerable=False,
        reason=reason,
        rejected_citations=rejected or [],
        passages=list(passages),
        mode="extractive",
        model="extractive",
    )


def _answer_quotes(
    question: str, citations: Sequence[Citation], found: Assessment,
    articles: Mapping[str, Article],
) -> list[str]:
    """The quotes a short answer may come from, best first: for a short question, only
    those of articles that write all of its names ("Who replaced Soleimani?" is not
    answered from an NFL article's "replaced")."""
    quotes = _best_first(citations, found.chosen)
    names = asked_names(question)
    if found.signals.question_terms >= MIN_TERMS or not names:
        return quotes
    naming = {i for i, a in articles.items() if set(names) <= _written_names(a)}
    return [q for q in quotes if any(c.quote == q and c.article_id in naming for c in citations)]


def _best_first(citations: Sequence[Citation], chosen: Sequence[Candidate]) -> list[str]:
    """The cited quotes, the one that itself holds most of the question's term weight first
    (then by score): the short answer is a span of it.

    A sentence's score also counts the question's words in the sentence before it, which
    is right for choosing evidence but not for the short answer: "How many troops were
    sent to Kuwait?" took "750" from the sentence after the one naming Kuwait's 3,000.
    """
    score = {(c.passage.article_id, c.text): (sum(c.weights[t] for t in c.matched), c.score)
             for c in chosen}
    ordered = sorted(citations, key=lambda c: score.get((c.article_id, c.quote), (0.0, 0.0)),
                     reverse=True)
    return [c.quote for c in ordered]
