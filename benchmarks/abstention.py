"""Choose the extractive engine's abstention threshold on MultiHop-RAG dev queries.

For every dev query: retrieve as `qa.ask` does, take the best sentence's support
(`extractive.rank_sentences`), and sweep the threshold. A good threshold abstains
on null queries (the answer is not in the corpus) and answers the rest.

    python benchmarks/abstention.py [--db .newsqa-eval-multihop] [--limit N]

The index must hold the corpus (`newsqa eval multihop --no-answers` builds it).
Skips with a message when ../shared/eval is absent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "eval" / "multihop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=str(ROOT / ".newsqa-eval-multihop"))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "queries.jsonl").is_file():
        print(f"skipped: {data} not found (MultiHop-RAG eval data)")
        return

    from newsqa import NewsQA
    from newsqa.evaluation import load_multihop_queries, read_ids
    from newsqa.extractive import ABSTAIN_BELOW, choose, evidence_support, rank_sentences

    queries = load_multihop_queries(data / "queries.jsonl", read_ids(data / "dev_ids.txt"))
    queries = queries[: args.limit] if args.limit else queries
    qa = NewsQA(db=args.db, llm="extractive")
    if not qa.articles():
        sys.exit(f"{args.db} holds no articles: run `newsqa eval multihop --no-answers` first")

    supports: list[tuple[bool, float]] = []
    for q in queries:
        ranked = rank_sentences(q.query, qa.search(q.query))
        supports.append((q.is_null, evidence_support(choose(ranked)) if ranked else 0.0))
    nulls = [s for is_null, s in supports if is_null]
    answerable = [s for is_null, s in supports if not is_null]
    print(f"{len(queries)} dev queries: {len(nulls)} null, {len(answerable)} answerable")
    print("threshold  null_abstain  false_abstain  balanced_acc")
    best = (0.0, 0.0)
    for step in range(0, 19):
        t = 0.05 * step + 0.05
        tnr = sum(s < t for s in nulls) / max(1, len(nulls))
        fnr = sum(s < t for s in answerable) / max(1, len(answerable))
        balanced = (tnr + 1 - fnr) / 2
        best = max(best, (balanced, t))
        mark = "  <- current" if abs(t - ABSTAIN_BELOW) < 1e-9 else ""
        print(f"{t:9.2f}  {tnr:12.3f}  {fnr:13.3f}  {balanced:12.3f}{mark}")
    print(f"best balanced accuracy {best[0]:.3f} at threshold {best[1]:.2f}")


if __name__ == "__main__":
    main()
