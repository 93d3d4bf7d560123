"""The LLM answer path on questions unlike MultiHop-RAG's: NewsQA's crowd questions (issue 15).

Why this exists: benchmarks/answers.py measures grounded answers on MultiHop-RAG's
long, templated, many-part questions, and the support check was tuned on them. A
reader asks short questions about one story ("What was the amount of children
murdered?"). This asks the NewsQA dev questions, each over the dev stories ingested
into a temporary index, with the same model and the same grounding, and keeps every
answer for a hand-check:

    python benchmarks/answers_newsqa.py --model /path/qwen.gguf [--top-k 5] [--threads 1]
        [--dump /tmp/newsqa-answers.jsonl]
    python benchmarks/answers_newsqa.py --offline      # the extractive engine alone

Scores, per engine (newsqa LLM grounded, extractive, the model's ungrounded draft):
token F1 of the prediction against the best crowd answer (SQuAD-style), whether a crowd
answer is contained in it, and abstentions on questions with and without an answer
span. Data: ../shared/eval/newsqa, dev ids only; skipped with a message when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from answers import (
    EVAL,
    N_CTX,
    REPLY_TOKENS,
    MeteredLLM,
    Snapshot,
    check_model,
    kept_claims,
    llama_server,
    predicted,
)

from newsqa import NewsQA
from newsqa.app.evaluation import DEV_IDS, read_ids, select_records
from newsqa.config import Settings
from newsqa.engines.llm_answer import answer
from newsqa.errors import NewsQAError
from newsqa.models import Article, Passage

_WORD = re.compile(r"\w+")
_ARTICLES = {"a", "an", "the"}


def tokens(text: str) -> list[str]:
    """SQuAD's normalisation: lower case, no punctuation, no articles."""
    return [w for w in _WORD.findall(text.lower()) if w not in _ARTICLES]


def f1(prediction: str, golds: Sequence[str]) -> float:
    best = 0.0
    for gold in golds:
        common = Counter(tokens(prediction)) & Counter(tokens(gold))
        same = sum(common.values())
        if same:
            p, r = same / len(tokens(prediction)), same / len(tokens(gold))
            best = max(best, 2 * p * r / (p + r))
    return best


def contains(prediction: str, golds: Sequence[str]) -> bool:
    said = " ".join(tokens(prediction))
    return any(tokens(g) and " ".join(tokens(g)) in said for g in golds)


# Questions of our own, in a reader's words, about the dev stories (the answer is a name or a
# number each story's first lines give): a check of direct answers beyond the crowd's
# questions. Written for this benchmark; only the answers' names come from the stories.
OWN_QUESTIONS: list[tuple[str, list[str]]] = [
    ("Who is Pandher's lawyer?", ["Sikandar B. Kochar", "Kochar"]),
    ("Who was Pandher's domestic employee?", ["Surinder Koli", "Koli"]),
    ("Who spoke for the UNHCR about the new arrivals in Chad?", ["Jorge Holly"]),
    ("Who lashed out at the South African government over the visa?",
     ["Desmond Tutu", "Archbishop Desmond Tutu", "Tutu"]),
    ("Who cancelled a trip to South Africa?", ["Dalai Lama"]),
    ("Who is the Pakistani military spokesman?", ["Athar Abbas", "Gen. Athar Abbas"]),
    ("Who announced that Bea Arthur had died?", ["Dan Watt"]),
    ("Who created the Maude spin-off series?", ["Norman Lear", "Lear"]),
    ("Who was Bea Arthur's Golden Girls co-star in the photo?", ["Rue McClanahan"]),
    ("Who is the president of the Pentagon Memorial Fund?", ["Jim Laychak"]),
    ("Which geological sciences professor spoke about water on the moon?", ["Jack Mustard"]),
    ("Who interviewed Kate Gosselin?", ["Larry King"]),
    ("How many people fled Darfur to Chad over the last few days?", ["12,000"]),
    ("How many militants were killed in the attacks?", ["40"]),
    ("How old was Bea Arthur?", ["86"]),
    ("How many people were killed when Flight 77 hit the Pentagon?", ["184"]),
    # Where: a place.
    ("Where was Pandher's home?", ["Noida"]),
    ("Where was Kochar's client when the teen was killed?", ["Australia"]),
    ("Where did the refugees from Darfur go?", ["Chad", "eastern Chad"]),
    ("In which region did the fighting start a new wave of refugees?", ["Darfur"]),
    ("Where were the Dalai Lama's visa applications submitted?", ["New Delhi"]),
    ("Where did the militants attack military camps?", ["Mohmand", "Mohmand agency"]),
    ("Where did Bea Arthur die?", ["Los Angeles"]),
    ("Where was Bea Arthur born?", ["New York City"]),
    ("Where did Arthur's family open a clothing store?", ["Cambridge", "Cambridge, Maryland"]),
    ("Where does Miriam Brown live?", ["New Orleans", "New Orleans, Louisiana"]),
    ("Where is Green Apple Barter Services?", ["Pittsburgh", "Pittsburgh, Pennsylvania"]),
    ("Where was the granite for the benches mined?", ["Spain"]),
    ("Where is the Keck Reflectance Experiment Laboratory?", ["Brown University", "Providence"]),
    ("Where was the news conference on the moon water findings?", ["Washington"]),
    ("Where did Kate and Jon Gosselin renew their marriage vows?", ["Hawaii"]),
    # How long, how tall, how much: a number with its unit.
    ("How long ago were Pandher and Koli arrested?", ["two years"]),
    ("How tall was Bea Arthur at 12?", ["5 feet, 10 inches", "nearly 5 feet, 10 inches"]),
    ("How long did the fundraising for the Pentagon memorial take?",
     ["five years", "more than five years"]),
    ("How much water could a ton of lunar soil yield?", ["32 ounces", "as much as 32 ounces"]),
    ("How long will the Browns work each day?", ["five hours", "five hours a day"]),
    # When: a date, a month or a weekday.
    ("When did the high court acquit Pandher?", ["Friday"]),
    ("When were the Dalai Lama's original passports submitted?", ["September 20"]),
    ("When did construction of the Pentagon memorial start?", ["June 2006"]),
    ("When did India's first mission to the moon set off?", ["October 2008"]),
    ("When had Kate Gosselin last been on Larry King Live?", ["May 10"]),
    ("When did Kate and Jon Gosselin file for divorce?", ["June 22"]),
    ("When did Bea Arthur die?", ["Saturday", "Saturday morning"]),
    ("When were Pandher and Koli arrested?", ["two years ago"]),
    ("When did the Gosselins start filming?", ["August of 2005", "August 2005", "August"]),
    ("When were the visa applications for the Dalai Lama submitted?",
     ["at the end of August", "the end of August", "end of August", "August"]),
    ("When did Kate and Jon renew their marriage vows?", ["a year ago", "a year ago this month"]),
]


def load(folder: Path) -> list[dict[str, Any]]:
    return [r for _, r in select_records(folder / "items.jsonl", read_ids(folder / DEV_IDS))]


def retrieve(items: Sequence[dict[str, Any]], top_k: int) -> tuple[list[list[Passage]], Snapshot]:
    """Each question's passages from an index of the dev stories (held only while searching)."""
    stories = {str(r["story_id"]): str(r["story"]) for r in items}
    with tempfile.TemporaryDirectory() as db, NewsQA(db=db, llm="extractive") as qa:
        qa.ingest([Article(text=text, source="CNN", url=f"newsqa:{sid}")
                   for sid, text in stories.items()])
        passages = [qa.search(str(r["question"]), top_k=top_k) for r in items]
        ids = {p.article_id for found in passages for p in found}
        return passages, Snapshot({i: qa.get_article(i) for i in ids})


def ask(item: dict[str, Any], passages: list[Passage], snapshot: Snapshot,
        llm: MeteredLLM | None, settings: Any) -> dict[str, Any]:
    """One question through each engine (the extractive one alone without `llm`)."""
    golds = [str(a) for a in item.get("answers_stripped") or [] if str(a).strip()]
    row: dict[str, Any] = {"id": item["id"], "question": item["question"], "gold": golds}
    engines = (("newsqa-llm", llm), ("extractive", None)) if llm else (("extractive", None),)
    for name, model in engines:
        first, start = len(llm.calls) if llm else 0, time.perf_counter()
        try:
            result = answer(str(item["question"]), passages, snapshot, model, settings)  # type: ignore[arg-type]
        except NewsQAError as exc:
            row[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        prediction, source = predicted(result)
        row[name] = {"prediction": prediction, "from": source, "answerable": result.answerable,
                     "answer": result.answer, "reason": result.reason,
                     "claims": kept_claims(result),
                     "found_by_newsqa": sum(c.found_by_newsqa for c in result.citations),
                     "seconds": round(time.perf_counter() - start, 1)}
        if llm is not None and model is not None:
            drafts = [c.parsed for c in llm.calls[first:] if c.parsed is not None]
            row["draft"] = {"prediction": str(getattr(drafts[0], "answer", "")) if drafts else "",
                            "answerable": bool(getattr(drafts[0], "answerable", False))
                            if drafts else False}
    return row


def figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    answerable = [r for r in rows if r["gold"]]
    absent = [r for r in rows if not r["gold"]]
    for engine in ("newsqa-llm", "extractive", "draft"):
        done = [r for r in answerable if "prediction" in r.get(engine, {})]
        shown = [r for r in done if r[engine]["answerable"]]
        out[engine] = {
            "answerable": len(answerable),
            "f1": round(sum(f1(r[engine]["prediction"], r["gold"]) for r in shown)
                        / max(len(done), 1), 3),
            "contains_gold": sum(contains(r[engine]["prediction"], r["gold"]) for r in shown),
            "abstained_answerable": len(done) - len(shown),
            "abstained_no_answer": sum(not r.get(engine, {}).get("answerable", True)
                                       for r in absent),
            "no_answer": len(absent),
            "kept_claims": sum(len(r[engine].get("claims", [])) for r in done),
        }
    return out


def own_figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Direct answers to our own questions: exact (one of the answers, SQuAD-normalised)
    and containing one, with each miss shown for a hand-check."""
    out: dict[str, Any] = {"questions": len(rows), "exact": 0, "contains": 0, "misses": []}
    for r in rows:
        said = r["extractive"].get("prediction", "") if r["extractive"].get("answerable") else ""
        exact = any(tokens(said) == tokens(g) for g in r["gold"])
        out["exact"] += exact
        out["contains"] += contains(said, r["gold"])
        if not exact:
            out["misses"].append(f"{r['question']} -> {said[:80]!r}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="the GGUF file (required unless --offline)")
    parser.add_argument("--offline", action="store_true",
                        help="the extractive engine alone: no model, no server")
    parser.add_argument("--data", type=Path, default=EVAL / "newsqa")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dump", type=Path, help="JSON lines per question (outside the repo)")
    args = parser.parse_args()
    if not (args.data / "items.jsonl").is_file():
        print(f"skipped: {args.data} is absent (see ../shared/eval/README.md)")
        return 0
    if args.model is None and not args.offline:
        parser.error("--model is required (or --offline for the extractive engine alone)")
    items = load(args.data)
    if args.offline:
        own = [{**items[0], "id": f"own-{i}", "question": q, "answers_stripped": golds}
               for i, (q, golds) in enumerate(OWN_QUESTIONS)]
        passages, snapshot = retrieve([*items, *own], args.top_k)
        rows = [ask(item, found, snapshot, None, Settings())
                for item, found in zip([*items, *own], passages, strict=True)]
        print(json.dumps({"extractive, crowd questions": figures(rows[: len(items)])["extractive"],
                          "extractive, our questions": own_figures(rows[len(items):])}, indent=1))
        return 0
    check_model(args.model)
    passages, snapshot = retrieve(items, args.top_k)
    settings = Settings()
    log = Path(tempfile.gettempdir()) / f"newsqa-answers-newsqa-{os.getpid()}.log"
    rows = []
    with llama_server(args.model, log, args.threads) as (base_url, model_id):
        llm = MeteredLLM(model_id, base_url=base_url, timeout=600, context_window=N_CTX,
                         max_output_tokens=REPLY_TOKENS)
        for i, (item, found) in enumerate(zip(items, passages, strict=True), 1):
            rows.append(ask(item, found, snapshot, llm, settings))
            print(f"[{i}/{len(items)}] {rows[-1]['newsqa-llm'].get('seconds', '-')} s",
                  file=sys.stderr)
            if args.dump:
                with args.dump.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(rows[-1], ensure_ascii=False, default=str) + "\n")
    print(json.dumps(figures(rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
