"""An embedded index serves one process at a time; a second gets a clear error, not corruption."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from newsqa import NewsQA
from newsqa.errors import StoreError

HOLD = """
import sys
from newsqa import NewsQA
qa = NewsQA(db=sys.argv[1])
qa.articles()
print("holding", flush=True)
sys.stdin.readline()
"""


def test_a_second_process_is_refused_while_the_first_holds_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("NEWSQA_LOCK_TIMEOUT", "0.2")
        with pytest.raises(StoreError, match=rf"in use by another process \(pid {holder.pid}\)"):
            NewsQA(db=db).articles()
    finally:
        holder.communicate("\n", timeout=60)
    assert NewsQA(db=db).articles() == []  # released when the holder exits


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
