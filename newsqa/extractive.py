"""The offline engine: answers made only of source sentences, each one cited.

No model writes anything here, so nothing can be invented: the answer is the
best-supported sentences of the retrieved passages, verbatim, in the order a
reader would want them. It abstains when no sentence covers enough of what the
question asks (see `ABSTAIN_BELOW`).

A sentence's support is the IDF-weighted share of the question's content terms
it contains; the sentence before it counts at half weight, because news writes
"Qaani met ... However, he warned ..." and the name lives one sentence back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .chunking import sentence_spans
from .citations import ClaimedQuote, verify
from .config import Settings
from .lexical import terms
from .models import Answer, Article, Citation, Passage, RejectedCitation

if TYPE_CHECKING:
    from .index import Index

# Chosen on the MultiHop-RAG dev split (benchmarks/RESULTS.md, "Extractive abstention"):
# the support level that best separates null queries from answerable ones.
ABSTAIN_BELOW = 0.3
MAX_SENTENCES = 3
MIN_GAIN = 0.1  # share of the question's term weight a further sentence must add
POOL = 40  # sentences considered for the answer after the best one
CONTEXT_WEIGHT = 0.5

_NUMBER = re.compile(r"\d")
_MONTHS = (
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday yesterday today"
).split()
_DATEISH = re.compile(r"\b(?:\d{4}|" + "|".join(_MONTHS) + r")\b", re.IGNORECASE)
_NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*")


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
    candidates = rank_sentences(question, passages)
    if not candidates:
        return _abstain(question, passages, "no retrieved passage matches the question")
    chosen = choose(candidates)
    support = evidence_support(chosen)
    if support < ABSTAIN_BELOW:
        return _abstain(
            question,
            passages,
            f"the best supporting sentences cover {support:.0%} of the question's terms "
            f"(the extractive engine abstains below {ABSTAIN_BELOW:.0%})",
        )
    citations, rejected = _cite(chosen, index)
    if not citations:
        return _abstain(question, passages, "no sentence could be verified", rejected)
    text = " ".join(f"{c.quote} [{i}]" for i, c in enumerate(citations, 1))
    return Answer(
        question=question,
        answer=text,
        answerable=True,
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
    kind = _question_kind(question)
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


def _question_kind(question: str) -> str:
    q = question.lower()
    if re.search(r"\bhow (many|much)\b|\bwhat (number|percentage|amount)\b", q):
        return "number"
    if re.search(r"\bwhen\b|\bwhat (date|day|year|time)\b", q):
        return "date"
    if re.search(r"\bwho\b|\bwhom\b", q):
        return "person"
    return "other"


def _kind_bonus(kind: str, sentence: str) -> float:
    """A small nudge toward sentences that carry the kind of fact asked for."""
    if kind == "number" and _NUMBER.search(sentence):
        return 0.15
    if kind == "date" and _DATEISH.search(sentence):
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


def _cite(
    chosen: list[Candidate], index: Index
) -> tuple[list[Citation], list[RejectedCitation]]:
    articles: dict[str, Article] = {}
    for cand in chosen:
        if cand.passage.article_id not in articles:
            articles[cand.passage.article_id] = index.get_article(cand.passage.article_id)
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
