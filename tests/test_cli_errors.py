"""No traceback reaches a CLI user: every failure is one line on stderr and a non-zero exit.

Run through the real `newsqa` command in a subprocess, because what a user sees is
the process's stderr: model load, store open and settings failures, each once plain
(one line, no traceback) and once with --debug or NEWSQA_DEBUG=1 (the traceback).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsqa.app.cli import cli
from tests.conftest import REPO, free_port

SEEDS = REPO / "seeds"
RUN_DEADLINE = 180
HINT = " (run with --debug for the traceback)"


def newsqa(cwd: Path, *args: str, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    """`newsqa ARGS...` as a user runs it, in a clean environment (no developer settings)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSQA_", "OPENAI_"))}
    clean["NEWSQA_DB"] = str(cwd / "default-db")
    return subprocess.run(
        [sys.executable, "-m", "newsqa.app.cli", *args],
        cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True,
        timeout=RUN_DEADLINE,
    )


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed run (asserting that it is one, and no traceback)."""
    assert run.returncode not in (0, None), run
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("newsqa: error: "), lines[0]
    return lines[0]


def broken_onnxruntime(folder: Path) -> Path:
    """An `onnxruntime` whose import fails as a broken install's does (missing .so)."""
    package = folder / "onnxruntime"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        'raise ImportError("libonnxruntime.so.1: cannot open shared object file")\n'
    )
    return folder


def garbage_store(folder: Path) -> Path:
    folder.mkdir()
    (folder / "chroma.sqlite3").write_bytes(os.urandom(4096))
    return folder


# (name, arguments, environment, what the line says, how to ask for the traceback);
# {tmp} is the test's folder.
FAILURES: list[tuple[str, list[str], dict[str, str], str, str]] = [
    ("onnxruntime does not import", ["ingest", str(SEEDS), "--db", "{tmp}/db"],
     {"PYTHONPATH": "{tmp}/broken"}, "loading the embedding model failed: ImportError",
     "--debug"),
    ("offline model missing", ["ingest", str(SEEDS), "--db", "{tmp}/db"],
     {"NEWSQA_MINILM_DIR": "{tmp}/empty-model"}, "NEWSQA_MINILM_DIR", "NEWSQA_DEBUG=1"),
    ("--db is a regular file", ["ingest", str(SEEDS), "--db", "{tmp}/a-file"], {}, "a-file",
     "--debug"),
    ("store is garbage bytes", ["articles", "--db", "{tmp}/garbage"], {}, "garbage",
     "NEWSQA_DEBUG=1"),
    ("NEWSQA_CHUNK_TOKENS=abc", ["articles", "--db", "{tmp}/db"],
     {"NEWSQA_CHUNK_TOKENS": "abc"}, "NEWSQA_CHUNK_TOKENS", "--debug"),
    ("NEWSQA_LOCK_TIMEOUT=x", ["ingest", str(SEEDS), "--db", "{tmp}/db"],
     {"NEWSQA_LOCK_TIMEOUT": "x"}, "NEWSQA_LOCK_TIMEOUT", "NEWSQA_DEBUG=1"),
]


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    """The broken things the failures point at."""
    broken_onnxruntime(tmp_path / "broken")
    (tmp_path / "empty-model").mkdir()
    (tmp_path / "a-file").write_text("not an index\n")
    garbage_store(tmp_path / "garbage")
    return tmp_path


@pytest.mark.parametrize(("name", "args", "env", "says", "debug"), FAILURES,
                         ids=[f[0] for f in FAILURES])
def test_failure_is_one_line_and_debug_shows_the_traceback(
    scene: Path, name: str, args: list[str], env: dict[str, str], says: str, debug: str
) -> None:
    argv = [a.replace("{tmp}", str(scene)) for a in args]
    environ = {k: v.replace("{tmp}", str(scene)) for k, v in env.items()}
    line = one_line_error(newsqa(scene, *argv, env=environ))
    assert says in line, line

    if debug == "--debug":
        shown = newsqa(scene, "--debug", *argv, env=environ)
    else:
        shown = newsqa(scene, *argv, env={**environ, "NEWSQA_DEBUG": "1"})
    assert shown.returncode not in (0, None)
    assert "Traceback (most recent call last)" in shown.stderr, shown.stderr
    # The same line ends the traceback, without the advice to ask for it.
    assert shown.stderr.strip().splitlines()[-1] == line.removesuffix(HINT)


def test_an_unexpected_failure_names_the_step_and_suggests_debug(scene: Path) -> None:
    argv = ["ingest", str(SEEDS), "--db", str(scene / "db")]
    line = one_line_error(newsqa(scene, *argv, env={"PYTHONPATH": str(scene / "broken")}))
    assert "libonnxruntime.so.1" in line and line.endswith(HINT)


# -- reading never creates an index -------------------------------------------------------------


READERS: list[list[str]] = [
    ["articles"], ["articles", "--json"], ["show", "abc"], ["remove", "abc"],
    ["ask", "Who met whom?"], ["summarize", "--query", "Baghdad"], ["summarize", "abc"],
    ["timeline", "Baghdad"], ["chat"],
]


@pytest.mark.parametrize("command", READERS, ids=[" ".join(c) for c in READERS])
def test_reading_commands_refuse_a_missing_index_and_create_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    typo = tmp_path / "typo"
    result = CliRunner().invoke(cli, [*command, "--db", str(typo)], input="")
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"newsqa: error: no newsqa index at {str(typo)!r} "
        "(run newsqa ingest first, or pass --db)"
    ]
    assert not typo.exists()


def test_a_folder_that_is_no_index_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("buy milk\n")
    result = CliRunner().invoke(cli, ["articles", "--db", str(tmp_path / "notes")])
    assert result.exit_code == 1
    assert "no newsqa index at" in result.stderr
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["todo.txt"]
    (tmp_path / "a-file").write_text("not an index\n")
    file = CliRunner().invoke(cli, ["articles", "--db", str(tmp_path / "a-file")])
    assert file.exit_code == 1
    assert file.stderr.strip().splitlines() == [
        f"newsqa: error: no newsqa index at {str(tmp_path / 'a-file')!r}: it is a file, "
        "not a folder"
    ]


def test_serve_refuses_a_missing_index_instead_of_serving_an_empty_one(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    run = newsqa(tmp_path, "serve", "--db", str(typo), "--port", str(free_port()))
    assert "no newsqa index at" in one_line_error(run)
    assert not typo.exists()


def test_summarize_without_an_article_or_a_query_is_a_usage_error(tmp_path: Path) -> None:
    # It exited 1, as a failure; the README says a usage error exits 2.
    for args in ([], ["some-id", "--query", "Iran"], ["--query", "  "]):
        result = CliRunner().invoke(cli, ["summarize", *args, "--db", str(tmp_path / "db")])
        assert result.exit_code == 2, result.output
        assert "exactly one of ARTICLE_ID or a non-empty --query" in result.output
    assert not (tmp_path / "db").exists()


# -- names with odd characters stay on their one line ------------------------------------------


def test_a_newline_in_a_file_name_cannot_split_the_error_line(tmp_path: Path) -> None:
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "bad\nname.txt").write_bytes(b"")
    (folder / "fine.txt").write_text("A story about a harbour that reopened after repairs.\n")
    result = CliRunner().invoke(cli, ["ingest", str(folder), "--db", str(tmp_path / "db")])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    odd = str(folder / "bad\nname.txt")
    assert line == f"{odd!r}: empty file"  # repr: the newline shows as backslash-n
