"""newsqa.aio: the async API is the sync core run in a worker thread (issue 17)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from newsqa.aio import in_thread, iterate_in_thread


def test_items_arrive_in_order_and_the_iterator_runs_in_one_other_thread() -> None:
    threads: set[int] = set()

    def numbers() -> Iterator[int]:
        for i in range(5):
            threads.add(threading.get_ident())
            yield i

    async def run() -> list[int]:
        return [n async for n in iterate_in_thread(numbers)]

    assert asyncio.run(run()) == [0, 1, 2, 3, 4]
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_stopping_early_closes_the_iterator_in_its_own_thread() -> None:
    closed_in: list[int] = []
    ran_in: list[int] = []

    def endless() -> Iterator[int]:
        ran_in.append(threading.get_ident())
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed_in.append(threading.get_ident())

    async def run() -> list[int]:
        seen = []
        stream = iterate_in_thread(endless)
        async for n in stream:
            seen.append(n)
            if n == 2:
                break
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator
        return seen

    assert asyncio.run(run()) == [0, 1, 2]
    assert closed_in == ran_in  # closed, and where it ran (a lock taken there is let go there)


def test_an_error_is_raised_at_its_place_in_the_stream() -> None:
    def failing() -> Iterator[str]:
        yield "first"
        raise ValueError("broken model")

    async def run() -> list[str]:
        seen = []
        with pytest.raises(ValueError, match="broken model"):
            async for item in iterate_in_thread(failing):
                seen.append(item)
        return seen

    assert asyncio.run(run()) == ["first"]


def test_in_thread_returns_the_value_and_leaves_the_loop_free() -> None:
    started = threading.Event()
    release = threading.Event()

    def blocking() -> str:
        started.set()
        release.wait(timeout=30)
        return "done"

    async def run() -> str:
        task = asyncio.create_task(in_thread(blocking))
        await asyncio.to_thread(started.wait, 30)
        assert not task.done()  # the loop runs this line while `blocking` waits
        release.set()
        return await task

    assert asyncio.run(run()) == "done"
