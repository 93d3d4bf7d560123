"""Train the second-stage ranking model on MultiHop-RAG dev questions, and say what it is worth.

    python benchmarks/train_ranker.py [--db .newsqa-eval-multihop] [--folds 5] [--splits 3]
        [--write]

Opens an index that `newsqa eval multihop` built, runs the first stage for every
dev question (null ones out), labels each candidate chunk 1 when it holds a gold
evidence fact (the paper's substring rule), and trains LightGBM LambdaRank
(newsqa/retrieval/training.py) on the features of newsqa/retrieval/rerank.py. The
figure to trust is the cross-validated one: each fold's questions are ranked by a
model that never saw them, which is what the held-out split will see. `--write`
then trains on all dev questions and writes
newsqa/retrieval/rankers/multihop-dev.txt (or --out). Dev ids only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from retrieval_levers import dense_hits, open_dev

from newsqa.app.evaluation import (
    DEFAULT_MULTIHOP_DATA,
    DEFAULT_MULTIHOP_DB,
    holds_fact,
    retrieval_metrics,
)
from newsqa.retrieval import MODEL_FILE, Filters, FusionWeights, Retriever
from newsqa.retrieval.training import train

K = 10
PARAMS: dict[str, Any] = {  # the objective is training.map_lambdas (MAP@10's rank weights)
    "learning_rate": 0.15,
    "num_leaves": 63,
    "min_data_in_leaf": 100,
    "deterministic": True,
    "seed": 7,
}
ROUNDS = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=str(DEFAULT_MULTIHOP_DB))
    parser.add_argument("--data", default=str(DEFAULT_MULTIHOP_DATA))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--splits", type=int, default=1,
                        help="repeat the cross-validation with this many fold draws")
    parser.add_argument("--write", action="store_true", help="train on all dev and write --out")
    parser.add_argument("--out", default=str(MODEL_FILE),
                        help="model file (use it with NEWSQA_RETRIEVAL_RANKER=<file>)")
    args = parser.parse_args(argv)
    opened = open_dev(args.db, args.data)
    if opened is None:
        return 0
    qa, queries = opened
    weights = FusionWeights()
    dense, _ = dense_hits(qa, queries, weights.dense_candidates)
    retriever = Retriever(qa.index, qa.embedder, qa.settings, replace(weights, rerank=False))
    keyword = retriever.keyword_index()
    groups, pools, first = [], [], []
    for q, hits in zip(queries, dense, strict=True):
        stage = retriever.first_stage(keyword, q.query, hits, Filters())
        rows, features = retriever.candidates(keyword, stage)
        texts = [keyword.table.passage(r, 0.0).text for r in rows]
        labels = np.asarray([holds_fact(t, q.facts) for t in texts], dtype=np.float64)
        groups.append((features, labels))
        pools.append(texts)
        first.append(texts[:K])
    facts = [q.facts for q in queries]
    print(f"{len(queries)} dev questions, {sum(len(p) for p in pools)} candidates", file=sys.stderr)
    print("| ranking | Hits@10 | Hits@4 | MRR@10 | MAP@10 |")
    print("|---|---|---|---|---|")
    _row("first stage (rerank off)", retrieval_metrics(first, facts))
    ranked = cross_validate(groups, pools, args.folds)
    _row(f"second stage, {args.folds}-fold cross-validated", retrieval_metrics(ranked, facts))
    if args.splits > 1:  # the fold assignment alone moves MAP@10 by a few thousandths
        runs = [retrieval_metrics(ranked, facts)] + [
            retrieval_metrics(cross_validate(groups, pools, args.folds, seed), facts)
            for seed in range(1, args.splits)
        ]
        for seed, m in enumerate(runs[1:], start=1):
            _row(f"... folds drawn with seed {seed}", m)
        _row(f"... mean of {args.splits} fold draws",
             {k: float(np.mean([m[k] for m in runs])) for k in runs[0] if k != "n"})
    for kind in sorted({q.question_type for q in queries}):
        keep = [i for i, q in enumerate(queries) if q.question_type == kind]
        for name, lists in (("first stage", first), ("cross-validated", ranked)):
            _row(f"{kind} ({len(keep)}), {name}",
                 retrieval_metrics([lists[i] for i in keep], [facts[i] for i in keep]))
    if args.write:
        model = train(groups, PARAMS, ROUNDS)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        model.save_model(args.out)
        inside = [_top(model.predict(f, num_threads=1), p) for (f, _), p in zip(groups, pools,
                                                                                strict=True)]
        _row("second stage trained on all dev (in-sample)", retrieval_metrics(inside, facts))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cross_validate(
    groups: list[tuple[np.ndarray, np.ndarray]], pools: list[list[str]], folds: int,
    seed: int = 0, params: dict[str, Any] | None = None,
    train_groups: list[tuple[np.ndarray, np.ndarray]] | None = None,
    union: bool = False,
) -> list[list[str]]:
    """Each question ranked by a model trained on the other folds (drawn with `seed`).

    `train_groups` (the same questions, in the same order, with another path's
    features) trains the models instead of `groups`, which are only ranked; with
    `union`, both paths' groups of the training folds train them.
    """
    params = PARAMS if params is None else params
    learn = groups if train_groups is None else train_groups
    sets = [learn, groups] if union and train_groups is not None else [learn]
    order = np.random.RandomState(seed).permutation(len(groups))
    out: list[list[str]] = [[] for _ in groups]
    for fold in range(folds):
        held = set(order[fold::folds].tolist())
        model = train([g for each in sets for i, g in enumerate(each) if i not in held],
                      params, ROUNDS)
        for i in held:
            out[i] = _top(model.predict(groups[i][0], num_threads=1), pools[i])
    return out


def _top(scores: np.ndarray, texts: list[str]) -> list[str]:
    return [texts[i] for i in np.argsort(-scores, kind="stable")[:K]]


def _row(name: str, m: dict[str, float]) -> None:
    print(f"| {name} | {m['hits@10']:.4f} | {m['hits@4']:.4f} | {m['mrr@10']:.4f} | "
          f"{m['map@10']:.4f} |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
