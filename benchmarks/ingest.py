"""Ingest throughput: newsqa beside the embedding ceiling and llama-index, in one run.

Three phases over the same MultiHop-RAG articles (first --limit of corpus.jsonl),
each in its own fresh process so peak RSS is per phase (model load included in
RSS, excluded from time: every phase embeds one text before the clock starts):

- ceiling: `embed_documents` over exactly the texts newsqa embeds (search texts,
  batches of 64), chunked before the clock starts. No pipeline can beat this.
- newsqa: `ingest()` end to end (load JSONL, hash check, chunk, embed, write
  chunks + manifest to embedded Chroma), then a re-ingest of the same corpus
  (everything unchanged) timed as a fraction of the first.
- llama-index: `VectorStoreIndex.from_documents` over `ChromaVectorStore`
  (embedded Chroma) with the same model wrapped as a `BaseEmbedding`,
  SentenceSplitter(256 tokens, overlap 20), embed_batch_size 64, no LLM.

Goals: newsqa chunks/s >= 0.9 x ceiling; re-ingest < 5 % of the first ingest.

    python benchmarks/ingest.py --limit 100
    python benchmarks/ingest.py            # all 609 articles (minutes: ~18 chunks/s)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import multiprocessing
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "eval" / "multihop" / "corpus.jsonl"
BATCH = 64


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def warm_embedder(spec: str) -> Any:
    from newsqa.store.embedding import get_embedder

    embedder = get_embedder(spec)
    embedder.embed_documents(["warm up the model before the clock starts"])
    return embedder


def load_articles(corpus: Path) -> list[Any]:
    from newsqa.store.articles import read_paths

    return [x.article for x in read_paths([corpus]) if not isinstance(x, Exception)]


class TimedEmbedder:
    """The real embedder timing its own calls: the model's share of ingest, measured
    under the very same machine load (the machine may be shared)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dimension = inner, inner.name, inner.dimension
        self.seconds = 0.0

    def embed_documents(self, texts: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.inner.embed_documents(texts)
        finally:
            self.seconds += time.perf_counter() - start

    def embed_query(self, text: str) -> Any:
        return self.inner.embed_query(text)


def phase_ceiling(corpus: str, spec: str) -> dict[str, Any]:
    from newsqa.config import Settings
    from newsqa.store.chunking import chunk_article, search_text

    settings = Settings()
    embedder = warm_embedder(spec)
    articles = load_articles(Path(corpus))
    texts = [
        search_text(a, c)
        for a in articles
        for c in chunk_article(a, max_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap)
    ]
    start = time.perf_counter()
    for lo in range(0, len(texts), BATCH):
        embedder.embed_documents(texts[lo : lo + BATCH])
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "articles": len(articles),
        "chunks": len(texts),
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_newsqa(corpus: str, spec: str) -> dict[str, Any]:
    from newsqa.config import Settings
    from newsqa.store.index import Index
    from newsqa.store.ingest import ingest

    embedder = TimedEmbedder(warm_embedder(spec))
    with tempfile.TemporaryDirectory(prefix="newsqa-bench-") as tmp:
        settings = Settings(db=Path(tmp) / "db")
        index = Index(settings, embedder)
        start = time.perf_counter()
        report = ingest([corpus], index, embedder, settings)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        again = ingest([corpus], Index(settings, embedder), embedder, settings)
        reingest = time.perf_counter() - start
    if again.unchanged != report.added + report.updated:
        raise RuntimeError(f"re-ingest was not a no-op: {again}")
    return {
        "seconds": seconds,
        "articles": report.added,
        "chunks": report.chunks,
        "failed": len(report.failed),
        "duplicates": report.duplicates,
        "reingest_seconds": reingest,
        "embed_seconds": embedder.seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_llama(corpus: str, spec: str) -> dict[str, Any]:
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.core import Settings as LlamaSettings
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.chroma import ChromaVectorStore
    from pydantic import PrivateAttr

    class NewsQAEmbedding(BaseEmbedding):
        """Our embedder behind llama-index's interface: same model, same batches."""

        _inner: Any = PrivateAttr()

        def __init__(self, inner: Any) -> None:
            super().__init__(model_name=inner.name, embed_batch_size=BATCH)
            self._inner = inner

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embeddings([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._inner.embed_documents(texts).tolist()  # type: ignore[no-any-return]

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._inner.embed_query(query).tolist()  # type: ignore[no-any-return]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    embedder = warm_embedder(spec)
    LlamaSettings.llm = None
    LlamaSettings.embed_model = NewsQAEmbedding(embedder)
    splitter = SentenceSplitter(chunk_size=256, chunk_overlap=20)
    with tempfile.TemporaryDirectory(prefix="llama-bench-") as tmp:
        client = chromadb.PersistentClient(tmp, settings=ChromaSettings(anonymized_telemetry=False))
        collection = client.get_or_create_collection("bench", embedding_function=None)
        storage = StorageContext.from_defaults(
            vector_store=ChromaVectorStore(chroma_collection=collection)
        )
        start = time.perf_counter()
        articles = load_articles(Path(corpus))  # same loader cost as newsqa pays
        documents = [
            Document(
                text=a.text,
                id_=a.id,
                metadata={
                    "title": a.title,
                    "source": a.source,
                    "url": a.url or "",
                    "published_at": a.published_at.isoformat() if a.published_at else "",
                },
            )
            for a in articles
        ]
        VectorStoreIndex.from_documents(
            documents, storage_context=storage, transformations=[splitter]
        )
        seconds = time.perf_counter() - start
        chunks = collection.count()
    return {
        "seconds": seconds,
        "articles": len(documents),
        "chunks": chunks,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_isolated(phase: Callable[[str, str], dict[str, Any]], corpus: str, spec: str) -> Any:
    """A fresh process per phase: clean peak RSS, no warm caches shared between phases."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(phase, corpus, spec).result()


def rates(result: dict[str, Any]) -> tuple[float, float]:
    seconds = max(result["seconds"], 1e-9)
    return result["articles"] / seconds, result["chunks"] / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="Use the first N articles.")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--embedding", default="minilm")
    parser.add_argument("--skip-llama", action="store_true")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args(argv)
    if not args.corpus.exists():
        print(f"skipped: corpus not found at {args.corpus} (see ../shared/eval/README.md)")
        return 0
    with tempfile.TemporaryDirectory(prefix="ingest-bench-corpus-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        with args.corpus.open(encoding="utf-8") as src, corpus.open("w", encoding="utf-8") as dst:
            for n, line in enumerate(src):
                if args.limit is not None and n >= args.limit:
                    break
                dst.write(line)
        results = {
            "ceiling": run_isolated(phase_ceiling, str(corpus), args.embedding),
            "newsqa": run_isolated(phase_newsqa, str(corpus), args.embedding),
        }
        if not args.skip_llama:
            results["llama-index"] = run_isolated(phase_llama, str(corpus), args.embedding)
    report(results, args)
    return 0


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    ceiling_chunks = rates(results["ceiling"])[1]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"ingest benchmark  {dt.date.today()}  {platform.machine()} "
        f"python {platform.python_version()}  limit={args.limit}  model={args.embedding}"
    )
    print(
        f"{'phase':<12} {'articles':>8} {'chunks':>7} {'seconds':>8} {'art/s':>7} "
        f"{'chunks/s':>8} {'x ceiling':>9} {'peak RSS MB':>11}"
    )
    for name, r in results.items():
        art_s, chunk_s = rates(r)
        print(
            f"{name:<12} {r['articles']:>8} {r['chunks']:>7} {r['seconds']:>8.1f} "
            f"{art_s:>7.2f} {chunk_s:>8.2f} {chunk_s / ceiling_chunks:>9.2f} "
            f"{r['peak_rss_mb']:>11.0f}"
        )
    ours = results["newsqa"]
    print(f"newsqa / ceiling (chunks/s): {rates(ours)[1] / ceiling_chunks:.3f}  (goal >= 0.9)")
    if "llama-index" in results:
        llama = results["llama-index"]
        print(
            f"newsqa / llama-index: articles/s {rates(ours)[0] / rates(llama)[0]:.2f}x, "
            f"chunks/s {rates(ours)[1] / rates(llama)[1]:.2f}x"
        )
    if "embed_seconds" in ours:
        share = ours["embed_seconds"] / ours["seconds"]
        print(
            f"inside the newsqa run the model's own calls took {ours['embed_seconds']:.1f}s of "
            f"{ours['seconds']:.1f}s = {share:.3f} (the ceiling ratio under the same load)"
        )
    fraction = ours["reingest_seconds"] / ours["seconds"]
    print(
        f"re-ingest unchanged: {ours['reingest_seconds']:.2f}s = {fraction:.1%} of the first "
        "(goal < 5%)"
    )


if __name__ == "__main__":
    sys.exit(main())
