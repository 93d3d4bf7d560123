"""`newsqa serve`: the archive behind an OpenAI-compatible chat endpoint.

Any chatbot that speaks the OpenAI API (the official clients, most chat UIs) can
then ask the archive questions. The last user message is the question; earlier
messages are the conversation, used only to rewrite a follow-up into a
standalone question. The reply text carries numbered citation markers and a
"Sources:" list a person can read; the same citations, structured, ride along in
an extra top-level `newsqa` field (on the final chunk when streaming).

Every request is bounded before any work: body size, number of messages and
sources, the question's length (the API's limit), and how much of the earlier
conversation is read. Server-side failures (5xx) tell the client their kind only;
the detail, which can name local paths, goes to the log.

This module imports FastAPI at the top: only `newsqa serve` and embedders import it.
One `NewsQA` serves every request. Answering is synchronous, CPU-bound work
(ONNX, BM25, Chroma), so it runs in the threadpool; its lazy parts are built once
at startup, before the first request can race to build them.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ..errors import (
    ConfigError,
    InputError,
    LLMConnectionError,
    LLMError,
    LLMOutputError,
    LLMRateLimited,
    NewsQAError,
    StoreError,
)
from ..models import Answer, check_question
from .chat import ChatSession, exchanges, format_reply, replay_history, reply_remainder

if TYPE_CHECKING:
    from .api import NewsQA

log = logging.getLogger("newsqa.server")

DEFAULT_MODEL_ID = "newsqa"
DEFAULT_MAX_BODY = 1_000_000
MAX_MESSAGES = 200
MAX_SOURCES = 100
# Past this many bytes we stop draining an oversized body and just answer 413.
_DRAIN_LIMIT_FACTOR = 8


# -- request shapes --------------------------------------------------------------------------


class _TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(p.text for p in self.content if p.type == "text" and p.text)


class _StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat request newsqa uses; the rest (temperature...) are ignored.

    `sources`, `since`, `until` and `top_k` are newsqa extensions (the openai client
    sends them with `extra_body=`).
    """

    model_config = ConfigDict(strict=True, extra="allow")
    model: str = DEFAULT_MODEL_ID
    messages: list[_Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    sources: list[str] | None = Field(default=None, max_length=MAX_SOURCES)
    since: str | None = None
    until: str | None = None
    top_k: int | None = Field(default=None, ge=1, le=100)
    # Asked for, these would change what comes back; ignoring them gave a client asking for
    # JSON or two choices one prose reply, as if it were what it asked for.
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError("newsqa returns one choice (n=1)")
        return n

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, tools: list[Any] | None) -> list[Any] | None:
        if tools:
            raise ValueError("tools are not supported: newsqa answers from its archive")
        return tools

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, fmt: dict[str, Any] | None) -> dict[str, Any] | None:
        if fmt is not None and fmt.get("type") != "text":
            raise ValueError("only {'type': 'text'}: the reply is the cited answer as text "
                             "(the API and `newsqa ask --json` give it as JSON)")
        return fmt


# -- errors in the OpenAI shape ----------------------------------------------------------------


class APIError(Exception):
    """An error reply: the OpenAI body shape, so clients raise their usual exceptions."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return f"request body is not valid JSON: {first['msg']}", None
    # Union members show up in `loc` as their type ("str", "list[_TextPart]"): not a field.
    loc = [str(p) for p in first["loc"] if str(p) not in ("str", "int") and "[" not in str(p)]
    param = ".".join(loc) or None
    where = f"'{param}'" if param else "request body"
    return f"{where}: {first['msg']}", param


def _request_field(exc: InputError) -> str | None:
    """The request field an option's InputError is about ("--since" -> "since")."""
    name = exc.where.split("/")[0].removeprefix("--")
    return name if exc.where.startswith("--") and name in ChatRequest.model_fields else None


def _status_for(exc: NewsQAError) -> tuple[int, str]:
    if isinstance(exc, (InputError, ValueError)):
        return 400, "invalid_request_error"
    if isinstance(exc, LLMError):
        return 502, "api_error"
    if isinstance(exc, StoreError):
        return 503, "api_error"
    return 500, "api_error"


def _public_message(exc: NewsQAError) -> str:
    """What a client may read of a server-side failure: the kind, never the detail, which
    can hold local paths (the index folder, a model file) and goes to the log instead."""
    if isinstance(exc, StoreError):
        return "the archive's index is unavailable right now; the server log says why"
    if isinstance(exc, LLMRateLimited):
        return "the language model is rate-limiting this server; try again later"
    if isinstance(exc, LLMConnectionError):
        return "the language model did not answer; the server log says why"
    if isinstance(exc, LLMOutputError):
        return "the language model's reply could not be used; the server log says why"
    if isinstance(exc, LLMError):
        return "the language model failed; the server log says why"
    return "the server could not answer; the server log says why"


def _api_error(exc: Exception) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, NewsQAError):
        status, kind = _status_for(exc)
        if status < 500:  # about the request itself: the client should read it
            if isinstance(exc, InputError) and (option := _request_field(exc)):  # not "--since"
                return APIError(status, f"'{option}': {exc.reason}", type=kind, param=option)
            return APIError(status, str(exc), type=kind)
        log.error("%s while answering: %s", type(exc).__name__, exc)
        return APIError(status, _public_message(exc), type=kind)
    if isinstance(exc, ValueError):
        return APIError(400, str(exc))
    log.exception("unexpected error while answering", exc_info=exc)
    return APIError(500, "internal error while answering", type="api_error")


# -- reply extras ---------------------------------------------------------------------------


def reply_extra(answer: Answer) -> dict[str, Any]:
    """The structured side of a reply, for clients that want more than text."""
    return {
        "question": answer.question,
        "rewritten_question": answer.rewritten_question,
        "answerable": answer.answerable,
        "direct_answer": answer.direct_answer,  # the short answer `ask --json` gives
        "reason": answer.reason,
        "mode": answer.mode,
        "model": answer.model,
        "citations": [c.model_dump(mode="json") for c in answer.citations],
        "rejected_citations": [r.model_dump(mode="json") for r in answer.rejected_citations],
    }


# -- conversation ----------------------------------------------------------------------------


def _conversation(request: ChatRequest) -> tuple[str, list[tuple[str, str]]]:
    """The question (last user message) and the earlier (user, assistant) exchanges.

    The question is checked against the API's limit here, before any work; earlier
    messages become (question, answer) pairs, clipped when replayed (see
    newsqa.app.chat.MAX_HISTORY_CHARS).
    """
    messages = request.messages
    last = messages[-1]
    where = f"messages.{len(messages) - 1}"
    if last.role != "user":
        raise APIError(
            400, f"the last message must come from the user, got role {last.role!r}",
            param=f"{where}.role",
        )
    question = last.text().strip()
    if not question:
        raise APIError(400, "the last user message is empty", param=where)
    try:
        check_question(question)
    except InputError as exc:
        raise APIError(400, str(exc), param=f"{where}.content", code="question_too_long") from None
    return question, exchanges((m.role, m.text()) for m in messages[:-1])


def _session(qa: NewsQA, request: ChatRequest, pairs: list[tuple[str, str]]) -> ChatSession:
    return qa.chat(
        history=replay_history(pairs),
        sources=request.sources,
        since=request.since,
        until=request.until,
        top_k=request.top_k,
    )


# -- OpenAI response objects -----------------------------------------------------------------


def _usage(answer: Answer) -> dict[str, int]:
    prompt, completion = answer.usage.prompt_tokens, answer.usage.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_object(answer: Answer, model_id: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": format_reply(answer)},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(answer),
        "newsqa": reply_extra(answer),
    }


class _Chunks:
    """Builds the chunk objects of one streamed completion (same id and time throughout)."""

    def __init__(self, model_id: str, include_usage: bool = False) -> None:
        self.base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model_id,
        }
        # With include_usage, OpenAI's chunks all carry "usage": null but the last.
        self.before_usage = {"usage": None} if include_usage else {}

    def delta(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _sse({**self.base, "choices": [choice], **self.before_usage, **extra})

    def usage(self, answer: Answer) -> str:
        return _sse({**self.base, "choices": [], "usage": _usage(answer)})


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def stream_events(
    items: Iterator[str | Answer], model_id: str, include_usage: bool
) -> Iterator[str]:
    """OpenAI chunks from a session's stream: deltas, then the sources, then [DONE].

    The sources can only be written once the final `Answer` has verified them, so
    they arrive as the last content delta; if the engine's streamed text differs
    from its final answer, only the sources are appended (text already sent
    cannot be taken back).
    """
    chunks = _Chunks(model_id, include_usage)
    yield chunks.delta({"role": "assistant", "content": ""})
    sent = ""
    try:
        for item in items:
            if isinstance(item, Answer):
                yield from _final_events(chunks, item, sent, include_usage)
                break
            if item:
                sent += item
                yield chunks.delta({"content": item})
    except Exception as exc:  # the status line is gone: report in-band, as OpenAI does
        yield _sse(_api_error(exc).body)
    yield "data: [DONE]\n\n"


def _final_events(chunks: _Chunks, answer: Answer, sent: str, include_usage: bool) -> Iterator[str]:
    rest = reply_remainder(answer, sent)
    if rest:
        yield chunks.delta({"content": rest})
    yield chunks.delta({}, "stop", newsqa=reply_extra(answer))
    if include_usage:
        yield chunks.usage(answer)


# -- the app ---------------------------------------------------------------------------------


class Warmup:
    """Builds the shared parts of a `NewsQA` exactly once, whichever request comes first.

    `NewsQA`'s parts are lazy (Chroma client, ONNX session, BM25 table, OpenAI
    clients); two threads building them at once would open two Chroma clients
    or load the model twice. Startup warms them; if that failed (store not yet
    reachable), the next request retries under the same lock.
    """

    def __init__(self, qa: NewsQA) -> None:
        self.qa = qa
        self.done = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        if self.done:
            return
        with self._lock:
            if not self.done:
                self.done = self._build()

    def _build(self) -> bool:
        try:
            self.qa.engine.warm()
            self.qa.search("warm up", top_k=1)
        except NewsQAError as exc:  # the request that follows will report it
            log.warning("warm-up did not complete: %s", exc)
            return False
        return True


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_big = APIError(413, f"request body is larger than {limit} bytes", code="body_too_large")
    if declared.isdigit() and int(declared) > limit * _DRAIN_LIMIT_FACTOR:
        raise too_big
    body = bytearray()
    size = 0
    async for part in request.stream():
        size += len(part)
        if size <= limit:
            body += part
        elif size > limit * _DRAIN_LIMIT_FACTOR:
            break
    if size > limit:
        raise too_big
    return bytes(body)


def _check_auth(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            code="invalid_api_key",
        )
    if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise APIError(401, "incorrect API key provided", code="invalid_api_key")


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure as an OpenAI-style error body with its status, never a traceback."""

    @app.exception_handler(APIError)
    async def _on_api_error(request: Request, exc: APIError) -> Response:
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _on_http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse(APIError(exc.status_code, str(exc.detail)).body, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse(APIError(400, str(exc.errors()[:1])).body, status_code=400)

    @app.exception_handler(Exception)
    async def _on_unexpected(request: Request, exc: Exception) -> Response:
        error = _api_error(exc)
        return JSONResponse(error.body, status_code=error.status)


def _event_stream(
    parsed: ChatRequest, items: Iterator[str | Answer], model_id: str
) -> StreamingResponse:
    """Server-sent events of a streamed completion, a usage chunk last if the client asked."""
    include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
    events = stream_events(items, model_id, include_usage)
    return StreamingResponse(
        iterate_in_threadpool(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def create_app(
    qa: NewsQA,
    api_key: str | None = None,
    *,
    model_id: str = DEFAULT_MODEL_ID,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    warm: bool = True,
) -> FastAPI:
    """The ASGI app for `qa`; `api_key` turns on bearer-token auth for /v1/*.

    `warm=False` defers building the shared parts to the first request (which
    still builds them once, under a lock).
    """

    warmup = Warmup(qa)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm:
            await run_in_threadpool(warmup.ensure)
        yield

    app = FastAPI(title="newsqa", docs_url=None, redoc_url=None, lifespan=lifespan)

    _add_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        _check_auth(request, api_key)
        return {"object": "list", "data": [_model_card(model_id)]}

    @app.get("/v1/models/{name}")
    async def model(name: str, request: Request) -> dict[str, Any]:
        _check_auth(request, api_key)
        if name != model_id:
            raise APIError(404, f"no model {name!r}; this server has {model_id!r}",
                           param="model", code="model_not_found")
        return _model_card(model_id)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        _check_auth(request, api_key)
        parsed = await _chat_request(request, max_body_bytes)
        question, pairs = _conversation(parsed)
        await run_in_threadpool(warmup.ensure)
        session = _session(qa, parsed, pairs)
        if not parsed.stream:
            answer = await run_in_threadpool(_ask, session, question)
            return JSONResponse(completion_object(answer, model_id))
        items = session.stream(question)
        first = await run_in_threadpool(_first, items)  # failures before any output: a status
        return _event_stream(parsed, _chain(first, items), model_id)

    return app


async def _chat_request(request: Request, max_body_bytes: int) -> ChatRequest:
    """The request body as a `ChatRequest`, or a 400 naming the field at fault."""
    body = await _read_body(request, max_body_bytes)
    try:
        return ChatRequest.model_validate_json(body)
    except ValidationError as exc:
        message, param = _validation_message(exc)
        raise APIError(400, message, param=param) from None


def _ask(session: ChatSession, question: str) -> Answer:
    try:
        return session.ask(question)
    except (NewsQAError, ValueError) as exc:
        raise _api_error(exc) from exc


def _first(items: Iterator[str | Answer]) -> list[str | Answer]:
    try:
        return [next(items)]
    except StopIteration:
        return []
    except (NewsQAError, ValueError) as exc:
        raise _api_error(exc) from exc


def _chain(first: list[str | Answer], rest: Iterator[str | Answer]) -> Iterator[str | Answer]:
    yield from first
    yield from rest


def _model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "newsqa"}


def serve(
    qa: NewsQA,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    log_level: str = "info",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the server until interrupted; `on_ready` gets its URL once the port is bound.

    The socket is bound here, before uvicorn starts: a port in use or a host that does
    not resolve is then one ConfigError, instead of uvicorn's log lines after the CLI
    had already said it was serving (and port 0 gets a free port, said in the URL).
    """
    import socket

    import uvicorn

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc
    bound = sock.getsockname()[1]
    if on_ready is not None:
        on_ready(f"http://{host}:{bound}/v1")
    config = uvicorn.Config(create_app(qa, api_key=api_key), log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])
