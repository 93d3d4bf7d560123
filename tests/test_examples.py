"""The newcomer's first script must keep working verbatim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_examples_ask_answers_offline_with_citations(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ask.py"), "How many troops were sent to Kuwait?"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "ingested 2 articles" in run.stdout
    assert "3,000 to 3,500" in run.stdout
    assert "[1]" in run.stdout


def test_examples_llama_index_app_answers_and_chats_offline(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "llama_index_app.py")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "3,000 to 3,500" in run.stdout
    assert "(asked as: What did Qaani warn?)" in run.stdout
    assert "Iran would not remain silent" in run.stdout
    assert "  [1] " in run.stdout and "chars " in run.stdout
