"""`newsqa serve` over real HTTP: the official openai client, sync, async and streaming.

Two real servers: `newsqa serve` as a subprocess (offline extractive engine), and
`create_app` under uvicorn in a thread with an LLM that talks to the scripted
OpenAI wire server, so the whole path (client -> newsqa -> upstream model) is HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import REPO, free_port, stop_process, wait_until
from tests.openai_server import FakeOpenAIServer, Recorded, Reply

SEEDS = REPO / "seeds"
API_KEY = "sk-test-newsqa"
START_DEADLINE = 120.0
SEED_TEXT = "\n".join(p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt")))

Q_MEET = "Who did Qaani meet in Baghdad?"
Q_WARN = "What did he warn?"


def _ingested_db(path: Path) -> Path:
    from newsqa.app.api import NewsQA

    with NewsQA(db=path, llm="extractive") as qa:  # let go: a `newsqa serve` may open it next
        assert qa.ingest(SEEDS).added == 2
    return path


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def offline_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`newsqa serve` in its own process, extractive engine, API key required."""
    db = _ingested_db(tmp_path_factory.mktemp("serve-db"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("serve-log") / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NEWSQA_"))}
    command = [sys.executable, "-m", "newsqa.app.cli", "serve", "--db", str(db),
               "--port", str(port), "--api-key", API_KEY, "--llm", "extractive"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"newsqa serve exited: {log_path.read_text()}")
            return _healthy(url)

        try:
            wait_until(up, START_DEADLINE, f"newsqa serve at {url}")
            yield url
        finally:
            stop_process(proc, timeout=15)


@pytest.fixture
def client(offline_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{offline_url}/v1", api_key=API_KEY, max_retries=0)


def _newsqa(obj: Any) -> dict[str, Any]:
    extra = obj.model_extra or {}
    assert "newsqa" in extra, f"no newsqa field in {obj}"
    return dict(extra["newsqa"])


def _assert_cited(extra: dict[str, Any], phrase: str) -> None:
    assert extra["answerable"] is True
    quotes = [c["quote"] for c in extra["citations"]]
    assert any(phrase in q for q in quotes), quotes
    for quote in quotes:  # every citation is a verbatim span of a seed article
        assert quote in SEED_TEXT


# -- the offline server through the official client --------------------------------------------


def test_models_lists_newsqa(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["newsqa"]


def test_health_needs_no_key(offline_url: str) -> None:
    assert httpx.get(f"{offline_url}/health").json() == {"status": "ok"}


def test_completion_has_markers_sources_and_structured_citations(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="newsqa", messages=[{"role": "user", "content": Q_MEET}]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    content = choice.message.content or ""
    body, _, sources = content.partition("\n\nSources:\n")
    assert "Qaani" in body
    assert "[1]" in body
    assert sources.startswith("[1] ")
    assert "Shafaq News" in content or "2025-03-19" in content
    extra = _newsqa(completion)
    _assert_cited(extra, "Qaani")
    assert extra["rewritten_question"] == Q_MEET


def test_the_structured_reply_carries_the_short_answer(client: openai.OpenAI) -> None:
    # A chatbot never saw "3,000 to 3,500", which `newsqa ask --json` gives.
    completion = client.chat.completions.create(
        model="newsqa", messages=[{"role": "user", "content": "How many troops were sent to "
                                                              "Kuwait?"}])
    extra = _newsqa(completion)
    assert extra["direct_answer"] == "3,000 to 3,500"
    assert extra["rejected_citations"] == []


def test_streaming_matches_the_completion_and_ends_with_citations(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": Q_MEET}]
    whole = client.chat.completions.create(model="newsqa", messages=messages)
    stream = client.chat.completions.create(
        model="newsqa", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finals) == 1
    _assert_cited(_newsqa(finals[0]), "Qaani")
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert len({c.id for c in chunks}) == 1


def test_with_include_usage_every_chunk_says_usage_null_but_the_last(offline_url: str) -> None:
    # As OpenAI streams it; a chatbot developer's raw SSE reader found the key missing.
    def chunks(include: bool) -> list[dict[str, Any]]:
        body = {"messages": [{"role": "user", "content": Q_MEET}], "stream": True,
                "stream_options": {"include_usage": include}}
        reply = httpx.post(f"{offline_url}/v1/chat/completions", json=body, timeout=120,
                           headers={"Authorization": f"Bearer {API_KEY}"})
        return [json.loads(line[6:]) for line in reply.text.splitlines()
                if line.startswith("data: {")]

    counted = chunks(True)
    assert all("usage" in c and c["usage"] is None for c in counted[:-1])
    assert counted[-1]["choices"] == [] and counted[-1]["usage"]["total_tokens"] >= 0
    assert not any("usage" in c for c in chunks(False))


def test_follow_up_uses_the_conversation(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="newsqa", messages=[{"role": "user", "content": Q_MEET}]
    )
    follow_up = client.chat.completions.create(
        model="newsqa",
        messages=[
            {"role": "system", "content": "You are a news assistant."},
            {"role": "user", "content": Q_MEET},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": Q_WARN},
        ],
    )
    extra = _newsqa(follow_up)
    assert "Qaani" in extra["rewritten_question"]
    assert extra["question"] == Q_WARN
    _assert_cited(extra, "Iran would not remain silent")


def test_follow_up_about_hegseth_streams(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="newsqa",
        stream=True,
        messages=[
            {"role": "user", "content": "Who is Pete Hegseth?"},
            {"role": "assistant",
             "content": "He is the US Defense Secretary. [1]\n\nSources:\n[1] x"},
            {"role": "user",
             "content": [{"type": "text", "text": "What did he urge al-Sudani to do?"}]},
        ],
    )
    finals = [c for c in stream if c.choices and c.choices[0].finish_reason == "stop"]
    extra = _newsqa(finals[0])
    assert "Hegseth" in extra["rewritten_question"]
    _assert_cited(extra, "disarm")


def test_async_client_and_twenty_concurrent_requests(offline_url: str) -> None:
    questions = {
        Q_MEET: "Qaani",
        "Who is Pete Hegseth?": "Hegseth",
        "How many soldiers would be sent to Kuwait?": "3,500 soldiers",
        "What did Hegseth urge al-Sudani to do?": "disarm",
    }
    asked = [list(questions)[i % len(questions)] for i in range(20)]

    async def run() -> list[Any]:
        async with openai.AsyncOpenAI(
            base_url=f"{offline_url}/v1", api_key=API_KEY, max_retries=0, timeout=120
        ) as aclient:
            calls = [
                aclient.chat.completions.create(
                    model="newsqa", messages=[{"role": "user", "content": q}]
                )
                for q in asked
            ]
            streamed = await aclient.chat.completions.create(
                model="newsqa", messages=[{"role": "user", "content": Q_MEET}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in streamed if c.choices])
            assert "Qaani" in text
            return list(await asyncio.gather(*calls))

    results = asyncio.run(run())
    assert len(results) == 20
    for question, completion in zip(asked, results, strict=True):
        extra = _newsqa(completion)
        assert extra["question"] == question
        _assert_cited(extra, questions[question])


# -- auth --------------------------------------------------------------------------------------


def test_missing_or_wrong_key_is_rejected(offline_url: str) -> None:
    for key in ("wrong-key", ""):
        bad = openai.OpenAI(base_url=f"{offline_url}/v1", api_key=key or "x", max_retries=0)
        if not key:
            bad = openai.OpenAI(base_url=f"{offline_url}/v1", api_key="unused", max_retries=0,
                                default_headers={"Authorization": ""})
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.chat.completions.create(
                model="newsqa", messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.status_code == 401
        assert caught.value.code == "invalid_api_key"
    response = httpx.get(f"{offline_url}/v1/models")
    assert response.status_code == 401
    assert "API key" in response.json()["error"]["message"]


# -- bad requests get 4xx with an OpenAI error body, never 500 ------------------------------------


BAD_BODIES: list[tuple[str, bytes | str, int, str]] = [
    ("not json", b"{not json", 400, "not valid JSON"),
    ("not an object", b"[1, 2]", 400, "object"),
    ("no messages", json.dumps({"model": "newsqa"}), 400, "messages"),
    ("empty messages", json.dumps({"messages": []}), 400, "messages"),
    ("messages not a list", json.dumps({"messages": "hi"}), 400, "messages"),
    ("no role", json.dumps({"messages": [{"content": "hi"}]}), 400, "role"),
    ("unknown role", json.dumps({"messages": [{"role": "boss", "content": "hi"}]}), 400, "role"),
    ("content a number", json.dumps({"messages": [{"role": "user", "content": 5}]}), 400,
     "content"),
    ("stream a string", json.dumps({"messages": [{"role": "user", "content": "hi"}],
                                    "stream": "yes"}), 400, "stream"),
    ("last is assistant", json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                   {"role": "assistant", "content": "yo"}]}),
     400, "user"),
    ("empty question", json.dumps({"messages": [{"role": "user", "content": "  "}]}), 400,
     "empty"),
    ("bad top_k", json.dumps({"messages": [{"role": "user", "content": "hi"}], "top_k": 0}),
     400, "top_k"),
    ("bad date", json.dumps({"messages": [{"role": "user", "content": Q_MEET}],
                             "since": "last year"}), 400, "date"),
    ("bad date streamed", json.dumps({"messages": [{"role": "user", "content": Q_MEET}],
                                      "since": "soon", "stream": True}), 400, "date"),
    ("too large", json.dumps({"messages": [{"role": "user", "content": "x" * 1_100_000}]}), 413,
     "larger"),
    ("question too long", json.dumps({"messages": [{"role": "user", "content": "Who? " * 401}]}),
     400, "the limit is 2,000"),
    ("question of 900 KB",
     json.dumps({"messages": [{"role": "user", "content": "Who? " * 180_000}]}),
     400, "the limit is 2,000"),
    ("too many messages", json.dumps({"messages": [{"role": "user", "content": "hi"}] * 201}),
     400, "messages"),
    ("too many sources", json.dumps({"messages": [{"role": "user", "content": Q_MEET}],
                                     "sources": ["x"] * 101}), 400, "sources"),
    # A new user's request for two JSON choices got one prose reply, as if it were that.
    ("two choices", json.dumps({"messages": [{"role": "user", "content": Q_MEET}], "n": 2}),
     400, "one choice"),
    ("tools", json.dumps({"messages": [{"role": "user", "content": Q_MEET}],
                          "tools": [{"type": "function", "function": {"name": "f"}}]}),
     400, "tools are not supported"),
    ("json format", json.dumps({"messages": [{"role": "user", "content": Q_MEET}],
                                "response_format": {"type": "json_object"}}),
     400, "response_format"),
]


@pytest.mark.parametrize(("name", "body", "status", "says"), BAD_BODIES,
                         ids=[b[0] for b in BAD_BODIES])
def test_bad_requests_get_clear_4xx(
    offline_url: str, name: str, body: bytes | str, status: int, says: str
) -> None:
    response = httpx.post(
        f"{offline_url}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert says.lower() in error["message"].lower()
    assert error["type"] == "invalid_request_error"


def test_a_bad_filter_names_the_request_field_not_the_cli_flag(offline_url: str) -> None:
    # A chatbot developer's {"since": "notadate"} got "--since: not a date" and param null.
    for stream in (False, True):
        response = httpx.post(
            f"{offline_url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": Q_MEET}], "since": "notadate",
                  "stream": stream},
            headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == "since"
        assert error["message"].startswith("'since': not a date") and "--" not in error["message"]


LONG_REPLIES = {
    "sentences": "Esmail Qaani met Iraqi leaders in Baghdad and warned them. " * 5_000,
    "blank lines": "Esmail Qaani met Iraqi leaders in Baghdad." + "\n" * 400_000,
}


@pytest.mark.parametrize("long_reply", LONG_REPLIES.values(), ids=LONG_REPLIES.keys())
def test_a_long_history_message_costs_no_more_than_a_short_one(
    client: openai.OpenAI, long_reply: str
) -> None:
    """Reading the previous reply costs the square of its length (300 KB of text, or of
    blank lines before a Sources list: minutes). The server reads a bounded part of each;
    the client gives up after 60 s."""
    reply = client.with_options(timeout=60).chat.completions.create(
        model="newsqa",
        messages=[
            {"role": "user", "content": Q_MEET},
            {"role": "assistant", "content": long_reply},
            {"role": "user", "content": Q_WARN},
        ],
    )
    assert "Qaani" in _newsqa(reply)["rewritten_question"]


def test_wrong_method_and_path_get_openai_errors(offline_url: str) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    wrong_method = httpx.get(f"{offline_url}/v1/chat/completions", headers=headers)
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()
    missing = httpx.post(f"{offline_url}/v1/completions", headers=headers, json={})
    assert missing.status_code == 404
    assert "error" in missing.json()


def test_what_a_client_sends_by_default_is_accepted(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="newsqa", messages=[{"role": "user", "content": Q_MEET}], n=1, tools=[],
        response_format={"type": "text"}, max_tokens=50, temperature=0.2)
    assert reply.choices[0].message.content


def test_bad_request_through_the_client_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="user"):
        client.chat.completions.create(
            model="newsqa", messages=[{"role": "assistant", "content": "hello"}]
        )


# -- newsqa with an upstream LLM (the scripted wire server) --------------------------------------

_SOURCE = re.compile(r'<source id="(S\d+)"[^>]*>\n(.*?)\n</source>', re.S)
_QUESTION = re.compile(r"Question: (.*)\s*\Z", re.S)
STANDALONE = "What did Esmail Qaani warn about Israeli strikes on Iraq?"


def _upstream_reply(request: Recorded) -> Reply:
    """Plays the model: rewrites follow-ups, answers by quoting the best-matching sentence."""
    text = "\n".join(str(m.get("content", "")) for m in request.messages)
    if "Last question:" in text:
        return Reply.json({"standalone_question": STANDALONE})
    question = _QUESTION.search(text)
    words = {w.lower() for w in re.findall(r"\w{4,}", question.group(1) if question else "")}
    best: tuple[int, str, str] = (-1, "", "")
    for source_id, body in _SOURCE.findall(text):
        for sentence in re.split(r"(?<=[.!?])\s+", body):
            score = len(words & {w.lower() for w in re.findall(r"\w{4,}", sentence)})
            if score > best[0]:
                best = (score, source_id, sentence.strip())
    _, source_id, sentence = best
    return Reply.json({
        "answerable": True,
        "reason": None,
        "claims": [{"text": sentence, "citations": [{"source_id": source_id, "quote": sentence}]}],
    })


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    server.default = _upstream_reply
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def _uvicorn(app: Any) -> Iterator[str]:
    """Serve `app` on a free port from a thread; yields its base URL once /health answers."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url), START_DEADLINE, f"uvicorn at {url}")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def llm_url(tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAIServer) -> Iterator[str]:
    """create_app under uvicorn in a thread; newsqa's LLM is the wire server."""
    from newsqa.app.api import NewsQA
    from newsqa.app.server import create_app
    from newsqa.engines.llm import LLM

    db = _ingested_db(tmp_path_factory.mktemp("llm-db"))
    qa = NewsQA(db=db, llm=LLM("test-model", base_url=upstream.url, api_key="upstream-key"))
    with _uvicorn(create_app(qa)) as url:
        yield url


def test_llm_backed_answer_and_follow_up(llm_url: str, upstream: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=f"{llm_url}/v1", api_key="none", max_retries=0)
    first = client.chat.completions.create(
        model="newsqa", messages=[{"role": "user", "content": Q_MEET}]
    )
    extra = _newsqa(first)
    assert extra["mode"] == "llm"
    assert extra["citations"] and extra["citations"][0]["quote"] in SEED_TEXT
    before = len(upstream.chat_requests)
    follow_up = client.chat.completions.create(
        model="newsqa",
        messages=[
            {"role": "user", "content": Q_MEET},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": Q_WARN},
        ],
    )
    extra = _newsqa(follow_up)
    assert extra["rewritten_question"] == STANDALONE
    sent = upstream.chat_requests[before:]
    condense = [r for r in sent if "Last question: What did he warn?" in json.dumps(r.messages)]
    assert len(condense) == 1
    assert "Qaani" in json.dumps(condense[0].messages)  # the history reached the model
    answering = [r for r in sent if STANDALONE in json.dumps(r.messages) and r not in condense]
    assert answering, "the rewritten question was not what got answered"
    _assert_cited(extra, "Israeli")


def test_llm_backed_streaming_and_async(llm_url: str) -> None:
    async def run() -> tuple[str, dict[str, Any], list[Any]]:
        async with openai.AsyncOpenAI(
            base_url=f"{llm_url}/v1", api_key="none", max_retries=0
        ) as aclient:
            stream = await aclient.chat.completions.create(
                model="newsqa", messages=[{"role": "user", "content": Q_MEET}], stream=True
            )
            chunks = [c async for c in stream]
            many = await asyncio.gather(*[
                aclient.chat.completions.create(
                    model="newsqa", messages=[{"role": "user", "content": "Who is Pete Hegseth?"}]
                )
                for _ in range(5)
            ])
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
        return text, _newsqa(final), list(many)

    text, extra, many = asyncio.run(run())
    assert "Sources:" in text
    assert extra["mode"] == "llm" and extra["citations"]
    for completion in many:
        _assert_cited(_newsqa(completion), "Hegseth")


# -- a cold server: the first requests race to build the shared parts ------------------------


def test_cold_server_builds_shared_parts_once_under_concurrency(tmp_path: Path) -> None:
    from newsqa.app.api import NewsQA
    from newsqa.app.server import create_app

    db = _ingested_db(tmp_path / "cold-db")
    qa = NewsQA(db=db, llm="extractive")  # nothing built yet: no index, model or BM25 table
    assert "index" not in vars(qa) and "retriever" not in vars(qa)
    with _uvicorn(create_app(qa, warm=False)) as url:

        async def run() -> list[str]:
            async with openai.AsyncOpenAI(
                base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120
            ) as aclient:

                async def ask(streamed: bool) -> str:
                    messages: Any = [{"role": "user", "content": "Who is Pete Hegseth?"}]
                    if not streamed:
                        done = await aclient.chat.completions.create(
                            model="newsqa", messages=messages
                        )
                        return done.choices[0].message.content or ""
                    stream = await aclient.chat.completions.create(
                        model="newsqa", messages=messages, stream=True
                    )
                    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
                    return "".join(parts)

                return list(await asyncio.gather(*[ask(i % 2 == 1) for i in range(12)]))

        replies = asyncio.run(run())
    assert len(set(replies)) == 1, "concurrent cold requests disagreed"
    assert "Hegseth" in replies[0] and "Sources:" in replies[0]


# -- upstream failures: a 5xx-class OpenAI error, in-band once streaming has begun -------------


def test_upstream_model_failures_are_reported_not_hidden(tmp_path: Path) -> None:
    from newsqa.app.api import NewsQA
    from newsqa.app.server import create_app
    from newsqa.engines.llm import LLM

    db = _ingested_db(tmp_path / "failing-db")
    failing = FakeOpenAIServer().start()
    try:
        qa = NewsQA(db=db, llm=LLM("test-model", base_url=failing.url, api_key="k"))
        with _uvicorn(create_app(qa)) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
            messages: Any = [{"role": "user", "content": Q_MEET}]

            failing.default = Reply.error(401, "bad upstream key", kind="invalid_request_error")
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="newsqa", messages=messages)
            assert caught.value.status_code == 502
            with pytest.raises(openai.APIStatusError) as caught:
                list(client.chat.completions.create(model="newsqa", messages=messages,
                                                    stream=True))
            assert caught.value.status_code == 502

            # A claim that never verifies is never shown: the reply fails validation even
            # after the repair try before any text went out, so the status says so.
            failing.default = Reply.chat('{"answerable": true, "claims": [{"text": "Qaani '
                                         'met leaders.", "citations": 5}]}')
            with pytest.raises(openai.APIStatusError) as caught:
                list(client.chat.completions.create(model="newsqa", messages=messages,
                                                    stream=True))
            assert caught.value.status_code == 502

            # A verified claim streams out, then the rest of the reply fails validation even
            # after the repair try: the status line is long gone, so the error arrives in-band.
            met = "Qaani met with leaders of the Coordination Framework"
            failing.default = Reply.chat(
                '{"answerable": true, "answer": "", "claims": [{"text": "' + met + '.", '
                '"citations": [{"source_id": "S1", "quote": "' + met + '"}]}, '
                '{"text": "More.", "citations": 5}]}'
            )
            stream = client.chat.completions.create(model="newsqa", messages=messages,
                                                    stream=True)
            seen: list[str] = []
            with pytest.raises(openai.APIError):
                for chunk in stream:
                    if chunk.choices:
                        seen.append(chunk.choices[0].delta.content or "")
            assert "".join(seen).startswith(met + ". [1]")
            assert "More." not in "".join(seen)
    finally:
        failing.close()


# -- no file path in a reply; serve's defaults ------------------------------------------------

HOLD = """
import sys
from newsqa import NewsQA
qa = NewsQA(db=sys.argv[1])
qa.articles()
print("holding", flush=True)
sys.stdin.readline()
"""


def test_store_failures_are_503_without_the_local_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The folder is held by another process: the client learns the store is unavailable,
    the log (not the client) learns where."""
    from newsqa.app.api import NewsQA
    from newsqa.app.server import create_app

    db = _ingested_db(tmp_path / "held-db")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("NEWSQA_LOCK_TIMEOUT", "0.2")
        qa = NewsQA(db=db, llm="extractive")
        with caplog.at_level("WARNING", logger="newsqa.server"), \
                _uvicorn(create_app(qa, warm=False)) as url:
            for stream in (False, True):
                response = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
                    "messages": [{"role": "user", "content": Q_MEET}], "stream": stream})
                assert response.status_code == 503, response.text
                error = response.json()["error"]
                assert error["type"] == "api_error" and "unavailable" in error["message"]
                assert str(tmp_path) not in response.text
    finally:
        holder.communicate("\n", timeout=60)
    assert any(str(db) in record.getMessage() for record in caplog.records)


def _serve(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NEWSQA_"))}
    return subprocess.run(
        [sys.executable, "-m", "newsqa.app.cli", "serve", "--db", str(db), "--llm", "extractive",
         "--port", str(free_port()), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=START_DEADLINE,
    )


# 192.0.2.1 (TEST-NET-1) is not a loopback address and is on no interface here: a server
# that got past the checks fails to bind it, so no test ever listens beyond 127.0.0.1.
NOT_LOOPBACK = "192.0.2.1"


def test_serve_refuses_a_non_loopback_host_without_a_key(tmp_path: Path) -> None:
    run = _serve(tmp_path / "never-opened", "--host", NOT_LOOPBACK)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"newsqa: error: refusing to serve on {NOT_LOOPBACK} without an API key: pass --api-key "
        "(or set NEWSQA_API_KEY), or --insecure-no-auth to serve it to anyone who can connect"
    ]


def test_serve_on_a_port_in_use_is_one_error_line_and_never_says_it_is_serving(
    tmp_path: Path
) -> None:
    # Tried as a new user would: "serving on ..." was printed, then uvicorn's log lines, exit 3.
    import socket

    db = _ingested_db(tmp_path / "db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = _serve(db, "--port", str(port), "--api-key", "k")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"newsqa: error: cannot serve on 127.0.0.1:{port}: Address already in use"]


def test_serve_without_a_key_warns_and_insecure_no_auth_is_honoured(tmp_path: Path) -> None:
    db = _ingested_db(tmp_path / "db")
    run = _serve(db, "--host", NOT_LOOPBACK, "--insecure-no-auth")
    assert "refusing" not in run.stderr
    assert "newsqa: warning: serving without an API key" in run.stderr
    assert run.returncode != 0 and "Traceback" not in run.stderr  # the bind failed, cleanly
    assert "192.0.2.1" in run.stderr
