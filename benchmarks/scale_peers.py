"""newsqa beside a raw Chroma query and the LlamaIndex build a user would make, one run.

    pip install --no-deps llama-index-retrievers-bm25==0.8.0   # the peer; see below
    python benchmarks/scale.py build --db /tmp/scale-100k --chunks 100000
    python benchmarks/scale_peers.py --db /tmp/scale-100k [--queries 101] [--ingest 40]

On an index `scale.py build` made (stand-in vectors: see scale.py), each system is
measured in a reader process of its own, so its resident memory is its own:

- newsqa: `NewsQA(db).search(question, top_k=10)`, the default path (a pool from the
  tantivy keyword index, then the first and second stages);
- raw Chroma: `collection.query` of the same question vector for 10 results, nothing
  else (the floor any Chroma-backed system pays);
- LlamaIndex: what a user would build instead, `BM25Retriever` (bm25s) plus a
  `VectorIndexRetriever` over the same Chroma collection through `ChromaVectorStore`,
  fused by `QueryFusionRetriever` (reciprocal rank, one query, no LLM). Its BM25 is
  built once from every chunk in Chroma and persisted (`BM25Retriever.persist`); it has
  no way to add one article, so a reader sees a new article only after rebuilding it.

Per system: cold start to the first result (process spawn to the first search's
answer), search p50/p95 over dev questions, reader RSS (VmRSS after the searches and
its peak VmHWM), size on disk, then one new article is written through `newsqa
ingest` (into the same Chroma collection, so every system can find it) and the
reader is asked for it by its title: seconds to that answer and whether the article
is in the top 10. Ingest rate: `newsqa ingest` of `--ingest` new articles into the
index; for LlamaIndex the same articles split by its `SentenceSplitter` (256 tokens)
and added to a scratch Chroma collection through `ChromaVectorStore`, plus the BM25
rebuild that makes them searchable. The query vector is the stand-in's for all
three (newsqa asks the stand-in server over HTTP, ~1 ms; the others compute it in
process).

`llama-index-retrievers-bm25` 0.8.0 declares PyStemmer<3 while newsqa's constraints pin
PyStemmer 3.1 (same `Stemmer` API), hence `--no-deps`; it is a benchmark peer, not a
newsqa dependency.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale

COLLECTION = "newsqa_chunks"
PAGE = 5000


# -- the three readers, each in its own process -------------------------------------------------


class Reader:
    """One system's search: `search(question) -> urls of the top 10`."""

    def search(self, question: str) -> list[str]:
        raise NotImplementedError

    def refresh(self) -> None:
        """What the system must do before a new article can be found (nothing by default)."""


class NewsQAReader(Reader):
    def __init__(self, db: Path) -> None:
        from newsqa import NewsQA

        self.qa = NewsQA(db=db, llm="extractive", create=False)

    def search(self, question: str) -> list[str]:
        return [p.url or "" for p in self.qa.search(question, top_k=10)]


class ChromaReader(Reader):
    def __init__(self, db: Path) -> None:
        self.collection = open_collection(db)

    def search(self, question: str) -> list[str]:
        got = self.collection.query(query_embeddings=[scale.standin_vector(question).tolist()],
                                    n_results=10, include=["metadatas"])
        return [str(m.get("url", "")) for m in (got["metadatas"] or [[]])[0]]


class LlamaIndexReader(Reader):
    def __init__(self, db: Path, bm25_dir: Path) -> None:
        from llama_index.retrievers.bm25 import BM25Retriever

        self.collection = open_collection(db)
        self.bm25 = BM25Retriever.from_persist_dir(str(bm25_dir))
        self.bm25.similarity_top_k = 10
        self.fusion = self._fusion()

    def _fusion(self) -> Any:
        from llama_index.core import VectorStoreIndex
        from llama_index.core.llms import MockLLM
        from llama_index.core.retrievers import QueryFusionRetriever
        from llama_index.vector_stores.chroma import ChromaVectorStore

        store = ChromaVectorStore(chroma_collection=self.collection)
        vector = VectorStoreIndex.from_vector_store(store, embed_model=standin_embedding())
        return QueryFusionRetriever(
            [vector.as_retriever(similarity_top_k=10), self.bm25], similarity_top_k=10,
            num_queries=1, mode="reciprocal_rerank", use_async=False,
            llm=MockLLM())  # one query: no LLM is called, but it must not default to OpenAI

    def search(self, question: str) -> list[str]:
        return [str(n.node.metadata.get("url", "")) for n in self.fusion.retrieve(question)]

    def refresh(self) -> None:
        """BM25Retriever cannot add a document: rebuild it from every chunk in Chroma
        (the old one let go first, so the peak is one index, not two)."""
        self.bm25 = self.fusion = None
        gc.collect()
        self.bm25 = build_bm25(self.collection)
        self.fusion = self._fusion()


def open_collection(db: Path) -> Any:
    """newsqa's chunk collection, with newsqa's client settings (Chroma refuses two
    clients of one folder with different settings in one process)."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(db), settings=Settings(anonymized_telemetry=False))
    return client.get_collection(COLLECTION)


def standin_embedding() -> Any:
    """A LlamaIndex embedding model giving the stand-in vectors."""
    from llama_index.core.embeddings import BaseEmbedding

    class Standin(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return [float(x) for x in scale.standin_vector(query)]

        def _get_text_embedding(self, text: str) -> list[float]:
            return [float(x) for x in scale.standin_vector(text)]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    return Standin(model_name=scale.MODEL)


def chroma_nodes(collection: Any) -> Iterator[Any]:
    """Every chunk in the collection as a LlamaIndex TextNode, page by page."""
    from llama_index.core.schema import TextNode

    offset = 0
    while True:
        page = collection.get(include=["documents", "metadatas"], limit=PAGE, offset=offset)
        for cid, doc, meta in zip(page["ids"], page["documents"] or [], page["metadatas"] or [],
                                  strict=True):
            yield TextNode(id_=cid, text=doc, metadata=dict(meta or {}))
        if len(page["ids"]) < PAGE:
            return
        offset += PAGE


def build_bm25(collection: Any) -> Any:
    from llama_index.retrievers.bm25 import BM25Retriever

    return BM25Retriever.from_defaults(nodes=list(chroma_nodes(collection)), similarity_top_k=10)


def rss_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak, in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def child(system: str, db: Path, bm25_dir: Path, queries: int) -> None:
    """Open, answer, time; then wait for a question about a new article on stdin."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # this process only: one search at a time
    questions = scale._dev_questions(queries)
    reader: Reader
    if system == "newsqa":
        reader = NewsQAReader(db)
    elif system == "chroma":
        reader = ChromaReader(db)
    else:
        reader = LlamaIndexReader(db, bm25_dir)
    reader.search(questions[0])
    report({"event": "first_answer"})
    times = [seconds(lambda q=q: reader.search(q)) * 1000 for q in questions[1:]]
    report({"event": "searched", "p50_ms": round(float(np.percentile(times, 50)), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1), **rss_mb()})
    record = json.loads(sys.stdin.readline())
    wrote = write_one(db, record)
    found: list[str] = []
    title = record["title"].split(": ", 1)[1]
    took = seconds(lambda: (reader.refresh(), found.extend(reader.search(title))))
    report({"event": "after_write", "write_s": round(wrote, 2), "s": round(took, 3),
            "found": record["url"] in found, **rss_mb()})


def write_one(db: Path, record: dict[str, Any]) -> float:
    """One article through a second NewsQA in the reader's process.

    An embedded index admits one process at a time (newsqa's folder lock), so the
    write comes from the reader's process, as `serve` beside an ingest sees it.
    """
    from newsqa import NewsQA

    with tempfile.TemporaryDirectory(prefix="newsqa-peers-") as tmp:
        path = Path(tmp) / "one.jsonl"
        scale.write_jsonl(path, [record])
        writer = NewsQA(db=db, llm="extractive")
        took = seconds(lambda: writer.ingest([path]))
        writer.close()
    return took


def report(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def seconds(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


# -- the parent: one run, all systems ----------------------------------------------------------


def run_reader(system: str, args: argparse.Namespace, env: dict[str, str],
               record: dict[str, Any]) -> dict[str, Any]:
    """Spawn one reader, time its cold start, then write one article and ask for it."""
    command = [sys.executable, __file__, "--child", system, "--db", str(args.db),
               "--bm25", str(args.bm25), "--queries", str(args.queries)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdin is not None and proc.stdout is not None
    out: dict[str, Any] = {"system": system}
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "first_answer", first
    out["cold_start_s"] = round(time.perf_counter() - start, 2)
    out.update({k: v for k, v in json.loads(proc.stdout.readline()).items() if k != "event"})
    proc.stdin.write(json.dumps(record) + "\n")
    proc.stdin.flush()
    after = json.loads(proc.stdout.readline())
    out["write_one_s"] = after["write_s"]
    out["after_write_s"], out["after_write_found"] = after["s"], after["found"]
    out["VmHWM_after_write"] = after.get("VmHWM")
    proc.wait()
    return out


def newsqa_ingest_rate(
    db: Path, env: dict[str, str], articles: list[dict[str, Any]]
) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="newsqa-peers-") as tmp:
        path = Path(tmp) / "more.jsonl"
        scale.write_jsonl(path, articles)
        took, line = scale.run_ingest(db, [path], env)
    added = scale.committed(db)[1]
    print(f"  newsqa ingest: {line} ({took:.1f}s)", flush=True)
    return took, added


def llama_index_ingest_s(articles: list[dict[str, Any]]) -> tuple[float, int]:
    """The same articles through LlamaIndex's splitter into a scratch Chroma collection."""
    import chromadb
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.chroma import ChromaVectorStore

    with tempfile.TemporaryDirectory(prefix="newsqa-peers-") as tmp:
        collection = chromadb.PersistentClient(path=tmp).get_or_create_collection("scratch")
        start = time.perf_counter()
        docs = [Document(text=a["body"], metadata={k: a[k] for k in ("title", "source", "url")})
                for a in articles]
        nodes = SentenceSplitter(chunk_size=256, chunk_overlap=32).get_nodes_from_documents(docs)
        storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(
            chroma_collection=collection))
        VectorStoreIndex(nodes, storage_context=storage, embed_model=standin_embedding())
        return time.perf_counter() - start, len(nodes)


def parent(args: argparse.Namespace) -> dict[str, Any]:
    sentences, sources = scale.corpus_material()
    articles, chunks = scale.committed(args.db)
    result: dict[str, Any] = {"chunks": chunks, "articles": articles}
    collection = open_collection(args.db)
    if "llama_index" in args.systems and not any(args.bm25.glob("*")):
        start = time.perf_counter()
        build_bm25(collection).persist(str(args.bm25))
        result["llama_index_bm25_build_s"] = round(time.perf_counter() - start, 1)
    del collection  # the embedded client is not to stay open beside the writers below
    result["disk_mb"] = {
        "newsqa": mb(scale.folder_bytes(args.db)),
        "chroma": mb(sum(scale.folder_bytes(p) if p.is_dir() else p.stat().st_size
                         for p in args.db.iterdir() if p.name != "newsqa-keyword")),
        "llama_index_bm25": mb(scale.folder_bytes(args.bm25)),
    }
    number = 9_000_000 + articles
    with scale._standin() as env:
        env = {**env, "OMP_NUM_THREADS": "1"}

        result["readers"] = []
        for system in args.systems:
            number += 1
            record = scale.synthetic_record(number, sentences, sources)
            result["readers"].append(run_reader(system, args, env, record))
            print(json.dumps(result["readers"][-1]), flush=True)
        if not args.ingest:
            return result
        more = [scale.synthetic_record(number + 1 + i, sentences, sources)
                for i in range(args.ingest)]
        before = scale.committed(args.db)[1]
        took, after = newsqa_ingest_rate(args.db, env, more)
        result["newsqa_ingest_chunks_per_s"] = round((after - before) / took, 1)
        took, nodes = llama_index_ingest_s(more)
        result["llama_index_ingest_chunks_per_s"] = round(nodes / took, 1)
    return result


def mb(n: int) -> float:
    return round(n / 2**20, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="an index scale.py build made")
    parser.add_argument("--bm25", type=Path, help="LlamaIndex BM25 folder (default: DB.bm25)")
    parser.add_argument("--queries", type=int, default=101, help="dev questions (first: warm-up)")
    parser.add_argument("--ingest", type=int, default=40,
                        help="articles for the ingest rate (0: not measured)")
    parser.add_argument("--systems", nargs="*", default=["newsqa", "chroma", "llama_index"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.bm25 = args.bm25 or args.db.with_name(args.db.name + ".bm25")
    if not scale.DATA.is_dir():
        print(f"skipped: {scale.DATA} is absent (see ../shared/eval/README.md)")
        return 0
    if args.child:
        child(args.child, args.db, args.bm25, args.queries)
        return 0
    args.bm25.mkdir(parents=True, exist_ok=True)
    print(json.dumps(parent(args), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
