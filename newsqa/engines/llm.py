"""One client for every OpenAI-compatible server: OpenAI, llama.cpp, vLLM, Ollama, ours.

Why a ladder for structured output: servers disagree about `response_format`.
OpenAI takes a strict `json_schema`; llama.cpp answers HTTP 500 to `json_schema` but
takes `{"type": "json_object", "schema": ...}`; some servers take neither. So each
call climbs down, and the rung that worked is remembered per `LLM`:

1. `response_format={"type": "json_schema", ...}` (strict when the schema allows);
2. `response_format={"type": "json_object", "schema": ...}` + the schema in the prompt;
3. plain text + the schema in the prompt; the first balanced `{...}` is extracted.

There is one request primitive, `LLM.stream`, as simonw/llm has `Model.execute`: it
climbs the ladder, retries, and yields the reply's text with its usage and finish
reason in `StreamStats`. `structured` drains it and parses the joined text; the one
repair drains it again. A caller that watches the deltas gets server-sent events; a
caller that only drains asks for the reply in one piece (`live=False`), which the
primitive yields as a single delta.

Whatever comes back is untrusted: it is validated with pydantic, repaired once by
showing the model its validation error, and otherwise raised as `LLMOutputError`
(an error is never returned as if it were an answer).

The openai client's own retries are switched off (`max_retries=0`) so that one policy
is in force: timeouts, connection errors, 429 and 5xx are retried here with
exponential backoff (honouring Retry-After, capped), then raised as typed errors.
"""

from __future__ import annotations

import copy
import email.utils
import json
import logging
import os
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..aio import in_thread, iterate_in_thread
from ..config import DEFAULT_OPENAI_MODEL
from ..errors import (
    ConfigError,
    LLMConnectionError,
    LLMError,
    LLMOutputError,
    LLMRateLimited,
    LLMServerError,
)
from ..models import Usage

if TYPE_CHECKING:
    from ..config import Settings

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")
Messages = list[dict[str, str]]

log = logging.getLogger("newsqa.llm")  # the name its warnings have always had

RUNGS = ("json_schema", "json_object", "text")
DEFAULT_CONTEXT_WINDOW = 8192
LOCAL_PLACEHOLDER_KEY = "not-needed"

# USD per million tokens (input, output), list prices; longest matching prefix wins.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o1-mini": (1.10, 4.40),
    "o1": (15.00, 60.00),
}
CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "o4-mini": 200_000,
    "o3": 200_000,
    "o1-mini": 128_000,
    "o1": 200_000,
}
# A rejection that names the request shape means "try the next rung", not "retry".
_SHAPE_WORDS = re.compile(r"response_format|json_schema|json_object|schema|grammar|structured",
                          re.IGNORECASE)
_SHAPE_STATUSES = frozenset({400, 415, 422, 501})
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried. Small delays keep tests fast."""

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    retry_after_cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        backoff = min(self.base_delay * (2**attempt), self.max_delay)
        return backoff * (1.0 + 0.1 * random.random())


@dataclass
class StreamStats:
    """Filled in while a stream is consumed: what the server reported at the end."""

    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    content: str = ""
    rung: int | None = None  # the structured-output rung that answered (the repair's)

    @property
    def cut_off(self) -> bool:
        """max_tokens ended the reply: said in the error a caller sees when it does not parse."""
        return self.finish_reason == "length"


@dataclass
class _Failure:
    error: LLMError
    retryable: bool
    shape: bool = False  # the server refused this request shape (try the next rung)
    retry_after: float | None = None
    status: int | None = None


class _RungFailed(Exception):
    """Internal: this rung cannot work on this server; the ladder moves on."""

    def __init__(self, failure: _Failure, explicit: bool) -> None:
        super().__init__(str(failure.error))
        self.failure = failure
        self.explicit = explicit


class InvalidReply(ValueError):
    """A reply that did not parse or validate; its message is shown to the model to repair.

    Not a `NewsQAError`: it never reaches users, `LLMOutputError` does.
    """


class LLM:
    """A chat model behind the OpenAI API, with structured output, retries and usage.

    Give `client` (a ready-made `openai.OpenAI`, or anything shaped like it) to plug in
    another transport, e.g. in-process llama.cpp; otherwise the client is built from
    `api_key`/`base_url` on first use. There is one client and one code path: the
    async methods run the sync ones in a worker thread (`newsqa.aio`).
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: Any = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        context_window: int | None = None,
        max_output_tokens: int = 1024,
        temperature: float = 0.0,
    ) -> None:
        if not model:
            raise ConfigError("LLM needs a model name")
        if client is None and not (
            api_key or base_url or os.environ.get("OPENAI_API_KEY")
        ):
            raise ConfigError(
                f"model {model!r} needs OPENAI_API_KEY, or OPENAI_BASE_URL for a local server"
            )
        self.model = model
        self.base_url = base_url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self._api_key = api_key or (LOCAL_PLACEHOLDER_KEY if base_url else None)
        self._context_window = context_window
        self._client = _without_retries(client)
        self._rung = 0  # index into RUNGS of the first rung worth trying

    @classmethod
    def from_settings(cls, settings: Settings) -> LLM:
        """The model `settings.llm` names: a registered backend's if one claims the name
        (in-process llama.cpp claims "local", "local:<path>" and .gguf files), else an
        OpenAI-compatible server's."""
        name = settings.llm or DEFAULT_OPENAI_MODEL
        for backend in registered_backends():
            built = backend(name, settings)
            if built is not None:
                return built
        return cls(
            name,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout,
            retry=RetryPolicy(max_retries=settings.llm_max_retries),
            context_window=settings.context_window,
        )

    def __repr__(self) -> str:
        return f"LLM(model={self.model!r}, base_url={self.base_url!r}, rung={RUNGS[self._rung]!r})"

    # -- clients -------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import openai

            self._client = self._build(openai.OpenAI)
        return self._client

    def _build(self, factory: Callable[..., Any]) -> Any:
        import openai

        try:
            return factory(api_key=self._api_key, base_url=self.base_url, timeout=self.timeout,
                           max_retries=0)
        except openai.OpenAIError as exc:
            raise ConfigError(f"cannot set up the OpenAI client for {self.model!r}: {exc}") from exc

    # -- model facts ---------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        """Tokens the model reads at once: explicit, else known per model, else 8192."""
        if self._context_window:
            return self._context_window
        return _lookup(CONTEXT_WINDOWS, self.model) or DEFAULT_CONTEXT_WINDOW

    @property
    def rung(self) -> str:
        """The structured-output rung the next call starts from."""
        return RUNGS[self._rung]

    def count_tokens(self, text: str) -> int:
        return _count(self.model, text)

    def count_message_tokens(self, messages: Messages) -> int:
        # ~4 tokens of framing per message plus the reply primer, as OpenAI documents.
        return sum(self.count_tokens(m.get("content") or "") + 4 for m in messages) + 3

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = _lookup(PRICES_PER_MTOK, self.model)
        if price is None:
            return None
        return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000

    def usage_of(self, reported: Any, messages: Messages, content: str) -> Usage:
        """Server-reported tokens when given, else counted with tiktoken."""
        prompt = getattr(reported, "prompt_tokens", None)
        completion = getattr(reported, "completion_tokens", None)
        if prompt is None:
            prompt = self.count_message_tokens(messages)
        if completion is None:
            completion = self.count_tokens(content)
        return Usage(prompt_tokens=prompt, completion_tokens=completion,
                     estimated_cost_usd=self.estimate_cost(prompt, completion))

    # -- structured output ---------------------------------------------------------------

    def structured(self, messages: Messages, schema: type[T]) -> tuple[T, Usage]:
        """A validated `schema` instance and the tokens it cost."""
        return self.parsed(messages, schema, self._drain(messages, schema))

    async def astructured(self, messages: Messages, schema: type[T]) -> tuple[T, Usage]:
        """`structured` for an event loop (the same code, in a worker thread)."""
        return await in_thread(self.structured, messages, schema)

    def parsed(self, messages: Messages, schema: type[T], stats: StreamStats) -> tuple[T, Usage]:
        """A drained reply to `messages` as a `schema` instance; one repair if it does not
        parse. The tokens are the reply's plus the repair's."""
        try:
            return parse_reply(stats.content, schema), stats.usage
        except InvalidReply as bad:
            instance, more = self.repair(messages, schema, stats.content, str(bad),
                                         rung=stats.rung)
            return instance, stats.usage + more

    def repair(
        self,
        messages: Messages,
        schema: type[T],
        content: str,
        error: str,
        *,
        rung: int | None = None,
    ) -> tuple[T, Usage]:
        """The one retry: show the model its reply and why it failed; raise if still bad."""
        retry_messages = _repair_messages(messages, content, error)
        use = self._rung if rung is None else rung
        stats = self._drain(retry_messages, schema, rung=use)
        return self._final_parse(stats, schema, error), stats.usage

    def _drain(
        self, messages: Messages, schema: type[BaseModel], *, rung: int | None = None
    ) -> StreamStats:
        """The whole reply of the one primitive, asked for in one piece (nobody watches it)."""
        stats = StreamStats()
        for _ in self.stream(messages, schema=schema, stats=stats, live=False, rung=rung):
            pass
        if stats.cut_off:
            log.info("%s: reply cut off at max_tokens=%s", self.model, self.max_output_tokens)
        return stats

    def _final_parse(self, stats: StreamStats, schema: type[T], first_error: str) -> T:
        try:
            return parse_reply(stats.content, schema)
        except InvalidReply as bad:
            cut = (
                f"; the reply was cut off at max_tokens={self.max_output_tokens}"
                if stats.cut_off
                else ""
            )
            raise LLMOutputError(
                f"{self.model} returned output that does not fit {schema.__name__}, even after "
                f"one repair try: {bad} (first try: {first_error}){cut}"
            ) from None

    def _note_fallback(self, rung: int, failed: _RungFailed) -> None:
        log.info("%s: %s rejected (%s); trying %s", self.model, RUNGS[rung], failed.failure.error,
                 RUNGS[rung + 1])

    def _remember(self, rung: int, last: _RungFailed | None) -> None:
        # Only an explicit refusal of a shape is a fact about the server worth keeping;
        # a rung that merely hit an outage is tried again next time.
        if last is not None and last.explicit:
            self._rung = rung

    def request(
        self, messages: Messages, schema: type[BaseModel] | None, rung: int, *, stream: bool = False
    ) -> dict[str, Any]:
        """The keyword arguments for `chat.completions.create` on one rung."""
        request: dict[str, Any] = {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_output_tokens,
            "timeout": self.timeout,
        }
        if stream:
            request["stream"] = True
            request["stream_options"] = {"include_usage": True}
        if schema is None:
            request["messages"] = list(messages)
            return request
        plain = schema.model_json_schema()
        kind = RUNGS[rung]
        if kind == "json_schema":
            strict = is_strict_compatible(plain)
            request["messages"] = list(messages)
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(schema),
                    "schema": strict_schema(plain) if strict else plain,
                    "strict": strict,
                },
            }
        else:
            request["messages"] = _with_schema_prompt(messages, plain)
            if kind == "json_object":
                request["response_format"] = {"type": "json_object", "schema": plain}
        return request

    # -- streaming -----------------------------------------------------------------------

    def stream(
        self,
        messages: Messages,
        *,
        schema: type[BaseModel] | None = None,
        stats: StreamStats | None = None,
        live: bool = True,
        rung: int | None = None,
    ) -> Iterator[str]:
        """Text deltas as the model writes them: the one request primitive.

        With `schema`, the request climbs the structured-output ladder from the rung
        this LLM remembers (the caller parses the joined text with `parse_reply`, or
        `parsed`); `rung` pins one rung with no fallback (the repair's). Retries and
        rung fallbacks happen only before the first delta: after it, a failure is
        raised as is. `live=False` asks for the reply in one piece, not as server-sent
        events, and yields it as one delta: for callers that only drain it.
        """
        stats = stats if stats is not None else StreamStats()
        text = len(RUNGS) - 1
        first = text if schema is None else (self._rung if rung is None else rung)
        last: _RungFailed | None = None
        for at in range(first, len(RUNGS)):
            request = self.request(messages, schema, at, stream=live)
            try:
                chunks = self._send(
                    partial(self._open, request),
                    may_fallback=schema is not None and rung is None and at < text,
                )
            except _RungFailed as failed:
                self._note_fallback(at, failed)
                last = failed
                continue
            self._remember(at, last)
            stats.rung = at
            yield from self._deltas(chunks, request["messages"], stats)
            return
        raise AssertionError("the text rung never falls back")  # pragma: no cover

    def astream(
        self,
        messages: Messages,
        *,
        schema: type[BaseModel] | None = None,
        stats: StreamStats | None = None,
    ) -> AsyncIterator[str]:
        """`stream` for an event loop (the same code, advanced in a worker thread)."""
        return iterate_in_thread(partial(self.stream, messages, schema=schema, stats=stats))

    def _open(self, request: dict[str, Any]) -> Any:
        """The reply's chunks: the server's event stream, or its one completion as one chunk."""
        response = self.client.chat.completions.create(**request)
        return response if request.get("stream") else (response,)

    def _deltas(self, chunks: Any, messages: Messages, stats: StreamStats) -> Iterator[str]:
        parts: list[str] = []
        reported = None
        try:
            for chunk in chunks:
                reported = getattr(chunk, "usage", None) or reported
                delta = self._absorb(chunk, stats)
                if delta:
                    parts.append(delta)
                    yield delta
        except Exception as exc:
            raise self._classify(exc).error from exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        stats.content = "".join(parts)
        stats.usage = self.usage_of(reported, messages, stats.content)

    @staticmethod
    def _absorb(chunk: Any, stats: StreamStats) -> str:
        choices = getattr(chunk, "choices", None) or []
        if not choices:
            return ""
        if choices[0].finish_reason:
            stats.finish_reason = choices[0].finish_reason
        # A streamed chunk carries a delta; a completion asked for in one piece, a message.
        delta = getattr(choices[0], "delta", None)
        if delta is None:
            delta = getattr(choices[0], "message", None)
        return (getattr(delta, "content", None) or "") if delta is not None else ""

    # -- sending with retries --------------------------------------------------------------

    def _send(self, call: Callable[[], R], *, may_fallback: bool) -> R:
        attempt = 0
        while True:
            try:
                return call()
            except LLMError:
                raise
            except Exception as exc:
                failure = self._classify(exc)
                self._give_up_or_fall_back(failure, attempt, may_fallback, exc)
                time.sleep(self.retry.delay(attempt, failure.retry_after))
                attempt += 1

    def _give_up_or_fall_back(
        self, failure: _Failure, attempt: int, may_fallback: bool, exc: Exception
    ) -> None:
        """Raise unless this failure is worth another attempt at the same request."""
        if failure.shape and may_fallback:
            raise _RungFailed(failure, explicit=True) from exc
        if failure.retryable and attempt < self.retry.max_retries:
            return
        if may_fallback and (failure.status or 0) >= 500:
            # A shape that keeps failing with an opaque 5xx may be the shape's fault.
            raise _RungFailed(failure, explicit=False) from exc
        raise failure.error from exc

    def _classify(self, exc: Exception) -> _Failure:
        import openai

        where = f"{self.model} at {self.base_url or 'api.openai.com'}"
        if isinstance(exc, openai.APITimeoutError):
            return _Failure(LLMConnectionError(f"{where}: timed out after {self.timeout:g}s"), True)
        if isinstance(exc, openai.APIConnectionError):
            return _Failure(LLMConnectionError(f"{where}: cannot connect ({exc})"), True)
        if isinstance(exc, openai.APIStatusError):
            return self._status_failure(exc, where)
        if isinstance(exc, (openai.OpenAIError, json.JSONDecodeError)):
            return _Failure(LLMServerError(f"{where}: unusable response ({exc})"), False)
        raise exc

    def _status_failure(self, exc: Any, where: str) -> _Failure:
        status = int(exc.status_code)
        detail = _error_detail(exc)
        if status == 429:
            return _Failure(LLMRateLimited(f"{where}: rate limited (HTTP 429): {detail}"), True,
                            retry_after=_retry_after(exc.response))
        error = LLMServerError(f"{where}: HTTP {status}: {detail}")
        shape = status in _SHAPE_STATUSES or bool(_SHAPE_WORDS.search(detail))
        if status in (401, 403, 404):
            return _Failure(error, False, status=status)
        retryable = (status >= 500 or status == 408) and not shape
        return _Failure(error, retryable, shape=shape, retry_after=_retry_after(exc.response),
                        status=status)


# -- backends ----------------------------------------------------------------------------

# Backends register themselves as entry points of this group (pyproject.toml), as
# simonw/llm's plugins do: a backend imports this module, never the other way round,
# and a backend in another package plugs in the same way. Each entry point is a
# callable (model name, settings) -> LLM, or None when the name is not its own.
BACKEND_GROUP = "newsqa.backends"
Backend = Callable[[str, "Settings"], "LLM | None"]


def registered_backends() -> list[Backend]:
    """The installed backends, by entry point name (loaded on first use, not at import)."""
    from importlib.metadata import entry_points

    found = sorted(entry_points(group=BACKEND_GROUP), key=lambda point: point.name)
    return [point.load() for point in found]


# -- parsing replies ---------------------------------------------------------------------


def parse_reply(content: str, schema: type[T]) -> T:
    """The first JSON object in `content`, validated; `InvalidReply` says what is wrong."""
    if not content.strip():
        raise InvalidReply("the reply was empty")
    raw = extract_json(content)
    if raw is None:
        raise InvalidReply("the reply holds no complete JSON object (cut off, or not JSON)")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidReply(f"the JSON does not parse: {exc}") from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise InvalidReply(_short_validation_error(exc)) from None


def extract_json(content: str) -> str | None:
    """The first balanced `{...}` block, code fences stripped; None if there is none."""
    fenced = _FENCE.search(content)
    for text in ([fenced.group(1)] if fenced else []) + [content]:
        found = _balanced_object(text)
        if found is not None:
            return found
    return None


def _balanced_object(text: str) -> str | None:
    """The outermost object only: when a reply is cut off, an inner object (one
    citation) is not the answer, and validating it gives a misleading error."""
    start = text.find("{")
    if start < 0:
        return None
    end = _object_end(text, start)
    return text[start:end] if end is not None else None


def _object_end(text: str, start: int) -> int | None:
    depth = 0
    in_string = escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _short_validation_error(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors()[:8]:
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)


def _repair_messages(messages: Messages, content: str, error: str) -> Messages:
    return [
        *messages,
        {"role": "assistant", "content": content[:4000]},
        {
            "role": "user",
            "content": f"Your reply could not be used: {error}. Reply again with only one "
            "JSON object that matches the schema, and nothing else.",
        },
    ]


# -- schemas -----------------------------------------------------------------------------


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI strict mode: every object closed and every property required."""
    result = copy.deepcopy(schema)
    _make_strict(result)
    return result


def _make_strict(node: Any) -> None:
    """Walk schema nodes (not property names, so a field called "default" survives)."""
    if not isinstance(node, dict):
        return
    # Strict mode rejects `default`; pydantic still fills defaults when validating.
    node.pop("default", None)
    if node.get("type") == "object" or "properties" in node:
        props = node.setdefault("properties", {})
        node["additionalProperties"] = False
        node["required"] = list(props)
        for sub in props.values():
            _make_strict(sub)
    for key in ("$defs", "definitions"):
        for sub in (node.get(key) or {}).values():
            _make_strict(sub)
    _make_strict(node.get("items"))
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        for sub in node.get(key) or []:
            _make_strict(sub)


def is_strict_compatible(schema: Any) -> bool:
    """False when strict mode would change the meaning: open maps or free-form objects."""
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            extra = schema.get("additionalProperties")
            if not schema.get("properties") or (extra not in (None, False)):
                return False
        if "patternProperties" in schema:
            return False
        return all(is_strict_compatible(v) for v in schema.values() if isinstance(v, (dict, list)))
    if isinstance(schema, list):
        return all(is_strict_compatible(v) for v in schema if isinstance(v, (dict, list)))
    return True


def _schema_name(schema: type[BaseModel]) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64] or "reply"


def _with_schema_prompt(messages: Messages, schema: dict[str, Any]) -> Messages:
    note = (
        "Reply with one JSON object that matches this JSON schema, and nothing else:\n"
        + json.dumps(schema, separators=(",", ":"))
    )
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{note}"
    else:
        out.insert(0, {"role": "system", "content": note})
    return out


# -- helpers -----------------------------------------------------------------------------


def _without_retries(client: Any) -> Any:
    """A copy of a caller's client with the openai SDK's own retries off."""
    if client is None:
        return None
    with_options = getattr(client, "with_options", None)
    return with_options(max_retries=0) if with_options is not None else client


def _lookup(table: dict[str, R], model: str) -> R | None:
    name = model.rsplit("/", 1)[-1].lower()
    best = max((key for key in table if name.startswith(key)), key=len, default=None)
    return table[best] if best is not None else None


def _error_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:500]
        if isinstance(inner, str):
            return inner[:500]
    response = getattr(exc, "response", None)
    text = getattr(response, "text", "") if response is not None else ""
    return (text or str(exc))[:500]


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


@lru_cache(maxsize=16)
def _encoding(model: str) -> Any:
    import tiktoken

    try:
        return tiktoken.encoding_for_model(model.rsplit("/", 1)[-1])
    except Exception:
        pass
    try:
        return tiktoken.get_encoding("cl100k_base")
    except Exception:  # no cached BPE file and no network: fall back to a char estimate
        return None


def _count(model: str, text: str) -> int:
    encoding = _encoding(model)
    if encoding is None:
        return max(1, len(text) // 4) if text else 0
    return len(encoding.encode(text, disallowed_special=()))
