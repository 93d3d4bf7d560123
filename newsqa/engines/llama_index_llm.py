"""Any LlamaIndex `LLM` as newsqa's model: a backend, beside `newsqa.engines.local`.

Kept apart from `newsqa.app.llama_index` (the retriever, engines and reader that sit on top
of `NewsQA`): `NewsQA(llm=...)` wraps a LlamaIndex LLM with this module, and if it lived
with the adapters, the API and the adapters would import each other (issue 17).
Imported only when such an object is given: `import newsqa` never imports llama_index.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.llms import LLM as LlamaIndexBaseLLM

from ..errors import LLMConnectionError, LLMError, LLMServerError
from .llm import LLM, RUNGS, Messages, RetryPolicy

_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
# -- any LlamaIndex LLM as newsqa's model -------------------------------------------------


def as_newsqa_llm(llm: Any) -> Any:
    """`llm` wrapped in `LlamaIndexLLM` when it is a LlamaIndex LLM, else unchanged."""
    return LlamaIndexLLM(llm) if isinstance(llm, LlamaIndexBaseLLM) else llm


class LlamaIndexLLM(LLM):
    """newsqa's `LLM` speaking through a LlamaIndex `LLM`.

    Why a subclass with a transport and not a second client: the structured-output
    ladder, pydantic validation, the one repair, usage accounting and typed errors all
    live in `newsqa.engines.llm.LLM` and stay in force unchanged. Only the raw call goes to
    `llm.chat` / `stream_chat`, through an object shaped like the openai client (the
    seam `newsqa.engines.local` uses for llama.cpp); newsqa's async calls run these in a worker
    thread, as they do every model's (`newsqa.aio`).

    The ladder starts on its plain-text rung: LlamaIndex's chat API has no portable
    `response_format`, so the schema goes into the prompt and the reply is extracted and
    validated, as for a server that refuses structured output. Sampling (max tokens,
    temperature, timeouts, retries) is the LlamaIndex LLM's own; newsqa adds no retries,
    and whatever the LlamaIndex LLM raises leaves as an `LLMError`. Tokens are counted
    with newsqa's tiktoken count unless the LlamaIndex LLM reports them; the context
    window and reply budget come from its `metadata`.
    """

    def __init__(
        self,
        llm: LlamaIndexBaseLLM,
        *,
        context_window: int | None = None,
        max_output_tokens: int | None = None,
    ) -> None:
        self.llama_llm = llm
        facts = llm.metadata
        client = SimpleNamespace(chat=SimpleNamespace(completions=_Completions(self)))
        super().__init__(facts.model_name or type(llm).__name__, base_url=_where(llm),
                         client=client,
                         retry=RetryPolicy(max_retries=0),
                         context_window=context_window or facts.context_window)
        reply = max_output_tokens or facts.num_output
        if reply > 0:  # LlamaIndex says -1 when it does not know: newsqa's default stays
            self.max_output_tokens = reply
        self._rung = RUNGS.index("text")

    def chat_messages(self, messages: Messages) -> list[ChatMessage]:
        """newsqa's messages for the LlamaIndex LLM; "system" as the role it expects."""
        system = self.llama_llm.metadata.system_role
        return [
            ChatMessage(role=system if m["role"] == "system" else MessageRole(m["role"]),
                        content=m.get("content") or "")
            for m in messages
        ]

    @contextlib.contextmanager
    def typed_errors(self) -> Iterator[None]:
        """Whatever the LlamaIndex LLM raises leaves as an `LLMError`, never as text."""
        try:
            yield
        except LLMError:
            raise
        except Exception as exc:
            raise self._llm_error(exc) from exc

    def _llm_error(self, exc: Exception) -> LLMError:
        import openai

        if isinstance(exc, openai.OpenAIError):  # OpenAI-backed LlamaIndex LLMs
            return self._classify(exc).error
        where = f"{self.model} via LlamaIndex {type(self.llama_llm).__name__}"
        unreachable = isinstance(exc, (TimeoutError, ConnectionError, httpx.TransportError))
        kind = LLMConnectionError if unreachable else LLMServerError
        return kind(f"{where}: {type(exc).__name__}: {exc}")


def _where(llm: LlamaIndexBaseLLM) -> str:
    """What error messages name: the LLM's API base when it has one."""
    api_base = getattr(llm, "api_base", None)
    if isinstance(api_base, str) and api_base:
        return api_base
    return f"LlamaIndex {type(llm).__name__}"


class _Completions:
    """`client.chat.completions.create(**request)` answered by `llm.chat`/`stream_chat`.

    Only the messages are read from the request: model, max_tokens and temperature
    are the LlamaIndex LLM's own settings.
    """

    def __init__(self, owner: LlamaIndexLLM) -> None:
        self.owner = owner

    def create(self, *, messages: Messages, stream: bool = False, **_: Any) -> Any:
        chat = self.owner.chat_messages(messages)
        if stream:
            return self._chunks(chat)
        with self.owner.typed_errors():
            reply = self.owner.llama_llm.chat(chat)
        return _completion(self.owner.model, reply)

    def _chunks(self, chat: list[ChatMessage]) -> Iterator[Any]:
        last: ChatResponse | None = None
        with self.owner.typed_errors():
            for last in self.owner.llama_llm.stream_chat(chat):
                if last.delta:
                    yield _chunk(self.owner.model, {"content": last.delta})
        yield _last_chunk(self.owner.model, last)


def _completion(model: str, reply: ChatResponse) -> Any:
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate({
        "id": "llama-index", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": _finish_reason(reply),
                     "message": {"role": "assistant", "content": reply.message.content or ""}}],
        "usage": _reported_usage(reply),
    })


def _chunk(
    model: str, delta: dict[str, Any], finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
) -> Any:
    from openai.types.chat import ChatCompletionChunk

    return ChatCompletionChunk.model_validate({
        "id": "llama-index", "object": "chat.completion.chunk", "created": 0, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        "usage": usage,
    })


def _last_chunk(model: str, last: ChatResponse | None) -> Any:
    """How the stream ended and, when the LlamaIndex LLM said, what it cost."""
    return _chunk(model, {}, _finish_reason(last), _reported_usage(last))


def _field(holder: Any, name: str) -> Any:
    return holder.get(name) if isinstance(holder, dict) else getattr(holder, name, None)


def _reported_usage(reply: ChatResponse | None) -> dict[str, int] | None:
    """Tokens the LlamaIndex LLM reported (llama-index-llms-openai puts them in
    `additional_kwargs`, others leave the provider's reply in `raw`); None: count them."""
    if reply is None:
        return None
    for holder in (reply.additional_kwargs, _field(reply.raw, "usage")):
        prompt, completion = _field(holder, "prompt_tokens"), _field(holder, "completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            return {"prompt_tokens": prompt, "completion_tokens": completion,
                    "total_tokens": prompt + completion}
    return None


def _finish_reason(reply: ChatResponse | None) -> str:
    """The provider's finish reason when `raw` has one: "length" is how newsqa tells a
    reply cut off at max_tokens from a malformed one."""
    choices = _field(reply.raw, "choices") if reply is not None else None
    first = choices[0] if isinstance(choices, (list, tuple)) and choices else None
    reason = _field(first, "finish_reason")
    return reason if reason in _FINISH_REASONS else "stop"
