"""ROUGE of the offline single-article summariser against the lead-3 baseline.

Data: ../shared/eval/summ/items.jsonl (CNN/DailyMail articles with their reference
highlights), dev ids only. Lead-3 is the bar on CNN/DM because its highlights are
mostly paraphrases of the first sentences.

    python benchmarks/summarize.py          # the table: lead-3 and NewsQA's summariser
    python benchmarks/summarize.py --grid   # tune ExtractiveWeights (dev ids only)

The summariser is `extractive_article_summary`, exactly what `NewsQA.summarize(id)`
runs offline; within one article it ranks with TF-IDF vectors, so no model loads.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval" / "summ"
METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@dataclass
class Item:
    id: str
    article: str
    reference: str


def load_dev(dataset: str) -> list[Item] | None:
    items, ids = EVAL / "items.jsonl", EVAL / "dev_ids.txt"
    if not items.exists() or not ids.exists():
        return None
    dev = set(ids.read_text().split())
    out = []
    for line in items.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["id"] in dev and row["dataset"] == dataset:
            out.append(Item(row["id"], row["article"], row["reference_summary"]))
    return out


def reference_lines(reference: str) -> str:
    """The references are PTB-tokenised highlights joined by ' . ': one per line for rougeLsum."""
    parts = [p.strip() for p in reference.split(" . ") if p.strip()]
    return "\n".join(parts)


class Prepared:
    """Sentences and their vectors, computed once per article so a weight grid is cheap."""

    def __init__(self, item: Item) -> None:
        from newsqa.engines.summarize import article_sentences, sentence_vectors
        from newsqa.models import Article

        self.item = item
        self.article = Article(text=item.article)
        self.sentences = article_sentences(self.article)
        self.vectors = sentence_vectors([s.text for s in self.sentences], None)


def production(prep: Prepared, bullets: int) -> str:
    """What users get: the public function, bullets one per line."""
    from newsqa.engines.summarize import extractive_article_summary

    summary = extractive_article_summary(prep.article, None, bullets=bullets)
    return "\n".join(b.text for b in summary.bullets)


def summarise(prep: Prepared, weights: object, bullets: int) -> str:
    from newsqa.engines.summarize import rank_sentences, select_sentences

    if not prep.sentences:
        return ""
    scores = rank_sentences(prep.sentences, prep.vectors, weights)  # type: ignore[arg-type]
    picked = select_sentences(scores, prep.vectors, bullets, weights)  # type: ignore[arg-type]
    return "\n".join(prep.sentences[i].text for i in picked)


def lead(text: str, n: int) -> str:
    from newsqa.text.sentences import sentence_spans

    return "\n".join(text[s:e] for s, e in sentence_spans(text)[:n])


def score(scorer: object, pairs: list[tuple[str, str]]) -> dict[str, float]:
    totals = dict.fromkeys(METRICS, 0.0)
    for prediction, reference in pairs:
        result = scorer.score(reference, prediction)  # type: ignore[attr-defined]
        for metric in METRICS:
            totals[metric] += result[metric].fmeasure
    return {m: 100 * v / max(len(pairs), 1) for m, v in totals.items()}


def grid(preps: list[Prepared], scorer: object, bullets: int) -> None:
    """Tune on dev ids: rank by mean of R1/R2/RL; the best goes into ExtractiveWeights."""

    from newsqa.engines.summarize import ExtractiveWeights

    base = ExtractiveWeights()
    rows = []
    for position, decay, centrality, redundancy in itertools.product(
        (1.0,), (1.0, 1.5, 2.0, 3.0), (0.6, 1.0, 1.5, 2.0), (0.3, 0.6, 1.0)
    ):
        w = replace(base, position=position, decay=decay, centrality=centrality,
                    redundancy=redundancy)
        pairs = [(summarise(p, w, bullets), reference_lines(p.item.reference)) for p in preps]
        r = score(scorer, pairs)
        rows.append(((r["rouge1"] + r["rouge2"] + r["rougeL"]) / 3, w, r))
    rows.sort(key=lambda row: -row[0])
    for mean, w, r in rows[:10]:
        print(f"mean {mean:.2f}  decay={w.decay} centrality={w.centrality} "
              f"redundancy={w.redundancy}  " + "  ".join(f"{m} {r[m]:.2f}" for m in METRICS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bullets", type=int, default=3)
    parser.add_argument("--dataset", default="cnn_dailymail", choices=["cnn_dailymail", "xsum"])
    parser.add_argument("--grid", action="store_true", help="search weights on the dev ids")
    args = parser.parse_args()

    items = load_dev(args.dataset)
    if items is None:
        print(f"skipped: {EVAL} is absent (see ../shared/eval/README.md)")
        return 0
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)
    preps = [Prepared(item) for item in items]
    if args.grid:
        grid(preps, scorer, args.bullets)
        return 0

    started = time.perf_counter()
    ours = [production(p, args.bullets) for p in preps]
    per_summary_ms = 1000 * (time.perf_counter() - started) / max(len(preps), 1)
    table = {
        f"lead-{args.bullets}": score(scorer, [
            (lead(p.item.article, args.bullets), reference_lines(p.item.reference))
            for p in preps
        ]),
        "newsqa extractive": score(scorer, [
            (made, reference_lines(p.item.reference)) for made, p in zip(ours, preps, strict=True)
        ]),
    }
    print(f"{args.dataset} dev ids: {len(preps)} articles, {args.bullets} sentences, "
          f"{per_summary_ms:.1f} ms per summary")
    print(f"| system | {' | '.join(METRICS)} |")
    print(f"|---|{'---|' * len(METRICS)}")
    for name, result in table.items():
        print(f"| {name} | " + " | ".join(f"{result[m]:.2f}" for m in METRICS) + " |")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
