"""The keyword indexes on disk, so a new process does not rebuild them.

Building BM25 over chunks, sentences and word pairs for the 609-article
MultiHop-RAG corpus takes seconds to tens of seconds on 2 cores; every
`newsqa ask` would pay that before its first answer. The built index is saved
beside the store, keyed by the store's revision (which changes on every write)
and by everything that shapes the build, and loaded when the key matches.

The file is a pickle written by newsqa into the index's own folder (Chroma
keeps pickles there too): trusted as the index itself is. A file that fails to
load is ignored and rebuilt, never trusted half-read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from .config import Settings

T = TypeVar("T")
CACHE_VERSION = 1  # with the source hash below, any change to how it is built
log = logging.getLogger(__name__)


def cache_folder(settings: Settings) -> Path:
    """Beside an embedded index; per server URL and collection in the user cache otherwise."""
    if not settings.chroma_url:
        return Path(settings.db) / "newsqa-cache"
    from .embedding import cache_dir

    where = f"{settings.chroma_url}|{settings.collection}".encode()
    return cache_dir() / "keyword" / hashlib.sha256(where).hexdigest()[:16]


def cache_key(revision: str, shape: str) -> str:
    """Changes with the store's revision, the build settings, and the code that builds."""
    raw = f"{CACHE_VERSION}|{_code_hash()}|{revision}|{shape}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


@lru_cache(maxsize=1)
def _code_hash() -> str:
    # A changed tokenizer or index layout must never meet an old file: hash the source.
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in ("lexical.py", "query.py", "retrieval.py", "keywordcache.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def load_or_build(folder: Path, key: str, build: Callable[[], T]) -> T:
    """The cached object for `key`, else `build()` saved for next time (best effort)."""
    path = folder / f"keyword-{key}.pkl"
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        pass
    except Exception as exc:  # a damaged or foreign file: rebuild, say so in the log
        log.warning("ignoring unreadable keyword cache %s: %s", path, exc)
    built = build()
    try:
        _save(folder, path, built)
    except OSError as exc:  # a read-only folder still answers, just slower next time
        log.warning("cannot write keyword cache %s: %s", path, exc)
    return built


def _save(folder: Path, path: Path, obj: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".keyword-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for old in folder.glob("keyword-*.pkl"):  # earlier revisions are dead weight
        if old != path:
            old.unlink(missing_ok=True)
