"""A growing archive at scale: big indexes built through `newsqa ingest`, then one more article.

    python benchmarks/scale.py build --chunks 100000 --db /tmp/scale-100k
    python benchmarks/scale.py write-one --db /tmp/scale-100k [--profile /tmp/one.prof] [--search]
    python benchmarks/scale.py search --db /tmp/scale-100k [--pool]
    python benchmarks/scale.py pool-cv --db .newsqa-eval-multihop [--path pool|whole] [--splits 3]
    python benchmarks/scale.py styles --db /tmp/copy-of-a-multihop-index [--alone]
    python benchmarks/scale.py engines --chunks 100000 --folder /tmp/engines

`build` makes synthetic articles from real MultiHop-RAG sentences (320 random
sentences each, seeded, like benchmarks/query.py's synthetic index: real
vocabulary, real chunking) and ingests them with the public `newsqa ingest`
command in batches of files. Vectors come from a stand-in OpenAI-compatible
embeddings server in this process (`standin_server`): it answers each text at
once with a seeded random unit vector of 384 floats (MiniLM's width), so only
newsqa's own machinery (chunking, Chroma, manifest, keyword index) is timed;
the real model would take hours for 100k chunks on 2 cores. The article files
live in a temporary folder, never in the repository (the text is the publishers').

`write-one` ingests one new article into such an index through `newsqa ingest`
and reports its wall time (optionally under cProfile), then the first search.
`search` times searches in one process (the default path, or `--pool`) and the
first search after a one-article write.

`engines` compares keyword engines (tantivy, SQLite FTS5) on the same real chunk
texts; see `engine_report`.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import types
import zlib
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "eval" / "multihop"
SEED = 20240127
SENTENCES_PER_ARTICLE = 320  # ~45 chunks of 256 tokens, as benchmarks/query.py
DIMENSION = 384
MODEL = "standin-384"


# -- the stand-in embedder ---------------------------------------------------------------------


def standin_vector(text: str) -> np.ndarray:
    """A unit vector seeded by the text: the same text always gets the same vector."""
    rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
    vector = rng.standard_normal(DIMENSION).astype(np.float32)
    return vector / np.linalg.norm(vector)


def standin_server() -> ThreadingHTTPServer:
    """An OpenAI-compatible /embeddings endpoint that answers instantly (base64 float32)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [{"object": "embedding", "index": i,
                     "embedding": base64.b64encode(standin_vector(t).tobytes()).decode()}
                    for i, t in enumerate(texts)]
            raw = json.dumps({"object": "list", "data": data, "model": MODEL,
                              "usage": {"prompt_tokens": 0, "total_tokens": 0}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def newsqa_env(httpd: ThreadingHTTPServer) -> dict[str, str]:
    """The environment of a `newsqa` process embedding through the stand-in server."""
    return {**os.environ, "NEWSQA_EMBEDDING": f"openai:{MODEL}", "OPENAI_API_KEY": "unused",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{httpd.server_address[1]}/v1",
            "NEWSQA_LLM": "extractive"}


# -- synthetic articles from real sentences ----------------------------------------------------


def corpus_material() -> tuple[list[str], list[str]]:
    """Corpus sentences (longer than 30 characters) and publisher names, in a fixed order."""
    from newsqa.text.sentences import sentence_spans

    sentences: list[str] = []
    sources: set[str] = set()
    with open(DATA / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            text = record["body"]
            sentences += [text[s:e] for s, e in sentence_spans(text) if e - s > 30]
            sources.add(record["source"])
    return sentences, sorted(sources)


def synthetic_record(number: int, sentences: list[str], sources: list[str]) -> dict[str, Any]:
    """Article `number`, the same whenever it is made (so builds can be topped up)."""
    rng = np.random.default_rng([SEED, number])
    picks = rng.integers(0, len(sentences), SENTENCES_PER_ARTICLE)
    day = dt.date(2023, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365)))
    return {
        "id": f"syn-{number:07d}",
        "title": f"Synthetic story {number}: {sentences[int(picks[0])][:60]}",
        "source": sources[int(rng.integers(0, len(sources)))],
        "published_at": day.isoformat(),
        "url": f"https://synthetic.invalid/story/{number}",
        "body": " ".join(sentences[int(i)] for i in picks),
    }


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def run_ingest(db: Path, files: list[Path], env: dict[str, str],
               python_args: Sequence[str] = ()) -> tuple[float, str]:
    """`newsqa ingest FILES --db DB` as a user runs it: wall seconds and its summary line.
    `python_args` go before the module (e.g. cProfile's)."""
    command = [sys.executable, *python_args, "-m", "newsqa.app.cli", "ingest", *map(str, files),
               "--db", str(db)]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"newsqa ingest failed ({done.returncode}): {done.stderr.strip()}")
    return took, done.stdout.strip()


def committed(db: Path) -> tuple[int, int]:
    """(manifest records, chunk records), counted by Chroma in a process of their own.

    Not through newsqa: opening the index here would do in this process what the
    timed `newsqa ingest` should pay (a keyword index filled on first open), and an
    embedded Chroma client left open beside a writing process is what the folder
    lock exists to prevent.
    """
    code = ("import chromadb, sys; c = chromadb.PersistentClient(path=sys.argv[1]); "
            "print(c.get_collection('newsqa_articles').count(), "
            "c.get_collection('newsqa_chunks').count())")
    done = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True,
                          check=True)
    articles, chunks = done.stdout.split()
    return int(articles), int(chunks)


class _standin:
    """A stand-in server for the duration of a block; yields the newsqa environment."""

    def __enter__(self) -> dict[str, str]:
        self.httpd = standin_server()
        return newsqa_env(self.httpd)

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()


def build(db: Path, chunks: int, per_call: int) -> None:
    """Top the index up to `chunks` committed chunks, `per_call` articles per `newsqa ingest`."""
    sentences, sources = corpus_material()
    articles, have = committed(db) if db.exists() else (0, 0)
    per_article = 45  # measured: 320 sentences make ~45 chunks; only sizes the batches
    start = time.perf_counter()
    with _standin() as env, tempfile.TemporaryDirectory(prefix="newsqa-scale-") as tmp:
        number = articles
        while have < chunks:
            n = max(1, min(per_call, (chunks - have) // per_article + 1))
            path = Path(tmp) / "batch.jsonl"
            write_jsonl(path, [synthetic_record(number + i, sentences, sources) for i in range(n)])
            took, line = run_ingest(db, [path], env)
            number += n
            have = int(line.rsplit(";", 1)[1].split()[0])
            print(f"  {number} articles, {have} chunks ({took:.1f}s for {n}; "
                  f"{time.perf_counter() - start:.0f}s in all)", flush=True)
    print(f"built {db}: {have} chunks in {number} articles")


def write_one(db: Path, profile: Path | None, number: int | None, search: bool) -> dict[str, Any]:
    """One new article through `newsqa ingest` (under cProfile if asked), then maybe a search."""
    sentences, sources = corpus_material()
    articles, before = committed(db)
    number = articles + 1_000_000 if number is None else number
    record = synthetic_record(number, sentences, sources)
    with _standin() as env, tempfile.TemporaryDirectory(prefix="newsqa-scale-") as tmp:
        path = Path(tmp) / "one.jsonl"
        write_jsonl(path, [record])
        if profile is not None:
            env = {**env, "NEWSQA_SCALE_PROFILE": str(profile)}
        took, line = run_ingest(db, [path], env) if profile is None else _profiled(db, path, env)
        first = _first_search(db, env, record["title"]) if search else None
    result = {"chunks_before": before, "ingest_s": round(took, 2), "report": line,
              "first_search_s": None if first is None else round(first, 2)}
    print(json.dumps(result))
    return result


def _profiled(db: Path, path: Path, env: dict[str, str]) -> tuple[float, str]:
    """The same command under cProfile (the profile's own overhead is in the figure)."""
    return run_ingest(db, [path], env, ["-m", "cProfile", "-o", env["NEWSQA_SCALE_PROFILE"]])


def _first_search(db: Path, env: dict[str, str], query: str) -> float:
    """Wall seconds of `newsqa ask` in a new process right after the write."""
    command = [sys.executable, "-m", "newsqa.app.cli", "ask", query, "--db", str(db), "--json"]
    start = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def chunk_texts(limit: int) -> Iterator[tuple[str, str, str, int, str]]:
    """(chunk id, article id, source, date, search text) of synthetic articles, real chunker."""
    from newsqa.store.articles import read_paths
    from newsqa.store.chunking import chunk_article, search_text

    sentences, sources = corpus_material()
    made, number = 0, 0
    with tempfile.TemporaryDirectory(prefix="newsqa-scale-") as tmp:
        while made < limit:
            path = Path(tmp) / "a.jsonl"
            write_jsonl(path, [synthetic_record(number + i, sentences, sources) for i in range(50)])
            number += 50
            for loaded in read_paths([path]):
                article = getattr(loaded, "article", None)
                if article is None:
                    continue
                day = article.published_at
                key = day.year * 10000 + day.month * 100 + day.day if day else 0
                for c in chunk_article(article, max_tokens=256, overlap=20):
                    yield (f"{article.id}:{c.index}", article.id, article.source, key,
                           search_text(article, c))
                    made += 1
                    if made >= limit:
                        return


def search_report(db: Path, queries: int, pool: bool) -> dict[str, Any]:
    """Search latency in one process, and the first search after a one-article write.

    `pool` picks the path: the whole-collection keyword index (NEWSQA_RETRIEVAL_POOL=0),
    or the pool from the persistent keyword index (the default). Opening times the first open of an
    index of an older layout too (its keyword index is filled then, once). The write
    goes through a second NewsQA on the same folder in this process (the folder lock
    is per process), as a `serve` beside an ingest job would see it.
    """
    import dataclasses

    from newsqa import NewsQA

    sentences, sources = corpus_material()
    questions = _dev_questions(queries)
    out: dict[str, Any] = {"pool": pool}
    with _standin() as env:
        os.environ.update(env)
        start = time.perf_counter()
        qa = NewsQA(db=db, llm="extractive")
        qa.retriever.weights = dataclasses.replace(qa.retriever.weights, pool=pool)
        qa.index.revision  # noqa: B018 (opens the index: the keyword fill happens here)
        out["open_s"] = round(time.perf_counter() - start, 2)
        out["chunks"] = qa.index.chunk_count()
        out["first_search_s"] = round(_seconds(lambda: qa.search(questions[0], top_k=10)), 2)
        times = [_seconds(lambda q=q: qa.search(q, top_k=10)) * 1000 for q in questions[1:]]
        out["search_p50_ms"] = round(float(np.percentile(times, 50)), 1)
        out["search_p95_ms"] = round(float(np.percentile(times, 95)), 1)
        record = synthetic_record(8_000_000 + out["chunks"], sentences, sources)
        with tempfile.TemporaryDirectory(prefix="newsqa-scale-") as tmp:
            path = Path(tmp) / "one.jsonl"
            write_jsonl(path, [record])
            writer = NewsQA(db=db, llm="extractive")
            out["write_one_s"] = round(_seconds(lambda: writer.ingest([path])), 2)
        question = record["title"].split(": ", 1)[1]
        hits: list[Any] = []
        out["first_search_after_write_s"] = round(
            _seconds(lambda: hits.extend(qa.search(question, top_k=10))), 2)
        out["new_article_found"] = any(p.url == record["url"] for p in hits)
    print(json.dumps(out), flush=True)
    return out


def _seconds(work: Any) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def cv_groups(db: str, path: str, cache: Path) -> tuple[list[Any], list[Any], list[Any]]:
    """Each dev question's candidates: (features, labels), facts held, the question.

    `path` is "pool" (NEWSQA_RETRIEVAL_POOL's candidates and features) or "whole"
    (the whole-collection keyword index, as train_ranker.py). Computed once and
    kept in `cache` (.npz, outside the repository): the features cost minutes, the
    folds seconds each. Candidates are kept as the set of the question's facts each
    holds (a bit mask), not as text, so the cache holds no publisher's words; the
    metrics see each candidate as its facts joined (`fact_texts`), which the paper's
    substring rule scores exactly as the chunk itself.
    """
    from dataclasses import replace

    from retrieval_levers import open_dev

    from newsqa.app.evaluation import DEV_IDS, load_multihop_queries, read_ids

    if cache.is_file():
        saved = np.load(cache)
        ids = read_ids(DATA / DEV_IDS)
        queries = [q for q in load_multihop_queries(DATA / "queries.jsonl", ids) if not q.is_null]
        ends = np.cumsum(saved["sizes"])
        starts = ends - saved["sizes"]
        x, masks = saved["x"], saved["masks"]
        groups = [(x[a:b], (masks[a:b] > 0).astype(np.float64)) for a, b in zip(starts, ends,
                                                                                  strict=True)]
        return groups, [masks[a:b] for a, b in zip(starts, ends, strict=True)], queries
    from retrieval_levers import dense_hits

    from newsqa.app.evaluation import _squash  # the paper's substring rule, as holds_fact
    from newsqa.retrieval import Filters, FusionWeights, Retriever

    opened = open_dev(db, str(DATA))
    if opened is None:
        raise SystemExit(0)
    qa, queries = opened
    weights = replace(FusionWeights(), rerank=False, pool=path == "pool")
    start = time.perf_counter()
    dense, _ = dense_hits(qa, queries, weights.dense_candidates)
    print(f"dense hits in {time.perf_counter() - start:.0f}s", flush=True)
    retriever = Retriever(qa.index, qa.embedder, qa.settings, weights)
    store = qa.index.keywords
    whole = retriever.keyword_index() if path == "whole" else None
    groups, held, sizes = [], [], []
    start = time.perf_counter()
    for q, hits in zip(queries, dense, strict=True):
        if whole is None:
            assert store is not None, "an embedded index with its keyword folder"
            keyword = retriever.pool_keyword(store, q.query, Filters(), hits)
        else:
            keyword = whole
        stage = retriever.first_stage(keyword, q.query, hits, Filters())
        rows, features = retriever.candidates(keyword, stage)
        facts = [_squash(f) for f in q.facts]
        mask = np.asarray([sum(1 << j for j, f in enumerate(facts)
                               if f in _squash(keyword.table.passage(r, 0.0).text))
                           for r in rows], dtype=np.int64)
        groups.append((features, (mask > 0).astype(np.float64)))
        held.append(mask)
        sizes.append(len(keyword.table))
    print(f"{len(queries)} dev questions ({path}), {np.median(sizes):.0f} chunks a keyword "
          f"index (median), features in {time.perf_counter() - start:.0f}s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=np.vstack([f for f, _ in groups]), masks=np.concatenate(held),
             sizes=np.asarray([len(m) for m in held]))
    return groups, held, queries


def fact_texts(masks: np.ndarray, facts: Sequence[str]) -> list[str]:
    """Each candidate as the gold facts it holds (what the paper's substring rule sees of it)."""
    return ["\n".join(f for j, f in enumerate(facts) if int(m) >> j & 1) for m in masks]


def pool_cv(db: str, folds: int, path: str, cache: Path | None, splits: int,
            threads: int, train_cache: Path | None = None, write: Path | None = None,
            union: bool = False) -> None:
    """The second stage cross-validated on one path's candidates, as train_ranker.py does.

    The same labels, features, LightGBM parameters and fold draws (seeds 0..splits-1)
    as benchmarks/train_ranker.py, with each question's candidates and features from
    the pool (NEWSQA_RETRIEVAL_POOL's path) or the whole collection: the ranker is
    retrained on that path's features, so the figure is what that path would ship
    with. LightGBM runs on `threads` threads: two OpenMP threads on a machine whose
    other core is busy spin against each other (the first attempt, 2 threads on a
    shared machine, was stopped after 30 minutes). With `train_cache` (another path's
    cache of the same questions) the models learn from that path's features and rank
    this one's: what a ranker trained on the whole collection does over the pool;
    with `union`, on both paths' features (what `write` ships). `write` trains one
    model on all questions (of both caches) and saves it there.
    """
    from train_ranker import PARAMS, _row, cross_validate

    from newsqa.app.evaluation import retrieval_metrics
    from newsqa.retrieval.rerank import FEATURES

    mentions, parts = FEATURES.index("mentions"), FEATURES.index("segments")
    cache = cache or Path(tempfile.gettempdir()) / f"newsqa-cv-{path}.npz"
    groups, masks, queries = cv_groups(db, path, cache)
    learn = cv_groups(db, path, train_cache)[0] if train_cache else None
    facts = [q.facts for q in queries]
    pools = [fact_texts(m, f) for m, f in zip(masks, facts, strict=True)]
    print(f"{len(groups)} questions, {sum(len(m) for m in masks)} candidates ({path}; "
          f"cache {cache})", flush=True)
    print(f"| ranking ({path}) | Hits@10 | Hits@4 | MRR@10 | MAP@10 |")
    print("|---|---|---|---|---|")
    _row("first stage (rerank off)", retrieval_metrics([p[:10] for p in pools], facts))
    params = {**PARAMS, "num_threads": threads}
    # RetrievalSettings.rerank_single = 0: a one-part question naming no publisher or day
    # keeps the first stage's order (its candidates' first 10 here; search.single_story).
    unnamed = [i for i, (x, _) in enumerate(groups)
               if len(x) and x[0, mentions] == 0 and x[0, parts] <= 1]
    runs, gated = [], []
    for seed in range(splits):
        start = time.perf_counter()
        ranked = cross_validate(groups, pools, folds, seed, params, learn, union)
        runs.append(retrieval_metrics(ranked, facts))
        _row(f"second stage, {folds}-fold cross-validated, seed {seed} "
             f"({time.perf_counter() - start:.0f}s)", runs[-1])
        kept = [pools[i][:10] if i in unnamed else r for i, r in enumerate(ranked)]
        gated.append(retrieval_metrics(kept, facts))
        _row(f"... the first stage's order for the {len(unnamed)} one-part ones naming no "
             "publisher/day",
             gated[-1])
        if seed == 0:
            for kind in sorted({q.question_type for q in queries}):
                keep = [i for i, q in enumerate(queries) if q.question_type == kind]
                _row(f"... {kind} ({len(keep)})",
                     retrieval_metrics([ranked[i] for i in keep], [facts[i] for i in keep]))
    if write is not None:  # the shipped model, trained on every dev question of both caches
        from train_ranker import ROUNDS

        from newsqa.retrieval.training import train

        model = train(groups + (learn or []), params, ROUNDS)
        model.save_model(str(write))
        print(f"wrote {write} ({len(groups) + len(learn or [])} groups)", flush=True)
    if splits > 1:
        for name, got in (("", runs), (", first stage's order for those", gated)):
            _row(f"... mean of {splits} fold draws{name}",
                 {k: float(np.mean([m[k] for m in got])) for k in got[0] if k != "n"})


# -- questions of another style: crowd questions, no publisher or date, paraphrases -------------

NEWSQA_DATA = ROOT.parent / "shared" / "eval" / "newsqa"
# Generic English rewrites for paraphrases (no words from the data): the question's
# content words said another way, as another reader would ask.
SYNONYMS = {
    "killed": "slain", "murdered": "killed", "sentenced": "condemned", "fighting": "battling",
    "happened": "took place", "caused": "led to", "says": "claims", "say": "claim",
    "amount": "number", "name": "title", "created": "produced", "doing": "trying",
    "cope": "deal", "memorial": "monument", "home": "house", "agency": "organisation",
    "government": "authorities", "war": "conflict", "children": "kids", "water": "liquid",
}
_LEAD = re.compile(r"^\s*(?:what|who|whom|where|when|why|how(?: much| many)?|which)"
                   r"(?:\s+(?:is|was|are|were|does|do|did|has|have|had|could|can|would|will))?"
                   r"(?:\s+the)?\s+", re.IGNORECASE)
_DATE = re.compile(
    r"\b(?:on|before|after|from|in|around|since|by|dated)?\s*(?:(?:Mon|Tues|Wednes|Thurs|Fri|"
    r"Satur|Sun)day,?\s*)?(?:January|February|March|April|May|June|July|August|September|"
    r"October|November|December)\s+\d{1,2}(?:st|nd|rd|th)?,?\s*\d{4}", re.IGNORECASE)
_DANGLING = re.compile(
    r"\b(?:as\s+)?(?:reported|published|posted|written|covered|released)\s+(?:by|in|on|at)"
    r"\s*(?:the\s*)?(?=[,.;?]|\s+(?:and|while|that|which)\b|$)|\baccording\s+to\s*(?:the\s*)?"
    r"(?=[,.;?]|$)|\b(?:by|from|in|on)\s+(?:the\s*)?(?=[,.;?])", re.IGNORECASE)


def paraphrases(question: str) -> dict[str, str]:
    """The question, and three rewrites of it a reader might type instead."""
    plain = question.strip().rstrip("?").strip()
    words = [SYNONYMS.get(w.lower(), w) for w in plain.split()]
    return {
        "crowd": question,
        "keywords": _LEAD.sub("", plain).lower(),
        "synonyms": " ".join(words) + "?",
        "tell me": "Tell me " + plain[0].lower() + plain[1:],
    }


def bare(question: str, matcher: Any) -> str | None:
    """A MultiHop-RAG question without its publishers and dates; None if any is left."""
    from newsqa.retrieval.query import parse_query

    hints = parse_query(question, matcher)
    out = question
    for m in sorted(hints.sources, key=lambda m: -m.start):
        out = out[: m.start] + out[m.end :]
    out = _DATE.sub("", out)
    out = re.sub(r"(['\"])\s*\1|(?<=\s)'s\b|\bboth\s+and\b", "", out)
    for _ in range(2):
        out = _DANGLING.sub("", out)
    out = re.sub(r"\s+([,.;?])", r"\1", re.sub(r"\s{2,}", " ", out)).strip()
    out = re.sub(r"(?:,\s*)+,", ",", out)
    if parse_query(out, matcher).mentions():
        return None
    return out


def orders(retriever: Any, shipped: Any, keyword: Any, question: str, hits: Any, ranker: Any,
           blends: Sequence[float]) -> dict[str, list[Any]]:
    """First stage, second stage (ungated), rank blends of the two (search.blend) and what
    the shipped settings return (`shipped`, a Retriever with the second stage on), top 10."""
    from newsqa.retrieval import Filters
    from newsqa.retrieval.search import blend

    stage = retriever.first_stage(keyword, question, hits, Filters())
    tops = {"first": retriever._passages(keyword, stage, stage.order, 10)}
    rows, features = retriever.candidates(keyword, stage)
    ranked = ranker.ranked(rows, features) if rows else []
    second = [row for row, _ in ranked]
    rest = [r for r in stage.order if r not in set(second)]
    tops["second"] = retriever._passages(keyword, stage, second + rest, 10)
    for w in blends:
        mixed = [row for row, _ in blend(rows, ranked, w)]
        tops[f"blend {w:g}"] = retriever._passages(keyword, stage, mixed + rest, 10)
    tops["shipped"] = shipped.rank(keyword, question, hits, top_k=10, filters=Filters())
    return tops


def style_check(db: Path, alone: bool, sample: int, blends: Sequence[float]) -> None:
    """First vs second stage, pool vs whole collection, on questions unlike MultiHop-RAG's.

    Sets: NewsQA's crowd questions on their dev stories (ingested into `db`, a
    scratch copy of the MultiHop-RAG index, or alone into a new index with --alone,
    as benchmarks/answers_newsqa.py does), each also paraphrased three ways
    (`paraphrases`); and MultiHop-RAG dev questions with their publishers and dates
    taken out (`bare`; --sample of them). A NewsQA question is a hit at k when a
    passage of its story holding a crowd answer is in the first k. Dev ids only.
    """
    import dataclasses

    from retrieval_levers import dense_hits

    from newsqa import NewsQA
    from newsqa.app.evaluation import (
        DEV_IDS,
        _squash,
        load_multihop_queries,
        read_ids,
        retrieval_metrics,
        select_records,
    )
    from newsqa.models import Article
    from newsqa.retrieval import Filters, FusionWeights, Retriever
    from newsqa.retrieval.rerank import MODEL_FILE, load_ranker

    if not NEWSQA_DATA.is_dir():
        print(f"skipped: {NEWSQA_DATA} is absent")
        return
    items = [r for _, r in select_records(NEWSQA_DATA / "items.jsonl",
                                          read_ids(NEWSQA_DATA / DEV_IDS))]
    answerable = [r for r in items if [a for a in r.get("answers_stripped") or [] if a.strip()]]
    stories = {str(r["story_id"]): str(r["story"]) for r in items}
    with tempfile.TemporaryDirectory(prefix="newsqa-styles-") as tmp:
        folder = Path(tmp) if alone else db
        qa = NewsQA(db=folder, llm="extractive")
        report = qa.ingest([Article(text=t, source="CNN", url=f"newsqa:{sid}")
                            for sid, t in stories.items()])
        print(f"index {folder}: {qa.index.chunk_count()} chunks ({report})", flush=True)
        sets: dict[str, list[tuple[str, Any]]] = {}
        for r in answerable:
            gold = (f"newsqa:{r['story_id']}",
                    [_squash(a) for a in r["answers_stripped"] if a.strip()])
            for kind, text in paraphrases(str(r["question"])).items():
                sets.setdefault(f"NewsQA {kind}", []).append((text, gold))
        if not alone:
            queries = [q for q in load_multihop_queries(DATA / "queries.jsonl",
                                                        read_ids(DATA / DEV_IDS))
                       if not q.is_null]
            matcher = Retriever(qa.index, qa.embedder, qa.settings).keyword_index().matcher
            stripped = [(b, q.facts) for q in queries if (b := bare(q.query, matcher))]
            step = max(1, len(stripped) // sample) if sample else 1
            sets["MultiHop, no publisher or date"] = stripped[::step][:sample]
        ranker = load_ranker(MODEL_FILE)
        n = FusionWeights().dense_candidates
        dense = {name: dense_hits(qa, [types.SimpleNamespace(query=q) for q, _ in questions],
                                  n)[0]  # type: ignore[arg-type]
                 for name, questions in sets.items()}
        results: dict[tuple[str, str], dict[str, list[list[Any]]]] = {}
        for path in ("whole", "pool"):
            weights = dataclasses.replace(FusionWeights(), rerank=False, pool=path == "pool")
            retriever = Retriever(qa.index, qa.embedder, qa.settings, weights)
            shipped = Retriever(qa.index, qa.embedder, qa.settings,
                                dataclasses.replace(qa.settings.retrieval, rerank=True))
            store = qa.index.keywords
            for name, questions in sets.items():
                got: dict[str, list[list[Any]]] = {}
                for (question, _), hits in zip(questions, dense[name], strict=True):
                    keyword = (retriever.keyword_index() if path == "whole" else
                               retriever.pool_keyword(store, question, Filters(), hits))
                    for order, top in orders(retriever, shipped, keyword, question, hits,
                                             ranker, blends).items():
                        got.setdefault(order, []).append(top)
                results[(path, name)] = got
        qa.close()
    print("| questions | path | ordering | n | Hits@4 | Hits@10 | MRR@10 | MAP@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for (path, name), got in results.items():
        questions = sets[name]
        for order, tops in got.items():
            if name.startswith("NewsQA"):
                m = _answer_metrics(tops, [g for _, g in questions])
            else:
                m = retrieval_metrics([[p.text for p in top] for top in tops],
                                      [g for _, g in questions])
            print(f"| {name} | {path} | {order} | {len(questions)} | {m['hits@4']:.3f} | "
                  f"{m['hits@10']:.3f} | {m['mrr@10']:.3f} | "
                  f"{m.get('map@10', float('nan')):.3f} |", flush=True)


def _answer_metrics(tops: Sequence[Sequence[Any]], golds: Sequence[Any]) -> dict[str, float]:
    """Hits@4, Hits@10, MRR@10 of the chunk holding a crowd answer in the question's story."""
    from newsqa.app.evaluation import _squash

    ranks = []
    for top, (url, answers) in zip(tops, golds, strict=True):
        rank = next((i for i, p in enumerate(top[:10], start=1)
                     if p.url == url and any(a in _squash(p.text) for a in answers)), None)
        ranks.append(rank)
    n = max(len(ranks), 1)
    return {"hits@4": sum(r is not None and r <= 4 for r in ranks) / n,
            "hits@10": sum(r is not None for r in ranks) / n,
            "mrr@10": sum(1 / r for r in ranks if r) / n}


# -- keyword engines: tantivy vs SQLite FTS5 on the same chunks ---------------------------------


def engine_chunks(folder: Path, limit: int) -> list[tuple[str, str, str, int, str]]:
    """The chunks (id, article, source, date, newsqa terms joined by spaces), cached in folder.

    Both engines index newsqa's own terms (lexical.terms: folded, stemmed,
    stopwords out), so they rank the same words and only the engines differ.
    """
    from newsqa.text.lexical import terms_many

    cache = folder / f"chunks-{limit}.jsonl"
    if cache.exists():
        with open(cache, encoding="utf-8") as f:
            return [tuple(json.loads(line)) for line in f]  # type: ignore[misc]
    rows = list(chunk_texts(limit))
    tokens = terms_many(r[4] for r in rows)
    out = [(cid, aid, src, day, " ".join(t))
           for (cid, aid, src, day, _), t in zip(rows, tokens, strict=True)]
    folder.mkdir(parents=True, exist_ok=True)
    with open(cache, "w", encoding="utf-8") as f:
        for row in out:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out


class TantivyEngine:
    """tantivy: one writer (segments, merges in the background), readers reload on commit."""

    name = "tantivy"

    def __init__(self, path: Path) -> None:
        import tantivy

        self.path = path
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw")
        builder.add_text_field("article_id", tokenizer_name="raw")
        builder.add_text_field("source", tokenizer_name="raw")
        builder.add_integer_field("date", indexed=True, fast=True)
        builder.add_text_field("body", tokenizer_name="whitespace")
        self.schema = builder.build()
        path.mkdir(parents=True, exist_ok=True)
        self.index = tantivy.Index(self.schema, path=str(path))

    def add(self, rows: list[tuple[str, str, str, int, str]], replace: bool) -> None:
        import tantivy

        writer = self.index.writer(heap_size=64_000_000, num_threads=1)
        if replace:
            for aid in {r[1] for r in rows}:
                writer.delete_documents_by_term("article_id", aid)
        for cid, aid, src, day, body in rows:
            writer.add_document(tantivy.Document(chunk_id=cid, article_id=aid, source=src,
                                                 date=day, body=body))
        writer.commit()
        writer.wait_merging_threads()

    def open_reader(self) -> Any:
        import tantivy

        index = tantivy.Index.open(str(self.path))
        return index, index.searcher()

    def query(self, reader: Any, words: list[str], source: str, k: int) -> list[str]:
        import tantivy

        _, searcher = reader
        Q, Occur = tantivy.Query, tantivy.Occur
        should = [(Occur.Should, Q.term_query(self.schema, "body", w))
                  for w in dict.fromkeys(words)]
        must = Q.const_score_query(Q.term_query(self.schema, "source", source), 0.0)
        query = Q.boolean_query([(Occur.Must, Q.boolean_query(should)), (Occur.Must, must)])
        hits = searcher.search(query, k, count=False).hits
        return [searcher.doc(address)["chunk_id"][0] for _, address in hits]

    def contains(self, reader: Any, chunk: str) -> bool:
        import tantivy

        index, _ = reader
        index.reload()
        searcher = index.searcher()
        query = tantivy.Query.term_query(self.schema, "chunk_id", chunk)
        return bool(searcher.search(query, 1).hits)


class Fts5Engine:
    """SQLite FTS5 (standard library): one file, WAL, bm25() ranking, a filter column."""

    name = "sqlite-fts5"

    def __init__(self, path: Path) -> None:
        import sqlite3

        path.mkdir(parents=True, exist_ok=True)
        self.file = path / "keyword.sqlite"
        self.db = sqlite3.connect(self.file)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(body, source, "
            "chunk_id UNINDEXED, article_id UNINDEXED, date UNINDEXED, "
            "tokenize='unicode61 remove_diacritics 0')"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS owners(rowid INTEGER PRIMARY KEY, "
                        "article_id TEXT)")
        self.db.execute("CREATE INDEX IF NOT EXISTS by_article ON owners(article_id)")

    def add(self, rows: list[tuple[str, str, str, int, str]], replace: bool) -> None:
        with self.db:
            if replace:
                for aid in {r[1] for r in rows}:
                    gone = [r[0] for r in self.db.execute(
                        "SELECT rowid FROM owners WHERE article_id = ?", (aid,))]
                    self.db.executemany("DELETE FROM chunks WHERE rowid = ?", [(g,) for g in gone])
                    self.db.execute("DELETE FROM owners WHERE article_id = ?", (aid,))
            for cid, aid, src, day, body in rows:
                cur = self.db.execute(
                    "INSERT INTO chunks(body, source, chunk_id, article_id, date) "
                    "VALUES (?, ?, ?, ?, ?)", (body, _fts_phrase(src), cid, aid, day))
                self.db.execute("INSERT INTO owners(rowid, article_id) VALUES (?, ?)",
                                (cur.lastrowid, aid))

    def open_reader(self) -> Any:
        import sqlite3

        db = sqlite3.connect(f"file:{self.file}?mode=ro", uri=True)
        db.execute("SELECT count(*) FROM chunks WHERE chunks MATCH 'x'").fetchall()
        return db

    def query(self, reader: Any, words: list[str], source: str, k: int) -> list[str]:
        match = "({}) AND source:{}".format(
            " OR ".join(f'"{w}"' for w in dict.fromkeys(words)), _fts_phrase(source, quote=True))
        got = reader.execute(
            "SELECT chunk_id FROM chunks WHERE chunks MATCH ? "
            "ORDER BY bm25(chunks, 1.0, 0.0) LIMIT ?", (match, k))
        return [r[0] for r in got]

    def contains(self, reader: Any, chunk: str) -> bool:
        got = reader.execute("SELECT 1 FROM chunks WHERE chunk_id = ? LIMIT 1", (chunk,))
        return got.fetchone() is not None


def _fts_phrase(source: str, quote: bool = False) -> str:
    """A publisher as one FTS5 token sequence: its words joined by underscores... as a phrase."""
    token = "src" + "".join(ch if ch.isalnum() else "x" for ch in source.lower())
    return f'"{token}"' if quote else token


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def engine_report(folder: Path, limit: int, queries: int) -> dict[str, Any]:
    """Build each engine on the same chunks, then time what a growing archive needs of it.

    - build: all chunks in one writer session (what an upgrade of an old index costs);
    - add one article: a new writer, the article's ~45 chunks (its id deleted first, as
      a replace does), commit: what each ingest batch pays;
    - reader open: a new process's first usable reader;
    - query: top-200 by BM25 over the chunk terms, filtered to one publisher inside the
      engine, for `queries` MultiHop-RAG dev questions (each a random publisher);
    - size on disk after the build and the add.
    """
    from newsqa.text.lexical import terms

    rows = engine_chunks(folder, limit)
    sentences, sources = corpus_material()
    extra = synthetic_record(9_000_000, sentences, sources)
    new = _chunk_record(extra)
    questions = [terms(q) for q in _dev_questions(queries)]
    rng = np.random.default_rng(SEED)
    wanted = [sources[int(rng.integers(0, len(sources)))] for _ in questions]
    out: dict[str, Any] = {"chunks": len(rows), "queries": len(questions)}
    for make in (TantivyEngine, Fts5Engine):
        where = folder / make.name
        if where.exists():
            import shutil

            shutil.rmtree(where)
        engine = make(where)
        start = time.perf_counter()
        for lo in range(0, len(rows), 20_000):
            engine.add(rows[lo : lo + 20_000], replace=False)
        built = time.perf_counter() - start
        size = folder_bytes(where)
        opened = time.perf_counter()
        reader = engine.open_reader()
        open_ms = (time.perf_counter() - opened) * 1000
        latencies = []
        for words, source in zip(questions, wanted, strict=True):
            t = time.perf_counter()
            engine.query(reader, words, source, 200)
            latencies.append((time.perf_counter() - t) * 1000)
        adds = []
        for _ in range(5):
            t = time.perf_counter()
            engine.add(new, replace=True)
            adds.append((time.perf_counter() - t) * 1000)
        seen = engine.contains(reader, new[0][0])
        out[make.name] = {
            "build_s": round(built, 1), "size_mb": round(size / 1e6, 1),
            "size_after_adds_mb": round(folder_bytes(where) / 1e6, 1),
            "reader_open_ms": round(open_ms, 1),
            "query_p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "query_p95_ms": round(float(np.percentile(latencies, 95)), 2),
            "add_article_ms": [round(a, 1) for a in adds],
            "new_article_seen_by_open_reader": seen,
        }
        print(make.name, json.dumps(out[make.name]), flush=True)
    return out


def _chunk_record(record: dict[str, Any]) -> list[tuple[str, str, str, int, str]]:
    from newsqa.store.articles import read_paths
    from newsqa.store.chunking import chunk_article, search_text
    from newsqa.text.lexical import terms_many

    with tempfile.TemporaryDirectory(prefix="newsqa-scale-") as tmp:
        path = Path(tmp) / "one.jsonl"
        write_jsonl(path, [record])
        article = next(iter(read_paths([path]))).article  # type: ignore[union-attr]
    chunks = chunk_article(article, max_tokens=256, overlap=20)
    tokens = terms_many(search_text(article, c) for c in chunks)
    day = article.published_at
    key = day.year * 10000 + day.month * 100 + day.day if day else 0
    return [(f"{article.id}:{c.index}", article.id, article.source, key, " ".join(t))
            for c, t in zip(chunks, tokens, strict=True)]


def _dev_questions(n: int) -> list[str]:
    from newsqa.app.evaluation import DEV_IDS, load_multihop_queries, read_ids

    ids = read_ids(DATA / DEV_IDS)[:n]
    return [q.query for q in load_multihop_queries(DATA / "queries.jsonl", ids)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build")
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--per-call", type=int, default=250, help="articles per newsqa ingest")
    p = sub.add_parser("write-one")
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--profile", type=Path)
    p.add_argument("--number", type=int, help="which synthetic article (default: a new one)")
    p.add_argument("--search", action="store_true",
                   help="then time `newsqa ask` in a new process (the first search after it)")
    p = sub.add_parser("search")
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--queries", type=int, default=101, help="dev questions (first: warm-up)")
    p.add_argument("--pool", action="store_true",
                   help="the pool's path (the default; without it, NEWSQA_RETRIEVAL_POOL=0's)")
    p = sub.add_parser("pool-cv")
    p.add_argument("--db", required=True, help="an index `newsqa eval multihop` built")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--path", choices=("pool", "whole"), default="pool",
                   help="candidates from the keyword pool or the whole collection")
    p.add_argument("--cache", type=Path,
                   help="features kept here (.npz; default under the temporary folder)")
    p.add_argument("--splits", type=int, default=1, help="fold draws (seeds 0, 1...)")
    p.add_argument("--threads", type=int, default=1, help="LightGBM threads")
    p.add_argument("--train-cache", type=Path,
                   help="train on this cache's features (another path), rank --cache's")
    p.add_argument("--union", action="store_true",
                   help="with --train-cache: train on both caches' features")
    p.add_argument("--write", type=Path, help="then train on all dev and save the model here")
    p = sub.add_parser("styles")
    p.add_argument("--db", type=Path, required=True,
                   help="a scratch copy of a MultiHop-RAG index: the NewsQA dev stories join it")
    p.add_argument("--alone", action="store_true",
                   help="the NewsQA dev stories alone in a new index (--db unused)")
    p.add_argument("--sample", type=int, default=300,
                   help="MultiHop-RAG questions without publisher or date (0 = all)")
    p.add_argument("--blends", type=float, nargs="*", default=[0.25, 0.5, 0.75],
                   help="weights of the second stage's rank in a rank blend with the first's")
    p = sub.add_parser("engines")
    p.add_argument("--folder", type=Path, required=True, help="scratch folder (outside the repo)")
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent (see ../shared/eval/README.md)")
        return 0
    if args.command == "build":
        build(args.db, args.chunks, args.per_call)
    elif args.command == "write-one":
        write_one(args.db, args.profile, args.number, args.search)
    elif args.command == "search":
        search_report(args.db, args.queries, args.pool)
    elif args.command == "pool-cv":
        pool_cv(args.db, args.folds, args.path, args.cache, args.splits, args.threads,
                args.train_cache, args.write, args.union)
    elif args.command == "styles":
        style_check(args.db, args.alone, args.sample, args.blends)
    elif args.command == "engines":
        print(json.dumps(engine_report(args.folder, args.chunks, args.queries), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
