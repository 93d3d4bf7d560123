"""Retrieval latency: newsqa's hybrid search beside a raw Chroma query of the same embedding.

Two indexes:

1. the MultiHop-RAG corpus (609 real articles, ~7k chunks), embedded with the real
   model (shared with `newsqa eval multihop`: same folder, same settings, so
   whichever runs first pays for the embedding and the other reuses it);
2. a synthetic index of at least 100,000 chunks. Embedding 100k chunks with the real
   model would take hours on 2 cores (~18 chunks/s), so the texts are built from real
   corpus sentences and the vectors are random convex mixtures of three real chunk
   embeddings (renormalised), both from a seeded generator: deterministic, realistic
   in vocabulary and in how vectors cluster. They go in through `Index.write_article`,
   the same write path ingest uses, so Chroma, the manifest and BM25 see what they
   would see after a real ingest.

Per query (dev query texts, run once each):
- `embed`: `embed_query` alone; `raw`: `collection.query` of that vector in Chroma, top 10,
  same `include` as newsqa; `hybrid`: `NewsQA.search(top_k=10)` end to end (embedding,
  BM25, dense, fusion, diversity).
- ratio = hybrid / (embed + raw): what newsqa adds over the cheapest dense lookup a
  caller could write by hand with the same model.
- extractive `NewsQA.ask` end to end (retrieval + answer + citation checks), corpus only.

    python benchmarks/query.py                      # both indexes
    python benchmarks/query.py --synthetic-chunks 0 # corpus only
    python benchmarks/query.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "eval" / "multihop"
CORPUS_DB = ROOT / ".newsqa-eval-multihop"
SYNTH_DB = ROOT / ".newsqa-bench-synthetic"
SEED = 20240127
SENTENCES_PER_ARTICLE = 320  # ~45 chunks of 256 tokens: few manifest writes per 100k chunks


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - start) * 1000


def stats(values: Sequence[float]) -> dict[str, float]:
    from newsqa.app.evaluation import latency_summary

    return latency_summary(values)


def dev_queries(n: int) -> list[str]:
    from newsqa.app.evaluation import DEV_IDS, load_multihop_queries, read_ids

    ids = read_ids(DATA / DEV_IDS)[:n]
    return [q.query for q in load_multihop_queries(DATA / "queries.jsonl", ids)]


def open_corpus(db: str | Path, log: Callable[[str], None]) -> Any:
    from newsqa import NewsQA

    qa = NewsQA(db=db, llm="extractive")
    report, ms = timed(lambda: qa.ingest([DATA / "corpus.jsonl"]))
    log(f"corpus index: {qa.index.chunk_count()} chunks, ingest pass {ms / 1000:.1f}s "
        f"(added {report.added}, unchanged {report.unchanged})")
    return qa


def measure(qa: Any, queries: Sequence[str], log: Callable[[str], None]) -> dict[str, Any]:
    """First query (builds the keyword index) apart, then every query once per path."""
    collection = qa.index._chunks  # the raw chromadb Collection the index writes to
    _, first_ms = timed(lambda: qa.search(queries[0], top_k=10))
    embed, raw, hybrid, dense = [], [], [], []
    include = ["documents", "metadatas", "distances"]
    for query in queries[1:]:
        vector, ms = timed(lambda q=query: qa.embedder.embed_query(q))
        embed.append(ms)
        raw.append(timed(lambda v=vector: collection.query(
            query_embeddings=[v.tolist()], n_results=10, include=include))[1])
        dense.append(timed(lambda v=vector: qa.index.dense_search(v, 10))[1])
        hybrid.append(timed(lambda q=query: qa.search(q, top_k=10))[1])
    result = {
        "chunks": qa.index.chunk_count(),
        "queries": len(queries) - 1,
        "first_query_ms": round(first_ms, 1),
        "embed_ms": stats(embed),
        "raw_chroma_ms": stats(raw),
        "dense_search_ms": stats(dense),
        "hybrid_ms": stats(hybrid),
    }
    base = [e + r for e, r in zip(embed, raw, strict=True)]
    result["embed_plus_raw_ms"] = stats(base)
    result["ratio_p50"] = round(result["hybrid_ms"]["p50"] / result["embed_plus_raw_ms"]["p50"], 2)
    result["ratio_p95"] = round(result["hybrid_ms"]["p95"] / result["embed_plus_raw_ms"]["p95"], 2)
    log(_line(result))
    return result


def _line(r: dict[str, Any]) -> str:
    return (f"  {r['chunks']} chunks, {r['queries']} queries: hybrid p50 {r['hybrid_ms']['p50']} "
            f"p95 {r['hybrid_ms']['p95']} ms | embed p50 {r['embed_ms']['p50']} | raw chroma p50 "
            f"{r['raw_chroma_ms']['p50']} p95 {r['raw_chroma_ms']['p95']} | dense_search p50 "
            f"{r['dense_search_ms']['p50']} | ratio hybrid/(embed+raw) p50 {r['ratio_p50']}x "
            f"p95 {r['ratio_p95']}x | first query {r['first_query_ms']} ms")


def measure_answers(qa: Any, queries: Sequence[str], log: Callable[[str], None]) -> dict[str, Any]:
    times = [timed(lambda q=q: qa.ask(q))[1] for q in queries]
    result = {"queries": len(queries), "ask_ms": stats(times)}
    log(f"  extractive ask end to end: p50 {result['ask_ms']['p50']} ms, "
        f"p95 {result['ask_ms']['p95']} ms")
    return result


# -- the synthetic index ------------------------------------------------------------------------


def real_material(qa: Any) -> tuple[Any, list[str], list[str]]:
    """Real chunk embeddings, corpus sentences and sources: what synthetic chunks mix."""
    import numpy as np

    from newsqa.text.sentences import sentence_spans

    vectors, collection, page = [], qa.index._chunks, 1000
    for offset in range(0, collection.count(), page):  # one huge get() fails in Chroma 1.x
        got = collection.get(include=["embeddings"], limit=page, offset=offset)
        vectors.append(np.asarray(got["embeddings"], dtype=np.float32))
    sentences: list[str] = []
    sources = sorted({info.source for info in qa.articles() if info.source})
    for info in sorted(qa.articles(), key=lambda i: i.id):
        text = qa.get_article(info.id).text
        sentences += [text[s:e] for s, e in sentence_spans(text) if e - s > 30]
    return np.concatenate(vectors), sentences, sources


def synthetic_article(number: int, sentences: list[str], sources: list[str]) -> Any:
    import datetime as dt

    import numpy as np

    from newsqa.models import Article

    rng = np.random.default_rng([SEED, number])
    picks = rng.integers(0, len(sentences), SENTENCES_PER_ARTICLE)
    day = dt.date(2023, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365)))
    return Article(
        title=f"Synthetic story {number}: {sentences[int(picks[0])][:60]}",
        source=sources[int(rng.integers(0, len(sources)))],
        published_at=day,
        url=f"https://synthetic.invalid/story/{number}",
        text=" ".join(sentences[int(i)] for i in picks),
    )


def mixed_vectors(number: int, n: int, real: Any) -> Any:
    import numpy as np

    rng = np.random.default_rng([SEED, number, 1])
    members = rng.integers(0, len(real), (n, 3))
    weights = rng.dirichlet([1.0, 1.0, 1.0], n).astype(np.float32)
    mixed = (real[members] * weights[..., None]).sum(axis=1)
    return mixed / np.linalg.norm(mixed, axis=1, keepdims=True)


def build_synthetic(corpus: Any, target: int, log: Callable[[str], None]) -> Any:
    """Resumable: article k is the same whenever it is made, so a re-run tops up."""
    from newsqa import NewsQA
    from newsqa.store.chunking import chunk_article

    qa = NewsQA(db=SYNTH_DB, llm="extractive")
    have = qa.index.chunk_count()
    if have >= target:
        log(f"synthetic index: {have} chunks (reused)")
        return qa
    real, sentences, sources = real_material(corpus)
    settings, number = qa.settings, len(qa.articles())
    start = time.perf_counter()
    while have < target:
        article = synthetic_article(number, sentences, sources)
        chunks = chunk_article(
            article, max_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap
        )
        qa.index.write_article(article, chunks, mixed_vectors(number, len(chunks), real))
        have += len(chunks)
        number += 1
        if number % 200 == 0:
            log(f"  synthetic: {have} chunks, {time.perf_counter() - start:.0f}s")
    log(f"synthetic index: {have} chunks in {number} articles, built in "
        f"{time.perf_counter() - start:.0f}s")
    return qa


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=201, help="dev queries (first is warm-up)")
    parser.add_argument("--answers", type=int, default=100, help="queries for ask latency")
    parser.add_argument("--synthetic-chunks", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--corpus-db", default=str(CORPUS_DB),
                        help="a built MultiHop-RAG index (default: the eval command's)")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent (see ../shared/eval/README.md)")
        return 0
    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    log(f"machine: {machine()}")
    queries = dev_queries(args.queries)
    corpus = open_corpus(args.corpus_db, log)
    results: dict[str, Any] = {"machine": machine(), "corpus": measure(corpus, queries, log)}
    if args.answers > 0:
        results["answers"] = measure_answers(corpus, queries[: args.answers], log)
    if args.synthetic_chunks > 0:
        synthetic = build_synthetic(corpus, args.synthetic_chunks, log)
        results["synthetic"] = measure(synthetic, queries, log)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
