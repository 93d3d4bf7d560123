"""Fit and measure the extractive engine's abstention rule and direct answers on dev ids only.

    python benchmarks/abstention.py [--db .newsqa-eval-multihop] [--folds 5] [--seeds 3]
        [--in-sample-ranker] [--fit] [--newsqa] [--cache FILE]

For every MultiHop-RAG dev query it retrieves as `qa.ask` does and computes the
rule's signals with `extractive.assess` (the engine's own code): the support of
the chosen sentences, the share of the question's names found in the passages,
the best dense cosine, the ranker's best score. Then:

- k-fold cross-validation over dev ids: each fold's logistic models and
  thresholds are fitted on the other folds only (threshold: best balanced
  accuracy there), so the held-out figures are not in-sample; for the routed
  models (as the engine uses them) and for each fallback alone;
- the trade-off curve of those held-out probabilities: null abstention against
  answerable abstention over one threshold;
- the shipped constants (`extractive.MODELS`) and the old rule (support < 0.30);
- the shipped engine's direct answers against the gold answers, per kind;
- with --newsqa, the engine on NewsQA dev stories ingested into a temporary
  index: how often it abstains on their questions, and its direct answers.

The second-stage ranker was trained on the answerable dev questions, so for
them the shipped ranker's scores (and the passages it picks) are in-sample and
separate them from null queries perfectly. So by default each fold's questions
are ranked by a ranker trained on the other folds (five LightGBM trainings,
~10 minutes on 2 idle cores); --in-sample-ranker skips that, for a quick look
only. --fit prints the constants for newsqa/extractive.py, fitted on all dev
queries. --cache saves the retrieved passages (keep it outside the repository:
it holds corpus text) and reuses them. The index must hold the corpus
(`newsqa eval multihop --no-answers` builds it). Skips with a message when
../shared/eval is absent.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from newsqa import NewsQA
    from newsqa.app.evaluation import MultihopQuery
    from newsqa.engines.extractive import NullModel, Signals
    from newsqa.models import Answer, Passage

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "eval"
GRID = [round(0.01 * i, 2) for i in range(1, 100)]
CURVE = [0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5]
L2 = 1.0  # ridge on standardised signals: keeps the fit stable, barely moves it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=str(ROOT / ".newsqa-eval-multihop"))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3, help="fold draws to repeat the CV with")
    parser.add_argument("--in-sample-ranker", action="store_true",
                        help="rank with the shipped ranker, which trained on these queries")
    parser.add_argument("--fit", action="store_true", help="print constants fitted on all dev")
    parser.add_argument("--newsqa", action="store_true", help="also run the NewsQA dev stories")
    parser.add_argument("--cache", default=None, help="JSONL of retrieved passages to reuse")
    args = parser.parse_args(argv)
    multihop = Path(args.data) / "multihop"
    skipped = why_skipped(multihop, Path(args.db))
    if skipped:
        print(f"skipped: {skipped}")
        return 0
    from newsqa import NewsQA

    qa = NewsQA(db=args.db, llm="extractive")
    queries = dev_queries(multihop)
    passages = retrieved(qa, queries, not args.in_sample_ranker, args.folds, args.cache)
    report_multihop(qa, queries, passages, args.folds, args.seeds, args.fit)
    if args.newsqa:
        report_newsqa(Path(args.data) / "newsqa")
    return 0


def why_skipped(multihop: Path, db: Path) -> str | None:
    """Why a benchmark over the MultiHop-RAG dev queries and their corpus index cannot run."""
    if not (multihop / "queries.jsonl").is_file():
        return f"{multihop} not found (MultiHop-RAG eval data)"
    if not db.is_dir():
        return f"no index at {db}: run `newsqa eval multihop --no-answers` first"
    return None


def dev_queries(folder: Path) -> list[MultihopQuery]:
    from newsqa.app.evaluation import DEV_IDS, load_multihop_queries, read_ids

    return load_multihop_queries(folder / "queries.jsonl", read_ids(folder / DEV_IDS))


# -- passages ------------------------------------------------------------------------------


def retrieved(
    qa: NewsQA, queries: Sequence[MultihopQuery], ranker_folds: bool, folds: int,
    cache: str | None,
) -> list[list[Passage]]:
    """Each query's passages as `qa.ask` gets them (or out-of-fold ranked), cached if asked."""
    from newsqa.models import Passage

    ranker = f"out-of-fold ({folds})" if ranker_folds else "in-sample"
    if cache and Path(cache).is_file():
        rows = {r["id"]: r for r in map(json.loads, Path(cache).read_text().splitlines())}
        if all(q.id in rows and rows[q.id].get("ranker") == ranker for q in queries):
            print(f"passages from {cache} (ranker: {ranker})", file=sys.stderr)
            return [[Passage(**p) for p in rows[q.id]["passages"]] for q in queries]
    if ranker_folds:
        found = out_of_fold_passages(qa, queries, folds)
    else:
        found = [qa.search(q.query) for q in queries]
    if cache:
        with Path(cache).open("w", encoding="utf-8") as out:
            for q, ps in zip(queries, found, strict=True):
                dumped = [p.model_dump(mode="json") for p in ps]
                out.write(json.dumps({"id": q.id, "ranker": ranker, "passages": dumped}) + "\n")
    return found


def out_of_fold_passages(
    qa: NewsQA, queries: Sequence[MultihopQuery], folds: int
) -> list[list[Passage]]:
    """Each fold's queries ranked by a ranker trained on the other folds' answerable ones.

    Null queries never trained the ranker, answerable dev ones did: in-sample, the
    ranker's scores and the passages it picks are better for exactly one class.
    """
    from retrieval_levers import dense_hits
    from train_ranker import PARAMS, ROUNDS

    from newsqa.app.evaluation import holds_fact
    from newsqa.retrieval import Filters, FusionWeights, Retriever
    from newsqa.retrieval.training import train

    weights = FusionWeights()
    dense, _ = dense_hits(qa, list(queries), weights.dense_candidates)
    first = Retriever(qa.index, qa.embedder, qa.settings, replace(weights, rerank=False))
    keyword = first.keyword_index()
    groups: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, (q, hits) in enumerate(zip(queries, dense, strict=True)):
        if not q.is_null:
            rows, features = first.candidates(keyword, first.first_stage(keyword, q.query, hits,
                                                                         Filters()))
            texts = [keyword.table.passage(r, 0.0).text for r in rows]
            groups[i] = (features, np.asarray([holds_fact(t, q.facts) for t in texts], float))
    out: list[list[Passage]] = [[] for _ in queries]
    with tempfile.TemporaryDirectory() as folder:
        for fold, held in enumerate(fold_indices(len(queries), folds, seed=0)):
            model = train([g for i, g in groups.items() if i not in held], PARAMS, ROUNDS)
            path = str(Path(folder) / f"ranker-{fold}.txt")  # load_ranker caches by path
            model.save_model(path)
            ranker = Retriever(qa.index, qa.embedder, qa.settings, replace(weights, ranker=path))
            for i in held:
                out[i] = ranker.rank(keyword, queries[i].query, dense[i],
                                     top_k=qa.settings.top_k, filters=Filters())
            print(f"ranker fold done ({len(held)} queries)", file=sys.stderr)
    return out


def fold_indices(n: int, folds: int, seed: int) -> list[set[int]]:
    order = np.random.RandomState(seed).permutation(n)
    return [set(order[f::folds].tolist()) for f in range(folds)]


# -- the rule ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """Every query's signals and label."""

    signals: list[Signals]
    null: np.ndarray  # bool

    def matrix(self, names: Sequence[str], rows: Sequence[int]) -> np.ndarray:
        return np.asarray([[self.signals[i].value(n) for n in names] for i in rows], float)

    def rows_for(self, model: NullModel, rows: Sequence[int]) -> list[int]:
        return [i for i in rows if model.applies(self.signals[i])]


def signal_table(queries: Sequence[MultihopQuery], passages: Sequence[Sequence[Passage]]
                 ) -> Table:
    from newsqa.engines.extractive import assess

    found = [assess(q.query, ps).signals for q, ps in zip(queries, passages, strict=True)]
    return Table(found, np.asarray([q.is_null for q in queries]))


def fit_logistic(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Ridge logistic regression by Newton steps; (intercept, weights) in raw signal units."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    w = np.zeros(z.shape[1])
    ridge = L2 * np.diag([0.0] + [1.0] * x.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-z @ w))
        grad = z.T @ (p - y) + ridge @ w
        hess = (z * (p * (1 - p))[:, None]).T @ z + ridge
        w = w - np.linalg.solve(hess, grad)
    weights = w[1:] / scale
    return float(w[0] - (weights * mean).sum()), weights


def fit_model(shape: NullModel, table: Table, rows: Sequence[int]) -> NullModel:
    """`shape`'s signals fitted on those of `rows` it applies to; threshold: best balanced
    accuracy on them. A model for missing signals is fitted on all rows without them."""
    from newsqa.engines.extractive import NullModel

    own = table.rows_for(shape, rows)
    names = list(shape.weights)
    intercept, weights = fit_logistic(table.matrix(names, own), table.null[own])
    model = NullModel(shape.name, intercept, dict(zip(names, weights.tolist(), strict=True)), 0.5)
    p = probabilities(model, table, own)
    best = max(GRID, key=lambda t: balanced_accuracy(p >= t, table.null[own]))
    return replace(model, abstain_at=best)


def probabilities(model: NullModel, table: Table, rows: Sequence[int]) -> np.ndarray:
    return np.asarray([model.probability(table.signals[i]) for i in rows])


def route(models: Sequence[NullModel], table: Table, rows: Sequence[int]
          ) -> tuple[np.ndarray, np.ndarray]:
    """P(null) and the decision of the first model that applies, as the engine routes."""
    p, abstain = np.zeros(len(rows)), np.zeros(len(rows), dtype=bool)
    for j, i in enumerate(rows):
        model = next(m for m in models if m.applies(table.signals[i]))
        p[j] = model.probability(table.signals[i])
        abstain[j] = p[j] >= model.abstain_at
    return p, abstain


def balanced_accuracy(abstain: np.ndarray, null: np.ndarray) -> float:
    return float((abstain[null].mean() + (~abstain[~null]).mean()) / 2)


def cross_validate(
    table: Table, shapes: Sequence[NullModel], folds: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out P(null) and decisions (each fold's own models and thresholds) for every query."""
    n = len(table.signals)
    probability, abstain = np.zeros(n), np.zeros(n, dtype=bool)
    for held in fold_indices(n, folds, seed):
        train = [i for i in range(n) if i not in held]
        models = [fit_model(shape, table, train) for shape in shapes]
        rows = sorted(held)
        probability[rows], abstain[rows] = route(models, table, rows)
    return probability, abstain


def rates(abstain: np.ndarray, null: np.ndarray) -> tuple[float, float]:
    """(null queries abstained, answerable queries abstained)."""
    return float(abstain[null].mean()), float(abstain[~null].mean())


# -- reports -------------------------------------------------------------------------------


def report_multihop(
    qa: NewsQA, queries: Sequence[MultihopQuery], passages: Sequence[Sequence[Passage]],
    folds: int, seeds: int, fit: bool,
) -> None:
    from newsqa.engines.extractive import MODELS

    table = signal_table(queries, passages)
    null = table.null
    print(f"{len(queries)} dev queries: {int(null.sum())} null, {int((~null).sum())} answerable")
    print_separation(table)
    print("\n| rule | null abstained | answerable abstained |\n|---|---|---|")
    old = np.asarray([s.support < 0.30 for s in table.signals])
    print("| old: support < 0.30 | {:.3f} | {:.3f} |".format(*rates(old, null)))
    curve = np.zeros(0)
    for k in range(len(MODELS)):  # the engine's routing, then each fallback on its own
        shapes = MODELS[k:]
        held = [cross_validate(table, shapes, folds, seed) for seed in range(seeds)]
        figures = np.mean([rates(a, null) for _, a in held], axis=0)
        spread = " ".join("{:.3f}/{:.3f}".format(*rates(a, null)) for _, a in held)
        print(f"| {shapes[0].name}, {folds}-fold CV, mean of {seeds} fold draws ({spread}) | "
              f"{figures[0]:.3f} | {figures[1]:.3f} |")
        curve = held[0][0] if k == 0 else curve
    _, shipped = route(MODELS, table, range(len(queries)))
    print("| shipped constants (fitted on all dev: in-sample) | {:.3f} | {:.3f} |".format(
        *rates(shipped, null)))
    print_curve(curve, null)
    if fit:
        print_constants([fit_model(shape, table, range(len(queries))) for shape in MODELS])
    report_direct_multihop(qa, queries, passages)


def print_separation(table: Table) -> None:
    """Each signal alone: AUC of "answerable scores higher" (0.5 = no use, 1 = perfect)."""
    from scipy.stats import rankdata

    print("\n| signal | AUC alone | null mean | answerable mean |\n|---|---|---|---|")
    null = table.null
    for name in ("support", "names_found", "dense", "rerank"):
        values = table.matrix([name], range(len(table.signals)))[:, 0]
        ranks = rankdata(values)
        n_ok, n_null = int((~null).sum()), int(null.sum())
        auc = (ranks[~null].sum() - n_ok * (n_ok + 1) / 2) / (n_ok * n_null)
        print(f"| {name} | {auc:.3f} | {values[null].mean():.3f} | {values[~null].mean():.3f} |")


def print_curve(probability: np.ndarray, null: np.ndarray) -> None:
    print("\nHeld-out P(null) of the routed models (fold draw 0) against one threshold:\n")
    print("| abstain when P(null) >= | null abstained | answerable abstained | balanced acc. |")
    print("|---|---|---|---|")
    for t in CURVE:
        abstain = probability >= t
        n, a = rates(abstain, null)
        print(f"| {t:.2f} | {n:.3f} | {a:.3f} | {balanced_accuracy(abstain, null):.3f} |")


def print_constants(models: Sequence[NullModel]) -> None:
    print("\nFitted on all dev queries (for newsqa/extractive.py):\n")
    for m in models:
        weights = ", ".join(f'"{n}": {w:.4g}' for n, w in m.weights.items())
        print(f'NullModel("{m.name}", {m.intercept:.4g}, {{{weights}}}, {m.abstain_at:.2f})')


# -- direct answers ------------------------------------------------------------------------


def report_direct_multihop(
    qa: NewsQA, queries: Sequence[MultihopQuery], passages: Sequence[Sequence[Passage]]
) -> None:
    from newsqa.engines.extractive import extractive_answer

    scored = []
    for q, ps in zip(queries, passages, strict=True):
        if not q.is_null:
            answer = extractive_answer(q.query, ps, qa.index, qa.settings)
            scored.append((answer, [q.answer]))
    print("\nDirect answers, MultiHop-RAG dev (answerable queries):\n")
    print_direct(scored)


def print_direct(scored: Sequence[tuple[Answer, list[str]]]) -> None:
    """Per kind: questions, set, exact match and token containment (of those set)."""
    from newsqa.engines.direct import question_kind

    counts: dict[str, Counter[str]] = {}
    for answer, gold in scored:
        kind = question_kind(answer.question)
        if kind == "person":  # "Who ...?" and "Which company ...?" fare differently
            wh = re.search(r"\b(who|whom|whose|which|what)\b", answer.question, re.IGNORECASE)
            who = wh is not None and wh.group(1).lower() in ("who", "whom", "whose")
            kind += " (who)" if who else " (which/what <noun>)"
        c = counts.setdefault(kind, Counter())
        c["questions"] += 1
        c["answered"] += answer.answerable
        if answer.direct_answer is None:
            continue
        c["set"] += 1
        c["exact"] += any(exact(answer.direct_answer, g) for g in gold)
        c["holds gold"] += any(holds(answer.direct_answer, g) for g in gold)
        c["within gold"] += any(holds(g, answer.direct_answer) for g in gold)
    print("| kind | questions | answered | direct answer set | exact | holds gold | within gold |")
    print("|---|---|---|---|---|---|---|")
    for kind, c in sorted(counts.items()):
        print(f"| {kind} | {c['questions']} | {c['answered']} | {c['set']} | "
              f"{_share(c['exact'], c['set'])} | {_share(c['holds gold'], c['set'])} | "
              f"{_share(c['within gold'], c['set'])} |")


def exact(prediction: str, gold: str) -> bool:
    from newsqa.app.evaluation import normalise_answer

    return normalise_answer(prediction) == normalise_answer(gold)


def holds(outer: str, inner: str) -> bool:
    """Every normalised token of `inner` is among those of `outer` (and there is one)."""
    from newsqa.app.evaluation import normalise_answer

    tokens, wanted = normalise_answer(outer).split(), normalise_answer(inner).split()
    return bool(wanted) and all(t in tokens for t in wanted)


def _share(count: int, total: int) -> str:
    return f"{count} ({count / total:.0%})" if total else "-"


# -- NewsQA --------------------------------------------------------------------------------


def report_newsqa(folder: Path) -> None:
    """The dev stories in a temporary index, each dev question asked as a user would."""
    from newsqa import NewsQA
    from newsqa.app.evaluation import DEV_IDS, read_ids, select_records
    from newsqa.models import Article

    if not (folder / "items.jsonl").is_file():
        print(f"\nNewsQA skipped: {folder} not found")
        return
    items = [r for _, r in select_records(folder / "items.jsonl", read_ids(folder / DEV_IDS))]
    stories = {str(r["story_id"]): str(r["story"]) for r in items}
    with tempfile.TemporaryDirectory() as db:
        qa = NewsQA(db=db, llm="extractive")
        qa.ingest([Article(text=text, source="CNN", url=f"newsqa:{sid}")
                   for sid, text in stories.items()])
        answers = [(qa.ask(str(r["question"])), _gold(r)) for r in items]
    with_gold = [(a, g) for a, g in answers if g]
    without = [a for a, g in answers if not g]
    print(f"\nNewsQA dev: {len(items)} questions on {len(stories)} stories; "
          f"{len(with_gold)} have an answer span, {len(without)} none (bad question/no answer)")
    print(f"- abstained on answerable: {sum(not a.answerable for a, _ in with_gold)} "
          f"of {len(with_gold)}")
    print(f"- abstained on those without an answer: {sum(not a.answerable for a in without)} "
          f"of {len(without)}\n")
    print_direct(with_gold)


def _gold(record: dict[str, Any]) -> list[str]:
    return [str(a) for a in record.get("answers_stripped") or [] if str(a).strip()]


if __name__ == "__main__":
    raise SystemExit(main())
