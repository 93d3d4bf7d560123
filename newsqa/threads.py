"""CPU threads for the work newsqa owns, set where it runs, never in the environment.

numpy's BLAS pool and onnxruntime's own pool fight over 2 cores: a dense query
measured 41 ms with BLAS at two threads against 18 ms at one. Setting
OPENBLAS_NUM_THREADS in `os.environ` on import would fix that for newsqa and
silently slow down every other numpy user in a host process (a notebook, a
chatbot). So BLAS is held at one thread only while newsqa's own search and
ingest run (threadpoolctl, ~15 µs a call with one controller), and onnxruntime
sizes its pool in its SessionOptions (embedding.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController


@lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    # First built on first use, after numpy has loaded its BLAS: that is the pool we limit.
    import numpy  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_guard = threading.Lock()
_inside = 0  # blocks running now, in any thread: the limit is process-wide
_restore: Callable[[], None] | None = None  # puts back the setting found on entry


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS at one thread inside the block, the host's setting restored after it.

    Counted, because BLAS settings are process-wide: with overlapping blocks in
    several threads (a server), the first entry limits and the last exit restores,
    so no block runs unlimited and the host never keeps newsqa's setting.
    """
    global _inside, _restore
    with _guard:
        if _inside == 0:
            _restore = _controller().limit(limits=1, user_api="blas").restore_original_limits
        _inside += 1
    try:
        yield
    finally:
        with _guard:
            _inside -= 1
            if _inside == 0 and _restore is not None:
                _restore()
                _restore = None
