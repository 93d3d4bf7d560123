"""MultiHop-RAG retrieval levers, each measured on its own over one built index.

    python benchmarks/retrieval_levers.py [--db .newsqa-eval-multihop] [--only NAME ...]

Opens an index that `newsqa eval multihop` already built (it never ingests),
embeds and dense-searches each dev query once, then re-ranks with every variant
of `FusionWeights` in-process, scoring with newsqa.evaluation exactly as the CLI
does. Prints a markdown table: Hits@10, Hits@4, MRR@10, MAP@10, MAP@10 on
temporal questions, and retrieval p50 (the measured dense query cost per query
plus the variant's own ranking time). Dev ids only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from newsqa import NewsQA
from newsqa.evaluation import (
    DEFAULT_MULTIHOP_DATA,
    DEFAULT_MULTIHOP_DB,
    DEV_IDS,
    DataMissing,
    MultihopQuery,
    load_multihop_queries,
    read_ids,
    require_folder,
    retrieval_metrics,
)
from newsqa.models import Passage
from newsqa.retrieval import Filters, FusionWeights, KeywordIndex, Retriever

K = 10
BASE = FusionWeights()

OLD = replace(BASE, fusion="rrf", keyword=1.0, dense=0.5, hints=False, clause_weight=0.0,
              drop_question_words=False, mention_slots=2)

# (name, weights): the old default, then each lever on its own, then the default.
VARIANTS: list[tuple[str, FusionWeights]] = [
    ("BM25 only", replace(OLD, dense=0.0)),
    ("dense only", replace(OLD, keyword=0.0)),
    ("RRF 1:1", replace(OLD, dense=1.0)),
    ("RRF 1:0.5 (old default)", OLD),
    ("RRF 1:0.25", replace(OLD, dense=0.25)),
    ("convex 1:0.3", replace(OLD, fusion="convex", dense=0.3)),
    ("convex 1:0.5", replace(OLD, fusion="convex", dense=0.5)),
    ("old + question words dropped", replace(OLD, drop_question_words=True)),
    ("old + hints, 1 slot each", replace(OLD, hints=True, mention_slots=1)),
    ("old + hints, 2 slots each", replace(OLD, hints=True, mention_slots=2)),
    ("old + hints, 3 slots each", replace(OLD, hints=True, mention_slots=3)),
    ("old + hints 2 + clause 0.5", replace(OLD, hints=True, clause_weight=0.5)),
    ("old + hints 2 + clause 1.0", replace(OLD, hints=True, clause_weight=1.0)),
    ("default", BASE),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=str(DEFAULT_MULTIHOP_DB))
    parser.add_argument("--data", default=str(DEFAULT_MULTIHOP_DATA))
    parser.add_argument("--only", nargs="*", help="variant names to run (substring match)")
    args = parser.parse_args(argv)
    try:
        folder = require_folder(args.data, "MultiHop-RAG")
    except DataMissing as exc:
        print(exc)
        return 0
    if not Path(args.db).is_dir():
        print(f"no index at {args.db}: run `newsqa eval multihop --no-answers` first")
        return 0
    queries = [
        q for q in load_multihop_queries(folder / "queries.jsonl", read_ids(folder / DEV_IDS))
        if not q.is_null
    ]
    qa = NewsQA(db=args.db, llm="extractive")
    dense, dense_ms = dense_hits(qa, queries, max(v.dense_candidates for _, v in VARIANTS))
    print(f"{len(queries)} dev queries (null excluded); dense query p50 {dense_ms:.1f} ms",
          file=sys.stderr)
    variants = [v for v in VARIANTS if not args.only or any(o in v[0] for o in args.only)]
    print("| variant | Hits@10 | Hits@4 | MRR@10 | MAP@10 | MAP@10 temporal | p50 ms |")
    print("|---|---|---|---|---|---|---|")
    keyword_cache: dict[tuple[float, float], KeywordIndex] = {}
    for name, weights in variants:
        row = run_variant(qa, weights, queries, dense, dense_ms, keyword_cache)
        print(f"| {name} | {row['hits@10']:.4f} | {row['hits@4']:.4f} | {row['mrr@10']:.4f} | "
              f"{row['map@10']:.4f} | {row['temporal']:.4f} | {row['p50']:.1f} |", flush=True)
    return 0


def dense_hits(
    qa: NewsQA, queries: list[MultihopQuery], n: int
) -> tuple[list[list[Passage]], float]:
    """Each query's dense hits, computed once; and the p50 cost of embedding + searching."""
    out, times = [], []
    for q in queries:
        start = time.perf_counter()
        out.append(qa.index.dense_search(qa.embedder.embed_query(q.query), n, None))
        times.append((time.perf_counter() - start) * 1000)
    return out, statistics.median(times)


def run_variant(
    qa: NewsQA,
    weights: FusionWeights,
    queries: list[MultihopQuery],
    dense: list[list[Passage]],
    dense_ms: float,
    keyword_cache: dict[tuple[float, float], KeywordIndex],
) -> dict[str, Any]:
    retriever = Retriever(qa.index, qa.embedder, qa.settings, weights)
    key = (weights.bm25_k1, weights.bm25_b)
    if key not in keyword_cache:
        keyword_cache[key] = retriever.keyword_index()
    keyword = keyword_cache[key]
    retrieved, times = [], []
    for q, hits in zip(queries, dense, strict=True):
        start = time.perf_counter()
        passages = retriever.rank(
            keyword, q.query, hits[: weights.dense_candidates], top_k=K, filters=Filters()
        )
        times.append((time.perf_counter() - start) * 1000)
        retrieved.append([p.text for p in passages])
    metrics = retrieval_metrics(retrieved, [q.facts for q in queries])
    temporal = [i for i, q in enumerate(queries) if q.question_type == "temporal_query"]
    metrics["temporal"] = retrieval_metrics(
        [retrieved[i] for i in temporal], [queries[i].facts for i in temporal]
    )["map@10"]
    extra = dense_ms if weights.dense > 0 else 0.0
    metrics["p50"] = statistics.median(times) + extra
    return metrics


if __name__ == "__main__":
    raise SystemExit(main())
