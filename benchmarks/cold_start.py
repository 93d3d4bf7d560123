"""Cold start: process start to first answer on an existing index, and import-time offenders.

A CLI user pays interpreter start, imports, opening Chroma, loading the embedding
model and the first keyword-index build on every `newsqa ask`. This runs that
command in a fresh subprocess several times (goal: under 3 s each) and lists what
`python -X importtime -c "import newsqa"` spends its time on, so the culprit of a
slow start is named rather than guessed.

    python benchmarks/cold_start.py                 # index: .newsqa-eval-multihop
    python benchmarks/cold_start.py --db DIR --runs 7 --question "..."

The index must exist: `newsqa eval multihop --no-answers --limit 1` (or
`python benchmarks/query.py`) builds the default one from ../shared/eval.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = ROOT / ".newsqa-eval-multihop"
QUESTION = "Which company did the Federal Trade Commission sue, and why?"
GOAL_S = 3.0


def newsqa_command() -> list[str]:
    """The installed console script when there is one: that is what users start."""
    script = shutil.which("newsqa")
    return [script] if script else [sys.executable, "-m", "newsqa.app.cli"]


def run_ask(db: Path, question: str) -> tuple[float, str]:
    env = {**os.environ, "NEWSQA_LLM": "extractive"}
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    start = time.perf_counter()
    proc = subprocess.run(
        [*newsqa_command(), "ask", question, "--db", str(db)],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"newsqa ask failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return elapsed, proc.stdout


def import_offenders(module: str, top: int) -> tuple[float, list[tuple[float, str]]]:
    """(total ms, [(cumulative ms, module)]) from -X importtime, biggest first."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )
    rows = []
    pattern = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")
    for line in proc.stderr.splitlines():
        match = pattern.match(line)
        if match:
            rows.append((int(match.group(2)) / 1000, match.group(3), match.group(4)))
    total = next((cum for cum, _, name in rows if name == module), 0.0)
    # Top-level-ish entries (indent <= 3 levels) say which direct import is heavy.
    shallow = [(cum, name) for cum, indent, name in rows if len(indent) <= 5 and name != module]
    return total, sorted(shallow, reverse=True)[:top]


def interpreter_baseline() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=DEFAULT_DB)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}", file=sys.stderr)
    results: dict[str, object] = {"interpreter_s": round(interpreter_baseline(), 3)}
    for module in ("newsqa", "newsqa.app.cli"):
        total, offenders = import_offenders(module, args.top)
        results[f"import_{module}_ms"] = round(total, 1)
        results[f"offenders_{module}"] = [[round(ms, 1), name] for ms, name in offenders]
    if not args.db.is_dir():
        print(f"skipped ask runs: no index at {args.db} (see this file's docstring)",
              file=sys.stderr)
    else:
        times = [run_ask(args.db, args.question)[0] for _ in range(args.runs)]
        results["ask_s"] = [round(t, 3) for t in times]
        results["ask_median_s"] = round(statistics.median(times), 3)
        results["ask_vs_goal"] = round(statistics.median(times) / GOAL_S, 2)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"python -c pass: {results['interpreter_s']} s")
    for module in ("newsqa", "newsqa.app.cli"):
        print(f"import {module}: {results[f'import_{module}_ms']} ms; top offenders (cumulative):")
        for ms, name in results[f"offenders_{module}"]:  # type: ignore[attr-defined]
            print(f"  {ms:8.1f} ms  {name}")
    if "ask_s" in results:
        print(f"newsqa ask, fresh process x{args.runs}: {results['ask_s']} s; median "
              f"{results['ask_median_s']} s = {results['ask_vs_goal']}x the {GOAL_S} s goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
