"""Benchmark scoring: MultiHop-RAG (retrieval, abstention, citations, answers) and ROUGE.

Numbers are only worth reporting if they can be put beside published ones, so the
MultiHop-RAG scoring reproduces the paper's own scripts (yixuantt/MultiHop-RAG,
`retrieval_evaluate.py` and `qa_evaluate.py`) rule for rule, quirks included, and
`--dump` writes files those scripts read unchanged.

The evaluation data lives outside the repository (`../shared/eval`); nothing here
embeds any of its text. Only the ids in a split file (default `dev_ids.txt`) are
kept when queries are read: the held-out rows are parsed, discarded, never shown.
"""

from __future__ import annotations

import json
import re
import string
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engines.base import drain
from ..engines.summarize import extractive_article_summary
from ..errors import InputError, NewsQAError
from ..models import Answer, Article, Citation, Passage, article_id_for
from ..store.articles import Loaded, read_paths
from ..store.embedding import get_embedder
from ..text.sentences import sentence_spans

if TYPE_CHECKING:
    from .api import NewsQA

DEFAULT_MULTIHOP_DATA = Path("../shared/eval/multihop")
DEFAULT_SUMM_DATA = Path("../shared/eval/summ")
DEFAULT_MULTIHOP_DB = Path(".newsqa-eval-multihop")
DEFAULT_SUMM_DB = Path(".newsqa-eval-summ")
DEV_IDS = "dev_ids.txt"
NULL_TYPE = "null_query"
RETRIEVE_K = 10  # the paper scores the top 10 chunks
ABSTAIN_ANSWER = "Insufficient information."  # the gold answer of every null query

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class DataMissing(NewsQAError):
    """The evaluation folder is absent: callers skip with this message instead of failing."""


# -- reading the data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    fact: str
    doc_id: str
    url: str | None = None


@dataclass(frozen=True)
class MultihopQuery:
    id: str
    query: str
    answer: str
    question_type: str
    evidence: tuple[Evidence, ...] = ()

    @property
    def is_null(self) -> bool:
        """The paper leaves these out of retrieval scores: they have no evidence to find."""
        return self.question_type == NULL_TYPE or not self.evidence

    @property
    def facts(self) -> list[str]:
        return [e.fact for e in self.evidence]


def require_folder(folder: str | Path, what: str) -> Path:
    """Evaluation data is optional on a checkout; say so plainly rather than trace back."""
    path = Path(folder)
    if not path.is_dir():
        raise DataMissing(f"{what} data folder {path} not found; skipping evaluation")
    return path


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line; a bad line names file and line."""
    if not path.is_file():
        raise InputError(str(path), "file not found")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}", f"invalid JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}:{number}", "expected a JSON object")
            yield number, record


def read_ids(path: str | Path) -> list[str]:
    """Ids one per line, in file order; blank lines and `#` comments ignored."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "id file not found")
    ids = [s for line in path.read_text(encoding="utf-8").splitlines() if (s := line.strip())]
    ids = [s for s in ids if not s.startswith("#")]
    if not ids:
        raise InputError(str(path), "no ids in file")
    return ids


def select_records(
    path: Path, ids: Sequence[str]
) -> list[tuple[int, dict[str, Any]]]:
    """Records whose `id` is in `ids`, in the order of `ids`.

    Rows not listed are dropped as soon as their id is known, so held-out rows
    never reach a caller, a log or an error message.
    """
    wanted = set(ids)
    found: dict[str, tuple[int, dict[str, Any]]] = {}
    for number, record in read_jsonl(path):
        if record.get("id") in wanted:
            found[str(record["id"])] = (number, record)
    missing = [i for i in ids if i not in found]
    if missing:
        raise InputError(
            str(path), f"{len(missing)} listed id(s) not in the file, first {missing[0]!r}"
        )
    return [found[i] for i in dict.fromkeys(ids)]


def load_multihop_queries(path: Path, ids: Sequence[str]) -> list[MultihopQuery]:
    queries = []
    for number, record in select_records(path, ids):
        try:
            evidence = tuple(
                Evidence(fact=str(e["fact"]), doc_id=str(e.get("doc_id", "")), url=e.get("url"))
                for e in record.get("evidence") or []
            )
            queries.append(
                MultihopQuery(
                    id=str(record["id"]),
                    query=str(record["query"]),
                    answer=str(record.get("answer", "")),
                    question_type=str(record.get("question_type", "")),
                    evidence=evidence,
                )
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"{path}:{number}", f"malformed query record: {exc}") from None
    return queries


def doc_article_ids(corpus: Path) -> dict[str, str]:
    """Corpus `doc_id` -> the id our index gives that article.

    Our ids derive from the URL (`article_id_for`), so the link goes through the
    URL. The loader is asked first, in case it assigns ids its own way; the URL
    rule is the fallback when the loader does not know a record.
    """
    urls: dict[str, tuple[str | None, str]] = {}
    for _, record in read_jsonl(corpus):
        text = str(record.get("text") or record.get("body") or "")
        urls[str(record.get("id", ""))] = (record.get("url"), text)
    by_url = _loaded_ids_by_url(corpus)
    mapping = {}
    for doc_id, (url, text) in urls.items():
        key = url.strip() if url else None
        mapping[doc_id] = (by_url.get(key) if key else None) or article_id_for(url=url, text=text)
    return mapping


def _loaded_ids_by_url(corpus: Path) -> dict[str, str]:
    return {
        item.article.url.strip(): item.article.id
        for item in read_paths([corpus])
        if isinstance(item, Loaded) and item.article.url
    }


# -- retrieval scoring, as the paper's retrieval_evaluate.py ---------------------------------


@dataclass(frozen=True)
class RankingScore:
    hit_at_4: bool
    hit_at_10: bool
    reciprocal_rank: float
    average_precision: float


def _squash(text: str) -> str:
    # The paper deletes spaces and newlines (only those) before the substring test.
    return text.replace(" ", "").replace("\n", "")


def holds_fact(chunk: str, gold: Sequence[str]) -> bool:
    """The paper's relevance rule for one retrieved chunk (a ranker's training label)."""
    squashed = _squash(chunk)
    return any(_squash(g) in squashed for g in gold)


def score_ranking(retrieved: Sequence[str], gold: Sequence[str]) -> RankingScore:
    """One query's ranking, scored exactly as `calculate_metrics` in retrieval_evaluate.py.

    - A retrieved chunk is relevant when any gold fact is a substring of it, after
      removing spaces and newlines from both.
    - Hit@K: some relevant chunk within the first K (not the share of facts found,
      whatever the paper's prose says).
    - RR@10: 1 / rank of the first relevant chunk within 10, else 0.
    - AP@10: at each relevant rank r <= 10, add (gold facts first matched at r) / r;
      divide the sum by min(number of gold facts, 10) - not by the number of hits.
      Gold facts are compared as a list, so a repeated fact counts in the divisor
      but can be matched only once, as upstream.
    """
    if not gold:
        raise ValueError("a query without gold facts cannot be scored (the paper skips them)")
    gold_s = [_squash(g) for g in gold]
    found: list[str] = []
    hit4 = hit10 = False
    first: int | None = None
    ap_sum = 0.0
    for rank, chunk in enumerate((_squash(r) for r in retrieved[:RETRIEVE_K]), start=1):
        if not any(g in chunk for g in gold_s):
            continue
        hit10 = True
        hit4 = hit4 or rank <= 4
        first = first or rank
        new = 0
        for g in gold_s:
            if g in chunk and g not in found:
                new += 1
                found.append(g)
        ap_sum += new / rank
    return RankingScore(
        hit_at_4=hit4,
        hit_at_10=hit10,
        reciprocal_rank=1 / first if first else 0.0,
        average_precision=ap_sum / min(len(gold_s), RETRIEVE_K),
    )


def retrieval_metrics(
    retrieved_lists: Sequence[Sequence[str]], gold_lists: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Means over queries of Hits@4, Hits@10, MRR@10, MAP@10 (plus `n`)."""
    scores = [score_ranking(r, g) for r, g in zip(retrieved_lists, gold_lists, strict=True)]
    n = len(scores)
    if n == 0:
        return {"hits@4": 0.0, "hits@10": 0.0, "mrr@10": 0.0, "map@10": 0.0, "n": 0}
    return {
        "hits@4": sum(s.hit_at_4 for s in scores) / n,
        "hits@10": sum(s.hit_at_10 for s in scores) / n,
        "mrr@10": sum(s.reciprocal_rank for s in scores) / n,
        "map@10": sum(s.average_precision for s in scores) / n,
        "n": n,
    }


# -- answer scoring, as the paper's qa_evaluate.py -------------------------------------------

_ANSWER_RE = re.compile(r'The answer to the question is "(.*?)"')


def extract_answer(text: str) -> str:
    """The paper's models end with `The answer to the question is "..."`; take that part."""
    if "The answer" not in text:
        return text
    match = _ANSWER_RE.search(text)
    return match.group(1) if match else text


def lenient_match(prediction: str, gold: str) -> bool:
    """The paper's accuracy: prediction and gold share one whitespace token, ignoring case.

    Lenient by design of the paper: a long extractive sentence nearly always passes,
    which is why `exact_match` is reported beside it.
    """
    pred = extract_answer(prediction).lower().split()
    return bool(set(pred) & set(gold.lower().split()))


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalise_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalise_answer(extract_answer(prediction)) == normalise_answer(gold)


def prediction_text(answer: Answer) -> str:
    """What is compared with the gold answer: the direct answer when there is one (a whole
    sentence never exactly matches "Sam Bankman-Fried"), else the answer text; an
    abstention says what the paper's gold says."""
    if not answer.answerable:
        return ABSTAIN_ANSWER
    return answer.direct_answer or answer.answer


# -- citations ---------------------------------------------------------------------------------


def citation_is_verbatim(citation: Citation, article: Article) -> bool:
    """Re-check against the stored article rather than trust the `Citation` type."""
    return (
        citation.article_id == article.id
        and article.text[citation.start : citation.end] == citation.quote
    )


# -- running MultiHop-RAG ----------------------------------------------------------------------


@dataclass
class Outcome:
    """One query's run: what was retrieved, what was answered, how long each took."""

    query: MultihopQuery
    passages: list[Passage]
    search_ms: float
    answer: Answer | None = None
    answer_ms: float | None = None
    verified: int = 0  # citations that re-check as verbatim spans


def dump_record(outcome: Outcome) -> dict[str, Any]:
    """A row `retrieval_evaluate.py` (and `qa_evaluate.py` when answered) reads unchanged."""
    q = outcome.query
    record: dict[str, Any] = {
        "id": q.id,
        "query": q.query,
        "question_type": q.question_type,
        "retrieval_list": [{"text": p.text, "score": p.score} for p in outcome.passages],
        "gold_list": [{"fact": f} for f in q.facts],
    }
    if outcome.answer is not None:
        record["model_answer"] = prediction_text(outcome.answer)
        record["gold_answer"] = q.answer
    return record


def ingest_corpus(qa: NewsQA, corpus: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Idempotent: a second run over an unchanged corpus embeds nothing."""
    callback = (lambda done, total: progress("ingest", done, total)) if progress else None
    report = qa.ingest([corpus], progress=callback)
    if report.failed:
        first = report.failed[0]
        raise InputError(first.path, f"corpus did not ingest cleanly: {first.error}")
    return report.as_json()


def run_queries(
    qa: NewsQA,
    queries: Sequence[MultihopQuery],
    *,
    answers: bool = True,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Search top 10 for scoring, then answer from the first `top_k` of those passages.

    The answer engine is the one `NewsQA.ask` runs; calling it on the passages
    already retrieved avoids searching twice per query.
    """
    articles: dict[str, Article] = {}
    outcomes = []
    for done, query in enumerate(queries, start=1):
        start = time.perf_counter()
        passages = qa.search(query.query, top_k=RETRIEVE_K)
        outcome = Outcome(query, passages, (time.perf_counter() - start) * 1000)
        if answers:
            _answer(qa, outcome, articles)
        outcomes.append(outcome)
        if progress:
            progress("queries", done, len(queries))
    return outcomes


def _answer(qa: NewsQA, outcome: Outcome, articles: dict[str, Article]) -> None:
    start = time.perf_counter()
    context = outcome.passages[: qa.settings.top_k]
    result = drain(qa.engine.answer(outcome.query.query, context, qa.index, qa.settings,
                                    streaming=False))
    outcome.answer_ms = (time.perf_counter() - start) * 1000
    outcome.answer = result
    for citation in result.citations:
        if citation.article_id not in articles:
            articles[citation.article_id] = qa.get_article(citation.article_id)
        outcome.verified += citation_is_verbatim(citation, articles[citation.article_id])


# -- summarising a run ---------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), without numpy."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "mean": round(sum(values) / len(values), 2),
        "n": len(values),
    }


def score_retrieval(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Overall and per question type, null queries excluded as in the paper."""
    scored = [o for o in outcomes if not o.query.is_null]
    overall: dict[str, Any] = retrieval_metrics(
        [[p.text for p in o.passages] for o in scored], [o.query.facts for o in scored]
    )
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in scored:
        groups[o.query.question_type].append(o)
    overall["by_type"] = {
        qtype: retrieval_metrics(
            [[p.text for p in o.passages] for o in group], [o.query.facts for o in group]
        )
        for qtype, group in sorted(groups.items())
    }
    return overall


def score_abstention(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Abstaining on null queries is right; abstaining on answerable ones is a miss."""
    answered = [o for o in outcomes if o.answer is not None]
    null = [o for o in answered if o.query.is_null]
    real = [o for o in answered if not o.query.is_null]
    return {
        "null_abstain_rate": _rate(sum(not o.answer.answerable for o in null if o.answer), null),
        "false_abstain_rate": _rate(sum(not o.answer.answerable for o in real if o.answer), real),
        "n_null": len(null),
        "n_answerable": len(real),
    }


def score_citations(outcomes: Sequence[Outcome], doc_ids: Mapping[str, str]) -> dict[str, Any]:
    """Verbatim share (must be 1.0), citations per given answer, gold-article coverage.

    `gold_article_rate` counts, over every answerable (non-null) query, those whose
    citations include at least one evidence article; an abstention counts as a miss.
    """
    answered = [o for o in outcomes if o.answer is not None]
    total = sum(len(o.answer.citations) for o in answered if o.answer)
    given = [o for o in answered if o.answer and o.answer.answerable]
    real = [o for o in answered if not o.query.is_null]
    gold_hits = sum(_cites_gold(o, doc_ids) for o in real)
    return {
        "verified_rate": sum(o.verified for o in answered) / total if total else 1.0,
        "per_answer": total / len(given) if given else 0.0,
        "gold_article_rate": _rate(gold_hits, real),
        "n_citations": total,
    }


def _cites_gold(outcome: Outcome, doc_ids: Mapping[str, str]) -> bool:
    gold = {doc_ids.get(e.doc_id) for e in outcome.query.evidence}
    cited = {c.article_id for c in outcome.answer.citations} if outcome.answer else set()
    return bool(cited & (gold - {None}))


def score_answers(outcomes: Sequence[Outcome], mode: str, model: str | None) -> dict[str, Any]:
    """The paper's lenient accuracy over all queries (null ones included), and exact match."""
    answered = [o for o in outcomes if o.answer is not None]

    def block(group: Sequence[Outcome]) -> dict[str, Any]:
        preds = [(prediction_text(o.answer), o.query.answer) for o in group if o.answer]
        return {
            "lenient_accuracy": _rate(sum(lenient_match(p, g) for p, g in preds), preds),
            "exact_match": _rate(sum(exact_match(p, g) for p, g in preds), preds),
            "n": len(preds),
        }

    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in answered:
        groups[o.query.question_type].append(o)
    result: dict[str, Any] = {"mode": mode, "model": model, **block(answered)}
    result["by_type"] = {t: block(g) for t, g in sorted(groups.items())}
    return result


def _rate(count: int, group: Sequence[object]) -> float:
    return count / len(group) if group else 0.0


def _of(rate: float, n: int) -> str:
    """A rate for the report, "-" when there was nothing to count (a run of 5 queries may
    hold no null one: "abstains on null queries 0.0000" said it never abstained)."""
    return f"{rate:.4f}" if n else "-"


def summarise_run(
    outcomes: Sequence[Outcome], doc_ids: Mapping[str, str], *, mode: str, model: str | None
) -> dict[str, Any]:
    """The `--json` object: one dict, every figure the report shows."""
    answered = any(o.answer is not None for o in outcomes)
    answer_ms = [o.answer_ms for o in outcomes if o.answer_ms is not None]
    return {
        "n_queries": len(outcomes),
        "retrieval": score_retrieval(outcomes),
        "abstention": score_abstention(outcomes) if answered else None,
        "citations": score_citations(outcomes, doc_ids) if answered else None,
        "answers": score_answers(outcomes, mode, model) if answered else None,
        "latency_ms": {
            "search": latency_summary([o.search_ms for o in outcomes]),
            "answer": latency_summary(answer_ms),
        },
    }


@dataclass
class MultihopRun:
    summary: dict[str, Any]
    outcomes: list[Outcome] = field(default_factory=list)


def evaluate_multihop(
    qa: NewsQA,
    data: str | Path = DEFAULT_MULTIHOP_DATA,
    *,
    ids_file: str | Path | None = None,
    limit: int | None = None,
    answers: bool = True,
    progress: Progress | None = None,
) -> MultihopRun:
    """Ingest the corpus into `qa` (idempotent), run the listed queries, score them."""
    folder = require_folder(data, "MultiHop-RAG")
    ids = read_ids(ids_file or folder / DEV_IDS)
    if limit is not None:
        if limit < 1:
            raise InputError("--limit", f"must be at least 1, got {limit}")
        ids = ids[:limit]
    queries = load_multihop_queries(folder / "queries.jsonl", ids)
    ingest = ingest_corpus(qa, folder / "corpus.jsonl", progress)
    doc_ids = doc_article_ids(folder / "corpus.jsonl")
    outcomes = run_queries(qa, queries, answers=answers, progress=progress)
    mode = "llm" if answers and qa.engine.model is not None else "extractive"
    model = qa.engine.model if mode == "llm" else None
    summary = summarise_run(outcomes, doc_ids, mode=mode, model=model)
    summary["settings"] = {
        "embedding": qa.settings.embedding,
        "chunk_tokens": qa.settings.chunk_tokens,
        "chunk_overlap": qa.settings.chunk_overlap,
        "answer_top_k": qa.settings.top_k,
        "ids": str(ids_file or folder / DEV_IDS),
        "ingest": ingest,
        "rerank": qa.retriever.weights.rerank,
    }
    return MultihopRun(summary, list(outcomes))


def write_dump(outcomes: Iterable[Outcome], path: str | Path) -> None:
    records = [dump_record(o) for o in outcomes]
    Path(path).write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")


# -- the markdown report ---------------------------------------------------------------------

# Published retrieval figures (MultiHop-RAG paper, Table 5; see shared/eval/ANCHOR_TABLES.md):
# (system, MRR@10, MAP@10, Hits@10, Hits@4).
PAPER_RETRIEVAL: tuple[tuple[str, float, float, float, float], ...] = (
    ("voyage-02 + bge-reranker-large (best)", 0.586, 0.4795, 0.7467, 0.6625),
    ("bge-large-en-v1.5 + bge-reranker-large", 0.563, 0.4759, 0.7183, 0.6364),
    ("text-embedding-ada-002 + bge-reranker-large", 0.5477, 0.4625, 0.7059, 0.6169),
    ("bge-large-en-v1.5", 0.4298, 0.3423, 0.6718, 0.5221),
    ("voyage-02", 0.3934, 0.3143, 0.6506, 0.4619),
    ("text-embedding-ada-002", 0.4203, 0.3431, 0.6381, 0.504),
    ("hkunlp/instructor-large", 0.3458, 0.265, 0.5717, 0.4229),
    ("llm-embedder", 0.2558, 0.1725, 0.4499, 0.3189),
)
# Table 6: GPT-4 accuracy with retrieved chunks (voyage-02 + reranker, top 6), all queries.
PAPER_GPT4_ACCURACY = 0.56


def render_report(summary: Mapping[str, Any]) -> str:
    """Markdown: our figures beside the paper's, then the parts the paper has no column for."""
    lines = [
        "# MultiHop-RAG evaluation",
        "",
        f"Queries: {summary['n_queries']} ({summary.get('settings', {}).get('ids', '')}).",
        "",
        *_retrieval_section(summary["retrieval"], summary.get("settings", {})),
        *_answer_sections(summary),
        "## Latency (ms)",
        "",
        "| stage | p50 | p95 | mean | n |",
        "|---|---|---|---|---|",
    ]
    for stage, lat in summary["latency_ms"].items():
        lines.append(
            f"| {stage} | {lat.get('p50', '-')} | {lat.get('p95', '-')} | "
            f"{lat.get('mean', '-')} | {lat.get('n', 0)} |"
        )
    return "\n".join(lines) + "\n"


def _retrieval_section(ret: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    ours = f"newsqa ({settings.get('embedding', '?')}, hybrid), dev split"
    lines = [
        "## Retrieval (null queries excluded; scored as retrieval_evaluate.py)",
        "",
        "Published rows: Tang & Yang 2024, Table 5 (all 2,255 non-null queries; ours: "
        f"{ret['n']} dev queries).",
        "",
        *_in_sample_warning(settings),
        "| system | MRR@10 | MAP@10 | Hits@10 | Hits@4 |",
        "|---|---|---|---|---|",
        f"| **{ours}** | **{ret['mrr@10']:.4f}** | **{ret['map@10']:.4f}** | "
        f"**{ret['hits@10']:.4f}** | **{ret['hits@4']:.4f}** |",
    ]
    lines += [f"| {n} | {a} | {b} | {c} | {d} |" for n, a, b, c, d in PAPER_RETRIEVAL]
    lines += ["", "| question type | n | MRR@10 | MAP@10 | Hits@10 | Hits@4 |",
              "|---|---|---|---|---|---|"]
    for qtype, m in ret["by_type"].items():
        lines.append(
            f"| {qtype} | {m['n']} | {m['mrr@10']:.4f} | {m['map@10']:.4f} | "
            f"{m['hits@10']:.4f} | {m['hits@4']:.4f} |"
        )
    return [*lines, ""]


def _in_sample_warning(settings: Mapping[str, Any]) -> list[str]:
    """The shipped second-stage ranker learned from the dev questions: say so beside them."""
    if not settings.get("rerank") or not str(settings.get("ids", "")).endswith(DEV_IDS):
        return []
    return [
        "**In-sample:** the second-stage ranker (newsqa/retrieval/rerank.py) was trained on "
        "these dev questions, so the figures below overstate it. Its cross-validated figures "
        "are in benchmarks/RESULTS.md (`python benchmarks/train_ranker.py`); "
        "`NEWSQA_RETRIEVAL_RERANK=0` scores the first stage alone.",
        "",
    ]


def _answer_sections(summary: Mapping[str, Any]) -> list[str]:
    answers = summary.get("answers")
    if not answers:
        return ["Answers were not run (--no-answers).", ""]
    abst, cit = summary["abstention"], summary["citations"]
    label = answers["mode"] + (f" ({answers['model']})" if answers.get("model") else "")
    lines = [
        f"## Answers: {label}",
        "",
        "| measure | ours | paper |",
        "|---|---|---|",
        f"| lenient accuracy (shares a word with gold; all queries) | "
        f"{answers['lenient_accuracy']:.4f} | GPT-4 {PAPER_GPT4_ACCURACY} |",
        f"| normalised exact match | {answers['exact_match']:.4f} | - |",
        f"| abstains on null queries | {_of(abst['null_abstain_rate'], abst['n_null'])} | - |",
        f"| abstains on answerable queries | "
        f"{_of(abst['false_abstain_rate'], abst['n_answerable'])} | - |",
        f"| citations verbatim (re-checked) | {cit['verified_rate']:.4f} | - |",
        f"| citations per answer | {cit['per_answer']:.2f} | - |",
        f"| answerable queries citing a gold article | {cit['gold_article_rate']:.4f} | - |",
        "",
    ]
    if answers["mode"] == "extractive":
        lines += [
            "Extractive mode answers with retrieved sentences, not short answers: exact "
            "match comes almost only from abstaining on null queries, and the lenient "
            "match counts any shared word. Neither compares with an LLM's accuracy.",
            "",
        ]
    return lines


# -- ROUGE for summaries -----------------------------------------------------------------------

# rougeLsum is what CNN/DM papers mean by ROUGE-L; plain rougeL ignores sentence breaks.
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
SUMMARY_SENTENCES = 3  # CNN/DM highlights average 3-4 sentences; lead-3 is the usual bar


@dataclass(frozen=True)
class SummItem:
    id: str
    article: str
    reference: str
    dataset: str = ""


def load_summ_items(path: Path, ids: Sequence[str]) -> list[SummItem]:
    items = []
    for number, record in select_records(path, ids):
        try:
            items.append(
                SummItem(
                    id=str(record["id"]),
                    article=str(record["article"]),
                    reference=str(record["reference_summary"]),
                    dataset=str(record.get("dataset", "")),
                )
            )
        except KeyError as exc:
            raise InputError(f"{path}:{number}", f"missing field {exc}") from None
    return items


def reference_lines(reference: str) -> str:
    """CNN/DM references are PTB-tokenised highlights joined by ' . ': one per line (rougeLsum)."""
    return "\n".join(p.strip() for p in reference.split(" . ") if p.strip())


def split_sentences(text: str) -> list[str]:
    """The project's sentence splitter (the one summaries pick from)."""
    return [text[s:e] for s, e in sentence_spans(text)]


def lead_sentences(text: str, n: int = SUMMARY_SENTENCES) -> str:
    """The lead-n baseline, one sentence per line: news puts the gist first."""
    return "\n".join(split_sentences(text)[:n])


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """F-measures (rouge-score, Porter stemming). Sentences are separated by newlines."""
    scores = _rouge_scorer().score(reference_lines(reference), prediction)
    return {name: score.fmeasure for name, score in scores.items()}


_SCORER: Any = None


def _rouge_scorer() -> Any:
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    return _SCORER


def mean_rouge(pairs: Iterable[tuple[str, str]]) -> dict[str, float]:
    """Mean F-measures over (prediction, reference) pairs, plus `n`."""
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    n = 0
    for prediction, reference in pairs:
        for name, value in rouge_scores(prediction, reference).items():
            totals[name] += value
        n += 1
    return {**{k: round(v / n, 4) if n else 0.0 for k, v in totals.items()}, "n": n}


def evaluate_summaries(
    items: Sequence[SummItem],
    summarise: Callable[[SummItem], str],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """ROUGE of `summarise` beside lead-3, per dataset (CNN/DM and XSum differ in kind)."""
    made: list[str] = []
    start = time.perf_counter()
    for done, item in enumerate(items, start=1):
        made.append(summarise(item))
        if progress:
            progress("summaries", done, len(items))
    elapsed = time.perf_counter() - start
    by_dataset: dict[str, Any] = {}
    for dataset in sorted({i.dataset for i in items}):
        rows = [(m, i) for m, i in zip(made, items, strict=True) if i.dataset == dataset]
        by_dataset[dataset] = {
            "system": mean_rouge((m, i.reference) for m, i in rows),
            "lead3": mean_rouge((lead_sentences(i.article), i.reference) for _, i in rows),
        }
    return {
        "n": len(items),
        "by_dataset": by_dataset,
        "ms_per_summary": round(elapsed * 1000 / len(items), 2) if items else 0.0,
    }


def extractive_summariser(embedding: str | None = "minilm") -> Callable[[SummItem], str]:
    """The offline summariser `NewsQA.summarize` runs for one article, sentences one per line."""
    embedder = None
    if embedding:
        embedder = get_embedder(embedding)

    def summarise(item: SummItem) -> str:
        summary = extractive_article_summary(
            Article(text=item.article), embedder, bullets=SUMMARY_SENTENCES
        )
        return "\n".join(b.text for b in summary.bullets)

    return summarise


def evaluate_summ(
    data: str | Path = DEFAULT_SUMM_DATA,
    *,
    ids_file: str | Path | None = None,
    limit: int | None = None,
    embedding: str | None = "minilm",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """ROUGE of the extractive summariser on the dev ids, lead-3 beside it."""
    folder = require_folder(data, "summarisation")
    ids = read_ids(ids_file or folder / DEV_IDS)
    if limit is not None:
        ids = ids[: max(limit, 1)]
    items = load_summ_items(folder / "items.jsonl", ids)
    result = evaluate_summaries(items, extractive_summariser(embedding), progress)
    result["mode"] = "extractive"
    result["embedding"] = embedding or "tfidf"
    return result


# FRANK's stored per-article ROUGE, averaged over the 250 CNN/DM items (ANCHOR_TABLES.md §3;
# derived, and computed with FRANK's own settings, so only loosely comparable).
FRANK_ROUGE: tuple[tuple[str, float, float, float], ...] = (
    ("bart", 0.4531, 0.2251, 0.3269),
    ("bert_sum", 0.4276, 0.1993, 0.2975),
    ("pgn (pointer-generator)", 0.3977, 0.1787, 0.2732),
)


def render_summ(result: Mapping[str, Any]) -> str:
    """Markdown: per dataset, our summariser and lead-3, with FRANK's systems for CNN/DM."""
    lines = [f"# Summaries: {result.get('mode', '?')} ({result.get('embedding', '?')}), "
             f"{result['n']} dev items, {result['ms_per_summary']} ms each", ""]
    for dataset, block in result["by_dataset"].items():
        lines += [f"## {dataset} (n={block['system']['n']})", "",
                  "| system | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum |", "|---|---|---|---|---|"]
        for name, key in (("newsqa", "system"), ("lead-3", "lead3")):
            r = block[key]
            lines.append(f"| {name} | {r['rouge1']:.4f} | {r['rouge2']:.4f} | "
                         f"{r['rougeL']:.4f} | {r['rougeLsum']:.4f} |")
        if dataset == "cnn_dailymail":
            lines += [f"| FRANK {n} (derived, all 250) | {a} | {b} | {c} | - |"
                      for n, a, b, c in FRANK_ROUGE]
        lines.append("")
    return "\n".join(lines)
