"""The persistent keyword index (tantivy in the index folder) agrees with the committed store.

Real Chroma and real tantivy; vectors are random (the keyword side does not read them).
The crash tests drive the real CLI in subprocesses and stop a write at an exact step
with NEWSQA_FAULT_AT, as tests/test_index_trust_crash.py does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from newsqa.config import Settings
from newsqa.store.index import Index
from newsqa.store.keywordstore import LAYOUT, MARKER, KeywordStore, folder_for
from newsqa.text.lexical import terms
from tests.test_index import Space, make_article, write

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
KILLED = 137
NEW_STORY = {
    "title": "Velmora river authority orders floating barriers",
    "source": "Quarn Herald",
    "published_at": "2025-02-11T08:00:00+00:00",
    "text": "The Velmora river authority ordered 417 floating barriers for the Quarn estuary. "
            "The barriers hold back debris after the spring floods.",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(db=tmp_path / "db")


def keyword_folder(settings: Settings) -> Path:
    return folder_for(Path(settings.db), settings.collection)


def committed_chunk_ids(index: Index) -> set[str]:
    return set(index.all_chunks().ids)


def assert_agrees(index: Index) -> None:
    """The keyword side holds each committed chunk once, and nothing else."""
    assert index._keywords is not None
    held = index._keywords.chunk_ids()
    assert not [cid for cid, n in Counter(held).items() if n > 1], "duplicates"
    assert set(held) == committed_chunk_ids(index)
    assert index.stored_chunk_count() == len(held)  # no Chroma orphans either


def test_writes_replaces_and_removals_reach_the_keyword_index(settings: Settings) -> None:
    index = Index(settings, Space())
    first, second = make_article(1), make_article(2, text="Barriers on the Quarn estuary. " * 4)
    write(index, first)
    write(index, second)
    assert_agrees(index)
    store = index._keywords
    assert store is not None
    hits = [cid for cid, _ in store.search(terms("Quarn estuary barriers"), 10)]
    assert hits and all(cid.startswith(second.id) for cid in hits)

    changed = make_article(2, text="A corrected story about the Velmora flood gates. " * 3)
    write(index, changed)
    assert_agrees(index)
    assert not store.search(terms("Quarn estuary"), 10)
    assert store.search(terms("Velmora flood gates"), 10)

    index.remove(first.id)
    assert_agrees(index)


def test_filters_run_inside_the_engine(settings: Settings) -> None:
    import datetime as dt

    index = Index(settings, Space())
    text = "Floods closed the harbour road again this week. " * 3
    wire = make_article(3, text=text, published_at=dt.date(2024, 5, 1))
    herald = make_article(4, text=text, source="Herald", published_at=dt.date(2024, 6, 1))
    undated = make_article(5, text=text, source="Herald")
    for article in (wire, herald, undated):
        write(index, article)
    store = index._keywords
    assert store is not None

    def articles(**filters: Any) -> set[str]:
        return {cid.split(":")[0] for cid, _ in store.search(terms("harbour floods"), 50,
                                                                 **filters)}

    assert articles() == {wire.id, herald.id, undated.id}
    assert articles(sources=["Herald"]) == {herald.id, undated.id}
    assert articles(since=20240515) == {herald.id}
    assert articles(until=20240515) == {wire.id}  # undated chunks never pass a date bound


def test_an_index_without_a_keyword_folder_is_filled_once_with_a_message(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """What an index built before the keyword folder existed gets on its first open."""
    import shutil

    index = Index(settings, Space())
    for n in range(3):
        write(index, make_article(10 + n))
    index.close()
    del index
    shutil.rmtree(keyword_folder(settings))
    with caplog.at_level(logging.WARNING, logger="newsqa.index"):
        index = Index(settings, Space())
    assert any("building the keyword index" in r.getMessage() for r in caplog.records)
    assert_agrees(index)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="newsqa.index"):
        again = Index(settings, Space())
    assert not caplog.records  # once only
    assert_agrees(again)


def test_a_keyword_folder_of_another_layout_is_rebuilt(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    index = Index(settings, Space())
    write(index, make_article(20))
    marker = keyword_folder(settings) / MARKER
    assert json.loads(marker.read_text())["layout"] == LAYOUT
    marker.write_text(json.dumps({"layout": LAYOUT + 1}))
    index.close()
    del index
    with caplog.at_level(logging.WARNING):
        index = Index(settings, Space())
    assert any("layout" in r.getMessage() for r in caplog.records)
    assert json.loads(marker.read_text())["layout"] == LAYOUT
    assert_agrees(index)


@pytest.mark.parametrize("marker", ["not json", "[1]", '{"layout": "1"}'])
def test_a_keyword_folder_with_a_bad_marker_is_rebuilt_not_trusted(
    settings: Settings, marker: str
) -> None:
    index = Index(settings, Space())
    write(index, make_article(21))
    (keyword_folder(settings) / MARKER).write_text(marker)
    index.close()
    del index
    assert_agrees(Index(settings, Space()))
    assert json.loads((keyword_folder(settings) / MARKER).read_text())["layout"] == LAYOUT


def test_a_reader_in_another_process_sees_a_new_article_without_a_rebuild(
    tmp_path: Path,
) -> None:
    """A long-lived reader of the folder's keyword index, an ingest in another process."""
    db = tmp_path / "db"
    assert newsqa(db, "ingest", str(SEEDS)).returncode == 0
    reader = KeywordStore.open(folder_for(db, Settings().collection))
    assert not reader.fresh
    assert not reader.search(terms("Velmora floating barriers"), 5)
    path = story_file(tmp_path)
    assert newsqa(db, "ingest", str(path)).returncode == 0
    hits = reader.search(terms("Velmora floating barriers"), 5)
    assert hits and hits[0][0].startswith(article_id(path))


# -- crashes: the real CLI, killed at each step, then run again ----------------------------


def newsqa(db: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NEWSQA_"))}
    env.update(PYTHONPATH=str(REPO), NEWSQA_LLM="extractive")
    if fault is not None:
        env["NEWSQA_FAULT_AT"] = fault
    return subprocess.run([sys.executable, "-m", "newsqa.app.cli", *args, "--db", str(db)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def story_file(tmp_path: Path, **changes: str) -> Path:
    path = tmp_path / "new" / "velmora.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({**NEW_STORY, **changes}), encoding="utf-8")
    return path


def article_id(path: Path) -> str:
    from newsqa.store.articles import Loaded, read_paths

    [loaded] = list(read_paths([path]))
    assert isinstance(loaded, Loaded)
    return loaded.article.id


def check_exact(db: Path) -> None:
    from newsqa import NewsQA

    with NewsQA(db=db, llm="extractive") as qa:
        assert_agrees(qa.index)


@pytest.mark.parametrize(
    "point", ["chunks-written", "keywords-written", "manifest-written", "stale-deleted"]
)
def test_an_update_killed_at_any_step_then_run_again_gives_the_exact_index(
    tmp_path: Path, point: str
) -> None:
    db = tmp_path / "db"
    first = story_file(tmp_path)
    assert newsqa(db, "ingest", str(SEEDS), str(first)).returncode == 0
    updated = story_file(tmp_path, text=NEW_STORY["text"] + " Delivery is due in April.")
    killed = newsqa(db, "ingest", str(updated), fault=point)
    assert killed.returncode == KILLED, killed.stderr
    again = newsqa(db, "ingest", str(updated), "--json")
    assert again.returncode == 0, again.stderr
    check_exact(db)
    with_text = newsqa(db, "show", article_id(updated), "--json")
    assert "due in April" in json.loads(with_text.stdout)["text"]


def test_a_removal_killed_after_the_uncommit_is_finished_by_the_next_ingest(
    tmp_path: Path,
) -> None:
    db = tmp_path / "db"
    path = story_file(tmp_path)
    assert newsqa(db, "ingest", str(SEEDS), str(path)).returncode == 0
    killed = newsqa(db, "remove", article_id(path), fault="manifest-removed")
    assert killed.returncode == KILLED, killed.stderr
    assert newsqa(db, "ingest", str(SEEDS)).returncode == 0  # unchanged: only settles
    check_exact(db)



# -- beside a Chroma server: one keyword folder shared by every process ---------------------


def test_processes_beside_a_chroma_server_share_one_keyword_folder(
    chroma_server: str, tmp_path: Path
) -> None:
    """Issue 16: an ingest worker writes the keyword index in a shared folder
    (NEWSQA_KEYWORD_DIR) while a query process keeps it open; the query process finds the
    new article at its next search through the pool, with nothing rebuilt, and both sides
    of the index agree."""
    import dataclasses
    import uuid

    from newsqa import NewsQA

    shared, collection = tmp_path / "shared-keywords", f"kw{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NEWSQA_"))}
    env.update(PYTHONPATH=str(REPO), NEWSQA_LLM="extractive", NEWSQA_KEYWORD_DIR=str(shared))

    def worker(*paths: Path) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "newsqa.app.cli", "ingest", *map(str, paths),
             "--chroma-url", chroma_server, "--collection", collection],
            env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr

    worker(SEEDS)
    base = Settings.from_env(chroma_url=chroma_server, collection=collection, llm="extractive",
                             keyword_dir=shared)
    settings = dataclasses.replace(base, retrieval=dataclasses.replace(base.retrieval, pool=True))
    with NewsQA(settings=settings, create=False) as qa:
        assert qa.index.keywords is not None and not qa.index.keywords.fresh
        assert_agrees(qa.index)
        before = qa.search("Velmora river authority floating barriers", top_k=3)
        path = story_file(tmp_path)
        worker(path)
        after = qa.search("Velmora river authority floating barriers", top_k=3)
        assert article_id(path) not in {p.article_id for p in before}
        assert after[0].article_id == article_id(path)
        hits = qa.index.keywords.search(terms("Velmora floating barriers"), 5)
        assert hits and hits[0][0].startswith(article_id(path))  # the keyword side saw it
        assert_agrees(qa.index)


def test_a_writer_without_the_shared_keyword_folder_is_refused(
    chroma_server: str, tmp_path: Path
) -> None:
    """A new user's ingest without NEWSQA_KEYWORD_DIR reached Chroma only: processes
    reading the shared folder never found the article, and the next ingest with the folder
    said "unchanged". Once a process has used a shared folder with a collection, a writer
    without one is refused, and nothing is written."""
    import uuid

    shared, collection = tmp_path / "shared-keywords", f"kw{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NEWSQA_"))}
    env.update(PYTHONPATH=str(REPO), NEWSQA_LLM="extractive")

    def ingest(*paths: Path, folder: Path | None) -> subprocess.CompletedProcess[str]:
        extra = {"NEWSQA_KEYWORD_DIR": str(folder)} if folder else {}
        return subprocess.run(
            [sys.executable, "-m", "newsqa.app.cli", "ingest", *map(str, paths),
             "--chroma-url", chroma_server, "--collection", collection],
            env={**env, **extra}, capture_output=True, text=True, timeout=300, check=False)

    assert ingest(SEEDS, folder=None).returncode == 0  # no shared folder in use yet: allowed
    assert ingest(SEEDS, folder=shared).returncode == 0  # fills the folder once
    path = story_file(tmp_path)
    refused = ingest(path, folder=None)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"newsqa: error: the collection {collection!r} at {chroma_server} keeps its keyword "
        "index in a shared folder: set NEWSQA_KEYWORD_DIR")
    done = ingest(path, folder=shared)
    assert done.returncode == 0 and "added 1" in done.stdout


def test_a_process_with_another_keyword_folder_than_the_collections_is_refused(
    chroma_server: str, tmp_path: Path
) -> None:
    """A new user's ingest with another NEWSQA_KEYWORD_DIR was accepted: the article reached
    that folder and Chroma, and the processes reading the first folder never found it. The
    first folder used with a collection is recorded by its id; any other is refused, for
    reading too (it would be filled once, then miss every later write)."""
    import uuid

    first, other = tmp_path / "kw-first", tmp_path / "kw-other"
    collection = f"kw{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NEWSQA_"))}
    env.update(PYTHONPATH=str(REPO), NEWSQA_LLM="extractive")

    def newsqa(*args: str, folder: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "newsqa.app.cli", *args, "--chroma-url", chroma_server,
             "--collection", collection],
            env={**env, "NEWSQA_KEYWORD_DIR": str(folder)}, capture_output=True, text=True,
            timeout=300, check=False)

    assert newsqa("ingest", str(SEEDS), folder=first).returncode == 0
    for args in (("ingest", str(story_file(tmp_path))), ("articles",)):
        refused = newsqa(*args, folder=other)
        assert refused.returncode == 1, refused.stdout
        assert "keeps its keyword index in another folder (first used at " in refused.stderr
        assert str(folder_for(first, collection)) in refused.stderr
    # The same folder rebuilt (another layout) is still the same folder.
    (folder_for(first, collection) / MARKER).write_text(json.dumps({"layout": LAYOUT - 1}))
    rebuilt = newsqa("articles", folder=first)
    assert rebuilt.returncode == 0 and "rebuilding it" in rebuilt.stderr, rebuilt.stderr
    moved = tmp_path / "kw-moved"  # the same folder mounted elsewhere is the same folder
    shutil.copytree(first, moved)
    done = newsqa("ingest", str(story_file(tmp_path)), folder=moved)
    assert done.returncode == 0 and "added 1" in done.stdout, done.stderr


def test_a_second_writer_of_a_shared_keyword_folder_waits_then_says_who_holds_it(
    chroma_server: str, tmp_path: Path
) -> None:
    """tantivy admits one writer and fails a second at once; an ingest worker meeting
    another's write waits for it (NEWSQA_LOCK_TIMEOUT), and past that says why."""
    import uuid

    from newsqa.store.keywordstore import write_lock

    shared, collection = tmp_path / "shared-keywords", f"kw{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NEWSQA_"))}
    env.update(PYTHONPATH=str(REPO), NEWSQA_LLM="extractive", NEWSQA_KEYWORD_DIR=str(shared),
               NEWSQA_LOCK_TIMEOUT="1")
    command = [sys.executable, "-m", "newsqa.app.cli", "ingest", str(SEEDS),
               "--chroma-url", chroma_server, "--collection", collection]
    with write_lock(folder_for(shared, collection)):  # another writer, mid-write
        held = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
    assert held.returncode != 0
    assert "one process writes a keyword index at a time" in held.stderr
    assert f"pid {os.getpid()}" in held.stderr or str(os.getpid()) in held.stderr
    assert "Traceback" not in held.stderr
    free = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert free.returncode == 0, free.stderr
