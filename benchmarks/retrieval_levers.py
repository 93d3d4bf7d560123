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
from newsqa.app.evaluation import (
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
from newsqa.retrieval import Filters, FusionWeights, KeywordIndex, Retriever

K = 10
# The first stage only: the learned second stage (rerank.py) was trained on these dev
# questions, so it is measured cross-validated by train_ranker.py, not here.
BASE = FusionWeights(rerank=False)

OLD = replace(BASE, fusion="rrf", keyword=1.0, dense=0.5, hints=False, clause_weight=0.0,
              sentence_weight=0.0, drop_question_words=False, mention_slots=2,
              max_per_article=2, bigram_weight=0.0, title_weight=0.0, dense_in_mentions=True)
HINTS = replace(OLD, hints=True)
SENT = replace(HINTS, sentence_weight=0.5)
CLAUSE = replace(SENT, clause_weight=1.0)
CONVEX = replace(CLAUSE, fusion="convex", dense=0.1)

# (name, weights): the old default, then each lever added on its own, then the default.
VARIANTS: list[tuple[str, FusionWeights]] = [
    ("BM25 only", replace(OLD, dense=0.0)),
    ("dense only", replace(OLD, keyword=0.0)),
    ("old default: RRF 1:0.5", OLD),
    ("RRF 1:1", replace(OLD, dense=1.0)),
    ("RRF 1:0.25", replace(OLD, dense=0.25)),
    ("convex 1:0.3", replace(OLD, fusion="convex", dense=0.3)),
    ("convex 1:0.5", replace(OLD, fusion="convex", dense=0.5)),
    ("old + question words dropped", replace(OLD, drop_question_words=True)),
    ("old + hints (2 slots per mention)", HINTS),
    ("old + hints, 1 slot", replace(HINTS, mention_slots=1)),
    ("old + hints, 3 slots", replace(HINTS, mention_slots=3)),
    ("hints + best sentence 0.5", SENT),
    ("hints + best sentence 1.0", replace(HINTS, sentence_weight=1.0)),
    ("hints + sentence + clause 1.0", CLAUSE),
    ("... with dense 0 (BM25 side only)", replace(CLAUSE, dense=0.0)),
    ("... with RRF 1:0.25", replace(CLAUSE, dense=0.25)),
    ("... with RRF 1:1", replace(CLAUSE, dense=1.0)),
    ("... with convex 1:0.3", replace(CLAUSE, fusion="convex", dense=0.3)),
    ("... with convex 1:0.5", replace(CLAUSE, fusion="convex", dense=0.5)),
    ("... with 3 slots, 3 per article", replace(CLAUSE, mention_slots=3, max_per_article=3)),
    ("... with convex 1:0.1 (= CONVEX)", replace(CLAUSE, fusion="convex", dense=0.1)),
    ("... with convex 1:0.2", replace(CLAUSE, fusion="convex", dense=0.2)),
    ("... with RRF 1:0.1", replace(CLAUSE, dense=0.1)),
    ("... with convex 1:0.3, global only", replace(CLAUSE, fusion="convex", dense=0.3,
                                                   dense_in_mentions=False)),
    ("... with RRF 1:0.25, global only", replace(CLAUSE, dense=0.25, dense_in_mentions=False)),
    ("CONVEX + bigrams 0.5", replace(CONVEX, bigram_weight=0.5)),
    ("CONVEX + bigrams 1.0", replace(CONVEX, bigram_weight=1.0)),
    ("CONVEX + title prior 0.25", replace(CONVEX, title_weight=0.25)),
    ("CONVEX + bigrams 0.5, 3 slots, 3 per article", replace(
        CONVEX, bigram_weight=0.5, mention_slots=3, max_per_article=3)),
    ("CONVEX + bigrams 0.5, 4 slots, 4 per article", replace(
        CONVEX, bigram_weight=0.5, mention_slots=4, max_per_article=4)),
    ("CONVEX + bigrams 0.5, 5 slots, 5 per article (= default)", replace(
        CONVEX, bigram_weight=0.5, mention_slots=5, max_per_article=5)),
    ("default + bigrams 1.0", replace(BASE, bigram_weight=1.0)),
    ("default + dense 0.2", replace(BASE, dense=0.2)),
    ("default, no dense", replace(BASE, dense=0.0)),
    ("default, no hints", replace(BASE, hints=False)),
    ("default", BASE),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=str(DEFAULT_MULTIHOP_DB))
    parser.add_argument("--data", default=str(DEFAULT_MULTIHOP_DATA))
    parser.add_argument("--only", nargs="*", help="variant names to run (substring match)")
    args = parser.parse_args(argv)
    opened = open_dev(args.db, args.data)
    if opened is None:
        return 0
    qa, queries = opened
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


def open_dev(db: str, data: str) -> tuple[NewsQA, list[MultihopQuery]] | None:
    """The built index and the non-null dev questions; None (said why) when either is absent."""
    try:
        folder = require_folder(data, "MultiHop-RAG")
    except DataMissing as exc:
        print(exc)
        return None
    if not Path(db).is_dir():
        print(f"no index at {db}: run `newsqa eval multihop --no-answers` first")
        return None
    queries = [
        q for q in load_multihop_queries(folder / "queries.jsonl", read_ids(folder / DEV_IDS))
        if not q.is_null
    ]
    return NewsQA(db=db, llm="extractive"), queries


def dense_hits(
    qa: NewsQA, queries: list[MultihopQuery], n: int
) -> tuple[list[list[tuple[str, float]]], float]:
    """Each query's dense (chunk id, cosine) hits, computed once; and the p50 cost of
    embedding + searching.

    The hits are exact cosine neighbours over the stored vectors (numpy), not
    Chroma's HNSW: a reopened MultiHop-RAG index made Chroma's query segfault on
    one dev question. The cost charged to each variant is still the real
    embed + `Index.dense_ids` time, measured on a sample of queries.
    """
    import numpy as np

    keyword = Retriever(qa.index, qa.embedder, qa.settings).keyword_index()
    matrix = stored_vectors(qa, keyword)
    out, times = [], []
    for i, q in enumerate(queries):
        start = time.perf_counter()
        vector = qa.embedder.embed_query(q.query)
        if i < 200 and i != 0:
            qa.index.dense_ids(vector, n, None, keyword.rows)
            times.append((time.perf_counter() - start) * 1000)
        cosine = matrix @ vector
        top = np.argsort(-cosine)[:n]
        out.append([(keyword.table.ids[int(r)], float(cosine[r])) for r in top])
    return out, statistics.median(times)


def stored_vectors(qa: NewsQA, keyword: KeywordIndex) -> Any:
    """The chunk vectors in table order; any Chroma cannot return are embedded again.

    (A reopened index was seen to lack vectors for 109 of 6,207 chunks.)
    """
    import numpy as np

    chunks: Any = qa.index._chunks  # benchmark-only access to the Chroma collection
    ids = keyword.table.ids
    vectors: dict[str, Any] = {}
    for i in range(0, len(ids), 200):
        part = ids[i : i + 200]
        for group in ([part] if _readable(chunks, part) else [[x] for x in part]):
            try:
                got = chunks.get(ids=group, include=["embeddings"])
            except Exception:
                continue
            vectors.update(zip(got["ids"], got["embeddings"], strict=True))
    missing = [i for i, cid in enumerate(ids) if cid not in vectors]
    if missing:
        print(f"{len(missing)} chunk vectors missing in the store: re-embedded", file=sys.stderr)
        again = qa.embedder.embed_documents([keyword.table.texts[i] for i in missing])
        vectors.update((ids[i], v) for i, v in zip(missing, again, strict=True))
    return np.asarray([vectors[cid] for cid in ids], dtype=np.float32)


def _readable(chunks: Any, ids: list[str]) -> bool:
    try:
        chunks.get(ids=ids, include=[])
        chunks.get(ids=ids, include=["embeddings"])
    except Exception:
        return False
    return True


def run_variant(
    qa: NewsQA,
    weights: FusionWeights,
    queries: list[MultihopQuery],
    dense: list[list[tuple[str, float]]],
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
