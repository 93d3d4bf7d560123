"""`newsqa ingest/articles/show/remove`: in-process through click, and for real in a
subprocess that is SIGKILLed mid-ingest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsqa.app.cli import cli
from newsqa.config import Settings
from newsqa.store.articles import read_paths
from newsqa.store.chunking import chunk_article
from newsqa.store.embedding import Embedder

REPO = Path(__file__).resolve().parent.parent
WriteStories = Callable[..., list[Path]]
REPORT_KEYS = {"added", "updated", "unchanged", "duplicates", "failed", "chunks"}


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def loaded_articles(folder: Path) -> list:  # type: ignore[type-arg]
    return [x.article for x in read_paths([folder])]  # type: ignore[union-attr]


@pytest.fixture
def seeded(tmp_path: Path, write_stories: WriteStories, embedder: Embedder) -> tuple[Path, Path]:
    """An index holding three stories; returns (db, stories folder)."""
    folder = tmp_path / "seeds"
    write_stories(folder, [1, 2, 3], sentences=3)
    db = tmp_path / "db"
    result = run("ingest", str(folder), "--db", str(db), "--json")
    assert result.exit_code == 0, result.output
    return db, folder


def test_ingest_json_is_one_object_and_reingest_is_unchanged(seeded: tuple[Path, Path]) -> None:
    db, folder = seeded
    result = run("ingest", str(folder), "--db", str(db), "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert set(report) == REPORT_KEYS
    assert (report["added"], report["unchanged"], report["failed"]) == (0, 3, [])
    assert report["chunks"] == 3


def test_human_summary_and_failures_as_path_reason(
    seeded: tuple[Path, Path], tmp_path: Path
) -> None:
    db, folder = seeded
    missing = tmp_path / "nope.json"
    result = run("ingest", str(folder), str(missing), "--db", str(db))
    assert result.exit_code == 1
    assert "added 0, updated 0, unchanged 3" in result.stdout
    assert result.stderr.strip().splitlines() == [f"{missing}: no such file or directory"]


def test_bad_inputs_get_one_line_each_and_leave_the_store_intact(
    seeded: tuple[Path, Path], tmp_path: Path
) -> None:
    db, folder = seeded
    before = json.loads(run("articles", "--db", str(db), "--json").stdout)
    bad = tmp_path / "bad"
    bad.mkdir()
    files = {
        "empty.txt": b"",
        "binary.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01",
        "latin1.txt": "Caf\u00e9 cr\u00e8me on the boulevard.".encode("latin-1"),
        "malformed.json": b'{"title": "x", "text": "unterminated',
        "no-text.json": json.dumps({"title": "headline only"}).encode(),
        "picture.png": b"\x89PNG\r\n\x1a\n",
    }
    for name, data in files.items():
        (bad / name).write_bytes(data)
    huge = bad / "huge.txt"
    with huge.open("wb") as handle:
        handle.write(b"word " * (10 * 1024 * 1024))  # 50 MB
    paths = [str(bad / name) for name in files] + [str(huge), str(tmp_path / "missing.md")]

    result = run("ingest", *paths, "--db", str(db), "--json")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    assert sorted(f["path"] for f in report["failed"]) == sorted(paths)
    assert report["chunks"] == 3 and report["added"] == 0

    plain = run("ingest", *paths, "--db", str(db))
    lines = plain.stderr.strip().splitlines()
    assert len(lines) == len(paths)
    assert sorted(line.split(": ", 1)[0] for line in lines) == sorted(paths)

    assert json.loads(run("articles", "--db", str(db), "--json").stdout) == before
    for article in loaded_articles(folder):
        shown = json.loads(run("show", article.id, "--db", str(db), "--json").stdout)
        assert shown["text"] == article.text


def test_a_date_with_no_utc_time_fails_its_record_not_the_ingest(tmp_path: Path) -> None:
    # A new user's feed with "0001-01-01T00:00:00+01:00" aborted the whole ingest with
    # "OverflowError: date value out of range", its valid records lost.
    feed = tmp_path / "feed.jsonl"
    records = [{"title": "Harbour", "text": "The harbour reopened on Monday.", "url": "u:1"},
               {"title": "Old", "text": "A record from year one.", "url": "u:2",
                "published_at": "0001-01-01T00:00:00+01:00"},
               {"title": "Future", "text": "A record from the far future.", "url": "u:3",
                "published_at": "9999-12-31T23:59:59-12:00"},
               {"title": "Bridge", "text": "The bridge closed for repairs.", "url": "u:4"}]
    feed.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    db = tmp_path / "db"
    result = run("ingest", str(feed), "--db", str(db), "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    report = json.loads(result.stdout)
    assert report["added"] == 2
    assert sorted(f["path"] for f in report["failed"]) == [f"{feed}:2", f"{feed}:3"]
    assert all("out of range" in f["error"] for f in report["failed"])
    listed = json.loads(run("articles", "--db", str(db), "--json").stdout)
    assert sorted(a["title"] for a in listed) == ["Bridge", "Harbour"]


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # `newsqa articles | head -2` printed "articles failed: BrokenPipeError" and exit 1.
    db = str(tmp_path / "db")  # another process's: this one's index would be locked
    command = [sys.executable, "-m", "newsqa.app.cli"]
    subprocess.run([*command, "ingest", str(REPO / "seeds"), "--db", db], check=True,
                   capture_output=True, timeout=300)
    read, write = os.pipe()
    os.close(read)  # every write now fails with EPIPE, as after `head` has quit
    try:
        done = subprocess.run([*command, "articles", "--db", db], stdout=write,
                              stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 141
    assert done.stderr.decode().strip() == ""


def test_articles_show_and_remove(seeded: tuple[Path, Path]) -> None:
    db, folder = seeded
    listing = json.loads(run("articles", "--db", str(db), "--json").stdout)
    assert {row["id"] for row in listing} == {a.id for a in loaded_articles(folder)}
    assert all(row["chunks"] == 1 and row["url"].startswith("https://") for row in listing)

    plain = run("articles", "--db", str(db)).stdout.splitlines()
    assert len(plain) == 3 and all(len(line.split("\t")) == 6 for line in plain)

    target = loaded_articles(folder)[0]
    shown = run("show", target.id, "--db", str(db))
    assert shown.exit_code == 0
    assert shown.stdout.endswith(target.text + "\n")
    assert f"title: {target.title}" in shown.stdout

    assert run("remove", target.id, "--db", str(db)).exit_code == 0
    rows = json.loads(run("articles", "--db", str(db), "--json").stdout)
    assert target.id not in {row["id"] for row in rows} and len(rows) == 2

    again = run("remove", target.id, "--db", str(db))
    assert again.exit_code == 1
    assert again.stderr.strip().splitlines() == [
        f"newsqa: error: no article with id {target.id!r} in the index"
    ]
    missing = run("show", "no-such-id", "--db", str(db))
    assert missing.exit_code == 1 and len(missing.stderr.strip().splitlines()) == 1


def test_ingest_into_a_chroma_server(
    chroma_server: str, tmp_path: Path, write_stories: WriteStories, embedder: Embedder
) -> None:
    folder = tmp_path / "news"
    write_stories(folder, [60, 61], sentences=3)
    opts = ["--chroma-url", chroma_server, "--collection", f"cli{uuid.uuid4().hex[:8]}"]
    first = run("ingest", str(folder), *opts, "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["added"] == 2
    rows = json.loads(run("articles", *opts, "--json").stdout)
    assert len(rows) == 2


def test_unreachable_server_is_one_line(
    closed_port: int, tmp_path: Path, embedder: Embedder
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = run("ingest", str(tmp_path), "--chroma-url", url)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"newsqa: error: cannot reach Chroma server at {url}")


KILLABLE_INGEST = textwrap.dedent(
    """
    import os, sys
    from newsqa import NewsQA

    folder, db, progress_file = sys.argv[1:4]

    def progress(done, total):
        tmp = progress_file + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(str(done))
        os.replace(tmp, progress_file)

    NewsQA(db=db).ingest([folder], progress=progress)
    """
)


def test_sigkill_mid_ingest_then_rerun_gives_the_full_index(
    tmp_path: Path,
    write_stories: WriteStories,
    embedder: Embedder,
    wait_for: Callable[..., None],
) -> None:
    """A real crash: kill -9 after the first commit, re-run, check every record."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    folder, db, progress_file = tmp_path / "news", tmp_path / "db", tmp_path / "progress"
    write_stories(folder, range(100, 124), sentences=5)  # one chunk each
    write_stories(folder, range(124, 130), sentences=10)  # two chunks each: 36 chunks in all
    env = {**os.environ, "PYTHONPATH": str(REPO), "NEWSQA_DB": str(db)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_INGEST, str(folder), str(db), str(progress_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:

        def committed_one() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"ingest ended early: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
            return progress_file.exists() and int(progress_file.read_text() or 0) >= 1

        wait_for(committed_one, 120, "the first committed article")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    rerun = subprocess.run(
        [sys.executable, "-m", "newsqa.app.cli", "ingest", str(folder), "--db", str(db), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["added"] >= 1 and report["unchanged"] >= 1  # the kill really was mid-way
    assert report["added"] + report["unchanged"] == 30 and report["failed"] == []

    settings = Settings()
    articles = loaded_articles(folder)
    expected = {
        f"{a.id}:{a.content_hash}:{c.index}"
        for a in articles
        for c in chunk_article(a, max_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap)
    }
    assert len(expected) == 36
    client = chromadb.PersistentClient(str(db), settings=ChromaSettings(anonymized_telemetry=False))
    manifest = client.get_collection("newsqa_articles", embedding_function=None).get(include=[])
    chunks = client.get_collection("newsqa_chunks", embedding_function=None).get(include=[])
    assert sorted(manifest["ids"]) == sorted(a.id for a in articles)
    assert len(chunks["ids"]) == len(set(chunks["ids"])) == report["chunks"]
    assert set(chunks["ids"]) == expected  # nothing missing, nothing orphaned


def test_chunking_comes_from_the_environment_and_must_match_the_index(
    tmp_path: Path, write_stories: WriteStories, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "stories"
    write_stories(folder, [1, 2], sentences=40)
    db = str(tmp_path / "db")
    monkeypatch.setenv("NEWSQA_CHUNK_TOKENS", "64")
    monkeypatch.setenv("NEWSQA_CHUNK_OVERLAP", "8")
    small = json.loads(run("ingest", str(folder), "--db", db, "--json").stdout)["chunks"]
    assert run("articles", "--db", db).exit_code == 0
    monkeypatch.delenv("NEWSQA_CHUNK_TOKENS")
    refused = run("articles", "--db", db)
    assert refused.exit_code != 0 and "64 tokens" in refused.output
    default = json.loads(run("ingest", str(folder), "--db", str(tmp_path / "db2"), "--json")
                         .stdout)["chunks"]
    assert small > default
    monkeypatch.setenv("NEWSQA_CHUNK_TOKENS", "many")
    bad = run("articles", "--db", db)
    assert bad.exit_code != 0 and "NEWSQA_CHUNK_TOKENS" in bad.output
