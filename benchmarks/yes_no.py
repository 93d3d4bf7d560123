"""Can a lexical check tell Yes from No on MultiHop-RAG's comparison and temporal questions?

Issue 15 asks for 0.60 paper-style accuracy; comparison and temporal questions are
two of its four types and almost all are answered Yes or No. newsqa shows a Yes or
No only when its kept quotes show it (`Grounder.direct`). This measures whether
any evidence a lexical rule could see separates the two answers, on dev ids only:

- the question is split into the parts that name a publisher (and a day), as the
  retrieval reads them (`QueryHints.mentions`);
- each part's best sentence among the retrieved passages of that publisher (and
  day) is the one covering most of the part's terms (`support.coverage`);
- the question's evidence score is its weakest part's coverage.

If Yes questions had clearly higher scores (AUC well above 0.5), "every part is
quoted" could stand in for Yes. It prints the AUC per type, Yes shares above
coverage floors, and how many temporal questions ask an order (which the
articles' dates could settle) rather than a consistency (which needs a reader).

    python benchmarks/yes_no.py --db DB --cache /tmp/abstention-passages.jsonl

DB is an index of the MultiHop-RAG corpus (`newsqa eval multihop --no-answers`);
the cache is abstention.py's (in-sample ranker), reused when present. Skips with a
message when the data or the index is absent.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from statistics import mean

from abstention import DATA, ROOT, dev_queries, retrieved, why_skipped

from newsqa.grounding.support import coverage
from newsqa.models import Passage
from newsqa.retrieval.query import matcher_for, parse_query
from newsqa.text.sentences import sentence_spans

TYPES = ("comparison_query", "temporal_query")
FLOORS = (0.0, 0.2, 0.3, 0.4, 0.5)
# A consistency question ("was the portrayal consistent ...?") needs a reader; an order
# question ("Did A report X before B reported Y?") could be settled by the two dates.
CONSISTENCY = re.compile(r"consisten|inconsisten|change|shift|remain|same|differ|agree|align|"
                         r"contradict", re.IGNORECASE)
ORDER = re.compile(r"\b(?:before|after|earlier|later|prior to|subsequent|following)\b",
                   re.IGNORECASE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=str(ROOT / ".newsqa-eval-multihop"))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--cache", default=None, help="abstention.py's passages (in-sample)")
    args = parser.parse_args(argv)
    multihop = Path(args.data) / "multihop"
    skipped = why_skipped(multihop, Path(args.db))
    if skipped:
        print(f"skipped: {skipped}")
        return 0
    from newsqa import NewsQA

    queries = dev_queries(multihop)
    with NewsQA(db=args.db, llm="extractive") as qa:
        passages = retrieved(qa, queries, False, 5, args.cache)
    for kind in TYPES:
        scored = [(yes, weakest_part(q.query, ps)) for q, ps in zip(queries, passages, strict=True)
                  if q.question_type == kind and (yes := as_yes(q.answer)) is not None]
        report(kind, scored)
    temporal = [q.query for q in queries if q.question_type == "temporal_query"]
    order = [t for t in temporal if ORDER.search(t) and not CONSISTENCY.search(t)]
    print(f"\ntemporal questions asking an order, not a consistency: {len(order)} of "
          f"{len(temporal)}")
    return 0


def as_yes(answer: str) -> bool | None:
    return {"yes": True, "no": False}.get(answer.strip().lower())


def weakest_part(question: str, passages: Sequence[Passage]) -> tuple[float, int]:
    """(the least-covered part's best coverage, parts): 0 when a part has no sentence."""
    hints = parse_query(question, matcher_for({p.source for p in passages}))
    parts = hints.mentions()
    best = [max((coverage(m.clause, [s], "") for s in _sentences(passages, m.sources, m.day)),
                default=0.0) for m in parts]
    return (min(best) if best else 0.0), len(parts)


def _sentences(passages: Sequence[Passage], sources: Sequence[str], day: object) -> list[str]:
    out = []
    for p in passages:
        if sources and p.source not in sources:
            continue
        if day is not None and (p.published_at is None or p.published_at.date() != day):
            continue
        out += [p.text[a:b] for a, b in sentence_spans(p.text)]
    return out


def report(kind: str, scored: list[tuple[bool, tuple[float, int]]]) -> None:
    yes = [s for y, (s, _) in scored if y]
    no = [s for y, (s, _) in scored if not y]
    auc = (sum((a > b) + 0.5 * (a == b) for a in yes for b in no) / (len(yes) * len(no))
           if yes and no else float("nan"))
    print(f"\n{kind}: {len(scored)} dev questions answered Yes/No, Yes share "
          f"{len(yes) / max(len(scored), 1):.3f}; AUC of the weakest part's coverage {auc:.3f}")
    print("| weakest part covered at least | questions (two or more parts) | Yes share |")
    print("|---|---|---|")
    for floor in FLOORS:
        kept = [y for y, (s, n) in scored if s >= floor and n >= 2]
        share = f"{mean(kept):.3f}" if kept else "-"
        print(f"| {floor:.1f} | {len(kept)} | {share} |")


if __name__ == "__main__":
    raise SystemExit(main())
