"""Summaries and a timeline over the seed articles, offline, every line cited.

    python examples/summarize.py            # uses a throwaway index
    NEWSQA_LLM=gpt-4o-mini python examples/summarize.py   # the same with a model

Each bullet ends with its citations, [article-id-prefix start-end]: exact spans of
the stored articles (character offsets), which you can check with
`newsqa show ARTICLE_ID`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from newsqa import Citation, NewsQA

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def show(title: str, lines: list[tuple[str, list[Citation]]]) -> None:
    print(f"\n== {title}")
    for text, citations in lines:
        marks = " ".join(f"[{c.article_id[:6]} {c.start}-{c.end}]" for c in citations)
        print(f"- {text} {marks}")


def main() -> None:
    with tempfile.TemporaryDirectory() as db:
        qa = NewsQA(db=db)
        qa.ingest([SEEDS])

        for info in qa.articles():
            summary = qa.summarize(info.id, bullets=3)
            show(summary.headline, [(b.text, b.citations) for b in summary.bullets])

        summary = qa.summarize(query="Iran and armed factions in Iraq", bullets=4,
                               focus="US military response")
        show(f"Across articles: {summary.headline}",
             [(b.text, b.citations) for b in summary.bullets]
             + [(f"Disagreement: {b.text}", b.citations) for b in summary.disagreements])

        timeline = qa.timeline("Soleimani, Qaani and US strikes in Iraq", max_events=6)
        show("Timeline", [(f"{e.date} ({e.date_source}) {e.text}", e.citations)
                          for e in timeline.events])


if __name__ == "__main__":
    main()
