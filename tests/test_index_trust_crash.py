"""A kill at any step of a write never leaves a committed article unsearchable.

Each test drives the real CLI in subprocesses and stops a write at an exact step
with the index's test hook (NEWSQA_FAULT_AT, see `newsqa.index.fault_point`), as
a SIGKILL at that moment would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from newsqa.store.articles import Loaded, read_paths

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
KILLED = 137
SEED_QUESTION = "How many troops were sent to Kuwait?"
NEW_QUESTION = "How many floating barriers did the Velmora river authority order?"
NEW_STORY = {
    "title": "Velmora river authority orders floating barriers",
    "source": "Quarn Herald",
    "published_at": "2025-02-11T08:00:00+00:00",
    "text": (
        "The Velmora river authority ordered 417 floating barriers for the Quarn estuary "
        "on Tuesday, its chair Odalys Brenn said. The barriers are meant to hold back "
        "debris after the spring floods. Delivery is expected before the end of April."
    ),
}


@pytest.fixture(autouse=True)
def _whole_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the saved whole-collection keyword index: the pool (the
    default since issue 16) never builds it."""
    monkeypatch.setenv("NEWSQA_RETRIEVAL_POOL", "0")


def newsqa(db: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """`newsqa ARGS --db DB` in a fresh process, offline, optionally killed at `fault`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NEWSQA_"))}
    env.update(PYTHONPATH=str(REPO), NEWSQA_LLM="extractive", NEWSQA_RETRIEVAL_POOL="0")
    if fault is not None:
        env["NEWSQA_FAULT_AT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "newsqa.app.cli", *args, "--db", str(db)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def ok_json(run: subprocess.CompletedProcess[str]) -> Any:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def ask(db: Path, question: str) -> dict[str, Any]:
    answer: dict[str, Any] = ok_json(newsqa(db, "ask", question, "--json"))
    return answer


def found(answer: dict[str, Any], article_id: str) -> bool:
    """The article is retrieved and cited for the answer."""
    return article_id in {p["article_id"] for p in answer["passages"]} and article_id in {
        c["article_id"] for c in answer["citations"]
    }


@pytest.fixture
def new_story(tmp_path: Path) -> tuple[Path, str]:
    """The new article as a JSON file, and its id."""
    path = tmp_path / "new" / "velmora.json"
    path.parent.mkdir()
    path.write_text(json.dumps(NEW_STORY), encoding="utf-8")
    [loaded] = list(read_paths([path]))
    assert isinstance(loaded, Loaded)
    return path, loaded.article.id


@pytest.fixture
def searched_seeds(tmp_path: Path) -> Path:
    """An index of the seeds whose keyword index has been saved by an `ask`."""
    db = tmp_path / "db"
    assert ok_json(newsqa(db, "ingest", str(SEEDS), "--json"))["added"] == 2
    assert "3,000 to 3,500" in ask(db, SEED_QUESTION)["answer"]
    assert list((db / "newsqa-cache").glob("keyword-*")), "the ask saved no keyword index"
    return db


@pytest.mark.parametrize("point", ["manifest-written", "stale-deleted"])
def test_an_article_committed_by_a_killed_ingest_is_searchable(
    searched_seeds: Path, new_story: tuple[Path, str], point: str
) -> None:
    """Killed after the manifest record (the commit) but before the revision bump."""
    db, (path, article_id) = searched_seeds, new_story
    killed = newsqa(db, "ingest", str(path), "--json", fault=point)
    assert killed.returncode == KILLED, killed.stderr
    listed = ok_json(newsqa(db, "articles", "--json"))
    assert article_id in {row["id"] for row in listed}  # committed: `articles` shows it

    answer = ask(db, NEW_QUESTION)
    assert found(answer, article_id) and "417" in answer["answer"]

    again = ok_json(newsqa(db, "ingest", str(path), "--json"))
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 0, 1)
    answer = ask(db, NEW_QUESTION)
    assert found(answer, article_id) and "417" in answer["answer"]
    assert "3,000 to 3,500" in ask(db, SEED_QUESTION)["answer"]


def test_a_kill_before_the_commit_leaves_the_article_out_until_ingested(
    searched_seeds: Path, new_story: tuple[Path, str]
) -> None:
    db, (path, article_id) = searched_seeds, new_story
    assert newsqa(db, "ingest", str(path), fault="chunks-written").returncode == KILLED
    assert article_id not in {row["id"] for row in ok_json(newsqa(db, "articles", "--json"))}
    assert not found(ask(db, NEW_QUESTION), article_id)  # its orphan chunks stay invisible
    assert ok_json(newsqa(db, "ingest", str(path), "--json"))["added"] == 1
    assert found(ask(db, NEW_QUESTION), article_id)


def test_a_removal_killed_after_the_uncommit_hides_the_article(
    searched_seeds: Path, new_story: tuple[Path, str]
) -> None:
    db, (path, article_id) = searched_seeds, new_story
    assert ok_json(newsqa(db, "ingest", str(path), "--json"))["added"] == 1
    assert found(ask(db, NEW_QUESTION), article_id)  # saves a keyword index holding it
    killed = newsqa(db, "remove", article_id, fault="manifest-removed")
    assert killed.returncode == KILLED, killed.stderr
    assert article_id not in {row["id"] for row in ok_json(newsqa(db, "articles", "--json"))}
    answer = ask(db, NEW_QUESTION)
    assert article_id not in {p["article_id"] for p in answer["passages"]}
    assert "417" not in answer["answer"]


def test_a_commit_without_any_revision_bump_still_reaches_the_saved_keyword_index(
    searched_seeds: Path, new_story: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The saved keyword index is keyed on the committed articles, not only the revision.

    Both revision bumps of the write are skipped (what a kill leaves when a reader
    saved its index between the first bump and the commit): the revision is the one
    the saved index was built at, yet the next process must find the new article.
    """
    from newsqa import NewsQA
    from newsqa.store.index import Index

    db, (path, article_id) = searched_seeds, new_story
    with NewsQA(db=db, llm="extractive") as qa:
        revision = qa.index.revision
        with monkeypatch.context() as patch:
            patch.setattr(Index, "_bump_revision", lambda self, *args, **kwargs: self._mark())
            assert qa.ingest([path]).added == 1
        assert qa.index.revision == revision
    with NewsQA(db=db, llm="extractive") as qa:
        answer = qa.ask(NEW_QUESTION)
    assert article_id in {c.article_id for c in answer.citations} and "417" in answer.answer


# -- a live reader: the writer dies in this process, the reader lives on -----------------


class Killed(BaseException):
    """A writer's death at a fault point, raised (not os._exit) so the reader outlives it."""


def retrieved(qa: Any) -> set[str]:
    return {p.article_id for p in qa.search(NEW_QUESTION)}


def stop_writer(patch: pytest.MonkeyPatch, writer: Any, reader: Any, point: str) -> None:
    """The reader searches right after the writer's first revision bump; the writer dies at
    `point`, before its last bump. What a long-running server sees of a killed ingest."""
    from newsqa.store import index as store

    bump = store.Index._bump_revision
    looked: list[Any] = []

    def bumped(self: store.Index, *args: Any, **kwargs: Any) -> Any:
        revision = bump(self, *args, **kwargs)
        if self is writer and not looked:
            looked.append(revision)
            reader.search(NEW_QUESTION)  # its keyword index is built at this revision
        return revision

    def fault(name: str) -> None:
        if name == point:
            raise Killed(name)

    patch.setattr(store.Index, "_bump_revision", bumped)
    patch.setattr(store, "fault_point", fault)


def counting_content_keys(patch: pytest.MonkeyPatch) -> list[str]:
    from newsqa.store.index import Index

    calls: list[str] = []
    key = Index.content_key

    def counted(self: Index) -> str:
        calls.append("content_key")
        return key(self)

    patch.setattr(Index, "content_key", counted)
    return calls


def test_a_live_reader_sees_a_commit_whose_writer_died_before_its_last_bump(
    tmp_path: Path, new_story: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that built its keyword index between the first bump and the commit: the
    revision never moves again, so the revision alone would keep that index for good."""
    from newsqa import NewsQA
    from newsqa.store.index import in_flight

    path, article_id = new_story
    db = tmp_path / "db"
    with NewsQA(db=db, llm="extractive") as qa:
        qa.ingest([SEEDS])
    with NewsQA(db=db, llm="extractive") as reader, NewsQA(db=db, llm="extractive") as writer:
        assert article_id not in retrieved(reader)
        with monkeypatch.context() as patch:
            stop_writer(patch, writer.index, reader, "stale-deleted")
            with pytest.raises(Killed):
                writer.ingest([path])
        assert article_id in {row.id for row in reader.articles()}  # committed
        assert in_flight(reader.index.revision)
        with monkeypatch.context() as patch:
            calls = counting_content_keys(patch)
            assert article_id in retrieved(reader) and article_id in retrieved(reader)
            assert len(calls) >= 2  # checked on every search while in flight
        with NewsQA(db=db, llm="extractive") as again:
            assert again.ingest([path]).unchanged == 1  # its sweep settles the revision
        assert not in_flight(reader.index.revision)
        assert article_id in retrieved(reader)
        with monkeypatch.context() as patch:
            calls = counting_content_keys(patch)
            assert article_id in retrieved(reader) and article_id in retrieved(reader)
            assert calls == []  # a clean revision costs a search nothing more


def test_a_live_reader_drops_an_article_whose_removal_died_after_the_uncommit(
    tmp_path: Path, new_story: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsqa import NewsQA

    path, article_id = new_story
    db = tmp_path / "db"
    with NewsQA(db=db, llm="extractive") as qa:
        qa.ingest([SEEDS, path])
    with NewsQA(db=db, llm="extractive") as reader, NewsQA(db=db, llm="extractive") as writer:
        assert article_id in retrieved(reader)
        with monkeypatch.context() as patch:
            stop_writer(patch, writer.index, reader, "manifest-removed")
            with pytest.raises(Killed):
                writer.remove(article_id)
        assert article_id not in {row.id for row in reader.articles()}  # uncommitted
        assert article_id not in retrieved(reader)
