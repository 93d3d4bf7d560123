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
from collections.abc import Sequence
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
ABSTAIN_BELOW = 0.5
MAX_SENTENCES = 3
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
    best = candidates[0]
    if best.support < ABSTAIN_BELOW:
        return _abstain(
            question,
            passages,
            f"the best supporting sentence covers {best.support:.0%} of the question's terms "
            f"(extractive engine abstains below {ABSTAIN_BELOW:.0%})",
        )
    chosen = _choose(candidates)
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
            out.append(Candidate(passage, rank, start, end, support, score, frozenset(own)))
    out.sort(key=lambda c: (-c.score, c.rank, c.start))
    return out


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


def _choose(candidates: list[Candidate]) -> list[Candidate]:
    """The best sentence, plus strong ones that add terms it lacks, in reading order."""
    best = candidates[0]
    chosen = [best]
    covered = set(best.matched)
    for cand in candidates[1:]:
        if len(chosen) == MAX_SENTENCES or cand.score < 0.75 * best.score:
            break
        adds = cand.matched - covered or cand.passage.article_id != best.passage.article_id
        if adds and not any(_same_sentence(cand, c) for c in chosen):
            chosen.append(cand)
            covered |= cand.matched
    return sorted(chosen, key=lambda c: (c.passage.article_id != best.passage.article_id,
                                         c.passage.article_id, c.passage.start + c.start))


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
