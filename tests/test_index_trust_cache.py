"""Nothing planted in the keyword cache folder runs code or changes an answer.

Every planted file carries (or is) a pickle payload that would create a marker
file if anything unpickled it; after each, `ask` must still answer from the
store (the keyword index rebuilt) and the marker must not exist.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from newsqa import Article, NewsQA
from newsqa.store.index import Index

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
QUESTION = "How many troops were sent to Kuwait?"
ANSWER_PART = "3,000 to 3,500"


@pytest.fixture(autouse=True)
def _whole_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the saved whole-collection keyword index: the pool (the
    default since issue 16) never builds it."""
    monkeypatch.setenv("NEWSQA_RETRIEVAL_POOL", "0")


class Payload:
    """Unpickling this calls open(marker, "w"): the marker file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def cache_files(db: Path) -> list[Path]:
    return sorted((db / "newsqa-cache").glob("keyword-*"))


def ask_ids(db: Path) -> list[str]:
    """Ask the seed question in a new NewsQA; the passages' chunk ids, answer checked."""
    with NewsQA(db=db, llm="extractive") as qa:
        answer = qa.ask(QUESTION)
    assert answer.answerable and ANSWER_PART in answer.answer
    return [p.chunk_id for p in answer.passages]


@pytest.fixture
def searched(tmp_path: Path) -> tuple[Path, list[str]]:
    """The seeds indexed and asked once (so the keyword index is saved); (db, passage ids)."""
    db = tmp_path / "db"
    with NewsQA(db=db) as qa:
        qa.ingest([SEEDS])
    return db, ask_ids(db)


def forbid_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_rebuild(self: Index) -> None:
        raise AssertionError("the keyword index was rebuilt although a saved one matched")

    monkeypatch.setattr(Index, "all_chunks", no_rebuild)


def assert_rebuilt_and_saved(
    db: Path, first: list[str], marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next ask answers as before and runs nothing; the one after loads a sound file."""
    assert ask_ids(db) == first
    assert not marker.exists(), "a planted payload ran"
    with monkeypatch.context() as patch:
        forbid_rebuild(patch)
        assert ask_ids(db) == first
    assert not marker.exists()


def test_a_planted_pickle_where_the_old_cache_lived_never_runs(
    searched: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, first = searched
    marker = tmp_path / "marker"
    saved = cache_files(db)
    assert saved
    for path in saved:  # the exact name (key) a pickle cache for this store would have
        path.with_suffix(".pkl").write_bytes(pickle.dumps(Payload(marker)))
    assert_rebuilt_and_saved(db, first, marker, monkeypatch)

    with NewsQA(db=db, llm="extractive") as qa:  # a write: the next save drops every .pkl
        qa.ingest([Article(title="Barriers", source="Wire", text="Velmora ordered 417 barriers.")])
        assert ANSWER_PART in qa.ask(QUESTION).answer
    assert not list((db / "newsqa-cache").glob("*.pkl"))
    assert not marker.exists()


# -- planted files in the new format -------------------------------------------------------


def archive(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as members:
        return {name: members[name] for name in members.files}


def rewrite(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def doc_of(arrays: dict[str, np.ndarray]) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(arrays["doc"].tobytes().decode("utf-8"))
    return loaded


def with_doc(arrays: dict[str, np.ndarray], doc: object) -> dict[str, np.ndarray]:
    raw = json.dumps(doc).encode("utf-8")
    return {**arrays, "doc": np.frombuffer(raw, dtype=np.uint8)}


def an_int_member(arrays: dict[str, np.ndarray]) -> str:
    return next(n for n, a in arrays.items() if n != "doc" and a.dtype.kind == "i" and len(a))


def plant_object_array(path: Path, marker: Path) -> None:
    arrays = archive(path)
    name = an_int_member(arrays)
    objects = np.empty(len(arrays[name]), dtype=object)
    objects[:] = [Payload(marker)] * len(objects)
    with path.open("wb") as f:
        np.savez(f, **{**arrays, name: objects})  # pickles the objects inside the .npy


def plant_wrong_dtype(path: Path, marker: Path) -> None:
    arrays = archive(path)
    name = an_int_member(arrays)
    rewrite(path, {**arrays, name: arrays[name].astype(np.float64)})


def plant_wrong_shape(path: Path, marker: Path) -> None:
    arrays = archive(path)
    name = an_int_member(arrays)
    rewrite(path, {**arrays, name: arrays[name][:-1]})


def plant_two_dimensions(path: Path, marker: Path) -> None:
    arrays = archive(path)
    name = an_int_member(arrays)
    rewrite(path, {**arrays, name: np.stack([arrays[name], arrays[name]])})


def plant_out_of_range(path: Path, marker: Path) -> None:
    arrays = archive(path)
    name = next(n for n in arrays if n.endswith(".indices"))
    rewrite(path, {**arrays, name: arrays[name] + 10**6})


def plant_garbage(path: Path, marker: Path) -> None:
    path.write_bytes(b"PK\x03\x04" + pickle.dumps(Payload(marker)) * 3)


def plant_truncated(path: Path, marker: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def plant_bad_json(path: Path, marker: Path) -> None:
    arrays = archive(path)
    rewrite(path, {**arrays, "doc": np.frombuffer(b'{"format": 2, "table": [', dtype=np.uint8)})


def plant_wrong_json_types(path: Path, marker: Path) -> None:
    arrays = archive(path)
    doc = doc_of(arrays)
    table = doc["table"]
    assert isinstance(table, dict)
    table["metadatas"] = [{**m, "start": str(m["start"])} for m in table["metadatas"]]
    rewrite(path, with_doc(arrays, doc))


def plant_wrong_count(path: Path, marker: Path) -> None:
    arrays = archive(path)
    doc = doc_of(arrays)
    table = doc["table"]
    assert isinstance(table, dict)
    table["size"] += 1
    rewrite(path, with_doc(arrays, doc))


def plant_no_postings(path: Path, marker: Path) -> None:
    """A BM25 described as never indexed, although there are chunks to search."""
    arrays = archive(path)
    doc = doc_of(arrays)
    bm25 = doc["bm25"]
    assert isinstance(bm25, dict)
    bm25["bigrams"]["vocab"] = None
    kept = {n: a for n, a in arrays.items() if not n.startswith("bigrams.")}
    rewrite(path, with_doc(kept, doc))


def plant_bad_utf8(path: Path, marker: Path) -> None:
    arrays = archive(path)
    name = next(n for n in arrays if n.endswith(".utf8") and len(arrays[n]))
    broken = arrays[name].copy()
    broken[0] = 0xFF  # never valid in UTF-8
    rewrite(path, {**arrays, name: broken})


def plant_missing_member(path: Path, marker: Path) -> None:
    arrays = archive(path)
    arrays.pop(an_int_member(arrays))
    rewrite(path, arrays)


def plant_deflated(path: Path, marker: Path) -> None:
    """Members must be stored: a compressed one could inflate past any size check."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info))
    path.write_bytes(buffer.getvalue())


def plant_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Payload(marker)))


def plant_symlink(path: Path, marker: Path) -> None:
    elsewhere = path.parent.parent / "elsewhere.npz"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)


PLANTS: dict[str, Callable[[Path, Path], None]] = {
    "object-array": plant_object_array,
    "wrong-dtype": plant_wrong_dtype,
    "wrong-shape": plant_wrong_shape,
    "two-dimensions": plant_two_dimensions,
    "out-of-range": plant_out_of_range,
    "garbage": plant_garbage,
    "truncated": plant_truncated,
    "bad-json": plant_bad_json,
    "wrong-json-types": plant_wrong_json_types,
    "wrong-count": plant_wrong_count,
    "bad-utf8": plant_bad_utf8,
    "no-postings": plant_no_postings,
    "missing-member": plant_missing_member,
    "deflated": plant_deflated,
    "pickle": plant_pickle,
    "symlink": plant_symlink,
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_planted_cache_file_is_refused_with_a_warning_and_rebuilt(
    searched: tuple[Path, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    plant: str,
) -> None:
    db, first = searched
    marker = tmp_path / "marker"
    [path] = cache_files(db)
    assert path.suffix == ".npz"
    PLANTS[plant](path, marker)
    with caplog.at_level(logging.WARNING, logger="newsqa.keywordcache"):
        assert_rebuilt_and_saved(db, first, marker, monkeypatch)
    warnings = [r for r in caplog.records if r.name == "newsqa.keywordcache"]
    assert warnings and all(r.levelno == logging.WARNING and r.exc_info is None for r in warnings)
    assert str(path) in warnings[0].getMessage()
    [again] = cache_files(db)
    assert again == path and not path.is_symlink()


def test_a_symlinked_cache_folder_is_neither_read_nor_cleaned(
    searched: tuple[Path, list[str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Saving deletes other keyword-* files: never in a folder a planted symlink names."""
    db, first = searched
    marker = tmp_path / "marker"
    elsewhere = tmp_path / "elsewhere"
    (db / "newsqa-cache").rename(elsewhere)
    decoy = elsewhere / "keyword-decoy.pkl"
    decoy.write_bytes(pickle.dumps(Payload(marker)))
    (db / "newsqa-cache").symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    with caplog.at_level(logging.WARNING, logger="newsqa.keywordcache"):
        assert ask_ids(db) == first
    assert sorted(p.name for p in elsewhere.iterdir()) == before
    assert not marker.exists()
    assert any("not a plain folder" in r.getMessage() for r in caplog.records)
