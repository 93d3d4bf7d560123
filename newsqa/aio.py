"""Async at the edges: one synchronous core, run in worker threads for event loops.

Why: newsqa's engines, grounding and model client are written once, synchronously.
An async caller (LlamaIndex's async API, an asyncio chatbot) gets that same code run
in a thread, so a sync path and an async path can never drift apart: issue 17 found
~275 lines of hand-written async twins, and they already had.

A model call blocks on network or on llama.cpp either way, so a thread costs an
event loop nothing it would otherwise have had.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


async def in_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)` in a worker thread, awaited."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """The items of `make()`, made and advanced in one worker thread, as they come.

    The iterator lives in a single thread from start to end, so a generator holding a
    lock or an open HTTP stream is closed where it ran: when the consumer stops early
    (break, cancellation), the worker closes it after the item it is producing. An
    exception raised by the iterator is raised here, at the same place in the stream.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    stop = threading.Event()

    def put(kind: str, value: object) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def produce() -> None:
        try:
            iterator = make()
            try:
                for item in iterator:
                    if stop.is_set():
                        break
                    put("item", item)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # handed to the consumer, raised there
            put("error", exc)
        else:
            put("end", None)

    worker = loop.run_in_executor(None, produce)
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]  # an item of `make()`, a T
    finally:
        stop.set()
        await asyncio.shield(worker)
