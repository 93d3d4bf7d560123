"""Could a short answer be shown on a sentence that merely states it? (No: measured here.)

A small model often names the right answer and then garbles every claim and quote,
re-ask included ("Amazon", with a claim about "Cnbc | World Business News Leader").
A tempting rescue: show the answer on the one sentence of the shown passages that
holds all of it and relates most to the question (the same test `Grounder.direct`
applies to a first claim's quotes), that sentence verbatim as the claim. This
measures that rule with no model, on dev ids only:

- MultiHop-RAG inference questions: the top-5 passages of newsqa's retrieval (as
  benchmarks/answers.py gives the model); proposed answers are the gold answer
  (should be shown) and the three names the passages mention most that are neither
  the gold nor in the question (the wrong answers a model would most likely give:
  should be refused). Null questions: the three most mentioned names (refused).
- NewsQA dev items, another style (crowd questions about one CNN story, answers of
  any kind): the story is the passage; the gold span against the story's other names
  and numbers.

For each threshold: the share of gold answers shown, and of wrong answers shown.

    python benchmarks/answer_evidence.py --db DB      # DB: the MultiHop-RAG index
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsqa.app.evaluation import (  # noqa: E402
    load_multihop_queries,
    read_ids,
    select_records,
)
from newsqa.grounding.grounder import Grounder  # noqa: E402
from newsqa.grounding.support import check_support, relevance  # noqa: E402
from newsqa.models import Article, Passage  # noqa: E402
from newsqa.text.lexical import terms  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"
THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
_NAME = re.compile(r"\b[A-Z][\w'&.-]*(?:\s+(?:of\s+|de\s+)?[A-Z][\w'&.-]*)*")
_NUMBER = re.compile(r"\b\d[\d,.]*\b")

# (question, passages, articles, proposed answer, is it right)
Case = tuple[str, list[Passage], dict[str, Article], str, bool]


def shown_relevance(case: Case) -> float | None:
    """The best relevance to the question of a shown sentence holding every word of the
    answer (None: no such sentence): the rule shows the answer at thresholds below it."""
    question, passages, articles, proposed, _ = case
    grounder = Grounder(question, passages, articles)
    best: float | None = None
    for passage in passages:
        for sentence in grounder._passage_sentences(passage):
            verdict = check_support(proposed, [sentence.quote], question, threshold=1.0,
                                    min_relevance=0.0)
            if verdict.supported:
                score = relevance(question, [sentence.quote])
                best = score if best is None else max(best, score)
    return best


def wrong_names(texts: Sequence[str], question: str, gold: str, n: int = 3) -> list[str]:
    """The names the texts mention most, neither in the question nor sharing a word with gold."""
    avoid = set(terms(question)) | set(terms(gold))
    counts = Counter(m.group() for t in texts for m in _NAME.finditer(t))
    names = [name for name, _ in counts.most_common()
             if terms(name) and not set(terms(name)) & avoid and len(name) > 2]
    return names[:n]


def multihop_cases(db: Path, limit: int | None) -> list[Case]:
    from newsqa import NewsQA

    folder = EVAL / "multihop"
    queries = load_multihop_queries(folder / "queries.jsonl", read_ids(folder / "dev_ids.txt"))
    queries = [q for q in queries if q.question_type in ("inference_query", "null_query")]
    cases: list[Case] = []
    with NewsQA(db=str(db)) as qa:
        for query in queries[:limit]:
            passages = qa.search(query.query, top_k=10)[:5]
            articles = {p.article_id: qa.get_article(p.article_id) for p in passages}
            texts = [p.text for p in passages]
            null = query.question_type == "null_query"
            if not null:
                cases.append((query.query, passages, articles, query.answer, True))
            for name in wrong_names(texts, query.query, "" if null else query.answer):
                cases.append((query.query, passages, articles, name, False))
    return cases


def newsqa_cases() -> list[Case]:
    folder = EVAL / "newsqa"
    records = select_records(folder / "items.jsonl", read_ids(folder / "dev_ids.txt"))
    cases: list[Case] = []
    for _, record in records:
        answers = record.get("answers_stripped") or []
        if not answers or not answers[0].strip():
            continue
        story, gold = record["story"], answers[0].strip()
        article = Article(id=record["id"], text=story, title="")
        passage = Passage(chunk_id=f"{article.id}:0", article_id=article.id, title="",
                          text=story, start=0, end=len(story), score=1.0)
        cases.append((record["question"], [passage], {article.id: article}, gold, True))
        others = wrong_names([story], record["question"], gold)
        others += [m.group() for m in _NUMBER.finditer(story) if m.group() not in gold][:2]
        cases += [(record["question"], [passage], {article.id: article}, o, False) for o in others]
    return cases


def table(name: str, cases: Sequence[Case], score: Callable[[Case], float | None]) -> list[dict]:
    shown = [(score(c), c[4]) for c in cases]
    rows = []
    for t in THRESHOLDS:
        right = [r is not None and r >= t for r, ok in shown if ok]
        wrong = [r is not None and r >= t for r, ok in shown if not ok]
        rows.append({"set": name, "threshold": t, "right_shown": _share(right),
                     "wrong_shown": _share(wrong), "n_right": len(right), "n_wrong": len(wrong)})
    return rows


def _share(flags: Sequence[bool]) -> float:
    return round(sum(flags) / len(flags), 3) if flags else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="the MultiHop-RAG index")
    parser.add_argument("--limit", type=int, default=None, help="first N dev questions")
    args = parser.parse_args()
    if not (EVAL / "multihop" / "queries.jsonl").is_file():
        print(f"skipped: {EVAL} is absent (see ../shared/eval/README.md)")
        return 0
    rows = table("multihop", multihop_cases(args.db, args.limit), shown_relevance)
    rows += table("newsqa", newsqa_cases(), shown_relevance)
    print("| set | threshold | right answers shown | wrong answers shown | n right / wrong |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['threshold']} | {r['right_shown']} | {r['wrong_shown']} "
              f"| {r['n_right']} / {r['n_wrong']} |")
    print(json.dumps(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
