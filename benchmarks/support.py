"""Claim support (newsqa/support.py) on labelled claim/quote pairs from dev data only.

A pair is a claim built from a dev question and its gold answer, with quotes:
- positive: the gold evidence (MultiHop-RAG's evidence facts; the NewsQA story
  sentence holding the answer span);
- negative "same article": each gold quote swapped for another sentence of the
  same article (the hard case: same topic, same names);
- negative "other article" (MultiHop-RAG only): each swapped for a sentence of
  an article the query does not use.

A third family, "facts" (MultiHop-RAG), is a claim that says what one gold fact says,
the way a model is asked to write it ("According to <outlet>, <fact>"):
- positive: that fact; negative "same article": another sentence of its article;
- negative "flipped": the claim turned around (an opposite word swapped in, "won" ->
  "lost", or "not" put after its first auxiliary) against the unchanged fact: the
  polarity check's recall. Term overlap alone accepts nearly all of these;
- negative "renamed": the fact's first name replaced by another name of the same fact,
  so every name is still in the quote but who did what changed.
The question-built claims restate the question, which the whole-claim coverage rejects
on purpose since issue 15's hand-check; the fact claims are what a claim should be.

Every pair is checked twice: as an answer (the question given, as `answer.py`
will call it) and as a statement (no question, as summaries and timelines will).
Prints precision/recall/F1 of "supported" per source, mode and negative kind, the
threshold curve, and the threshold with the best balanced accuracy on the hard
(same-article) negatives, averaged over the four source x mode sets.

    python benchmarks/support.py [--data ../shared/eval] [--idf corpus|uniform] [--seed 0]
    python benchmarks/support.py --subjects     # the answer-level subject rule alone

Reads only ids in each folder's dev_ids.txt; skips with a message when the data
is absent.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsqa.app.evaluation import read_ids, read_jsonl, select_records
from newsqa.grounding.support import (
    RELEVANCE_THRESHOLD,
    SUPPORT_THRESHOLD,
    Idf,
    check_support,
    claim_names,
    idf_from_texts,
    is_instruction,
    off_subject,
    question_subjects,
    relevance,
)
from newsqa.text.lexical import words
from newsqa.text.sentences import sentence_spans

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "eval"
MIN_WORDS = 5  # a negative sentence shorter than this is a heading or a caption
MODES = ("answer", "statement")
THRESHOLDS = [round(0.05 * i, 2) for i in range(21)]
RELEVANCE_FLOORS = [round(0.05 * i, 2) for i in range(9)]


@dataclass(frozen=True)
class Pair:
    source: str  # "multihop" or "newsqa"
    kind: str  # "positive", "same article", "other article"
    claim: str
    quotes: tuple[str, ...]
    question: str
    about: tuple[str, ...] = ()

    @property
    def label(self) -> bool:
        return self.kind == "positive"


@dataclass
class Scored:
    """One pair's check with no thresholds: what the hard rules said, and the two scores."""

    pair: Pair
    mode: str
    hard_ok: bool
    score: float
    relevance: float
    reason: str | None = None

    def supported(self, threshold: float, floor: float) -> bool:
        needs_relevance = self.mode == "answer"
        return (self.hard_ok and self.score >= threshold
                and (not needs_relevance or self.relevance >= floor))


# -- claims from questions ----------------------------------------------------------------

_AUX = r"(?:does|did|do|is|was|are|were|has|have|had|can|could|would|will|should)"
_WH_VERB = re.compile(r"^(?:who|what|which)\s+(is|was|are|were|has|had|did|does)\b(.*)$", re.I)
_WH_SUBJECT = re.compile(r"^(?:who|what)\s+(\w+s|\w+ed)\b(.*)$", re.I)


def declarative(question: str, answer: str) -> str:
    """The question as a statement of its answer (lexically: the question plus the answer).

    "Did X report Y?" + "Yes" -> "X report Y."; + "No" -> "No: X report Y.";
    "Who is X?" + "A" -> "A is X."; anything else "A: <question>." The check is
    lexical, so grammar beyond this does not change a score.
    """
    q = question.strip().rstrip("?").strip()
    a = answer.strip().rstrip(".")
    if a.lower() in ("yes", "no"):
        statement = re.sub(rf"^{_AUX}\s+", "", q, flags=re.I)
        return statement + "." if a.lower() == "yes" else f"No: {statement}."
    for pattern in (_WH_VERB, _WH_SUBJECT):
        found = pattern.match(q)
        if found:
            return f"{a} {found.group(1)}{found.group(2)}."
    return f"{a}: {q}."


# -- MultiHop-RAG ---------------------------------------------------------------------------


def multihop_pairs(folder: Path, rng: random.Random) -> list[Pair]:
    ids = read_ids(folder / "dev_ids.txt")
    corpus = {str(r["id"]): r for _, r in read_jsonl(folder / "corpus.jsonl")}
    sentences = {doc: _sentences(_body(r)) for doc, r in corpus.items()}
    pairs: list[Pair] = []
    for _, query in select_records(folder / "queries.jsonl", ids):
        evidence = [e for e in query.get("evidence") or [] if str(e.get("doc_id")) in corpus]
        answer = str(query.get("answer", ""))
        if not evidence or not answer or query.get("question_type") == "null_query":
            continue
        claim = declarative(str(query["query"]), answer)
        pairs.extend(_multihop_query_pairs(claim, str(query["query"]), evidence, corpus,
                                           sentences, rng))
    return pairs


def _multihop_query_pairs(
    claim: str, question: str, evidence: list[dict[str, Any]], corpus: dict[str, Any],
    sentences: dict[str, list[str]], rng: random.Random,
) -> list[Pair]:
    facts = [str(e["fact"]) for e in evidence]
    docs = [str(e["doc_id"]) for e in evidence]
    same = [_other_sentence(sentences[d], facts, rng) for d in docs]
    others = [d for d in corpus if d not in docs and sentences[d]]
    far_docs = [rng.choice(others) for _ in docs]
    far = [_other_sentence(sentences[d], facts, rng) for d in far_docs]
    pairs = [Pair("multihop", "positive", claim, tuple(facts), question, _about(corpus, docs))]
    pairs += _fact_pairs(evidence, question, corpus, sentences, rng)
    if all(same):
        pairs.append(Pair("multihop", "same article", claim, tuple(s or "" for s in same),
                          question, _about(corpus, docs)))
    if all(far):
        pairs.append(Pair("multihop", "other article", claim, tuple(s or "" for s in far),
                          question, _about(corpus, far_docs)))
    return pairs


def _about(corpus: dict[str, Any], docs: Sequence[str]) -> tuple[str, ...]:
    """What a citation may state of its article besides the quote, as `grounding._about`:
    outlet and date (not the title, since issue 15)."""
    out: list[str] = []
    for doc in dict.fromkeys(docs):
        record = corpus[doc]
        out += [str(record.get(k) or "") for k in ("source", "published_at")]
    return tuple(s for s in out if s)


def _fact_pairs(
    evidence: list[dict[str, Any]], question: str, corpus: dict[str, Any],
    sentences: dict[str, list[str]], rng: random.Random,
) -> list[Pair]:
    """Per gold fact: the claim saying it, with it, with another sentence, and turned around."""
    pairs: list[Pair] = []
    for item in evidence:
        fact, doc = str(item["fact"]).strip(), str(item["doc_id"])
        if len(fact.split()) < MIN_WORDS:
            continue
        outlet = str(corpus[doc].get("source") or "the article")
        about = _about(corpus, [doc])
        claim = f"According to {outlet}, {fact}"
        pairs.append(Pair("facts", "positive", claim, (fact,), question, about))
        other = _other_sentence(sentences[doc], [fact], rng)
        if other:
            pairs.append(Pair("facts", "same article", claim, (other,), question, about))
        flipped = flip(fact)
        if flipped:
            pairs.append(Pair("facts", "flipped", f"According to {outlet}, {flipped}", (fact,),
                              question, about))
        renamed = rename(fact)
        if renamed:
            pairs.append(Pair("facts", "renamed", f"According to {outlet}, {renamed}", (fact,),
                              question, about))
    return pairs


_NAME_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def rename(sentence: str) -> str | None:
    """The sentence with its first name replaced by the last other name it holds
    ("Huang said Bankman-Fried ..." -> "Bankman-Fried said Bankman-Fried ..."): who did what
    changed while every name stays in the quote (issue 15's hand-check found one kept).
    None when it names fewer than two."""
    keys = {key for _, key in claim_names(sentence)}
    names = list(dict.fromkeys(w for w in _NAME_WORD.findall(sentence)
                               if (words(w) or [""])[0] in keys))
    if len(names) < 2:
        return None
    first, other = names[0], names[-1]
    at = re.search(rf"\b{re.escape(first)}\b", sentence)
    if at is None:
        return None
    return sentence[:at.start()] + other + sentence[at.end():]


_SWAPS = dict(pair.split(":") for pair in """won:lost lost:won win:lose wins:loses beat:lost
    rose:fell fell:rose rise:fall increased:decreased decreased:increased gained:lost
    higher:lower lower:higher before:after after:before approved:rejected rejected:approved
    more:fewer fewer:more guilty:innocent supported:opposed opposed:supported""".split())
_FIRST_AUX = re.compile(r"\b(is|was|are|were|will|would|can|could|has|have|had|should)\b")


def flip(sentence: str) -> str | None:
    """The sentence saying the opposite: its first opposite-pair word swapped, else "not"
    after its first auxiliary; None when it has neither."""
    for match in re.finditer(r"[A-Za-z]+", sentence):
        swap = _SWAPS.get(match.group().lower())
        if swap:
            return sentence[:match.start()] + swap + sentence[match.end():]
    aux = _FIRST_AUX.search(sentence)
    if aux is None:
        return None
    return sentence[:aux.end()] + " not" + sentence[aux.end():]


def _body(record: dict[str, Any]) -> str:
    return str(record.get("body") or record.get("text") or "")


def _sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def _other_sentence(pool: list[str], avoid: Sequence[str], rng: random.Random) -> str | None:
    """A random sentence of the pool that is not, and holds no part of, a gold quote."""
    choices = [s for s in pool if len(s.split()) >= MIN_WORDS
               and not any(_overlaps(s, a) for a in avoid)]
    return rng.choice(choices) if choices else None


def _overlaps(sentence: str, gold: str) -> bool:
    return gold in sentence or sentence in gold or gold[:60] in sentence


# -- NewsQA ---------------------------------------------------------------------------------


def newsqa_pairs(folder: Path, rng: random.Random) -> tuple[list[Pair], list[Pair]]:
    """(pairs, every other story sentence as a negative: the false-positive rate's pool)."""
    pairs: list[Pair] = []
    pool: list[Pair] = []
    for _, item in select_records(folder / "items.jsonl", read_ids(folder / "dev_ids.txt")):
        spans = _spans(item.get("spans"))
        answers = _answers(item.get("answers_stripped") or item.get("answers"))
        if not spans or not answers:
            continue
        story, question = str(item["story"]), str(item["question"])
        claim = declarative(question, answers[0])
        gold, rest = _split_story(story, spans[0])
        if not gold:
            continue
        pairs.append(Pair("newsqa", "positive", claim, (gold,), question))
        negative = _other_sentence(rest, [gold], rng)
        if negative:
            pairs.append(Pair("newsqa", "same article", claim, (negative,), question))
        pool += [Pair("newsqa", "same article", claim, (s,), question) for s in rest
                 if len(s.split()) >= MIN_WORDS]
    return pairs, pool


def _spans(raw: Any) -> list[tuple[int, int]]:
    import ast

    value = ast.literal_eval(raw) if isinstance(raw, str) else raw
    return [(int(a), int(b)) for a, b in value or []]


def _answers(raw: Any) -> list[str]:
    import ast

    value = ast.literal_eval(raw) if isinstance(raw, str) else raw
    return [str(a).strip() for a in value or [] if str(a).strip()]


def _split_story(story: str, span: tuple[int, int]) -> tuple[str, list[str]]:
    """The sentences overlapping the answer span (joined), and all the others."""
    gold: list[str] = []
    rest: list[str] = []
    for s, e in sentence_spans(story):
        (gold if s < span[1] and e > span[0] else rest).append(story[s:e])
    return " ".join(gold), rest


# -- scoring ------------------------------------------------------------------------------


def score_all(pairs: Sequence[Pair], idf: Idf | None) -> list[Scored]:
    out = []
    for pair in pairs:
        for mode in MODES:
            question = pair.question if mode == "answer" else ""
            s = check_support(pair.claim, pair.quotes, question, about=pair.about, idf=idf,
                              threshold=0.0, min_relevance=0.0)
            out.append(Scored(pair, mode, s.supported, s.score, s.relevance, s.reason))
    return out


def prf(rows: Sequence[Scored], threshold: float, floor: float) -> dict[str, float]:
    tp = sum(r.pair.label and r.supported(threshold, floor) for r in rows)
    fp = sum((not r.pair.label) and r.supported(threshold, floor) for r in rows)
    pos = sum(r.pair.label for r in rows)
    neg = len(rows) - pos
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / pos if pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    tnr = (neg - fp) / neg if neg else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tnr": tnr,
            "balanced": (recall + tnr) / 2, "pos": pos, "neg": neg}


def subsets(scored: Sequence[Scored]) -> dict[tuple[str, str, str], list[Scored]]:
    """(source, mode, negative kind) -> its positives and those negatives."""
    out: dict[tuple[str, str, str], list[Scored]] = {}
    keys = {(r.pair.source, r.mode, r.pair.kind) for r in scored if not r.pair.label}
    for source, mode, kind in sorted(keys):
        out[(source, mode, kind)] = [
            r for r in scored if r.pair.source == source and r.mode == mode
            and r.pair.kind in ("positive", kind)]
    return out


def hard_balanced(sets: dict[tuple[str, str, str], list[Scored]], t: float, floor: float) -> float:
    """Balanced accuracy on the same-article negatives, averaged over source x mode."""
    hard = [rows for (_, _, kind), rows in sets.items() if kind == "same article"]
    return statistics.mean(prf(rows, t, floor)["balanced"] for rows in hard)


def choose(sets: dict[tuple[str, str, str], list[Scored]]) -> tuple[float, float, float]:
    """(threshold, relevance floor, mean balanced accuracy) best on the hard negatives."""
    best = (-1.0, 0.0, 0.0)
    for floor in RELEVANCE_FLOORS:
        for t in THRESHOLDS:
            value = hard_balanced(sets, t, floor)
            if value > best[0] + 1e-9:
                best = (value, t, floor)
    return best[1], best[2], best[0]


def _grid(sets: dict[tuple[str, str, str], list[Scored]]) -> None:
    shown = [t for t in THRESHOLDS if 0.2 <= t <= 0.6]
    print("\nmean balanced accuracy on same-article negatives: relevance floor x threshold")
    print("floor  " + " ".join(f"{t:5.2f}" for t in shown))
    for floor in RELEVANCE_FLOORS:
        print(f"{floor:5.2f}  " + " ".join(f"{hard_balanced(sets, t, floor):5.3f}" for t in shown))


# -- report -------------------------------------------------------------------------------


def report(scored: list[Scored], pool: list[Scored], label: str) -> None:
    sets = subsets(scored)
    threshold, floor, balanced = choose(sets)
    print(f"\n## IDF: {label}")
    print(f"chosen: threshold {threshold:.2f}, relevance floor {floor:.2f} "
          f"(best mean balanced accuracy on same-article negatives: {balanced:.3f}); "
          f"shipped: {SUPPORT_THRESHOLD:.2f} / {RELEVANCE_THRESHOLD:.2f}")
    for t, f, name in ((threshold, floor, "chosen"),
                       (SUPPORT_THRESHOLD, RELEVANCE_THRESHOLD, "shipped")):
        print(f"\n{name} (threshold {t:.2f}, relevance floor {f:.2f})")
        print("source    mode       negatives      pos   neg  precision  recall     F1  "
              "neg rejected  balanced")
        for (source, mode, kind), rows in sets.items():
            m = prf(rows, t, f)
            print(f"{source:9} {mode:10} {kind:13} {m['pos']:5.0f} {m['neg']:5.0f}  "
                  f"{m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f}  "
                  f"{m['tnr']:12.3f}  {m['balanced']:8.3f}")
        if pool:
            _pool_line(pool, t, f)
    _grid(sets)
    _curve(sets, floor)
    _reasons(scored)


def _pool_line(pool: list[Scored], t: float, f: float) -> None:
    for mode in MODES:
        rows = [r for r in pool if r.mode == mode]
        fp = sum(r.supported(t, f) for r in rows)
        print(f"newsqa    {mode:10} every other story sentence: {fp}/{len(rows)} "
              f"accepted ({fp / max(1, len(rows)):.3f})")


def _curve(sets: dict[tuple[str, str, str], list[Scored]], floor: float) -> None:
    print(f"\nthreshold curve (relevance floor {floor:.2f}): recall / negatives rejected")
    names = [f"{s[:5]}-{m[:4]}-{k.split()[0]}" for s, m, k in sets]
    print("thresh  " + "  ".join(f"{n:>17}" for n in names))
    for t in THRESHOLDS:
        cells = []
        for rows in sets.values():
            m = prf(rows, t, floor)
            cells.append(f"{m['recall']:.3f} / {m['tnr']:.3f}")
        print(f"{t:6.2f}  " + "  ".join(f"{c:>17}" for c in cells))


def _reasons(scored: list[Scored]) -> None:
    """How often the hard-fact rule alone decides, per source, mode and kind."""
    print("\nrejected by the numbers/dates/names rule alone (share of pairs)")
    groups: dict[tuple[str, str, str], list[Scored]] = {}
    for r in scored:
        groups.setdefault((r.pair.source, r.mode, r.pair.kind), []).append(r)
    for (source, mode, kind), rows in sorted(groups.items()):
        share = sum(not r.hard_ok for r in rows) / len(rows)
        print(f"  {source:9} {mode:10} {kind:13} {share:.3f} of {len(rows)}")


def instruction_rate(folder: Path) -> None:
    """How many real corpus sentences the instruction filter would throw away."""
    total = flagged = 0
    for _, record in read_jsonl(folder / "corpus.jsonl"):
        for sentence in _sentences(_body(record)):
            total += 1
            flagged += is_instruction(sentence)
    print(f"\ninstruction filter: {flagged} of {total} MultiHop-RAG corpus sentences flagged "
          f"({flagged / max(1, total):.5f})")


def corpus_idf(folder: Path) -> Callable[[str], float]:
    return idf_from_texts(_body(r) for _, r in read_jsonl(folder / "corpus.jsonl"))


# -- the grounder's sentence search (grounding.Grounder._searched) -------------------------


def search_rates(folder: Path, rng: random.Random) -> None:
    """How often the search behind a failed quote finds a sentence for a fact claim: with its
    article whole (it should), without the fact's sentence (it should not: a false find),
    and for the claim turned around (it should not).

    Harder than the grounder's own case: the search runs over the whole article (~50
    sentences), where the grounder searches only the passages shown (~10 a passage).
    """
    from newsqa.grounding import grounder as grounding

    pairs = [p for p in multihop_pairs(folder, rng) if p.source == "facts"]
    corpus = {str(r["id"]): r for _, r in read_jsonl(folder / "corpus.jsonl")}
    by_fact = {_squashed(str(e["fact"])): str(e["doc_id"])
               for _, q in select_records(folder / "queries.jsonl",
                                          read_ids(folder / "dev_ids.txt"))
               for e in q.get("evidence") or []}
    shipped = grounding.SEARCH_THRESHOLD
    print("\nSentence search behind a failed quote (fact claims, whole articles searched):")
    for threshold in sorted({0.5, 0.6, 0.7, shipped}):
        grounding.SEARCH_THRESHOLD = threshold
        found = _search_finds(pairs, corpus, by_fact)
        mark = " (shipped)" if threshold == shipped else ""
        print(f"- coverage {threshold:.1f}{mark}: " + "; ".join(
            f"{case} {hits}/{n} ({hits / max(n, 1):.3f})" for case, (hits, n) in found.items()))
    grounding.SEARCH_THRESHOLD = shipped


def _search_finds(
    pairs: Sequence[Pair], corpus: dict[str, Any], by_fact: dict[str, str]
) -> dict[str, list[int]]:
    from newsqa.grounding import DraftCitation, DraftClaim, Grounder
    from newsqa.models import Article, Passage

    found = {"whole": [0, 0], "without the fact": [0, 0], "flipped": [0, 0]}
    for pair in pairs:
        if pair.kind == "same article":
            continue
        doc = by_fact.get(_squashed(pair.quotes[0]))
        if doc is None or doc not in corpus:
            continue
        body = _body(corpus[doc])
        cases = ([("whole", body), ("without the fact", _without(body, pair.quotes[0]))]
                 if pair.kind == "positive" else [("flipped", body)])
        for case, text in cases:
            article = Article(id=doc, title="", source=str(corpus[doc].get("source") or ""),
                              published_at=corpus[doc].get("published_at"), text=text)
            shown = Passage(chunk_id=f"{doc}:0", article_id=doc, title="", source=article.source,
                            published_at=article.published_at, text=text, start=0,
                            end=len(text), score=1.0)
            grounder = Grounder(pair.question, [shown], {doc: article})
            claim = DraftClaim(text=pair.claim, citations=[
                DraftCitation(source_id="S1", quote="a quote that is not in the article")])
            kept, _ = grounder.supported(claim)
            found[case][0] += bool(kept)
            found[case][1] += 1
    return found


def subject_rates(folder: Path, rng: random.Random) -> None:
    """What `support.off_subject` (the grounder's answer-level subject rule) refuses among
    pairs that pass relevance: each quote's article (title and text) is the one holding
    it, the outlets are every publisher of the corpus (as `Index.outlets`)."""
    corpus = [r for _, r in read_jsonl(folder / "corpus.jsonl")]
    bodies = [f"{r.get('title') or ''}\n{_body(r)}" for r in corpus]
    outlets = sorted({str(r.get("source") or "") for r in corpus} - {""})
    holder: dict[str, str] = {}
    rows: dict[tuple[str, str], list[int]] = {}
    for pair in multihop_pairs(folder, rng):
        rel = relevance(pair.question, list(pair.quotes))
        counts = rows.setdefault((pair.source, pair.kind), [0, 0, 0])
        counts[0] += 1
        if rel < RELEVANCE_THRESHOLD:
            continue
        counts[1] += 1
        for quote in pair.quotes:
            if quote not in holder:
                holder[quote] = next((b for b in bodies if quote in b), quote)
        articles = [holder[q] for q in pair.quotes]
        subjects = question_subjects(pair.question, outlets)
        counts[2] += off_subject(subjects, articles, rel) is not None
    print("subject rule (answer mode): pairs, passing relevance, refused by the rule")
    for (source, kind), (n, passing, refused) in sorted(rows.items()):
        print(f"{source:9} {kind:14} {n:5} {passing:5} {refused:5} "
              f"({refused / max(passing, 1):.1%} of those passing)")


def _squashed(text: str) -> str:
    return "".join(text.split()).lower()


def _without(body: str, fact: str) -> str:
    """The article without every sentence that holds part of the fact."""
    return " ".join(s for s in _sentences(body) if not _overlaps(s, fact) and s not in fact)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--idf", choices=("corpus", "uniform", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--search", action="store_true",
                        help="only the grounder's sentence search behind a failed quote")
    parser.add_argument("--subjects", action="store_true",
                        help="only the answer-level subject rule (support.off_subject)")
    args = parser.parse_args()
    data = Path(args.data)
    multihop, newsqa = data / "multihop", data / "newsqa"
    if not (multihop / "queries.jsonl").is_file() or not (newsqa / "items.jsonl").is_file():
        print(f"skipped: {data} not found (MultiHop-RAG and NewsQA eval data)")
        return
    if args.search:
        search_rates(multihop, random.Random(args.seed))
        return
    if args.subjects:
        subject_rates(multihop, random.Random(args.seed))
        return
    rng = random.Random(args.seed)
    pairs = multihop_pairs(multihop, rng)
    news, pool = newsqa_pairs(newsqa, rng)
    pairs += news
    counts = {(p.source, p.kind): 0 for p in pairs}
    for p in pairs:
        counts[(p.source, p.kind)] += 1
    print("pairs: " + ", ".join(f"{s} {k} {n}" for (s, k), n in sorted(counts.items())))
    weights = {"uniform": None, "corpus": corpus_idf(multihop)}
    for name in ("uniform", "corpus") if args.idf == "both" else (args.idf,):
        idf = weights[name]
        label = "uniform (the default)" if idf is None else "BM25 IDF over the MultiHop corpus"
        report(score_all(pairs, idf), score_all(pool, idf), label)
    instruction_rate(multihop)


if __name__ == "__main__":
    main()
