"""newsqa's LLM answer path measured with a real local model, beside two peers (issue 15).

Why this exists: the grounding path (direct answer, claims with quotes, support check,
one re-ask) was built against fake servers; this runs it against a real small model
served by llama.cpp's OpenAI-compatible server, on MultiHop-RAG dev questions, and puts
three engines side by side on the SAME retrieved passages of each question:

1. newsqa's LLM engine (`newsqa.answer.answer` with `newsqa.llm.LLM`);
2. newsqa's extractive engine (`llm=None`);
3. LlamaIndex's `CitationQueryEngine` with the same model over the same passages.

    python benchmarks/answers.py --model /path/qwen.gguf [--per-type 15] [--top-k 5]
        [--summaries 20] [--dump /tmp/answers.jsonl] [--out /tmp/figures.json]
    python benchmarks/answers.py --regrade /tmp/answers.jsonl [--dump /tmp/regraded.jsonl]
        # the recorded drafts grounded again by this checkout (no model, seconds)

The model is a measuring instrument, never a default: `--model` is required, its
sha256 is compared with the one recorded in RESULTS.md and a mismatch is printed.
The server is started here (a subprocess on 127.0.0.1, a free port) and stopped at
the end. The corpus index is the one `newsqa eval multihop` builds
(`evaluation.DEFAULT_MULTIHOP_DB` at the repository root, or `--db`); when it is not
there yet this waits for it instead of building a second copy, and it is held only
while the questions are retrieved, so another process can use it meanwhile.

Data: ../shared/eval/multihop and ../shared/eval/summ, dev ids only; skipped with a
message when absent. The dump (question text, answers, quotes) is for hand-checking
and must be written outside the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsqa.app.evaluation import (  # noqa: E402
    ABSTAIN_ANSWER,
    DEFAULT_MULTIHOP_DB,
    DEV_IDS,
    MultihopQuery,
    doc_article_ids,
    exact_match,
    holds_fact,
    latency_summary,
    lenient_match,
    load_multihop_queries,
    read_ids,
)
from newsqa.engines.llm import (  # noqa: E402
    LLM,
    RUNGS,
    InvalidReply,
    StreamStats,
    parse_reply,
)
from newsqa.errors import LLMError, LLMOutputError, NewsQAError, StoreError  # noqa: E402
from newsqa.models import Answer, Article, Passage, Usage  # noqa: E402
from newsqa.store.embedding import sha256_file  # noqa: E402  (ties a figure to the bytes measured)

EVAL = ROOT.parent / "shared" / "eval"
EXPECTED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
TYPES = ("inference_query", "comparison_query", "temporal_query", "null_query")
ENGINES = ("newsqa-llm", "extractive", "llamaindex")
# The model's own short answer in its first draft, before any grounding: never shown to a
# user, reported to tell the model's errors apart from what grounding removed.
DRAFT = "draft (ungrounded)"
N_CTX = 4096
REPLY_TOKENS = 1024  # newsqa's default max_output_tokens; LlamaIndex gets the same
SUMMARY_BULLETS = 3  # beside lead-3 and the extractive summariser's 3 sentences
_MARKER = re.compile(r"\[(\d+)\]")
_KEPT_CLAIM = re.compile(r"((?:\[\d+\])+)(?=\s|$)")
# How a free-text reply says it cannot answer (LlamaIndex has no abstention field).
_ABSTAINS = re.compile(
    r"insufficient information|not enough information|do(?:es)? not (?:provide|contain|"
    r"mention|say|specify|include)|no (?:relevant )?information|cannot (?:be )?determin|"
    r"(?:is|are) not (?:mentioned|specified|provided)|none of the (?:provided )?sources|"
    r"unable to (?:determine|answer)|not possible to determine",
    re.IGNORECASE,
)
# MultiHop-RAG Table 6 (Tang & Yang 2024), accuracy as the paper scores it.
ANCHORS = (
    ("GPT-4, the paper's retrieval (voyage-02 + reranker, top 6)", 0.56),
    ("GPT-4, gold evidence", 0.89),
    ("Llama-2-70B / Mixtral-8x7B, even with gold evidence", "<= ~0.36"),
)
GOALS = "a local model of 2B or less: lenient accuracy >= 0.60, null abstention >= 0.80"


# -- the model file and its server ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_ready(base_url: str) -> str | None:
    """The served model's id once /v1/models answers, else None."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as reply:
            models = json.load(reply).get("data") or []
    except (OSError, ValueError):
        return None
    return str(models[0]["id"]) if models else None


@contextlib.contextmanager
def llama_server(model: Path, log: Path, threads: int) -> Iterator[tuple[str, str]]:
    """(base URL, model id) of a llama.cpp server this process owns; stopped on exit."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX),
               "--n_threads", str(threads)]
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        model_id = _wait_for_server(proc, base_url, log)
        yield base_url, model_id
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_server(proc: subprocess.Popen[bytes], base_url: str, log: Path) -> str:
    """Poll the condition (the endpoint answers), failing at once if the server died."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama.cpp server exited ({proc.returncode}); see {log}")
        model_id = _server_ready(base_url)
        if model_id:
            return model_id
        time.sleep(0.5)
    raise SystemExit(f"llama.cpp server did not answer within 300 s; see {log}")


# -- a metered newsqa LLM --------------------------------------------------------------


@dataclass
class Call:
    """One structured reply: which rung it came on, whether it needed the repair, its cost."""

    schema: str
    rungs: list[str] = field(default_factory=list)  # rungs of the requests that got a reply
    refused: list[str] = field(default_factory=list)  # rungs whose request failed
    repaired: bool = False
    error: str | None = None
    seconds: float = 0.0
    usage: Usage = field(default_factory=Usage)
    parsed: Any = None

    @property
    def rung(self) -> str:
        return self.rungs[0] if self.rungs else "none"


class MeteredLLM(LLM):
    """newsqa's own client, unchanged, with every reply recorded.

    Subclassing (not wrapping) keeps newsqa's code path. `stream` is the one request
    primitive (answers stream, `structured` drains it), so it is metered there; a repair
    is recorded on the call it repairs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[Call] = []
        self._current: Call | None = None
        self._repair_of: Call | None = None

    def stream(self, messages: Any, *, schema: Any = None, stats: StreamStats | None = None,
               live: bool = True, rung: int | None = None) -> Iterator[str]:
        stats = stats if stats is not None else StreamStats()
        call = self._repair_of or Call(schema=schema.__name__ if schema else "text")
        if call is not self._repair_of:
            self.calls.append(call)
        self._current = call
        start = time.perf_counter()
        try:
            yield from super().stream(messages, schema=schema, stats=stats, live=live, rung=rung)
        except LLMError as exc:
            call.error = f"{type(exc).__name__}: {str(exc)[:300]}"
            raise
        finally:
            call.seconds += time.perf_counter() - start
        call.usage = call.usage + stats.usage
        if stats.rung is not None:
            call.rungs.append(RUNGS[stats.rung])
        if schema is not None:
            with contextlib.suppress(InvalidReply):
                call.parsed = parse_reply(stats.content, schema)

    def repair(self, *args: Any, **kwargs: Any) -> Any:
        self._repair_of = self.calls[-1] if self.calls else None
        if self._repair_of is not None:
            self._repair_of.repaired = True
        try:
            return super().repair(*args, **kwargs)
        finally:
            self._repair_of = None

    def _note_fallback(self, rung: int, failed: Any) -> None:
        if self._current is not None:
            self._current.refused.append(RUNGS[rung])
        super()._note_fallback(rung, failed)


# -- LlamaIndex over the same server and passages --------------------------------------


def llama_index_parts(base_url: str, model_id: str) -> tuple[Any, type, list[Usage]]:
    """A LlamaIndex LLM on the same server, a fixed retriever, and the tokens it reports."""
    from llama_index.core.base.base_retriever import BaseRetriever

    class FixedRetriever(BaseRetriever):
        """Returns the passages newsqa retrieved, so both engines read the same text."""

        def __init__(self, nodes: list[Any]) -> None:
            super().__init__()
            self._nodes = nodes

        def _retrieve(self, query_bundle: Any) -> list[Any]:
            return list(self._nodes)

    return _llama_index_llm(base_url, model_id), FixedRetriever, _usage_events()


def _usage_events() -> list[Usage]:
    """Server-reported tokens of every LlamaIndex LLM call, from its instrumentation events
    (a query engine's response does not carry them)."""
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent

    seen: list[Usage] = []

    class UsageHandler(BaseEventHandler):
        @classmethod
        def class_name(cls) -> str:
            return "NewsqaBenchUsage"

        def handle(self, event: Any, **kwargs: Any) -> None:
            if not isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
                return
            extra = getattr(event.response, "additional_kwargs", None) or {}
            seen.append(Usage(prompt_tokens=int(extra.get("prompt_tokens") or 0),
                              completion_tokens=int(extra.get("completion_tokens") or 0)))

    get_dispatcher().add_event_handler(UsageHandler())
    return seen


def _llama_index_llm(base_url: str, model_id: str) -> Any:
    try:
        from llama_index.llms.openai_like import OpenAILike
    except ImportError:
        return _server_llm(base_url, model_id)
    return OpenAILike(model=model_id, api_base=base_url, api_key="not-needed",
                      is_chat_model=True, context_window=N_CTX, max_tokens=REPLY_TOKENS,
                      temperature=0.0, timeout=600, max_retries=0)


def _server_llm(base_url: str, model_id: str) -> Any:
    """A minimal CustomLLM, for when llama-index-llms-openai-like is not installed."""
    import openai
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback

    client = openai.OpenAI(base_url=base_url, api_key="not-needed", timeout=600, max_retries=0)

    class ServerLLM(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=N_CTX, num_output=REPLY_TOKENS,
                               model_name=model_id, is_chat_model=False)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            reply = client.chat.completions.create(
                model=model_id, messages=[{"role": "user", "content": prompt}],
                temperature=0.0, max_tokens=REPLY_TOKENS)
            got = reply.usage
            counts = {"prompt_tokens": getattr(got, "prompt_tokens", 0),
                      "completion_tokens": getattr(got, "completion_tokens", 0)}
            return CompletionResponse(text=reply.choices[0].message.content or "",
                                      additional_kwargs=counts)

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any) -> Any:
            yield self.complete(prompt, formatted=formatted)

    return ServerLLM()


def nodes_for(passages: Sequence[Passage]) -> list[Any]:
    """The passages as NodeWithScore, with the facts newsqa's prompt shows (title, source,
    date) in the text the LLM reads, so neither engine sees more than the other."""
    from llama_index.core.schema import NodeWithScore, TextNode

    nodes = []
    for p in passages:
        meta = {"title": p.title, "source": p.source,
                "published_at": p.published_at.isoformat() if p.published_at else "",
                "article_id": p.article_id}
        node = TextNode(text=p.text, metadata=meta, excluded_llm_metadata_keys=["article_id"])
        nodes.append(NodeWithScore(node=node, score=p.score))
    return nodes


def llama_index_answer(question: str, passages: Sequence[Passage],
                       parts: tuple[Any, type, list[Usage]], gold: GoldFacts) -> dict[str, Any]:
    """One CitationQueryEngine answer, its [N] markers checked against its source nodes."""
    from llama_index.core.query_engine import CitationQueryEngine
    from llama_index.core.schema import MetadataMode

    llm, retriever_type, log = parts
    before = len(log)
    engine = CitationQueryEngine(retriever=retriever_type(nodes_for(passages)), llm=llm,
                                 metadata_mode=MetadataMode.LLM)
    start = time.perf_counter()
    try:
        response = engine.query(question)
    except Exception as exc:  # the peer's own errors: recorded, the run goes on
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}",
                "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    text = str(response)
    used = sum(log[before:], Usage())
    return {"text": text, "seconds": seconds, "usage": used.model_dump(),
            **_marker_figures(text, response.source_nodes, gold)}


def _marker_figures(text: str, sources: Sequence[Any], gold: GoldFacts) -> dict[str, Any]:
    """[N] markers that name a real source node, and whether that node holds gold evidence."""
    markers = [int(m) for m in _MARKER.findall(text)]
    valid = [n for n in markers if 1 <= n <= len(sources)]
    cited = [sources[n - 1].node for n in valid]
    return {
        "markers": len(markers),
        "markers_valid": len(valid),
        "cited_holds_fact": sum(holds_fact(n.get_content(), gold.facts) for n in cited),
        "cited_in_gold_article": sum(n.metadata.get("article_id") in gold.articles
                                     for n in cited),
    }


# -- the questions ------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldFacts:
    facts: tuple[str, ...]
    articles: frozenset[str]


@dataclass
class Question:
    query: MultihopQuery
    passages: list[Passage]
    gold: GoldFacts
    evidence_retrieved: bool  # a gold fact is inside one of the passages given to the engines


def sample_queries(folder: Path, per_type: int, seed: int,
                   types: Sequence[str] = TYPES) -> list[MultihopQuery]:
    """Stratified: `per_type` dev questions of each type, drawn with a fixed seed, and
    taken in turn (one of each type, then the next), so a run stopped early is still
    stratified."""
    queries = load_multihop_queries(folder / "queries.jsonl", read_ids(folder / DEV_IDS))
    rng = random.Random(seed)
    drawn: list[list[MultihopQuery]] = []
    for qtype in TYPES:  # every type drawn, so a type's sample does not depend on `types`
        pool = [q for q in queries if q.question_type == qtype]
        drawn.append(rng.sample(pool, min(per_type, len(pool))))
    return [q for row in itertools.zip_longest(*drawn) for q in row
            if q is not None and q.question_type in types]


class Snapshot:
    """The articles behind the retrieved passages, held in memory.

    Why: the embedded index allows one process at a time, and the model calls take an
    hour; the engines only need `get_article` and `outlets`, so the index is let go after
    retrieval.
    """

    def __init__(self, articles: Mapping[str, Article], outlets: Sequence[str] = ()) -> None:
        self.articles = dict(articles)
        self._outlets = sorted(outlets)

    def outlets(self) -> list[str]:
        return list(self._outlets)

    def get_article(self, article_id: str) -> Article:
        from newsqa.errors import ArticleNotFound

        try:
            return self.articles[article_id]
        except KeyError:
            raise ArticleNotFound(article_id) from None


def wait_for_index(db: Path, expected: int, patience: float) -> Any:
    """The corpus index, once another process has built it and let go of it."""
    deadline = time.monotonic() + patience
    said = ""
    while True:
        state, qa = _try_open(db, expected)
        if qa is not None:
            return qa
        if state != said:
            print(f"waiting for the corpus index at {db}: {state}", file=sys.stderr)
            said = state
        if time.monotonic() > deadline:
            raise SystemExit(f"the corpus index at {db} is not ready ({state}); "
                             "run `newsqa eval multihop` first or pass --db")
        time.sleep(30)  # another process's ingest takes minutes: no need to poll faster


def _try_open(db: Path, expected: int) -> tuple[str, Any]:
    from newsqa import NewsQA

    if not (db / "chroma.sqlite3").is_file():
        return "not created yet", None
    qa = NewsQA(db=db, create=False, llm=None)
    try:
        count = len(qa.articles())
    except StoreError:
        return "held by another process", None
    except NewsQAError as exc:
        return f"cannot be read yet ({type(exc).__name__})", None
    if count < expected:
        qa.close()
        return f"{count} of {expected} articles committed", None
    return "ready", qa


def retrieve_all(qa: Any, queries: Sequence[MultihopQuery], top_k: int,
                 doc_ids: Mapping[str, str]) -> tuple[list[Question], Snapshot]:
    """Search as `newsqa eval multihop` does (top 10), keep the first `top_k` passages."""
    questions: list[Question] = []
    articles: dict[str, Article] = {}
    for query in queries:
        passages = qa.search(query.query, top_k=10)[:top_k]
        for p in passages:
            if p.article_id not in articles:
                articles[p.article_id] = qa.get_article(p.article_id)
        gold = GoldFacts(tuple(query.facts),
                         frozenset(doc_ids[e.doc_id] for e in query.evidence
                                   if e.doc_id in doc_ids))
        hit = any(holds_fact(p.text, gold.facts) for p in passages) if gold.facts else False
        questions.append(Question(query, passages, gold, hit))
    return questions, Snapshot(articles, sorted({a.source for a in qa.articles() if a.source}))


# -- scoring one answer --------------------------------------------------------------------


def predicted(answer: Answer) -> tuple[str, str]:
    """What is compared with the gold answer, and from where: the direct answer when the
    grounder kept one, else the answer text (an abstention says what the gold says)."""
    if not answer.answerable:
        return ABSTAIN_ANSWER, "abstained"
    if answer.direct_answer:
        return answer.direct_answer, "direct"
    return answer.answer, "text"


def kept_claims(answer: Answer) -> list[dict[str, Any]]:
    """Each kept claim with the quotes its [n] markers name (for the dump and the hand-check)."""
    if not answer.answerable:
        return []
    body = answer.answer
    if answer.direct_answer and body.startswith(answer.direct_answer):
        body = body[len(answer.direct_answer):].lstrip(". ")
    claims, start = [], 0
    for match in _KEPT_CLAIM.finditer(body):
        numbers = [int(n) for n in _MARKER.findall(match.group(1))]
        quotes = [_citation_row(answer, n) for n in numbers if 1 <= n <= len(answer.citations)]
        claims.append({"text": body[start:match.start()].strip(), "citations": quotes})
        start = match.end()
    return claims


def _citation_row(answer: Answer, number: int) -> dict[str, Any]:
    c = answer.citations[number - 1]
    return {"n": number, "article_id": c.article_id, "quote": c.quote,
            "start": c.start, "end": c.end, "reattributed_from": c.reattributed_from}


def citation_figures(answer: Answer, gold: GoldFacts, snapshot: Snapshot) -> dict[str, int]:
    """Kept citations in a gold evidence article, and those whose span overlaps a gold fact."""
    in_article = overlaps = 0
    for c in answer.citations:
        in_article += c.article_id in gold.articles
        article = snapshot.articles.get(c.article_id)
        overlaps += bool(article) and _overlaps_fact(c.start, c.end, c.quote, article, gold)
    return {"citations": len(answer.citations), "cit_in_gold_article": in_article,
            "cit_overlaps_fact": overlaps,
            "reattributed": sum(c.reattributed_from is not None for c in answer.citations)}


def _overlaps_fact(start: int, end: int, quote: str, article: Article, gold: GoldFacts) -> bool:
    """Facts are verbatim in their articles: compare character spans; squashed text if not."""
    for fact in gold.facts:
        at = article.text.find(fact)
        if at >= 0 and at < end and start < at + len(fact):
            return True
        if at < 0 and (_squash(quote) in _squash(fact) or _squash(fact) in _squash(quote)):
            return True
    return False


def _squash(text: str) -> str:
    return "".join(text.split()).lower()


def rejected_by_reason(answer: Answer) -> Counter[str]:
    """Rejected citations by the reason's prefix (the part before any detail)."""
    kinds: Counter[str] = Counter()
    for r in answer.rejected_citations:
        reason = r.reason
        for prefix in ("quote not found", "unknown source", "does not support the claim",
                       "does not answer the question", "claim cites no source"):
            if reason.startswith(prefix):
                reason = prefix
                break
        else:
            reason = reason.split(":")[0][:60]
        kinds[reason] += 1
    return kinds


# -- running the engines -------------------------------------------------------------------


def run_question(q: Question, llm: MeteredLLM, snapshot: Snapshot, settings: Any,
                 li_parts: tuple[Any, type, list[Usage]] | None) -> dict[str, Any]:
    """The three engines on the same passages; one record per question (the dump's row)."""
    record: dict[str, Any] = {
        "id": q.query.id, "type": q.query.question_type, "question": q.query.query,
        "gold": q.query.answer, "evidence_retrieved": q.evidence_retrieved,
        "passages": [{"article_id": p.article_id, "title": p.title, "start": p.start,
                      "end": p.end} for p in q.passages],
    }
    record["newsqa-llm"] = _newsqa_run(q, llm, snapshot, settings)
    record["extractive"] = _newsqa_run(q, None, snapshot, settings)
    record["llamaindex"] = (llama_index_answer(q.query.query, q.passages, li_parts, q.gold)
                            if li_parts else {"error": "not run (--no-peers)"})
    return record


def _newsqa_run(q: Question, llm: MeteredLLM | None, snapshot: Snapshot,
                settings: Any) -> dict[str, Any]:
    from newsqa.engines.llm_answer import answer

    first = len(llm.calls) if llm is not None else 0
    start = time.perf_counter()
    try:
        result = answer(q.query.query, q.passages, snapshot, llm, settings)  # type: ignore[arg-type]
    except NewsQAError as exc:
        row: dict[str, Any] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        result = None
    else:
        row = _answer_row(result, q, snapshot)
    row["seconds"] = time.perf_counter() - start
    if llm is not None:
        row["calls"] = [_call_row(c) for c in llm.calls[first:]]
    return row


def _answer_row(result: Answer, q: Question, snapshot: Snapshot) -> dict[str, Any]:
    prediction, source = predicted(result)
    reask = result.reask.model_dump() if result.reask else None
    return {
        "answer": result.answer, "answerable": result.answerable,
        "direct_answer": result.direct_answer, "reason": result.reason,
        "prediction": prediction, "prediction_from": source,
        "text_prediction": result.answer if result.answerable else ABSTAIN_ANSWER,
        "claims": kept_claims(result),
        "rejected": [{"reason": r.reason, "quote": r.quote} for r in result.rejected_citations],
        "rejected_by_reason": dict(rejected_by_reason(result)),
        "reask": reask, "usage": result.usage.model_dump(),
        **citation_figures(result, q.gold, snapshot),
    }


def _call_row(call: Call) -> dict[str, Any]:
    draft = call.parsed.model_dump() if call.parsed is not None else None
    return {"schema": call.schema, "rung": call.rung, "refused": call.refused,
            "repaired": call.repaired, "error": call.error, "seconds": round(call.seconds, 2),
            "usage": call.usage.model_dump(), "draft": draft}


# -- summaries --------------------------------------------------------------------------------


def load_summarize_bench() -> ModuleType:
    """benchmarks/summarize.py by path: its lead-3, extractive summariser and scorer are
    the ones RESULTS.md reports, so they are imported, not copied."""
    spec = importlib.util.spec_from_file_location("bench_summarize",
                                                  Path(__file__).with_name("summarize.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


def run_summaries(n: int, seed: int, llm: MeteredLLM) -> dict[str, Any] | None:
    """ROUGE of the LLM summary path beside lead-3 and the extractive summariser."""
    bench = load_summarize_bench()
    items = bench.load_dev("cnn_dailymail")
    if items is None:
        print(f"summaries skipped: {bench.EVAL} is absent", file=sys.stderr)
        return None
    items = random.Random(seed).sample(items, min(n, len(items)))
    made, rows = _llm_summaries(items, llm)
    return {"n": len(items), "rouge": rouge_table(bench, items, made), "rows": rows}


def rouge_table(bench: ModuleType, items: Sequence[Any], made: Sequence[str]) -> dict[str, Any]:
    """benchmarks/summarize.py's scoring of lead-3, its extractive summariser and ours."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(bench.METRICS), use_stemmer=True)
    refs = [bench.reference_lines(i.reference) for i in items]
    preps = [bench.Prepared(i) for i in items]
    return {
        f"lead-{SUMMARY_BULLETS}": bench.score(scorer, [
            (bench.lead(i.article, SUMMARY_BULLETS), r) for i, r in zip(items, refs, strict=True)]),
        "newsqa extractive": bench.score(scorer, [
            (bench.production(p, SUMMARY_BULLETS), r) for p, r in zip(preps, refs, strict=True)]),
        "newsqa LLM": bench.score(scorer, list(zip(made, refs, strict=True))),
    }


def _llm_summaries(items: Sequence[Any], llm: MeteredLLM) -> tuple[list[str], list[dict]]:
    """`NewsQA.summarize(article_id)` in a scratch index: the path users run, verification
    of every bullet included."""
    from newsqa import NewsQA

    made: list[str] = []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="newsqa-answers-summ-") as tmp:
        qa = NewsQA(db=tmp, llm=llm)
        articles = [Article(text=i.article) for i in items]
        qa.ingest(articles)
        for item, article in zip(items, articles, strict=True):
            made.append(_one_summary(qa, llm, article, item.id, rows))
        qa.close()
    return made, rows


def _one_summary(qa: Any, llm: MeteredLLM, article: Article, item_id: str,
                 rows: list[dict[str, Any]]) -> str:
    first = len(llm.calls)
    start = time.perf_counter()
    try:
        summary = qa.summarize(article.id, bullets=SUMMARY_BULLETS)
    except NewsQAError as exc:
        rows.append({"id": item_id, "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                     "seconds": time.perf_counter() - start,
                     "calls": [_call_row(c) for c in llm.calls[first:]]})
        return ""
    calls = llm.calls[first:]
    drafted = sum(len(c.parsed.bullets) for c in calls if c.parsed is not None)
    rows.append({"id": item_id, "seconds": time.perf_counter() - start,
                 "calls": [_call_row(c) for c in calls], "drafted": drafted,
                 "kept": len(summary.bullets), "usage": summary.usage.model_dump(),
                 "bullets": [b.text for b in summary.bullets],
                 "quotes": [[{"quote": c.quote, "found_by_newsqa": c.found_by_newsqa}
                             for c in b.citations] for b in summary.bullets],
                 "rejected": [r.reason for r in summary.rejected_citations]})
    return "\n".join(b.text for b in summary.bullets)


# -- figures ---------------------------------------------------------------------------------


def answer_figures(records: Sequence[dict[str, Any]], engine: str) -> dict[str, Any]:
    """Accuracy as the paper scores it, normalised EM and abstention, for one engine."""
    rows = [(r, _engine_row(r, engine)) for r in records]
    rows = [(r, e) for r, e in rows if "error" not in e]
    pred = [(_prediction(engine, e), r["gold"]) for r, e in rows]
    full = [(_prediction(engine, e, whole=True), r["gold"]) for r, e in rows]
    null = [(r, e) for r, e in rows if r["type"] == "null_query"]
    real = [(r, e) for r, e in rows if r["type"] != "null_query"]
    return {
        "n": len(rows), "errors": len(records) - len(rows),
        "lenient": _share(sum(lenient_match(p, g) for p, g in pred), len(pred)),
        "exact": _share(sum(exact_match(p, g) for p, g in pred), len(pred)),
        "lenient_text": _share(sum(lenient_match(p, g) for p, g in full), len(full)),
        "null_abstain": _share(sum(_abstained(engine, e) for _, e in null), len(null)),
        "false_abstain": _share(sum(_abstained(engine, e) for _, e in real), len(real)),
        "seconds": latency_summary([e["seconds"] for _, e in rows]),
    }


def _engine_row(record: dict[str, Any], engine: str) -> dict[str, Any]:
    if engine != DRAFT:
        return dict(record[engine])
    llm = record["newsqa-llm"]
    drafts = [c["draft"] for c in llm.get("calls", []) if c["draft"]]
    if not drafts:
        return {"error": "no draft"}
    from newsqa.grounding import is_no_answer

    said = str(drafts[0]["answer"])
    answered = bool(drafts[0]["answerable"]) and not is_no_answer(said)
    prediction = said if answered else ABSTAIN_ANSWER
    return {"prediction": prediction, "text_prediction": prediction, "answerable": answered,
            "seconds": llm["seconds"]}


def _prediction(engine: str, row: dict[str, Any], whole: bool = False) -> str:
    """The short answer scored (newsqa: direct answer, else text); `whole`: the full text."""
    if engine == "llamaindex":
        return _MARKER.sub("", row["text"])  # markers are not words of the answer
    return str(row["text_prediction" if whole else "prediction"])


def _abstained(engine: str, row: dict[str, Any]) -> bool:
    if engine == "llamaindex":
        return bool(_ABSTAINS.search(row["text"]))
    return not row["answerable"]


def _share(count: float, total: int) -> float | None:
    return round(count / total, 3) if total else None


def by_type(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every engine's answer figures, for all questions and per question type."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r["type"]].append(r)
    engines = (*ENGINES, DRAFT)
    out = {"all": {e: answer_figures(records, e) for e in engines}}
    for qtype in TYPES:
        if groups[qtype]:
            out[qtype] = {e: answer_figures(groups[qtype], e) for e in engines}
    return out


def grounding_figures(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The newsqa LLM engine's claims, rejections, re-asks, rungs and tokens."""
    rows = [r["newsqa-llm"] for r in records if "error" not in r["newsqa-llm"]]
    reasons: Counter[str] = Counter()
    for row in rows:
        reasons.update(row["rejected_by_reason"])
    drafts = [c["draft"] for r in records for c in r["newsqa-llm"].get("calls", []) if c["draft"]]
    return {
        "claims_drafted": sum(len(d["claims"]) for d in drafts),
        "drafts_unanswerable": sum(not d["answerable"] for d in drafts),
        "claims_kept": sum(len(row["claims"]) for row in rows),
        "rejected_citations": dict(reasons),
        "prediction_from": dict(Counter(row["prediction_from"] for row in rows)),
        **_citation_totals(records, "newsqa-llm"),
        "reask": _reask_figures(rows),
        "rungs": rung_figures([c for r in records for c in r["newsqa-llm"].get("calls", [])]),
        "tokens": _token_figures(rows),
    }


def grounding_losses(records: Sequence[dict[str, Any]],
                     titles: Mapping[str, str]) -> dict[str, Any]:
    """Answerable questions whose first draft was right (lenient) but newsqa abstained, with
    the rejection reasons they had; and 'not found' quotes that are a title the prompt showed."""
    lost = [r for r in records if r["type"] != "null_query" and "error" not in r["newsqa-llm"]
            and not r["newsqa-llm"]["answerable"]
            and lenient_match(_engine_row(r, DRAFT).get("prediction", ABSTAIN_ANSWER), r["gold"])]
    reasons: Counter[str] = Counter()
    for r in lost:
        reasons.update(set(r["newsqa-llm"]["rejected_by_reason"]))
    missing = [(x["quote"], r) for r in records for x in r["newsqa-llm"].get("rejected", [])
               if x["reason"].startswith("quote not found")]
    return {"right_draft_but_abstained": len(lost), "their_rejection_reasons": dict(reasons),
            "not_found": len(missing),
            "not_found_quoting_a_title": sum(_quotes_title(q, r, titles) for q, r in missing)}


def _quotes_title(quote: str, record: dict[str, Any], titles: Mapping[str, str]) -> bool:
    """The prompt shows each source's title as an attribute; citations point into the text."""
    said = _squash(quote).strip("\"'“”‘’.")
    shown = [p.get("title") or titles.get(p["article_id"], "") for p in record["passages"]]
    return len(said) >= 10 and any(said in _squash(t) for t in shown)


def _citation_totals(records: Sequence[dict[str, Any]], engine: str) -> dict[str, Any]:
    """Citation precision over answerable (non-null) questions: a null question has no gold."""
    rows = [r[engine] for r in records if r["type"] != "null_query" and "error" not in r[engine]]
    total = sum(row.get("citations", 0) for row in rows)
    return {
        "citations_answerable_q": total,
        "in_gold_article": _share(sum(row.get("cit_in_gold_article", 0) for row in rows), total),
        "overlaps_fact": _share(sum(row.get("cit_overlaps_fact", 0) for row in rows), total),
        "reattributed": sum(r[engine].get("reattributed", 0) for r in records
                            if "error" not in r[engine]),
        "null_answers_citing": sum(bool(r[engine].get("citations")) for r in records
                                   if r["type"] == "null_query" and "error" not in r[engine]),
    }


def _reask_figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    asked = [row for row in rows if row["reask"]]
    extra = [c for row in asked for c in row["calls"][1:]]
    return {
        "answers_reasked": len(asked),
        "failed_claims": sum(row["reask"]["failed_claims"] for row in asked),
        "recovered_claims": sum(row["reask"]["recovered_claims"] for row in asked),
        "extra_prompt_tokens": sum(row["reask"]["usage"]["prompt_tokens"] for row in asked),
        "extra_completion_tokens": sum(row["reask"]["usage"]["completion_tokens"] for row in asked),
        "extra_seconds": round(sum(c["seconds"] for c in extra), 1),
    }


def rung_figures(calls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Which rung each reply came on, how many needed the repair, how many failed anyway."""
    return {
        "replies": len(calls),
        "by_rung": dict(Counter(c["rung"] for c in calls)),
        "refused": dict(Counter(r for c in calls for r in c["refused"])),
        "repaired": sum(c["repaired"] for c in calls),
        "invalid_after_repair": sum(c["error"] is not None for c in calls),
    }


def _token_figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    prompt = [row["usage"]["prompt_tokens"] for row in rows]
    completion = [row["usage"]["completion_tokens"] for row in rows]
    return {"prompt_mean": _mean(prompt), "completion_mean": _mean(completion)}


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def llama_index_figures(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    rows = [r["llamaindex"] for r in records if "error" not in r["llamaindex"]]
    real = [r["llamaindex"] for r in records
            if r["type"] != "null_query" and "error" not in r["llamaindex"]]
    valid = sum(row["markers_valid"] for row in real)
    return {
        "markers": sum(row["markers"] for row in rows),
        "markers_valid": sum(row["markers_valid"] for row in rows),
        "answers_without_marker": sum(row["markers"] == 0 for row in rows),
        "cited_holds_fact": _share(sum(row["cited_holds_fact"] for row in real), valid),
        "cited_in_gold_article": _share(sum(row["cited_in_gold_article"] for row in real), valid),
        "tokens": _token_figures(rows),
    }


def summary_figures(summ: Mapping[str, Any]) -> dict[str, Any]:
    rows = [r for r in summ["rows"] if "error" not in r]
    calls = [c for r in summ["rows"] for c in r["calls"]]
    drafted = sum(min(r["drafted"], SUMMARY_BULLETS) for r in rows)
    return {
        "n": summ["n"], "errors": summ["n"] - len(rows), "rouge": summ["rouge"],
        "bullets_drafted": sum(r["drafted"] for r in rows),
        "bullets_kept": sum(r["kept"] for r in rows),
        "kept_share": _share(sum(r["kept"] for r in rows), drafted),
        "rungs": rung_figures(calls),
        "seconds": latency_summary([r["seconds"] for r in summ["rows"]]),
    }


# -- printing -------------------------------------------------------------------------------------


def render(figures: Mapping[str, Any]) -> str:
    """Markdown for RESULTS.md: the side-by-side table first, then the parts only newsqa has."""
    lines = [*_accuracy_table(figures["by_type"]), "", *_anchor_lines(), ""]
    lines += _grounding_lines(figures["grounding"], figures["llamaindex"])
    if figures.get("losses"):
        lines.append(f"- grounding losses: {json.dumps(figures['losses'])}")
    if figures.get("summaries"):
        lines += ["", *_summary_lines(figures["summaries"])]
    return "\n".join(lines)


def _accuracy_table(table: Mapping[str, Any]) -> list[str]:
    lines = ["| type | n | engine | lenient (paper) | norm. EM | lenient, whole text | "
             "null abstains | answerable abstains | p50 s | p95 s | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for qtype, engines in table.items():
        for engine, f in engines.items():
            lines.append(
                f"| {qtype.removesuffix('_query')} | {f['n']} | {engine} | {_fmt(f['lenient'])} | "
                f"{_fmt(f['exact'])} | {_fmt(f['lenient_text'])} | {_fmt(f['null_abstain'])} | "
                f"{_fmt(f['false_abstain'])} | "
                f"{f['seconds'].get('p50', '-')} | {f['seconds'].get('p95', '-')} | "
                f"{f['errors']} |")
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _anchor_lines() -> list[str]:
    lines = ["Anchors (MultiHop-RAG Table 6, lenient accuracy, all query types): "]
    lines += [f"- {name}: {value}" for name, value in ANCHORS]
    return [*lines, f"- Goal (issue 15): {GOALS}."]


def _grounding_lines(g: Mapping[str, Any], li: Mapping[str, Any]) -> list[str]:
    return [
        f"- newsqa LLM: claims drafted {g['claims_drafted']} (first drafts and re-asks; drafts "
        f"saying unanswerable {g['drafts_unanswerable']}), kept {g['claims_kept']}; rejected "
        "citations by reason "
        f"{json.dumps(g['rejected_citations'])}; prediction from "
        f"{json.dumps(g['prediction_from'])}",
        f"- citation precision (non-null questions, {g['citations_answerable_q']} kept "
        f"citations): in a gold evidence article {_fmt(g['in_gold_article'])}, span overlaps "
        f"a gold fact {_fmt(g['overlaps_fact'])}; re-attributed {g['reattributed']}; null "
        f"questions answered with citations {g['null_answers_citing']}",
        f"- re-ask: {json.dumps(g['reask'])}",
        f"- replies by rung: {json.dumps(g['rungs'])}",
        f"- tokens per question (newsqa LLM, incl. re-ask): {json.dumps(g['tokens'])}",
        f"- LlamaIndex CitationQueryEngine: {json.dumps(li)}",
    ]


def _summary_lines(s: Mapping[str, Any]) -> list[str]:
    lines = [f"Summaries: {s['n']} CNN/DailyMail dev articles ({s['errors']} errors), "
             f"{SUMMARY_BULLETS} bullets; bullets drafted {s['bullets_drafted']}, kept "
             f"{s['bullets_kept']} (share {_fmt(s['kept_share'])}); seconds "
             f"{json.dumps(s['seconds'])}; rungs {json.dumps(s['rungs'])}", "",
             "| system | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum |", "|---|---|---|---|---|"]
    for name, r in s["rouge"].items():
        lines.append(f"| {name} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['rougeL']:.2f} | "
                     f"{r['rougeLsum']:.2f} |")
    return lines


# -- main ------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file to serve (required to run)")
    parser.add_argument("--rescore", type=Path, help="only recompute the figures from a --dump")
    parser.add_argument("--regrade", type=Path, help="ground a --dump's recorded drafts again "
                        "with this checkout's code (no model); --dump writes the new rows")
    parser.add_argument("--data", type=Path, default=EVAL / "multihop")
    parser.add_argument("--db", type=Path, default=ROOT / DEFAULT_MULTIHOP_DB,
                        help="corpus index built by `newsqa eval multihop`")
    parser.add_argument("--per-type", type=int, default=15)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--summaries", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--wait", type=float, default=3 * 3600,
                        help="seconds to wait for the corpus index")
    parser.add_argument("--dump", type=Path, help="JSON lines per question (outside the repo)")
    parser.add_argument("--out", type=Path, help="the figures as JSON")
    parser.add_argument("--types", default=",".join(TYPES),
                        help="question types to sample, comma-separated")
    parser.add_argument("--exclude", type=Path,
                        help="a dump whose questions are left out (a second, disjoint sample)")
    parser.add_argument("--no-peers", action="store_true",
                        help="newsqa's engines only (LlamaIndex not run): more questions an hour")
    parser.add_argument("--resume", action="store_true",
                        help="keep the questions already in --dump, answer the rest")
    return parser.parse_args()


def check_model(path: Path) -> str:
    if not path.is_file():
        raise SystemExit(f"no model file at {path}")
    digest = sha256_file(path)
    verdict = "matches" if digest == EXPECTED_SHA256 else f"DIFFERS from {EXPECTED_SHA256}"
    print(f"model {path}: sha256 {digest} ({verdict} the one in RESULTS.md)", file=sys.stderr)
    return digest


def main() -> int:
    args = parse_args()
    if not (args.data / "queries.jsonl").is_file():
        print(f"skipped: {args.data} is absent (see ../shared/eval/README.md)")
        return 0
    if args.rescore:
        return rescore(args.rescore, args.data, args.out)
    if args.regrade:
        return regrade(args.regrade, args)
    if args.model is None:
        raise SystemExit("--model PATH is required (the GGUF file to measure)")
    digest = check_model(args.model)
    queries = sample_queries(args.data, args.per_type, args.seed, args.types.split(","))
    if args.exclude:
        seen = {r.get("id") for r in map(json.loads, args.exclude.open(encoding="utf-8"))}
        queries = [q for q in queries if q.id not in seen]
    corpus = args.data / "corpus.jsonl"
    expected = sum(1 for line in corpus.open(encoding="utf-8") if line.strip())
    qa = wait_for_index(args.db, expected, args.wait)
    questions, snapshot = retrieve_all(qa, queries, args.top_k, doc_article_ids(corpus))
    settings = qa.settings
    qa.close()  # held only while retrieving
    print(f"retrieved {len(questions)} questions; starting the model", file=sys.stderr)
    log = Path(tempfile.gettempdir()) / f"newsqa-answers-server-{os.getpid()}.log"
    started = time.perf_counter()
    with llama_server(args.model, log, args.threads) as (base_url, model_id):
        records, summ = run_all(args, questions, snapshot, settings, base_url, model_id)
    titles = {aid: a.title for aid, a in snapshot.articles.items()}
    figures = {"model_sha256": digest, "per_type": args.per_type, "top_k": args.top_k,
               "seed": args.seed, **all_figures(records, summ, titles),
               "wall_seconds": round(time.perf_counter() - started, 1)}
    return report(figures, args.out)


def all_figures(records: Sequence[dict[str, Any]], summ: Mapping[str, Any] | None,
                titles: Mapping[str, str]) -> dict[str, Any]:
    return {
        "questions": len(records),
        "evidence_retrieved": sum(bool(r["evidence_retrieved"]) for r in records),
        "by_type": by_type(records), "grounding": grounding_figures(records),
        "losses": grounding_losses(records, titles),
        "llamaindex": llama_index_figures(records),
        "summaries": summary_figures(summ) if summ else None,
    }


def report(figures: Mapping[str, Any], out: Path | None) -> int:
    if out:
        out.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    print(render(figures))
    print(f"\nwall {figures.get('wall_seconds', '-')} s; evidence in the passages for "
          f"{figures['evidence_retrieved']} of {figures['questions']} questions")
    return 0


class ReplayLLM(LLM):
    """The model's recorded replies of one question, handed back in order: newsqa's
    grounding (this checkout's) runs over what the model really said, without the model.

    Why: a run costs ~3 minutes a question on 2 cores; the drafts do not depend on the
    grounding code, so a change to grounding is measured on the same drafts in seconds.
    The re-ask reply is the one the model gave to the recorded run's re-ask message: when
    today's grounding fails other claims, that message would have differed, so re-ask
    figures from a regrade are approximate (the first draft's are exact).
    """

    def __init__(self, model: str, calls: Sequence[dict[str, Any]]) -> None:
        super().__init__(model, base_url="http://replay.invalid")  # never contacted
        self.replies = list(calls)
        self.calls: list[Call] = []  # read by _newsqa_run and _one_summary, as a MeteredLLM's

    def stream(self, messages: Any, *, schema: Any = None, stats: Any = None,
               live: bool = True, rung: int | None = None) -> Iterator[str]:
        """The next recorded reply of this schema, as one delta: `stream` is the one
        request primitive, so answers, `structured` and summaries all come through here
        (a recorded failure fails again)."""
        name = schema.__name__ if schema is not None else "text"
        at = next((i for i, c in enumerate(self.replies) if c.get("schema") == name), None)
        call = self.replies.pop(at) if at is not None else {}
        if call.get("draft") is None:
            self.calls.append(Call(schema=name, error="no recorded reply"))
            raise LLMOutputError(f"{self.model}: no recorded reply to replay")
        usage = Usage(**call["usage"])
        self.calls.append(Call(schema=name, usage=usage,
                               parsed=schema.model_validate(call["draft"])))
        content = json.dumps(call["draft"])
        if stats is not None:
            stats.content, stats.usage, stats.finish_reason = content, usage, "stop"
        yield content


def regrade(dump: Path, args: argparse.Namespace) -> int:
    """The newsqa LLM rows of a dump recomputed by this checkout's grounding from the
    recorded drafts (same passages, retrieved again), the other engines as recorded."""
    lines = [json.loads(line) for line in dump.open(encoding="utf-8") if line.strip()]
    records = [r for r in lines if "summary" not in r]
    wanted = {r["id"] for r in records}
    corpus = args.data / "corpus.jsonl"
    queries = [q for q in load_multihop_queries(args.data / "queries.jsonl",
                                                read_ids(args.data / DEV_IDS)) if q.id in wanted]
    expected = sum(1 for line in corpus.open(encoding="utf-8") if line.strip())
    qa = wait_for_index(args.db, expected, args.wait)
    questions, snapshot = retrieve_all(qa, queries, args.top_k, doc_article_ids(corpus))
    settings = qa.settings
    qa.close()
    by_id = {q.query.id: q for q in questions}
    for record in records:
        live = record["newsqa-llm"]
        replay = ReplayLLM("replay", live.get("calls") or [])
        row = _newsqa_run(by_id[record["id"]], replay, snapshot, settings)  # type: ignore[arg-type]
        row.update(seconds=live["seconds"], calls=live.get("calls"), usage=live.get("usage"))
        if row.get("reask") and live.get("reask"):
            row["reask"]["usage"] = live["reask"]["usage"]
        record["newsqa-llm"] = row
    summ = _regraded_summaries([r["summary"] for r in lines if "summary" in r])
    if args.dump:
        with args.dump.open("w", encoding="utf-8") as out:
            for line in [*records, *({"summary": r} for r in (summ or {}).get("rows", []))]:
                out.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
    titles = {aid: a.title for aid, a in snapshot.articles.items()}
    return report(all_figures(records, summ, titles), args.out)


def _regraded_summaries(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The recorded summary drafts through this checkout's `NewsQA.summarize`."""
    if not rows:
        return None
    bench, picked = _summarized_items(rows)
    replay = ReplayLLM("replay", [c for r in rows for c in r.get("calls") or []])
    made, regraded = _llm_summaries(picked, replay)  # type: ignore[arg-type]
    for old, new in zip(rows, regraded, strict=True):
        new.update(seconds=old["seconds"], usage=old.get("usage"))
    return {"n": len(picked), "rouge": rouge_table(bench, picked, made), "rows": regraded}


def _summarized_items(rows: Sequence[dict[str, Any]]) -> tuple[ModuleType, list[Any]]:
    """benchmarks/summarize.py and the dev articles a dump's summary rows name, in order."""
    bench = load_summarize_bench()
    items = {i.id: i for i in bench.load_dev("cnn_dailymail") or []}
    return bench, [items[r["id"]] for r in rows]


def rescore(dump: Path, data: Path, out: Path | None) -> int:
    """The figures again from a dump, without the model: so a new measure (or a fixed one)
    can be read off a run that took hours, from the very answers it gave."""
    from newsqa.store.articles import Loaded, read_paths

    lines = [json.loads(line) for line in dump.open(encoding="utf-8") if line.strip()]
    records = [r for r in lines if "summary" not in r]
    rows = [r["summary"] for r in lines if "summary" in r]
    titles = {item.article.id: item.article.title for item in read_paths([data / "corpus.jsonl"])
              if isinstance(item, Loaded)}
    return report(all_figures(records, _summaries_from(rows), titles), out)


def _summaries_from(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    if not rows:
        return None
    bench, picked = _summarized_items(rows)
    made = ["\n".join(r.get("bullets", [])) for r in rows]
    return {"n": len(rows), "rouge": rouge_table(bench, picked, made), "rows": list(rows)}


def run_all(args: argparse.Namespace, questions: Sequence[Question], snapshot: Snapshot,
            settings: Any, base_url: str, model_id: str) -> tuple[list[dict], dict | None]:
    """Every question through the three engines, then the summaries; the dump as it goes."""
    llm = MeteredLLM(model_id, base_url=base_url, timeout=600, context_window=N_CTX,
                     max_output_tokens=REPLY_TOKENS)
    parts = None if args.no_peers else llama_index_parts(base_url, model_id)
    records = finished(args.dump, questions) if args.resume else []
    skip = {r["id"] for r in records}
    dump = _open_dump(args.dump, records)
    for done, q in enumerate(questions, 1):
        if q.query.id in skip:
            continue
        record = run_question(q, llm, snapshot, settings, parts)
        records.append(record)
        if dump:
            dump.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            dump.flush()
        print(f"[{done}/{len(questions)}] {q.query.question_type} "
              f"llm {record['newsqa-llm']['seconds']:.0f}s "
              f"li {record['llamaindex'].get('seconds', 0):.0f}s", file=sys.stderr)
    summ = run_summaries(args.summaries, args.seed, llm) if args.summaries else None
    if dump and summ:
        for row in summ["rows"]:
            dump.write(json.dumps({"summary": row}, ensure_ascii=False, default=str) + "\n")
    if dump:
        dump.close()
    return records, summ


def finished(dump: Path | None, questions: Sequence[Question]) -> list[dict[str, Any]]:
    """The answered questions of an interrupted run (same sample): an hour is not redone
    because a process was killed. Temperature 0 makes the rest what they would have been."""
    if dump is None or not dump.is_file():
        return []
    wanted = {q.query.id for q in questions}
    rows = [json.loads(line) for line in dump.open(encoding="utf-8") if line.strip()]
    return [r for r in rows if "summary" not in r and r.get("id") in wanted]


def _open_dump(path: Path | None, kept: Sequence[dict[str, Any]]) -> Any:
    """The dump rewritten with the kept records (summaries are redone whole on a resume)."""
    if path is None:
        return None
    dump = path.open("w", encoding="utf-8")
    for record in kept:
        dump.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    dump.flush()
    return dump


if __name__ == "__main__":
    sys.exit(main())
