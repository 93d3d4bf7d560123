"""The offline engine on short reader questions, answerable or not, over an existing index.

Why this exists: MultiHop-RAG's questions all have 12 or more terms, so its dev figures
never show what a reader's "Who replaced Soleimani?" gets from a mixed archive. This asks
each question of a JSONL set through `NewsQA.ask` (the shipped pipeline, offline engine)
and counts abstentions and short answers against the set's gold:

    python benchmarks/short_questions.py --db INDEX --set questions.jsonl [--dump out.jsonl]

A set line is {"q": ..., "gold": [answers] | null} ({"answer": "..."} is read as gold too);
null gold means the archive cannot answer it, and no short answer is the right one. A short
answer is right when it equals a gold answer, or one holds the other as whole words, after
lower-casing and dropping punctuation. The sets hold corpus text, so they stay outside the
repository (benchmarks/RESULTS.md says how they were made).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsqa import NewsQA  # noqa: E402


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def _gold(row: dict[str, Any]) -> list[str] | None:
    gold = row["gold"] if "gold" in row else row.get("answer")
    return [gold] if isinstance(gold, str) else gold


def verdict(short: str | None, gold: list[str] | None) -> str:
    """right / wrong / none for an answerable question; null_ok / null_bad for the others."""
    if gold is None:
        return "null_ok" if short is None else "null_bad"
    if short is None:
        return "none"
    said = _norm(short)
    right = any(_norm(g) == said or f" {_norm(g)} " in f" {said} " or f" {said} " in
                f" {_norm(g)} " for g in gold)
    return "right" if right else "wrong"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, type=Path, help="an existing newsqa index")
    parser.add_argument("--set", required=True, type=Path, help="JSONL: q, gold")
    parser.add_argument("--dump", type=Path, help="every answer, one JSON line each")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.set.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    qa = NewsQA(db=args.db, llm="extractive", create=False)
    counts: Counter[str] = Counter()
    dump = args.dump.open("w", encoding="utf-8") if args.dump else None
    for row in rows:
        answer = qa.ask(row["q"])
        short = answer.direct_answer if answer.answerable else None
        kind = verdict(short, _gold(row))
        counts[kind] += 1
        counts["abstained"] += not answer.answerable
        if dump is not None:
            dump.write(json.dumps({"q": row["q"], "short": short, "verdict": kind,
                                   "answerable": answer.answerable,
                                   "reason": answer.reason}) + "\n")
    print(json.dumps({"questions": len(rows), **counts}, indent=1))


if __name__ == "__main__":
    main()
