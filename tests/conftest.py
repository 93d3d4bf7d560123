"""Shared fixtures: real parts only (a `chroma run` server, the real embedding model).

Keep this file to fixtures several test modules need; a module's own helpers
stay in that module.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from newsqa.config import Settings

if TYPE_CHECKING:
    from newsqa.store.embedding import Embedder

REPO = Path(__file__).resolve().parent.parent
SERVER_START_DEADLINE = 60.0


@pytest.fixture(autouse=True)
def _isolated_store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may read or write ./.newsqa or a server named by the developer's shell."""
    monkeypatch.setenv("NEWSQA_DB", str(tmp_path / "default-db"))
    monkeypatch.delenv("NEWSQA_CHROMA_URL", raising=False)
    monkeypatch.delenv("NEWSQA_COLLECTION", raising=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh folder for an embedded Chroma index."""
    return tmp_path / "db"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (for "server unreachable" tests)."""
    return free_port()


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Ask a server subprocess to stop; kill it if it will not."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(
    condition: Callable[[], bool], deadline: float, what: str, interval: float = 0.05
) -> None:
    """Poll `condition()` until true; fail naming `what` when the deadline passes."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {deadline:.0f}s waiting for {what}")


@pytest.fixture
def wait_for() -> Callable[..., None]:
    """`wait_for(condition, deadline_s, what)`: poll a condition, never sleep-as-sync."""
    return wait_until


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server on 127.0.0.1 for the whole session; yields its URL."""
    import httpx

    exe = shutil.which("chroma")
    if exe is None:
        pytest.skip("the `chroma` CLI (installed with chromadb) is not on PATH")
    path = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (path / "server.log").open("wb")
    proc = subprocess.Popen(
        [exe, "run", "--path", str(path / "data"), "--port", str(port), "--host", "127.0.0.1"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(
                f"chroma run exited with {proc.returncode}: {(path / 'server.log').read_text()}"
            )
        try:
            return httpx.get(f"{url}/api/v2/heartbeat", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, SERVER_START_DEADLINE, f"the Chroma server at {url}")
        yield url
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(params=["embedded", "server"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for a fresh, empty index: an embedded folder, or a new collection on the server."""
    if request.param == "embedded":
        return Settings(db=tmp_path / "db")
    url = request.getfixturevalue("chroma_server")
    return Settings(chroma_url=url, collection=f"t{uuid.uuid4().hex[:12]}")


_NAMES = ("Amara Osei", "Lena Fischer", "Rui Tanaka", "Omar Haddad", "Mia Kowalski", "Ivan Petrov")
_CITIES = ("Accra", "Leipzig", "Osaka", "Amman", "Gdansk", "Tbilisi", "Quito", "Perth")
_NOUNS = (
    "port authority",
    "water board",
    "rail union",
    "city council",
    "grain market",
    "wind farm",
    "central bank",
    "teachers' guild",
    "hospital trust",
    "film festival",
)
_VERBS = (
    "cut its budget",
    "expand operations",
    "delay the vote",
    "raise wages",
    "open an inquiry",
    "sign the accord",
    "hire new staff",
    "close two sites",
)


def synthetic_story(n: int, sentences: int) -> dict[str, str]:
    """A made-up news record (JSON loader fields); deterministic, distinct per n."""
    import random

    rng = random.Random(n)
    lines = [
        f"{rng.choice(_NAMES)} said in {rng.choice(_CITIES)} on day {n} that the "
        f"{rng.choice(_NOUNS)} would {rng.choice(_VERBS)} by {rng.randint(2, 97)} percent "
        f"before report {n}-{i} was filed."
        for i in range(sentences)
    ]
    return {
        "title": f"Report {n}: the {rng.choice(_NOUNS)} in {rng.choice(_CITIES)}",
        "source": ("Daily Wire", "Harbour Post", "Evening Ledger")[n % 3],
        "published_at": f"2024-{1 + n % 12:02d}-{1 + n % 27:02d}T09:30:00+00:00",
        "url": f"https://news.example/{n}",
        "text": " ".join(lines),
    }


@pytest.fixture
def write_stories() -> Callable[..., list[Path]]:
    """Write made-up stories as JSON files: write(folder, numbers, sentences=8) -> paths."""

    def write(folder: Path, numbers: Iterable[int], sentences: int = 8) -> list[Path]:
        import json

        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for n in numbers:
            path = folder / f"story-{n:03d}.json"
            path.write_text(json.dumps(synthetic_story(n, sentences)), encoding="utf-8")
            paths.append(path)
        return paths

    return write


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real offline MiniLM model, loaded once per session."""
    from newsqa.store.embedding import get_embedder

    return get_embedder("minilm")
