"""Before/after checks for the scale work: ingest rate across source trees, exact rankings.

    python benchmarks/scale_checks.py ingest-rate --articles 130 TREE [TREE ...]
    python benchmarks/scale_checks.py rankings --db /tmp/scale-100k --queries 121 --out A.json
    python benchmarks/scale_checks.py rankings ... --out B.json --compare A.json

`ingest-rate` writes `--articles` of scale.py's synthetic articles to one JSONL file,
then runs `newsqa ingest FILE --db NEW` with each source tree first on PYTHONPATH (a
git worktree of a commit, say), twice each in turn, embeddings from scale.py's stand-in
server: chunks per second of newsqa's own machinery, old code against new in one run.
Run it from outside the checkout (the current folder would shadow PYTHONPATH).

`rankings` runs dev questions through `NewsQA.search` in one process and saves each
question's top 10 (chunk ids and scores) and the p50/p95; with `--compare` it counts
the questions whose top 10 differ from another run's. `--no-dense` drops the dense
hits: embedded Chroma's HNSW answers differ between processes (the unpersisted log is
re-inserted at each open), so only without them are two runs exactly comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale


def ingest_rate(trees: list[str], articles: int, rounds: int) -> list[dict[str, Any]]:
    sentences, sources = scale.corpus_material()
    out = []
    with tempfile.TemporaryDirectory(prefix="newsqa-checks-") as tmp, scale._standin() as env:
        path = Path(tmp) / "in.jsonl"
        scale.write_jsonl(path, [scale.synthetic_record(i, sentences, sources)
                                 for i in range(articles)])
        for _ in range(rounds):
            for tree in trees:
                db = Path(tmp) / "db"
                shutil.rmtree(db, ignore_errors=True)
                module = "newsqa.app.cli" if Path(tree, "newsqa/app").is_dir() else "newsqa.cli"
                start = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", module, "ingest", str(path), "--db", str(db)],
                    env={**env, "PYTHONPATH": tree}, capture_output=True, text=True, check=True)
                took = time.perf_counter() - start
                chunks = int(done.stdout.strip().rsplit(";", 1)[1].split()[0])
                out.append({"tree": tree, "s": round(took, 1), "chunks": chunks,
                            "chunks_per_s": round(chunks / took)})
                print(json.dumps(out[-1]), flush=True)
    return out


def rankings(db: Path, queries: int, dense: bool) -> dict[str, Any]:
    from newsqa import NewsQA

    if not dense:
        from newsqa.store.index import Index

        Index.dense_ids = lambda self, vector, k, where, known: []  # type: ignore[method-assign]
    questions = scale._dev_questions(queries)
    tops: dict[str, Any] = {}
    times = []
    with scale._standin() as env:
        os.environ.update(env)
        qa = NewsQA(db=db, llm="extractive", create=False)
        for q in questions:
            start = time.perf_counter()
            hits = qa.search(q, top_k=10)
            times.append(time.perf_counter() - start)
            tops[q] = [[p.chunk_id, p.scores] for p in hits]
    ms = np.asarray(times[1:]) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "tops": tops}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ingest-rate")
    p.add_argument("trees", nargs="+", help="source trees (folders holding newsqa/)")
    p.add_argument("--articles", type=int, default=130)
    p.add_argument("--rounds", type=int, default=2)
    p = sub.add_parser("rankings")
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--queries", type=int, default=121, help="dev questions (first: warm-up)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--compare", type=Path, help="another run's --out")
    p.add_argument("--no-dense", action="store_true", help="no dense hits: repeatable runs")
    args = parser.parse_args()
    if not scale.DATA.is_dir():
        print(f"skipped: {scale.DATA} is absent (see ../shared/eval/README.md)")
        return 0
    if args.command == "ingest-rate":
        ingest_rate(args.trees, args.articles, args.rounds)
        return 0
    result = rankings(args.db, args.queries, dense=not args.no_dense)
    args.out.write_text(json.dumps(result), encoding="utf-8")
    summary: dict[str, Any] = {k: result[k] for k in ("p50_ms", "p95_ms")}
    if args.compare:
        other = json.loads(args.compare.read_text(encoding="utf-8"))["tops"]
        summary["differ"] = sum(other.get(q) != top for q, top in result["tops"].items())
        summary["of"] = len(result["tops"])
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
