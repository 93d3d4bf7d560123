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
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import RetrievalSettings, Settings
from ..errors import ConfigError
from ..grounding import ClaimedQuote, verify
from ..models import Answer, Article, Citation, Passage, RejectedCitation, Usage
from ..text.dates import MONTH_NAMES, MONTH_PATTERN, WEEKDAY_NAMES, WEEKDAY_PATTERN
from ..text.lexical import terms, terms_many, words
from ..text.sentences import sentence_spans
from .condense import Rewrite, Turn, condense_offline
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

_NAME_WORD = re.compile(r"\b[^\W\d_]*[A-Z][\w'’&.-]*")  # "Qaani", "ECB", "iPhone"


def question_names(question: str) -> list[str]:
    """Terms of the question's capitalised words, its first word left out (that is grammar)."""
    found: list[str] = []
    for match in _NAME_WORD.finditer(question):
        if question[: match.start()].strip():
            found += terms(match.group())
    return list(dict.fromkeys(found))


def evidence_signals(
    question: str, passages: Sequence[Passage], chosen: Sequence[Candidate], *,
    dense: bool, rerank: bool,
) -> Signals:
    """The abstention rule's inputs; `dense`/`rerank`: whether those scores are calibrated."""
    names = question_names(question)
    seen: set[str] = set()
    for p in passages:
        seen.update(terms(f"{p.title}\n{p.source}\n{p.text}"))
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

    @property
    def abstains(self) -> bool:
        return not self.chosen or self.p_null >= self.model.abstain_at or self.too_thin

    @property
    def too_thin(self) -> bool:
        s = self.signals
        return s.question_terms < MIN_TERMS and s.support < SHORT_MIN_SUPPORT


def assess(
    question: str, passages: Sequence[Passage], *, dense: bool = True, rerank: bool = True
) -> Assessment:
    """The chosen sentences and the abstention decision (benchmarks/abstention.py reuses it)."""
    candidates = rank_sentences(question, passages)
    chosen = choose(candidates) if candidates else []
    signals = evidence_signals(question, passages, chosen, dense=dense, rerank=rerank)
    model = null_model(signals)
    return Assessment(chosen, signals, model, model.probability(signals) if chosen else 1.0)


def _abstain_reason(found: Assessment) -> str:
    s = found.signals
    if found.too_thin:
        return (f"the best supporting sentences cover {s.support:.0%} of the question's terms "
                f"(the extractive engine abstains below {SHORT_MIN_SUPPORT:.0%} on questions "
                f"this short)")
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
    if not found.chosen:
        return _abstain(question, passages, "no retrieved passage matches the question")
    if found.abstains:
        return _abstain(question, passages, _abstain_reason(found))
    articles = {i: index.get_article(i)
                for i in dict.fromkeys(c.passage.article_id for c in found.chosen)}
    citations, rejected = _cite(found.chosen, articles)
    if not citations:
        return _abstain(question, passages, "no sentence could be verified", rejected)
    text = " ".join(f"{c.quote} [{i}]" for i, c in enumerate(citations, 1))
    cited = [articles[i].text for i in dict.fromkeys(c.article_id for c in citations)]
    direct = direct_answer(question, _best_first(citations, found.chosen),
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
            score = support + _kind_bonus(kind, passage.text[start:end]) + 0.02 / (1 + rank)
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


def _kind_bonus(kind: str, sentence: str) -> float:
    """A small nudge toward sentences that carry the kind of fact asked for."""
    if kind == "number" and _NUMBER.search(sentence):
        return 0.15
    if kind == "date" and _DATE.search(sentence):
        return 0.15
    if kind == "person" and _NAME.search(sentence[1:]):
        return 0.05
    return 0.0


def choose(candidates: list[Candidate]) -> list[Candidate]:
    """The best sentence, then greedily those that cover question terms it lacks.

    A sentence joins only if it adds real weight (`MIN_GAIN`) and is itself a
    decent match, so the answer grows for multi-hop questions, not for padding.
    """
    best = candidates[0]
    chosen = [best]
    covered = set(best.matched)
    total = sum(best.weights.values()) or 1.0
    pool = [c for c in candidates[1:POOL] if c.score >= 0.4 * best.score]
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


# -- the direct answer -----------------------------------------------------------------------

# Kinds whose direct answer opens the answer text (measured on dev: benchmarks/RESULTS.md).
LEAD_WITH: frozenset[str] = frozenset()

_AUXILIARY = re.compile(
    r"^\W*(?:is|are|was|were|do|does|did|has|have|had|can|could|will|would|should|shall|may|"
    r"might|must)\b", re.IGNORECASE)
_WH = re.compile(r"\b(how (?:many|much|old)|when|who|whom|whose|what|which|where|why|how)\b",
                 re.IGNORECASE)
_NUMBER_NOUNS = frozenset("number amount percentage percent total cost price sum count".split())
_DATE_NOUNS = frozenset("year date day month".split())
_ENTITY_NOUNS = frozenset(
    """company companies firm firms organization organisation organizations organisations
    individual individuals person people entity player players team teams celebrity artist
    executive ceo founder institution agency brand startup group name club athlete""".split()
)
_FILLER = frozenset("is was are were the a an of".split())
# Nouns that ask for a person, whose full name a reader wants ("Sam Bankman-Fried"), where
# a company's longer spellings are not its name ("Epic Games v. Google", "Alphabet's Google").
_PERSON_NOUNS = frozenset(
    """individual individuals person people celebrity artist executive ceo founder athlete player
    professor official spokesman spokeswoman spokesperson leader lawyer attorney judge coach
    actor actress singer author writer journalist reporter scientist researcher economist
    analyst politician president minister senator governor director manager investor""".split())


_KNOWN_NOUNS = _NUMBER_NOUNS | _DATE_NOUNS | _ENTITY_NOUNS | _PERSON_NOUNS


def asks_for_person(question: str) -> bool:
    """"Who ...?" or "Which individual ...?": a person, named in full."""
    head, noun = _asked(question)
    return head in ("who", "whom", "whose") or (head in ("what", "which")
                                                and noun in _PERSON_NOUNS)


def _asked(question: str) -> tuple[str, str]:
    """The first question word, lower-cased ("" if none), and the noun after a
    "what"/"which" ("which company" -> "company"; "" otherwise)."""
    match = _WH.search(question)
    if match is None:
        return "", ""
    head = match.group(1).lower()
    if head not in ("what", "which"):
        return head, ""
    after = [w for w in words(question[match.end():])[:5] if w not in _FILLER]
    if not after:
        return head, ""
    # "Which geological sciences professor ...": a person, past the words describing him.
    # Only persons: "which football club" looked past "football" asked for "Everton" where
    # the gold is "Everton Football Club" (dev: 1 of 12 such answers exact), and "which
    # two individuals" asks for two.
    if after[0] not in _KNOWN_NOUNS and not _NUMBER.fullmatch(after[0]):
        return head, next((w for w in after[1:3] if w in _PERSON_NOUNS), after[0])
    return head, after[0]


def question_kind(question: str) -> str:
    """What the question asks for: "number", "date", "person" (or organisation), or "other".

    The first question word decides ("Who ...", "... , which company ..."); a
    question opening with an auxiliary ("Did ...", "Is ...") asks yes or no,
    whatever "when" or "who" its clauses hold.
    """
    if _AUXILIARY.match(question):
        return "other"
    head, noun = _asked(question)
    if head.startswith("how "):
        return "number"
    if head == "when":
        return "date"
    if head in ("who", "whom", "whose"):
        return "person"
    for kind, nouns in (("number", _NUMBER_NOUNS), ("date", _DATE_NOUNS),
                        ("person", _ENTITY_NOUNS | _PERSON_NOUNS)):
        if noun in nouns:
            return kind
    return "other"


_CAPITALISED = r"[A-Z][\w'’.&-]*"
_NAME = re.compile(_CAPITALISED + r"(?:\s+(?:(?:of|de|da|van|von|der|del|al|bin|la|le)\s+)?"
                   + _CAPITALISED + r")*")
_POSSESSIVE = re.compile(r"[’']s\b")
_TOKEN = re.compile(r"\S+")
_NOT_NAMES = frozenset([
    *"""the a an he she it they we i his her its their this that these those there here however
    meanwhile but and or so yet after before when while although though if as at in on by for
    from with without according despite during since until last next earlier later today
    yesterday tomorrow mr mrs ms dr also still then now what who which where why how yes
    no""".split(), *MONTH_NAMES, *WEEKDAY_NAMES,
])
_SCALE = r"(?:\s?(?:%|percent|per cent|million|billion|trillion|thousand|hundred))?"
_FIGURE = r"[$€£]?\d[\d,]*(?:\.\d+)?" + _SCALE
# "one" is left out: "one of them", "One ton" are rarely the count asked for.
_SPELLED = (r"(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
            r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|"
            r"sixty|seventy|eighty|ninety|hundreds|thousands|dozens?)" + _SCALE)
_NUMBER = re.compile(r"(?<![\w.])(?:" + _FIGURE + r"(?:\s(?:to|and|-)\s" + _FIGURE + r")?|"
                     + _SPELLED + r")(?![\w-])", re.IGNORECASE)
_YEAR = re.compile(r"(?:19|20)\d\d")
_MONTH = MONTH_PATTERN + r"\.?"
_WEEKDAY = f"(?:{WEEKDAY_PATTERN})"
_DATE = re.compile(
    r"\b(?:" + _MONTH + r"\s\d{1,2}(?:st|nd|rd|th)?(?:,?\s\d{4})?"
    r"|\d{1,2}(?:st|nd|rd|th)?\s" + _MONTH + r"(?:,?\s\d{4})?"
    r"|" + _MONTH + r"\s\d{4}"
    r"|(?:last|this|next)\s(?:week|month|year|" + _WEEKDAY + r")"
    r"|" + _WEEKDAY + r"|yesterday|today|(?:19|20)\d\d)\b"
)
# A wire dateline ("NEW DELHI, India (CNN) -- ") names where, not who.
# Where a sentence starts: the text's start, or after a full stop, with quote marks between.
_SENTENCE_START = re.compile(r"(?:^|[.!?][\"”’')\]]*\s)[\s\"“‘'(\[]*$")
_AFTER_SENTENCE = re.compile(r"[.!?][\"”’')\]]*\s[\s\"“‘'(\[]*$")  # not the text's start
_DATELINE = re.compile(r"^[^()\n]{0,60}\((?:CNN|AP|AFP|Reuters|UPI)\)\s*(?:--|—|–)\s*")
_MID_SENTENCE_CAPITAL = re.compile(r"[\w,;:]\s+([A-Z][\w-]*)")


def direct_answer(
    question: str, quotes: Sequence[str], context: Sequence[str] = (),
    articles: Sequence[str] = (),
) -> str | None:
    """The name, number or date the question asks for: a span of a quote, not of the question.

    `quotes` are the cited sentences, best first; `context` is the retrieved text;
    `articles` the cited articles' whole texts, where a person the passages name by
    surname only is named in full (news names a person in full in its first lines).
    Numbers and dates come from the best sentence that holds one. A name is the
    one most quotes and retrieved passages mention (a multi-hop answer is what
    its articles share), "Altman" counting for "Sam Altman"; the context also
    tells names from capitalised sentence openers. None for every other
    question, yes/no included (no rule was tried that tells yes from no).
    """
    kind = question_kind(question)
    if kind == "other":
        return None
    asked = set(terms(question))
    seen = _Seen.of([*quotes, *context]) if kind == "person" else _Seen(frozenset(), frozenset())
    person = asks_for_person(question)
    found: dict[str, _Mention] = {}
    for rank, quote in enumerate(quotes):
        near = _Nearness.of(quote, asked)
        for start, span in _spans(kind, quote, seen, person=person):
            key = " ".join(terms(span)) or span.lower()
            if span in question or (kind != "number" and set(key.split()) <= asked):
                continue
            mention = found.setdefault(key, _Mention(span, (rank, start)))
            mention.count += mention.last != rank
            mention.last = rank
            mention.distance = min(mention.distance, near.distance(start, start + len(span)))
    if not found:
        return None
    if kind != "person":
        return min(found.values(), key=lambda m: m.first).text
    context_terms = [(text, set(terms(text))) for text in context]
    if not person:
        return _best_name(found, context_terms)
    return _best_name(found, context_terms, _Names.of([*quotes, *context], seen, articles))


@dataclass
class _Mention:
    text: str
    first: tuple[int, int]  # (quote rank, offset): where it was seen first
    count: int = 0
    last: int = -1  # the last quote that mentioned it: each quote counts once
    distance: int = 1_000  # fewest words between it and a question term in one quote


@dataclass(frozen=True)
class _Nearness:
    """Where a quote holds the question's terms, to tell how near a name stands to them.

    "Who says the government acted worse than apartheid?" over "...led the Dalai Lama
    to cancel a trip, Archbishop Desmond Tutu lashed out at his government, saying it
    had acted worse than apartheid regimes": both are named as often; the one the
    question's words surround is the one it asks about.
    """

    starts: list[int]  # each word's offset in the quote
    asked: list[int]  # indexes of the words that are question terms

    @classmethod
    def of(cls, quote: str, asked: set[str]) -> _Nearness:
        found = list(re.finditer(r"\w+", quote))
        stems = terms_many(m.group() for m in found)
        return cls([m.start() for m in found],
                   [i for i, t in enumerate(stems) if t and t[0] in asked])

    def distance(self, start: int, end: int) -> int:
        first, last = bisect_left(self.starts, start), bisect_left(self.starts, end) - 1
        return min((first - i if i < first else i - last for i in self.asked
                    if not first <= i <= last), default=1_000)


def _best_name(
    found: dict[str, _Mention], context: Sequence[tuple[str, set[str]]],
    names: _Names | None = None,
) -> str:
    """The name in most quotes and passages; a surname counts for the full name it ends.

    With `names` the question asks for a person: see `_best_person`. Ties go to the
    name nearest the question's words, then to the best quote's first.
    """
    def in_passage(key: str, passage: tuple[str, set[str]]) -> bool:
        if names is None:
            return set(key.split()) <= passage[1]
        surname = found[key].text.split()[-1]  # as written: "Areas" is not "areas"
        return re.search(rf"(?<!\w){re.escape(surname)}(?!\w)", passage[0]) is not None

    if names is not None:
        return _best_person(found, {k: {i for i, p in enumerate(context) if in_passage(k, p)}
                                    for k in found}, names)
    counts = {k: m.count + sum(in_passage(k, p) for p in context) for k, m in found.items()}
    for key in found:
        size = len(key.split())
        longer = [o for o in found if len(o.split()) > size and o.split()[-size:] == key.split()]
        if longer:
            target = max(longer, key=lambda o: counts[o])
            counts[target] += counts[key]
            counts[key] = 0
    best = max(found, key=lambda k: (counts[k], -found[k].distance, -found[k].first[0],
                                     -found[k].first[1]))
    return found[best].text


def _best_person(found: dict[str, _Mention], passages: dict[str, set[int]], names: _Names) -> str:
    """The person most quotes and passages name, in full.

    The names that name one person ("Sam", "Altman", "Sam Altman") count together:
    the quotes naming each, and the passages (`passages`: indexes, by name) naming any
    by surname as written ("Tutu" for "Archbishop Desmond Tutu"); a
    place ("in northern India") comes after every other name. (Preferring names
    written in full somewhere over one-word ones was tried: "Caroline Ellison" then
    beat a "Bankman-Fried" whose passages never write him in full.)
    """
    groups: dict[str, list[str]] = {}
    for key, mention in found.items():
        groups.setdefault(names.person(mention.text), []).append(key)

    def score(name: str) -> tuple[int, int, int, tuple[int, int]]:
        keys = groups[name]
        first = min(found[k].first for k in keys)
        count = sum(found[k].count for k in keys) + len(set().union(*(passages[k] for k in keys)))
        return (min(names.rank(found[k].text) for k in keys), count,
                -min(found[k].distance for k in keys), (-first[0], -first[1]))

    return max(groups, key=score)


_SENTENCE_END = re.compile(r"\w\w[.!?]$")  # "Prize." ends a sentence; "J." is an initial
# Chosen on MultiHop-RAG dev questions for a person (5%, 10%, 20%, 50%, any mention: 141,
# 139, 138, 138, 141 of 174 "who" exact, 172 of 194 "which" but 170 for any; RESULTS.md):
# "Alameda" is written after "at" in 1 of its 7 mentions.
PLACE_SHARE = 0.05
_LOCATIVE = re.compile(
    r"\b(?:in|at|near|across|throughout|northern|southern|eastern|western|central)\s+"
    r"(?:the\s+)?(" + _CAPITALISED + r"(?:\s+" + _CAPITALISED + r")*)")


@dataclass(frozen=True)
class _Names:
    """The names of persons the quotes and passages write, to name one in full."""

    runs: list[_Run]  # each capitalised run, as a person's name would be read from it
    places: Counter[str]  # how often a name (its terms) is written after "in", "at" ...
    fallback: list[_Run]  # runs of the cited articles, for a name `runs` never write

    @classmethod
    def of(cls, texts: Sequence[str], seen: _Seen, articles: Sequence[str] = ()) -> _Names:
        def runs_of(texts: Sequence[str]) -> list[_Run]:
            return _Run.many([span.split() for text in texts
                              for _, span in _spans("person", text, seen, person=True)])

        places = Counter(" ".join(terms(m.group(1))) for text in texts
                         for m in _LOCATIVE.finditer(text) if not _POSSESSIVE.search(m.group(1)))
        return cls(runs_of(texts), places, runs_of(articles))

    def rank(self, name: str) -> int:
        """0 for a place, 1 for any other name.

        A place (or a workplace: "at OpenAI") is a name written after "in", "at",
        "near" ... ("in northern India") in at least `PLACE_SHARE` of its mentions. A
        person is too, now and then ("looked at Swift": 1 of Swift's 31 mentions).
        """
        key = tuple(terms(name))
        if not key:
            return 1
        joined = " ".join(key)
        after = sum(n for p, n in self.places.items() if p == joined or p.endswith(" " + joined))
        written = sum(1 for run in self.runs if run.endings[0][-len(key):] == key)
        return 0 if after and after >= PLACE_SHARE * written else 1

    def person(self, name: str) -> str:
        """The person a name names, in full: "Sam Altman" for "Altman", "CEO Sam Altman"
        and, when no longer name ends with it, for the first name "Sam" alone."""
        full = self.full(name.split()[-1])
        if " " not in full:  # "Sam" is "Sam Altman" if "Altman" is also a name of its own
            runs = [run.tokens for run in (*self.runs, *self.fallback)]
            alone = {run[0] for run in runs if len(run) == 1}
            begun = Counter(" ".join(run[:2]) for run in runs
                            if len(run) > 1 and run[0] == full and run[1] in alone)
            if begun:
                return begun.most_common(1)[0][0]
        return full

    def full(self, name: str) -> str:
        """The name as the articles write it in full: "Sam Bankman-Fried" for "Bankman-Fried".

        News names a person in full once and by surname after, so the best-cited
        sentence often holds only the surname; a reader asked "who" wants the person.
        Every longer name in the quotes and passages that ends with this one counts
        for each of its endings ("FTX CEO Sam Bankman-Fried" for "Sam Bankman-Fried"
        too); the longest ending that every such mention shares wins, so a title
        written once does not become part of the name. Unchanged when none is longer.
        """
        key = tuple(terms(name))
        if not key:
            return name
        counts: dict[tuple[str, ...], int] = {}
        spelled: dict[tuple[str, ...], str] = {}
        for run in (*self.runs, *self.fallback):
            for i in range(len(run.tokens) - 1, -1, -1):
                if i < len(run.tokens) - 1 and _SENTENCE_END.search(run.tokens[i]):
                    break  # "Nobel Peace Prize. Tutu": a name does not cross a full stop
                words = run.endings[i]
                if len(words) > len(key) and words[-len(key):] == key:
                    counts[words] = counts.get(words, 0) + 1
                    spelled.setdefault(words, " ".join(run.tokens[i:]))
        if not counts:
            return name
        most = max(counts.values())
        return spelled[max((w for w, n in counts.items() if n == most), key=len)]


@dataclass(frozen=True)
class _Run:
    """A capitalised run's tokens and the terms of each of its endings, found once: a
    question's names are looked up in hundreds of runs (the cited articles' too)."""

    tokens: list[str]
    endings: list[tuple[str, ...]]  # endings[i]: the terms of tokens[i:]

    @classmethod
    def many(cls, runs: list[list[str]]) -> list[_Run]:
        stems = iter(terms_many(t for run in runs for t in run))
        out = []
        for tokens in runs:
            each = [tuple(next(stems)) for _ in tokens]
            endings = [tuple(t for part in each[i:] for t in part) for i in range(len(each))]
            out.append(cls(tokens, endings))
        return out


def _spans(kind: str, quote: str, seen: _Seen, *, person: bool = False) -> list[tuple[int, str]]:
    """(offset, text) of what could answer a question of this kind within one quote
    (`person`: the question asks for a person, see `_as_person`)."""
    if kind == "number":
        return [(m.start(), m.group()) for m in _NUMBER.finditer(quote)
                if not _YEAR.fullmatch(m.group())]
    if kind == "date":
        return [(m.start(), m.group()) for m in _DATE.finditer(quote)]
    out = []
    dateline = _DATELINE.match(quote)
    begin = dateline.end() if dateline else 0
    for match in _runs(quote, begin):
        span = _name_in(quote, match, seen, begin)
        named = None if span is None else _as_named(span[1], seen, person)
        if span is not None and named:
            out.append((span[0], named))
    return out


_ACRONYM = re.compile(r"[A-Z][A-Z.&]*[A-Z]\.?")  # "CEO", "FTX", "U.K.": no lower case


def _as_named(span: str, seen: _Seen, person: bool) -> str | None:
    """What a capitalised run names, or None when it names no one the question asks for.

    "CEO of Flexport" names Flexport. Asked for a person, a run loses what is not a
    person's name: its titles ("CEO Sam Altman", "Spokesman Dan Watt", words the text
    also writes in lower case), an affiliation ("Brittany Kasko of Fox News"), and a
    run of acronyms only ("FTX", "SEC") is no one.
    """
    head, of, tail = span.partition(" of ")
    if of and all(_ACRONYM.fullmatch(t) for t in head.split()):
        head, of, tail = tail, "", ""
    if not person:
        return head + of + tail
    tokens = head.split()
    while len(tokens) > 1 and (_ACRONYM.fullmatch(tokens[0]) or tokens[0].lower() in seen.lower):
        tokens = tokens[1:]
    if all(_ACRONYM.fullmatch(t) for t in tokens):
        return None
    return " ".join(tokens)


def _runs(quote: str, begin: int) -> Iterator[re.Match[str]]:
    """Capitalised runs, and the name after each possessive inside one: "UNHCR's Jorge
    Holly" names the UNHCR and Jorge Holly."""
    for match in _NAME.finditer(quote, begin):
        yield match
        for possessive in _POSSESSIVE.finditer(quote, match.start(), match.end()):
            after = _NAME.match(quote, possessive.end() + 1, match.end())
            if after is not None:
                yield after


def _name_in(
    quote: str, match: re.Match[str], seen: _Seen, begin: int = 0
) -> tuple[int, str] | None:
    """The name inside a capitalised run, without "The", a sentence opener or "'s ..."."""
    end = match.end()
    possessive = _POSSESSIVE.search(quote, match.start(), end)
    if possessive is not None:
        end = possessive.start()
    tokens = list(_TOKEN.finditer(quote, match.start(), end))  # not from the text's start
    if tokens and match.start() and (quote[match.start() - 1].isalnum()
                                     or quote[match.start() - 1] in "-_/"):
        tokens = tokens[1:]  # "-LRB-": the run starts inside a word, which is no name
    # The last few characters tell (searching all before it was quadratic on an article).
    window = max(begin, match.start() - 32)
    pattern = _SENTENCE_START if window == begin else _AFTER_SENTENCE
    at_start = pattern.search(quote[window : match.start()]) is not None
    while tokens and (tokens[0].group().lower() in _NOT_NAMES
                      or (at_start and seen.opener(tokens[0].group(), alone=len(tokens) == 1))):
        at_start = False
        tokens = tokens[1:]
    if not tokens:
        return None
    text = quote[tokens[0].start() : end].rstrip(".-'’")
    if not text or all(t.lower() in _NOT_NAMES for t in text.split()):
        return None
    return tokens[0].start(), text


@dataclass(frozen=True)
class _Seen:
    """How the retrieved text writes its words: tells "Using" (an opener) from "Tomas"."""

    capitalised: frozenset[str]  # seen capitalised mid-sentence: names
    lower: frozenset[str]  # seen in lower case: ordinary words

    @classmethod
    def of(cls, texts: Iterable[str]) -> _Seen:
        joined = "\n".join(texts)
        return cls(frozenset(m.group(1) for m in _MID_SENTENCE_CAPITAL.finditer(joined)),
                   frozenset(re.findall(r"\b[a-z][a-z'-]*", joined)))

    def opener(self, word: str, *, alone: bool) -> bool:
        """Whether a capitalised word opening a sentence is an ordinary word, not a name.

        Alone ("Following ...") it must be seen capitalised mid-sentence to count
        as a name; before another capitalised word ("Using Caroline", "Tomas Berg")
        it is an ordinary word only if the text also writes it in lower case.
        """
        return word not in self.capitalised if alone else word.lower() in self.lower


def _best_first(citations: Sequence[Citation], chosen: Sequence[Candidate]) -> list[str]:
    """The cited quotes in order of their sentence's score: the best evidence speaks first."""
    score = {(c.passage.article_id, c.text): c.score for c in chosen}
    ordered = sorted(citations, key=lambda c: -score.get((c.article_id, c.quote), 0.0))
    return [c.quote for c in ordered]
