"""The LLM client on the wire: the real openai client over HTTP against a scripted server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from newsqa.config import Settings
from newsqa.engines.llm import (
    LLM,
    RetryPolicy,
    StreamStats,
    extract_json,
    is_strict_compatible,
    strict_schema,
)
from newsqa.errors import (
    ConfigError,
    LLMConnectionError,
    LLMOutputError,
    LLMRateLimited,
    LLMServerError,
)
from tests.openai_server import FakeOpenAIServer, Reply, serve

MESSAGES = [{"role": "system", "content": "You extract facts."},
            {"role": "user", "content": "Who met whom?"}]
FAST = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, retry_after_cap=1.0)


class Meeting(BaseModel):
    person: str
    met: list[str]
    note: str | None = None


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    with serve() as server:
        yield server


GOOD = {"person": "Qaani", "met": ["al-Sudani"], "note": None}


def make_llm(server: FakeOpenAIServer, model: str = "gpt-4o-mini", **options: object) -> LLM:
    options.setdefault("retry", FAST)
    options.setdefault("timeout", 5.0)
    return LLM(model, base_url=server.url, **options)  # type: ignore[arg-type]


# -- the structured-output ladder -----------------------------------------------------------


def test_json_schema_is_sent_strict_and_the_reply_validated(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.queue(Reply.json(GOOD, usage=(120, 30)))
    result, usage = make_llm(openai_server).structured(MESSAGES, Meeting)
    assert result == Meeting(**GOOD)
    (request,) = openai_server.chat_requests
    fmt = request.body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    sent = fmt["json_schema"]["schema"]
    assert sent["additionalProperties"] is False
    assert sent["required"] == ["person", "met", "note"]
    assert request.body["messages"] == MESSAGES  # the schema travels in response_format only
    assert (usage.prompt_tokens, usage.completion_tokens) == (120, 30)
    assert usage.estimated_cost_usd == pytest.approx((120 * 0.15 + 30 * 0.60) / 1e6)


def test_llamacpp_500_on_json_schema_falls_back_to_json_object_and_is_remembered(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.reject_json_schema = True
    openai_server.queue(Reply.json(GOOD), Reply.json(GOOD))
    llm = make_llm(openai_server)
    assert llm.structured(MESSAGES, Meeting)[0].person == "Qaani"
    assert llm.structured(MESSAGES, Meeting)[0].person == "Qaani"
    shapes = [r.response_format for r in openai_server.chat_requests]
    assert shapes == ["json_schema", "json_object", "json_object"]
    fallback = openai_server.chat_requests[1]
    assert fallback.body["response_format"]["schema"]["properties"]["met"]["type"] == "array"
    assert '"person"' in fallback.messages[0]["content"]  # and the schema is in the system prompt
    assert llm.rung == "json_object"


def test_a_server_without_response_format_gets_plain_text_and_json_is_extracted(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.queue(
        Reply.error(400, "Unrecognized request argument: response_format", kind="invalid_request"),
        Reply.error(422, "response_format: json_object is not supported"),
        Reply.chat("Sure! Here it is:\n```json\n" + json.dumps(GOOD) + "\n```\nAnything else?"),
    )
    llm = make_llm(openai_server)
    assert llm.structured(MESSAGES, Meeting)[0] == Meeting(**GOOD)
    assert [r.response_format for r in openai_server.chat_requests] == [
        "json_schema", "json_object", "text"]
    assert llm.rung == "text"


def test_an_opaque_outage_is_retried_on_each_rung_then_raised_without_downgrading(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.default = Reply.error(500, "Internal Server Error")
    llm = make_llm(openai_server, retry=RetryPolicy(max_retries=1, base_delay=0.01))
    with pytest.raises(LLMServerError, match="HTTP 500"):
        llm.structured(MESSAGES, Meeting)
    shapes = [r.response_format for r in openai_server.chat_requests]
    assert shapes == ["json_schema"] * 2 + ["json_object"] * 2 + ["text"] * 2
    assert llm.rung == "json_schema"  # an outage says nothing about what the server supports


# -- transient failures ---------------------------------------------------------------------


def test_429_then_success_waits_the_retry_after_it_was_given(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.queue(Reply.error(429, "slow down", headers={"Retry-After": "0.3"}),
                        Reply.json(GOOD))
    llm = make_llm(openai_server, retry=RetryPolicy(max_retries=2, base_delay=0.001))
    started = time.monotonic()
    assert llm.structured(MESSAGES, Meeting)[0].person == "Qaani"
    assert time.monotonic() - started >= 0.3
    assert len(openai_server.chat_requests) == 2
    assert {r.response_format for r in openai_server.chat_requests} == {"json_schema"}


@pytest.mark.timeout(20)
def test_a_huge_retry_after_is_capped(openai_server: FakeOpenAIServer) -> None:
    openai_server.queue(Reply.error(429, "later", headers={"Retry-After": "3600"}),
                        Reply.json(GOOD))
    llm = make_llm(openai_server, retry=RetryPolicy(max_retries=1, retry_after_cap=0.05))
    assert llm.structured(MESSAGES, Meeting)[0].person == "Qaani"


def test_persistent_429_raises_rate_limited_after_the_retries(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.default = Reply.error(429, "quota exceeded")
    with pytest.raises(LLMRateLimited, match="429"):
        make_llm(openai_server).structured(MESSAGES, Meeting)
    assert len(openai_server.chat_requests) == FAST.max_retries + 1


def test_one_503_is_retried_on_the_same_rung(openai_server: FakeOpenAIServer) -> None:
    openai_server.queue(Reply.error(503, "overloaded"), Reply.json(GOOD))
    assert make_llm(openai_server).structured(MESSAGES, Meeting)[0].person == "Qaani"
    assert [r.response_format for r in openai_server.chat_requests] == ["json_schema"] * 2


def test_a_timeout_is_retried_then_raised_as_a_connection_error(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.default = Reply.hang(10)
    llm = make_llm(openai_server, timeout=0.3, retry=RetryPolicy(max_retries=1, base_delay=0.01))
    with pytest.raises(LLMConnectionError, match="timed out"):
        llm.structured(MESSAGES, Meeting)
    assert len(openai_server.chat_requests) == 2


def test_a_refused_connection_is_a_connection_error(closed_port: int) -> None:
    llm = LLM("gpt-4o-mini", base_url=f"http://127.0.0.1:{closed_port}/v1", retry=FAST)
    with pytest.raises(LLMConnectionError, match="cannot connect"):
        llm.structured(MESSAGES, Meeting)


def test_auth_failure_is_not_retried_nor_walked_down_the_ladder(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.default = Reply.error(401, "bad key")
    with pytest.raises(LLMServerError, match="401"):
        make_llm(openai_server).structured(MESSAGES, Meeting)
    assert len(openai_server.chat_requests) == 1


# -- untrusted output ------------------------------------------------------------------------


def test_malformed_json_is_repaired_once_with_the_error_shown_to_the_model(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.queue(Reply.chat('{"person": "Qaani", "met": ["al-Sudani"', usage=(10, 5)),
                        Reply.json(GOOD, usage=(20, 7)))
    result, usage = make_llm(openai_server).structured(MESSAGES, Meeting)
    assert result.person == "Qaani"
    first, repair = openai_server.chat_requests
    assert repair.messages[-2] == {"role": "assistant",
                                   "content": '{"person": "Qaani", "met": ["al-Sudani"'}
    assert "no complete JSON object" in repair.messages[-1]["content"]
    assert repair.messages[:2] == first.messages
    assert (usage.prompt_tokens, usage.completion_tokens) == (30, 12)  # both calls counted


def test_a_schema_violation_names_the_field_in_the_repair_request(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.queue(Reply.json({"person": "Qaani", "met": "al-Sudani"}), Reply.json(GOOD))
    make_llm(openai_server).structured(MESSAGES, Meeting)
    assert "met" in openai_server.chat_requests[1].messages[-1]["content"]


def test_output_still_bad_after_the_repair_raises_and_is_never_returned(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.queue(Reply.chat('{"person": "Qaa', finish_reason="length"),
                        Reply.chat("I cannot help with that."))
    with pytest.raises(LLMOutputError, match="Meeting"):
        make_llm(openai_server).structured(MESSAGES, Meeting)
    assert len(openai_server.chat_requests) == 2


def test_a_body_that_is_not_json_at_all_is_a_server_error(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.default = Reply.raw("<html>502 Bad Gateway</html>", status=502)
    with pytest.raises(LLMServerError, match="502"):
        make_llm(openai_server, retry=RetryPolicy(max_retries=0)).structured(MESSAGES, Meeting)


# -- usage, configuration --------------------------------------------------------------------


def test_usage_is_counted_with_tiktoken_when_the_server_reports_none(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.queue(Reply.json(GOOD, usage=False))
    llm = make_llm(openai_server, model="my-local-model")
    _, usage = llm.structured(MESSAGES, Meeting)
    assert usage.completion_tokens == llm.count_tokens(json.dumps(GOOD))
    assert usage.prompt_tokens >= llm.count_message_tokens(MESSAGES)
    assert usage.estimated_cost_usd is None  # no price for an unknown model


def test_a_base_url_without_a_key_sends_a_placeholder(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    openai_server.queue(Reply.json(GOOD))
    make_llm(openai_server).structured(MESSAGES, Meeting)
    headers = {k.lower(): v for k, v in openai_server.chat_requests[0].headers.items()}
    assert headers["authorization"] == "Bearer not-needed"


def test_no_key_and_no_base_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        LLM("gpt-4o-mini")


def test_from_settings_uses_the_base_url_timeout_and_window(
    openai_server: FakeOpenAIServer,
) -> None:
    settings = Settings(llm="served-model", openai_base_url=openai_server.url, llm_timeout=7.0,
                        llm_max_retries=0, context_window=4096)
    llm = LLM.from_settings(settings)
    assert (llm.model, llm.timeout, llm.retry.max_retries, llm.context_window) == (
        "served-model", 7.0, 0, 4096)
    openai_server.queue(Reply.json(GOOD))
    assert llm.structured(MESSAGES, Meeting)[0].person == "Qaani"
    assert openai_server.chat_requests[0].body["model"] == "served-model"


def test_the_timeout_and_retries_come_from_the_environment(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new user's `ask` against a server that never replied was silent for minutes, with
    # no documented way to wait less.
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("NEWSQA_LLM_TIMEOUT", "0.3")
    monkeypatch.setenv("NEWSQA_LLM_MAX_RETRIES", "0")
    llm = LLM.from_settings(Settings.from_env())
    assert (llm.timeout, llm.retry.max_retries) == (0.3, 0)
    openai_server.default = Reply.hang(10)
    with pytest.raises(LLMConnectionError):
        llm.structured(MESSAGES, Meeting)
    assert len(openai_server.chat_requests) == 1
    for name, value in (("NEWSQA_LLM_TIMEOUT", "soon"), ("NEWSQA_LLM_TIMEOUT", "0"),
                        ("NEWSQA_LLM_MAX_RETRIES", "-1")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=name):
            Settings.from_env()
        monkeypatch.delenv(name)


def test_a_ready_made_client_has_its_sdk_retries_switched_off(
    openai_server: FakeOpenAIServer,
) -> None:
    import openai

    client = openai.OpenAI(base_url=openai_server.url, api_key="k", max_retries=5)
    llm = LLM("m", client=client, retry=RetryPolicy(max_retries=0))
    openai_server.default = Reply.error(500, "boom")
    with pytest.raises(LLMServerError):
        list(llm.stream(MESSAGES))
    assert len(openai_server.chat_requests) == 1


def test_context_windows_known_default_and_explicit() -> None:
    assert LLM("gpt-4o-mini-2024-07-18", api_key="k").context_window == 128_000
    assert LLM("gpt-4.1-nano", api_key="k").context_window == 1_047_576
    assert LLM("some-local-model", api_key="k").context_window == 8192
    assert LLM("gpt-4o", api_key="k", context_window=2048).context_window == 2048


# -- streaming and async ---------------------------------------------------------------------


def test_stream_yields_deltas_and_reports_usage(openai_server: FakeOpenAIServer) -> None:
    openai_server.queue(Reply.chat("Qaani met Iraqi leaders.", usage=(40, 6), chunk_size=5))
    stats = StreamStats()
    deltas = list(make_llm(openai_server).stream(MESSAGES, stats=stats))
    assert len(deltas) > 1 and "".join(deltas) == "Qaani met Iraqi leaders."
    assert (stats.usage.prompt_tokens, stats.usage.completion_tokens) == (40, 6)
    assert stats.finish_reason == "stop"
    request = openai_server.chat_requests[0].body
    assert request["stream"] is True and "response_format" not in request


def test_stream_retries_before_the_first_delta(openai_server: FakeOpenAIServer) -> None:
    openai_server.queue(Reply.error(502, "bad gateway"), Reply.chat("ok then"))
    assert "".join(make_llm(openai_server).stream(MESSAGES)) == "ok then"


def test_structured_stream_takes_the_ladder(openai_server: FakeOpenAIServer) -> None:
    openai_server.reject_json_schema = True
    openai_server.queue(Reply.json(GOOD))
    llm = make_llm(openai_server)
    text = "".join(llm.stream(MESSAGES, schema=Meeting))
    assert json.loads(text) == GOOD
    assert [r.response_format for r in openai_server.chat_requests] == [
        "json_schema", "json_object"]


def test_async_structured_and_stream(openai_server: FakeOpenAIServer) -> None:
    openai_server.reject_json_schema = True
    openai_server.queue(Reply.error(429, "wait", headers={"retry-after-ms": "10"}),
                        Reply.chat("not json"), Reply.json(GOOD), Reply.chat("streamed reply"))
    llm = make_llm(openai_server)

    async def run() -> tuple[Meeting, str]:
        result, _ = await llm.astructured(MESSAGES, Meeting)
        text = "".join([d async for d in llm.astream(MESSAGES)])
        return result, text

    result, text = asyncio.run(run())
    assert result == Meeting(**GOOD)
    assert text == "streamed reply"
    assert [r.response_format for r in openai_server.chat_requests] == [
        "json_schema", "json_object", "json_object", "json_object", "text"]


def test_async_timeout_is_a_connection_error(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Reply.hang(10)
    llm = make_llm(openai_server, timeout=0.3, retry=RetryPolicy(max_retries=0))
    with pytest.raises(LLMConnectionError):
        asyncio.run(llm.astructured(MESSAGES, Meeting))


# -- helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"a": 1}', '{"a": 1}'),
        ('Here you go: {"a": {"b": "}"}} trailing', '{"a": {"b": "}"}}'),
        ('```json\n{"a": "x \\" {"}\n```', '{"a": "x \\" {"}'),
        ('{"a": [1, 2', None),
        ("no json here", None),
    ],
)
def test_extract_json_takes_the_first_balanced_object(content: str, expected: str | None) -> None:
    assert extract_json(content) == expected


def test_strict_schema_closes_every_object_and_requires_every_field() -> None:
    class Inner(BaseModel):
        default: int = 3  # a field named "default" must survive

    class Outer(BaseModel):
        items: list[Inner] = []
        label: str | None = None

    schema = strict_schema(Outer.model_json_schema())
    inner = schema["$defs"]["Inner"]
    assert schema["additionalProperties"] is False and schema["required"] == ["items", "label"]
    assert inner["additionalProperties"] is False and inner["required"] == ["default"]
    assert "default" not in schema["properties"]["label"]
    assert is_strict_compatible(Outer.model_json_schema())

    class Open(BaseModel):
        counts: dict[str, int]

    assert not is_strict_compatible(Open.model_json_schema())


def test_a_200_whose_body_is_not_json_is_a_server_error_not_an_answer(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.default = Reply.raw("this is not json")
    with pytest.raises(LLMServerError, match="unusable response"):
        make_llm(openai_server).structured(MESSAGES, Meeting)


def test_the_test_server_serves_models_and_deterministic_embeddings(
    openai_server: FakeOpenAIServer,
) -> None:
    import openai

    client = openai.OpenAI(base_url=openai_server.url, api_key="k", max_retries=0)
    assert [m.id for m in client.models.list()] == ["test-model"]
    first = client.embeddings.create(model="e", input=["alpha", "beta"]).data
    again = client.embeddings.create(model="e", input="alpha", encoding_format="float").data
    assert len(first) == 2 and len(first[0].embedding) == openai_server.dimension
    assert first[0].embedding == pytest.approx(again[0].embedding, abs=1e-6)
    assert first[0].embedding != pytest.approx(first[1].embedding, abs=1e-3)
    assert sum(v * v for v in first[1].embedding) == pytest.approx(1.0, abs=1e-5)


def test_a_reply_cut_off_inside_a_nested_object_says_it_was_cut_off(
    openai_server: FakeOpenAIServer,
) -> None:
    # The outer object never closes; its first nested object does. Validating that
    # inner object would blame a missing field instead of the token limit.
    cut = '{"person": "Qaani", "extra": {"note": "x"}, "met": ["al-Sud'
    openai_server.queue(Reply.chat(cut, finish_reason="length"),
                        Reply.chat(cut, finish_reason="length"))
    with pytest.raises(LLMOutputError, match="cut off at max_tokens") as info:
        make_llm(openai_server).structured(MESSAGES, Meeting)
    assert "no complete JSON object" in str(info.value)


def test_backends_register_themselves_and_llm_imports_none_of_them() -> None:
    """issue 17: llm <-> local was an import cycle hidden by a lazy import."""
    import ast

    import newsqa.engines.llm
    from newsqa.engines.llm import registered_backends
    from newsqa.engines.local import backend

    assert backend in registered_backends()  # the entry point pyproject.toml declares
    tree = ast.parse(Path(newsqa.engines.llm.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    assert not {"local", "newsqa.local", "llama_index", "newsqa.llama_index"} & imported
    assert backend("gpt-4o-mini", Settings()) is None  # not its name: nothing loaded
