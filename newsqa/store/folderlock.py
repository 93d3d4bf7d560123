"""One process at a time per embedded Chroma folder.

Embedded Chroma is not safe across processes: each process keeps its own
in-memory index and compaction state, and even a *reader* can trigger a
compaction. Measured here: a second process querying a folder while
`newsqa ingest` wrote to it left the folder failing with "Error in compaction:
Failed to apply logs to the metadata segment" and later segfaulting on open.
So an embedded index is held by one process; several processes (a server and
an ingest job, a cluster of workers) share a Chroma server instead
(`--chroma-url`), which is what it is for.

Within a process any number of `Index` objects may share a folder: the lock is
counted per folder.

The lock file is opened without following a symlink and must be a regular file
with no other hard links: the PID is written into it, so a planted
`.newsqa.lock -> ~/.bashrc` (or a hard link to it) would otherwise get that file
truncated and overwritten.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import threading
import time
from pathlib import Path

from ..errors import IndexInUse, StoreError

log = logging.getLogger("newsqa.lock")

LOCK_NAME = ".newsqa.lock"
_held: dict[str, tuple[int, int]] = {}  # folder -> (fd, users in this process)
_guard = threading.Lock()


def default_timeout() -> float:
    """Seconds to wait for another process to let go (NEWSQA_LOCK_TIMEOUT, default 10)."""
    raw = os.environ.get("NEWSQA_LOCK_TIMEOUT", "10")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise StoreError(f"NEWSQA_LOCK_TIMEOUT must be a number of seconds, got {raw!r}") from None


_EMBEDDED = ("an embedded index serves one process at a time: wait for it, stop it, or share "
             "the index through a Chroma server (`chroma run`, then --chroma-url)")


def acquire(folder: Path, timeout: float | None = None, advice: str = _EMBEDDED) -> str:
    """Hold `folder` for this process; returns the key to `release` it with.

    `advice` ends the error when another process holds it past the timeout."""
    key = str(folder.resolve())
    with _guard:
        if key in _held:
            fd, users = _held[key]
            _held[key] = (fd, users + 1)
            return key
        folder.mkdir(parents=True, exist_ok=True)
        fd = _open_lock(folder / LOCK_NAME)
        try:
            _wait_for(fd, folder, default_timeout() if timeout is None else timeout, advice)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _held[key] = (fd, 1)
        return key


def release(key: str) -> None:
    with _guard:
        if key not in _held:
            return
        fd, users = _held[key]
        if users > 1:
            _held[key] = (fd, users - 1)
            return
        del _held[key]
        os.close(fd)  # closing the descriptor drops the flock


def _open_lock(path: Path) -> int:
    """A descriptor on the lock file itself, never on whatever a planted name points at.

    O_CREAT without O_EXCL because the file legitimately stays between runs;
    O_NOFOLLOW makes open fail on a symlink (dangling or not, so nothing is
    created at its target either); O_NONBLOCK keeps a planted FIFO from hanging
    the open. What opened is then checked to be a regular file with one link.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise StoreError(_refusal(path, exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{path}: the index lock is not a regular file; remove it")
        if info.st_nlink != 1:
            raise StoreError(
                f"{path}: the index lock has other links (a hard link to another file?); "
                "remove it"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refusal(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return (f"{path}: the index lock is a symbolic link; newsqa does not follow it "
                "(remove it if you did not make it)")
    if exc.errno == errno.EISDIR:
        return f"{path}: the index lock is not a regular file; remove it"
    return f"{path}: cannot open the index lock: {exc.strerror or exc}"


def _wait_for(fd: int, folder: Path, timeout: float, advice: str) -> None:
    """Poll until the lock is free or `timeout` passes; said once on the log (the CLI's
    stderr) when the wait is more than a moment: a new user's command sat silent for
    the whole NEWSQA_LOCK_TIMEOUT."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise StoreError(f"{folder}: cannot lock the index: {exc}") from exc
        if time.monotonic() >= deadline:
            raise IndexInUse(
                f"{folder} is in use by another process ({_holder(fd)}); {advice}")
        if not said and delay >= 0.4:
            log.warning("newsqa: %s is in use by another process (%s); waiting up to %.0f s "
                        "(NEWSQA_LOCK_TIMEOUT)", folder, _holder(fd), timeout)
            said = True
        time.sleep(delay)  # polling a lock another process holds; nothing to wait on
        delay = min(delay * 2, 0.5)


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"
