"""An embedded index serves one process at a time; a second gets a clear error, not corruption."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsqa import NewsQA
from newsqa.errors import StoreError
from newsqa.store.folderlock import LOCK_NAME

HOLD = """
import sys
from newsqa import NewsQA
qa = NewsQA(db=sys.argv[1])
qa.articles()
print("holding", flush=True)
sys.stdin.readline()
"""


@contextlib.contextmanager
def _held(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the folder until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        yield holder
    finally:
        holder.communicate("\n", timeout=60)


def test_a_second_process_is_refused_while_the_first_holds_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db"
    with _held(db) as holder:
        monkeypatch.setenv("NEWSQA_LOCK_TIMEOUT", "0.2")
        with pytest.raises(StoreError, match=rf"in use by another process \(pid {holder.pid}\)"):
            NewsQA(db=db).articles()
    assert NewsQA(db=db).articles() == []  # released when the holder exits


def test_serve_on_a_folder_another_process_holds_refuses_to_start(tmp_path: Path) -> None:
    # A new user's second `newsqa serve` said "serving on ..." and /health answered 200,
    # then every request waited for the lock and failed with 503.
    db = tmp_path / "db"
    with _held(db) as holder:
        env = {**os.environ, "NEWSQA_LOCK_TIMEOUT": "0.2"}
        server = subprocess.Popen(
            [sys.executable, "-m", "newsqa.app.cli", "serve", "--db", str(db), "--port", "0"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        try:
            assert server.stderr is not None
            said = []
            for line in server.stderr:  # until it exits, or says it serves
                said.append(line)
                if "serving on" in line:
                    break
        finally:
            server.kill()
            server.wait(timeout=60)
        assert not any("serving on" in line for line in said), said
        assert server.returncode == 1
        assert f"in use by another process (pid {holder.pid})" in said[-1]


def test_a_process_waiting_for_the_folder_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A new user's command sat silent for the whole NEWSQA_LOCK_TIMEOUT.
    db = tmp_path / "db"
    with _held(db) as holder:
        monkeypatch.setenv("NEWSQA_LOCK_TIMEOUT", "1.5")
        with caplog.at_level("WARNING", logger="newsqa.lock"), pytest.raises(StoreError):
            NewsQA(db=db).articles()
    said = [r.getMessage() for r in caplog.records if r.name == "newsqa.lock"]
    assert len(said) == 1 and f"(pid {holder.pid}); waiting up to 2 s" in said[0]


def test_one_process_may_open_a_folder_many_times_and_close_it(tmp_path: Path) -> None:
    db = tmp_path / "db"
    first, second = NewsQA(db=db), NewsQA(db=db)
    assert first.articles() == second.articles() == []
    first.close()
    second.close()
    run = subprocess.run([sys.executable, "-c", HOLD, str(db)], input="\n", text=True,
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_a_file_where_the_folder_should_be_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "db").write_text("not a folder")
    with pytest.raises(StoreError, match="not a folder"):
        NewsQA(db=tmp_path / "db").articles()


def _made_without_lock(db: Path) -> Path:
    """An existing (empty) index folder whose lock file is gone, for a test to plant one."""
    qa = NewsQA(db=db)
    assert qa.articles() == []
    qa.close()
    (db / LOCK_NAME).unlink()
    return db


def _refused_one_line(db: Path) -> str:
    """`newsqa articles` on the folder: exit 1 with one line on stderr, which is returned."""
    from click.testing import CliRunner

    from newsqa.app.cli import cli

    result = CliRunner().invoke(cli, ["articles", "--db", str(db)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    return line


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    db = _made_without_lock(tmp_path / "db")
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (db / LOCK_NAME).symlink_to(target)
    line = _refused_one_line(db)
    assert str(db / LOCK_NAME) in line and "symbolic link" in line
    assert target.read_text() == "keep me\n"
    with pytest.raises(StoreError, match="symbolic link"):
        NewsQA(db=db).articles()
    assert target.read_text() == "keep me\n"


def test_a_dangling_lock_symlink_creates_nothing(tmp_path: Path) -> None:
    db = _made_without_lock(tmp_path / "db")
    target = tmp_path / "elsewhere" / "made-by-newsqa"
    target.parent.mkdir()
    (db / LOCK_NAME).symlink_to(target)
    assert "symbolic link" in _refused_one_line(db)
    assert not target.exists()


def test_a_lock_path_that_is_not_a_lone_regular_file_is_refused(tmp_path: Path) -> None:
    db = _made_without_lock(tmp_path / "db")
    os.mkfifo(db / LOCK_NAME)
    assert "not a regular file" in _refused_one_line(db)
    (db / LOCK_NAME).unlink()
    (db / LOCK_NAME).mkdir()
    assert "not a regular file" in _refused_one_line(db)
    (db / LOCK_NAME).rmdir()
    other = tmp_path / "other.txt"
    other.write_text("another file\n")
    os.link(other, db / LOCK_NAME)  # a hard link: writing the PID would rewrite other.txt
    assert "other links" in _refused_one_line(db)
    assert other.read_text() == "another file\n"
    (db / LOCK_NAME).unlink()
    assert NewsQA(db=db).articles() == []  # a plain lock file again: works
