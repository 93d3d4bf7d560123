"""Micro-benchmark of the offline embedder: throughput, query latency, cold start.

    python benchmarks/embed.py            # fp32 (the default model)
    python benchmarks/embed.py --int8     # also the int8 variant, with its cosine to fp32
    python benchmarks/embed.py --sentence-transformers   # and the peer's own vectors
                                          # (needs sentence-transformers + torch installed)

Texts are made up (deterministic news-like sentences) and cut to about 256 word
pieces, the model's limit, so figures compare with "MiniLM fp32 ~17-19 chunks/s of
256 tokens on 2 cores". Chunks/s is wall-clock; "per CPU-s" divides by the process's
CPU time instead, which is steadier when other work shares the machine (the load
average is printed for that reason). Nothing here is asserted: it only measures.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsqa.store.embedding import MiniLMEmbedder, minilm_model_dir  # noqa: E402

N_TEXTS = 200
BATCH_SIZES = (8, 32, 64)
N_QUERIES = 60

_WHO = (
    "The finance minister",
    "A spokesperson for the port authority",
    "Union leaders",
    "The central bank",
    "Local officials",
    "Investigators",
    "The city council",
)
_DID = (
    "announced a review of",
    "rejected claims about",
    "approved new funding for",
    "warned of delays to",
    "opened an inquiry into",
    "agreed to expand",
)
_WHAT = (
    "the rail network",
    "grain exports",
    "the coastal wind farm",
    "hospital staffing",
    "the water supply",
    "interest rates",
    "the election timetable",
    "fuel subsidies",
)
_WHEN = (
    "on Monday",
    "late on Tuesday",
    "after weeks of talks",
    "despite protests",
    "ahead of the summit",
    "in a statement",
    "citing rising costs",
)


def synthetic_texts(
    n: int, embedder: MiniLMEmbedder, pieces: int = 256, seed: int = 7
) -> list[str]:
    """News-like texts of about `pieces` word pieces each (deterministic per seed)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words: list[str] = []
        while len(words) < 400:
            sentence = (
                f"{rng.choice(_WHO)} {rng.choice(_DID)} {rng.choice(_WHAT)} "
                f"{rng.choice(_WHEN)}, with {rng.randint(2, 980)} million at stake."
            )
            words.extend(sentence.split())
        encoding = embedder._tokenizer.encode(" ".join(words))
        end = encoding.offsets[min(pieces, len(encoding.offsets)) - 2][1]
        texts.append(" ".join(words)[:end])
    return texts


CORPUS = REPO.parent / "shared" / "eval" / "multihop" / "corpus.jsonl"


def corpus_texts(n: int, embedder: MiniLMEmbedder, pieces: int = 256) -> list[str] | None:
    """The first n windows of `pieces` word pieces from MultiHop-RAG article bodies.

    Read from ../shared/eval (never copied into the repo); None when it is absent.
    """
    import json

    if not CORPUS.is_file():
        return None
    texts: list[str] = []
    with CORPUS.open(encoding="utf-8") as handle:
        for line in handle:
            body = json.loads(line)["body"]
            offsets = embedder._tokenizer.encode(body, add_special_tokens=False).offsets
            for start in range(0, len(offsets), pieces - 2):
                window = offsets[start : start + pieces - 2]
                if len(window) < pieces - 2:
                    break  # only full-length windows: the figures are per 256-piece chunk
                texts.append(body[window[0][0] : window[-1][1]])
                if len(texts) == n:
                    return texts
    return texts


def throughput(embedder: MiniLMEmbedder, texts: list[str], batch_size: int) -> tuple[float, float]:
    """(chunks per wall second, chunks per CPU second) for one pass after a warm-up."""
    embedder.batch_size = batch_size
    embedder.embed_documents(texts[:batch_size])
    wall, cpu = time.perf_counter(), time.process_time()
    embedder.embed_documents(texts)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(texts) / wall, len(texts) / cpu


def query_latency_ms(embedder: MiniLMEmbedder) -> float:
    rng = random.Random(3)
    queries = [
        f"What did {rng.choice(_WHO).lower()} say about {rng.choice(_WHAT)}?"
        for _ in range(N_QUERIES)
    ]
    embedder.embed_query(queries[0])
    times = []
    for query in queries:
        start = time.perf_counter()
        embedder.embed_query(query)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


_COLD = """
import time
t0 = time.perf_counter()
from newsqa.store.embedding import get_embedder
t1 = time.perf_counter()
e = get_embedder({spec!r})
t2 = time.perf_counter()
e.embed_query("Who met whom in Baghdad?")
t3 = time.perf_counter()
print(f"{{t1 - t0:.2f}} {{t2 - t1:.2f}} {{t3 - t2:.3f}} {{int(e.loaded_from_cache)}}")
"""


def cold_start(spec: str, cache: Path) -> str:
    """Time to first embedding in a fresh interpreter: whole process and its parts."""
    env = {**os.environ, "NEWSQA_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _COLD.format(spec=spec)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    total = time.perf_counter() - start
    imp, load, first, cached = out
    return (
        f"{total:5.2f} s process (import {imp} s, load {load} s, first query {first} s, "
        f"graph from cache: {bool(int(cached))})"
    )


def report(label: str, embedder: MiniLMEmbedder, texts: list[str]) -> None:
    print(f"\n{label}: {embedder.name}")
    for size in BATCH_SIZES:
        wall, per_cpu = throughput(embedder, texts, size)
        print(f"  batch {size:3d}: {wall:6.1f} chunks/s   ({per_cpu:5.1f} per CPU-s)")
    print(f"  single query p50: {query_latency_ms(embedder):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int8", action="store_true", help="also measure minilm-int8")
    parser.add_argument("--synthetic", action="store_true", help="made-up texts, not the corpus")
    parser.add_argument("-n", type=int, default=N_TEXTS, help="texts per pass")
    parser.add_argument(
        "--sentence-transformers",
        action="store_true",
        help="compare with sentence-transformers' vectors and speed on the same files",
    )
    args = parser.parse_args()
    print(
        f"cpus={os.cpu_count()} ORT threads={os.environ.get('NEWSQA_ORT_THREADS', 'cpu_count')}"
        f" load average={os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="newsqa-bench-") as tmp:
        cache = Path(tmp)
        specs = ["minilm"] + (["minilm-int8"] if args.int8 else [])
        for spec in specs:
            print(f"cold start {spec:11s} no cache:   {cold_start(spec, cache)}")
            print(f"cold start {spec:11s} with cache: {cold_start(spec, cache)}")
        fp32 = MiniLMEmbedder(cache=cache)
        texts = None if args.synthetic else corpus_texts(args.n, fp32)
        origin = f"MultiHop-RAG chunks from {CORPUS}"
        if texts is None:
            if not args.synthetic:
                print(f"(no {CORPUS}: using synthetic texts)")
            texts, origin = synthetic_texts(args.n, fp32), "synthetic news-like texts"
        pieces = fp32.token_counts(texts)
        print(
            f"\n{len(texts)} {origin}; word pieces per text: mean {np.mean(pieces):.0f}, "
            f"min {min(pieces)}, max {max(pieces)}"
        )
        report("fp32", fp32, texts)
        if args.int8:
            int8 = MiniLMEmbedder(cache=cache, int8=True)
            report("int8", int8, texts)
            cosine = np.sum(fp32.embed_documents(texts) * int8.embed_documents(texts), axis=1)
            print(
                f"  cosine int8 vs fp32 on these texts: mean {cosine.mean():.4f}, "
                f"min {cosine.min():.4f}"
            )
            if args.sentence_transformers:
                compare_sentence_transformers(texts, {"fp32": fp32, "int8": int8})
        elif args.sentence_transformers:
            compare_sentence_transformers(texts, {"fp32": fp32})
    print(f"\nload average at the end={os.getloadavg()[0]:.1f}")


def compare_sentence_transformers(texts: list[str], ours: dict[str, MiniLMEmbedder]) -> None:
    """The reference implementation on the same upstream files: its speed, our difference."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_model_dir()), device="cpu")
    model.encode(texts[:32], batch_size=32)
    wall = time.perf_counter()
    want = model.encode(texts, batch_size=32, normalize_embeddings=True)
    wall = time.perf_counter() - wall
    print(f"\nsentence-transformers (torch, batch 32): {len(texts) / wall:6.1f} chunks/s")
    for label, embedder in ours.items():
        embedder.batch_size = 32
        got = embedder.embed_documents(texts)
        cosine = np.sum(got * want, axis=1)
        print(
            f"  {label} vs sentence-transformers: max |diff| {np.abs(got - want).max():.2e}, "
            f"min cosine {cosine.min():.6f}"
        )


if __name__ == "__main__":
    main()
