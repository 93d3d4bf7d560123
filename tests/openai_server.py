"""An OpenAI-compatible HTTP server for tests, scripted per test.

Real sockets on 127.0.0.1, so the real openai client, httpx and our retry policy run
exactly as against a remote server. Each test queues the replies it wants (status
codes, delays that outlast a client timeout, valid/malformed/truncated bodies, SSE
streams) and then inspects `server.requests` to see what the client actually sent.

    from tests.openai_server import FakeOpenAIServer, Reply, serve

    @pytest.fixture
    def openai_server() -> Iterator[FakeOpenAIServer]:
        with serve() as server:
            yield server

    def test_x(openai_server: FakeOpenAIServer) -> None:
        openai_server.queue(Reply.error(429, "slow down"), Reply.chat('{"a": 1}'))
        llm = LLM("test-model", base_url=openai_server.url)

When the queue is empty the server answers with `default` (a `Reply`, or a function
of the request), else HTTP 500 "no scripted reply" so a missing script is loud.
`reject_json_schema=True` makes it behave like llama.cpp's server: any request with
`response_format.type == "json_schema"` gets HTTP 500, without using the queue.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

LLAMACPP_JSON_SCHEMA_ERROR = (
    'response_format type must be one of "text" or "json_object", but got: json_schema'
)


@dataclass
class Reply:
    """One scripted response. Build with the class methods."""

    status: int = 200
    body: Any = None  # dict/list -> JSON; str -> sent as-is (malformed bodies)
    content: str | None = None  # a chat completion with this message content
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (to outlast client timeouts)
    usage: tuple[int, int] | bool | None = None  # (prompt, completion); None: estimate; False: omit
    finish_reason: str = "stop"
    chunk_size: int = 7  # characters per SSE delta when streamed

    @classmethod
    def chat(
        cls,
        content: str,
        *,
        usage: tuple[int, int] | bool | None = None,
        finish_reason: str = "stop",
        delay: float = 0.0,
        chunk_size: int = 7,
    ) -> Reply:
        return cls(content=content, usage=usage, finish_reason=finish_reason, delay=delay,
                   chunk_size=chunk_size)

    @classmethod
    def json(cls, data: Any, **options: Any) -> Reply:
        """A chat completion whose content is `data` serialised as JSON."""
        return cls.chat(json.dumps(data), **options)

    @classmethod
    def error(
        cls, status: int, message: str, *, headers: dict[str, str] | None = None,
        kind: str = "server_error",
    ) -> Reply:
        body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
        return cls(status=status, body=body, headers=dict(headers or {}))

    @classmethod
    def raw(cls, text: str, *, status: int = 200) -> Reply:
        """Exactly these bytes as the HTTP body (e.g. a body that is not JSON at all)."""
        return cls(status=status, body=text)

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        """Answer only after `seconds` (longer than the client timeout: a timeout)."""
        return cls.chat("{}", delay=seconds)


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def response_format(self) -> str:
        """"json_schema", "json_object" or "text" (no response_format at all)."""
        fmt = self.body.get("response_format") if isinstance(self.body, dict) else None
        return str(fmt.get("type", "text")) if isinstance(fmt, dict) else "text"

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []


Responder = Callable[[Recorded], Reply]


class FakeOpenAIServer:
    """Serves /v1/chat/completions, /v1/models and /v1/embeddings on 127.0.0.1:<free port>."""

    def __init__(self, *, models: tuple[str, ...] = ("test-model",), dimension: int = 16) -> None:
        self.models = models
        self.dimension = dimension
        self.default: Reply | Responder | None = None
        self.reject_json_schema = False
        self.requests: list[Recorded] = []
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL to give the openai client (ends in /v1)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()  # wakes any reply still waiting out its delay
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Queued replies not yet used (0 when the test consumed its whole script)."""
        with self._lock:
            return len(self._queue)

    @property
    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # -- called from handler threads --------------------------------------------------------

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_reply(self, request: Recorded) -> Reply:
        if self.reject_json_schema and request.response_format == "json_schema":
            return Reply.error(500, LLAMACPP_JSON_SCHEMA_ERROR)
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
        if callable(self.default):
            return self.default(request)
        if self.default is not None:
            return self.default
        return Reply.error(500, "no scripted reply for this request")

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def _embedding(self, text: str) -> list[float]:
        """Deterministic per text, L2-normalised; equal texts get equal vectors."""
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
        rng = random.Random(seed)
        vector = [rng.gauss(0.0, 1.0) for _ in range(self.dimension)]
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            server._record(Recorded("GET", self.path, dict(self.headers), None))
            if self.path.rstrip("/").endswith("/models"):
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"}
                        for m in server.models]
                self._send_json(200, {"object": "list", "data": data})
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = raw.decode("utf-8", "replace")
            request = Recorded("POST", self.path, dict(self.headers), body)
            server._record(request)
            try:
                if self.path.endswith("/chat/completions"):
                    self._chat(request)
                elif self.path.endswith("/embeddings"):
                    self._embeddings(request)
                else:
                    self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout) before we answered

        def _chat(self, request: Recorded) -> None:
            reply = server._next_reply(request)
            server._wait(reply.delay)
            if reply.content is None:
                self._send_body(reply.status, reply.body, reply.headers)
            elif isinstance(request.body, dict) and request.body.get("stream"):
                self._stream(request, reply)
            else:
                self._send_json(reply.status, _completion(request, reply), reply.headers)

        def _stream(self, request: Recorded, reply: Reply) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            for chunk in _stream_chunks(request, reply):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _embeddings(self, request: Recorded) -> None:
            body = request.body if isinstance(request.body, dict) else {}
            inputs = body.get("input", [])
            texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
            as_base64 = body.get("encoding_format") == "base64"
            data = []
            for i, text in enumerate(texts):
                vector = server._embedding(text)
                value: Any = (base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                              if as_base64 else vector)
                data.append({"object": "embedding", "index": i, "embedding": value})
            tokens = sum(max(1, len(t) // 4) for t in texts)
            self._send_json(200, {"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

        def _send_json(
            self, status: int, payload: Any, headers: dict[str, str] | None = None
        ) -> None:
            self._send_body(status, payload, headers or {})

        def _send_body(self, status: int, body: Any, headers: dict[str, str]) -> None:
            data = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

    return Handler


def _usage(request: Recorded, reply: Reply) -> dict[str, int] | None:
    if reply.usage is False:
        return None
    if isinstance(reply.usage, tuple):
        prompt, completion = reply.usage
    else:
        prompt = max(1, len(json.dumps(request.messages)) // 4)
        completion = max(1, len(reply.content or "") // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _model(request: Recorded) -> str:
    return str(request.body.get("model", "test-model")) if isinstance(request.body, dict) else ""


def _completion(request: Recorded, reply: Reply) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": _model(request),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply.content},
            "finish_reason": reply.finish_reason,
        }],
    }
    usage = _usage(request, reply)
    if usage is not None:
        payload["usage"] = usage
    return payload


def _stream_chunks(request: Recorded, reply: Reply) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0,
                "model": _model(request),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    content = reply.content or ""
    yield chunk({"role": "assistant", "content": ""})
    for at in range(0, len(content), max(1, reply.chunk_size)):
        yield chunk({"content": content[at:at + reply.chunk_size]})
    yield chunk({}, reply.finish_reason)
    options = request.body.get("stream_options") if isinstance(request.body, dict) else None
    usage = _usage(request, reply)
    if isinstance(options, dict) and options.get("include_usage") and usage is not None:
        yield {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0,
               "model": _model(request), "choices": [], "usage": usage}


@contextmanager
def serve(**options: Any) -> Iterator[FakeOpenAIServer]:
    """A running server for the duration of the block (wrap it in a fixture)."""
    server = FakeOpenAIServer(**options).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """The same as a fixture, for a conftest that lists this module in `pytest_plugins`."""
    with serve() as server:
        yield server
