"""The README's first command, verbatim, in a new virtual environment with empty caches.

This is what a newcomer runs. It broke once without any test noticing: onnxruntime
1.32 stopped installing sympy, which the graph optimiser newsqa then used needed,
while the suite stayed green on a machine whose site-packages and ~/.cache/newsqa
still held what older releases had left. So: a copy of the project, a new venv,
a new NEWSQA_CACHE_DIR, nothing from the test process's environment that
newsqa reads, and the command exactly as the README prints it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL_DEADLINE = 1200  # seconds: pip resolves and installs ~150 packages (from its cache in CI)


def readme_commands() -> list[str]:
    """The shell blocks of the README's "Two commands" section, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)


def project_copy(target: Path) -> Path:
    """The files a clone would have (tracked, plus new ones not ignored), nothing built."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_readme_lists_two_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert "newsqa ingest seeds/" in commands[0] and "newsqa ask" in commands[0]
    assert "pytest" in commands[1]


@pytest.mark.slow
def test_readme_main_command_in_a_fresh_venv(tmp_path: Path) -> None:
    project = project_copy(tmp_path / "newsqa")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEWSQA_", "OPENAI_", "TIKTOKEN_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        NEWSQA_CACHE_DIR=str(tmp_path / "empty-cache"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
    )
    result = subprocess.run(
        ["bash", "-c", readme_commands()[0]],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_DEADLINE,
    )
    tail = (result.stdout[-3000:], result.stderr[-3000:])
    assert result.returncode == 0, tail
    assert "Traceback" not in result.stderr, tail
    assert "Kuwait" in result.stdout, tail  # the answer quotes the seed article
    built = list((tmp_path / "empty-cache").glob("*.onnx"))
    assert len(built) == 1, "the graph was built fresh, in the empty cache"
