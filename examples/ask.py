"""Read this first: ingest the two sample articles and ask a question, offline.

    python examples/ask.py "Who did Qaani meet in Baghdad?"

Every citation printed is a verbatim span of a stored article: the script
checks that itself at the end, the way a sceptical reader would.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from newsqa import NewsQA

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def main(question: str) -> None:
    with tempfile.TemporaryDirectory() as db:
        qa = NewsQA(db=db)  # offline by default: local embeddings, extractive answers
        report = qa.ingest([SEEDS])
        print(f"ingested {report.added} articles ({report.chunks} chunks)\n")

        answer = qa.ask(question)
        print(answer.answer if answer.answerable else f"No answer: {answer.reason}")
        for n, c in enumerate(answer.citations, 1):
            print(f"  [{n}] {c.title} ({c.source or 'unknown source'}), chars {c.start}-{c.end}")

        for c in answer.citations:  # trust, but verify
            assert qa.get_article(c.article_id).text[c.start : c.end] == c.quote


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "How many troops were sent to Kuwait?")
