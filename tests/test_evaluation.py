"""Scoring on hand-made cases whose right answers are worked out by hand, plus a CLI smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from newsqa.app.evaluation import (
    DataMissing,
    Evidence,
    MultihopQuery,
    Outcome,
    SummItem,
    dump_record,
    evaluate_summaries,
    exact_match,
    extract_answer,
    lead_sentences,
    lenient_match,
    load_multihop_queries,
    mean_rouge,
    percentile,
    read_ids,
    render_report,
    require_folder,
    retrieval_metrics,
    score_ranking,
    summarise_run,
)
from newsqa.errors import InputError
from newsqa.models import Answer, Citation, Passage

# -- retrieval scoring ------------------------------------------------------------------------


def test_first_hit_at_rank_three_gives_known_scores() -> None:
    retrieved = ["noise one", "noise two", "the cat sat on the mat today", "noise", "dog ran"]
    score = score_ranking(retrieved, ["cat sat on the mat", "the dog ran"])
    assert score.hit_at_4 and score.hit_at_10
    assert score.reciprocal_rank == pytest.approx(1 / 3)
    # "the dog ran" is not in "dog ran": only the fact at rank 3 counts, divided by 2 facts.
    assert score.average_precision == pytest.approx((1 / 3) / 2)


def test_map_divides_by_gold_count_not_hits() -> None:
    retrieved = ["alpha beta", "x", "gamma delta"]
    score = score_ranking(retrieved, ["alpha", "gamma", "never found"])
    assert score.average_precision == pytest.approx((1 / 1 + 1 / 3) / 3)


def test_a_chunk_holding_two_facts_counts_both_once() -> None:
    retrieved = ["alpha and gamma", "alpha again"]
    score = score_ranking(retrieved, ["alpha", "gamma"])
    # rank 1 matches two new facts (2/1); rank 2 matches only an already found one (0/2)
    assert score.average_precision == pytest.approx(2 / 1 / 2)
    assert score.reciprocal_rank == 1.0


def test_spaces_and_newlines_are_ignored_in_the_substring_test() -> None:
    assert score_ranking(["the cat\nsat  on"], ["cat sat on"]).hit_at_4
    # ...but not other whitespace or case, as upstream
    assert not score_ranking(["the Cat sat on"], ["cat sat on"]).hit_at_10


def test_hits_beyond_rank_ten_do_not_count() -> None:
    retrieved = [f"noise {i}" for i in range(10)] + ["the fact"]
    score = score_ranking(retrieved, ["the fact"])
    assert not score.hit_at_10 and score.reciprocal_rank == 0 and score.average_precision == 0


def test_hit_at_five_is_a_hit_at_ten_but_not_at_four() -> None:
    retrieved = ["a", "b", "c", "d", "has fact"]
    score = score_ranking(retrieved, ["fact"])
    assert score.hit_at_10 and not score.hit_at_4


def test_metrics_average_over_queries() -> None:
    metrics = retrieval_metrics([["fact x"], ["none", "fact y"]], [["fact x"], ["fact y"]])
    assert metrics == {"hits@4": 1.0, "hits@10": 1.0, "mrr@10": 0.75, "map@10": 0.75, "n": 2}


def test_a_query_without_gold_cannot_be_scored() -> None:
    with pytest.raises(ValueError, match="gold"):
        score_ranking(["x"], [])


# -- answers ----------------------------------------------------------------------------------


def test_lenient_match_is_the_papers_shared_word_rule() -> None:
    assert lenient_match("It was Sam Bankman-Fried, reportedly.", "Sam Bankman-Fried")
    assert not lenient_match("Nobody knows", "Sam Bankman-Fried")
    assert lenient_match('Well. The answer to the question is "Yes"', "yes")
    assert extract_answer('The answer to the question is "No" indeed') == "No"


def test_the_direct_answer_is_what_is_scored_when_there_is_one() -> None:
    from newsqa.app.evaluation import prediction_text
    from newsqa.models import Answer, Citation

    cited = Citation(article_id="a", quote="Sam Bankman-Fried", start=0, end=17)
    answer = Answer(question="Who?", answer="Sam Bankman-Fried. He is on trial. [1]",
                    answerable=True, direct_answer="Sam Bankman-Fried", citations=[cited],
                    mode="llm")
    assert exact_match(prediction_text(answer), "Sam Bankman-Fried")
    assert prediction_text(answer.model_copy(update={"direct_answer": None})) == answer.answer


def test_exact_match_normalises_case_punctuation_and_articles() -> None:
    assert exact_match("The Verge.", "the verge")
    assert not exact_match("The Verge and TechCrunch", "The Verge")


# -- id filtering -----------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_only_listed_ids_are_loaded_in_list_order(tmp_path: Path) -> None:
    rows = [
        {"id": f"q-{i}", "query": f"question {i}", "answer": "a", "question_type": "x",
         "evidence": [{"fact": "f", "doc_id": "d"}]}
        for i in range(5)
    ]
    _write_jsonl(tmp_path / "queries.jsonl", rows)
    (tmp_path / "dev_ids.txt").write_text("q-3\n\nq-1\n", encoding="utf-8")
    queries = load_multihop_queries(tmp_path / "queries.jsonl", read_ids(tmp_path / "dev_ids.txt"))
    assert [q.id for q in queries] == ["q-3", "q-1"]


def test_an_unknown_id_is_named_but_unlisted_rows_are_not(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "queries.jsonl", [{"id": "secret-1", "query": "q"}])
    with pytest.raises(InputError) as info:
        load_multihop_queries(tmp_path / "queries.jsonl", ["dev-9"])
    assert "dev-9" in str(info.value) and "secret-1" not in str(info.value)


def test_missing_data_folder_is_a_clear_skip(tmp_path: Path) -> None:
    with pytest.raises(DataMissing, match="not found; skipping"):
        require_folder(tmp_path / "absent", "MultiHop-RAG")


# -- dump format and run summary --------------------------------------------------------------


def _passage(text: str, score: float, article_id: str = "a1") -> Passage:
    return Passage(chunk_id=f"{article_id}:0", article_id=article_id, text=text, start=0,
                   end=len(text), score=score)


def test_dump_record_is_what_the_papers_script_reads() -> None:
    query = MultihopQuery("q-1", "who?", "Ann", "inference_query",
                          (_evidence("Ann won", "d1"),))
    outcome = Outcome(query, [_passage("Ann won it", 0.9), _passage("other", 0.5)], 1.0)
    record = dump_record(outcome)
    assert record == {
        "id": "q-1", "query": "who?", "question_type": "inference_query",
        "retrieval_list": [{"text": "Ann won it", "score": 0.9}, {"text": "other", "score": 0.5}],
        "gold_list": [{"fact": "Ann won"}],
    }
    json.dumps(record)  # serialisable as-is


def _evidence(fact: str, doc_id: str) -> Evidence:
    return Evidence(fact=fact, doc_id=doc_id)


def test_summary_scores_abstention_citations_and_answers() -> None:
    real = MultihopQuery("q-1", "who?", "Ann", "inference_query", (_evidence("Ann won", "d1"),))
    null = MultihopQuery("q-2", "what?", "Insufficient information.", "null_query")
    cite = Citation(article_id="a1", quote="Ann won", start=0, end=7)
    answered = Answer(question="who?", answer="Ann won", answerable=True, citations=[cite],
                      mode="extractive")
    abstained = Answer(question="what?", answer="", answerable=False, reason="no support",
                       mode="extractive")
    outcomes = [
        Outcome(real, [_passage("Ann won it", 1.0)], 2.0, answered, 3.0, verified=1),
        Outcome(null, [_passage("x", 1.0)], 4.0, abstained, 5.0),
    ]
    summary = summarise_run(outcomes, {"d1": "a1"}, mode="extractive", model=None)
    assert summary["n_queries"] == 2
    assert summary["retrieval"]["n"] == 1 and summary["retrieval"]["hits@4"] == 1.0
    assert summary["abstention"] == {"null_abstain_rate": 1.0, "false_abstain_rate": 0.0,
                                     "n_null": 1, "n_answerable": 1}
    assert summary["citations"]["verified_rate"] == 1.0
    assert summary["citations"]["gold_article_rate"] == 1.0
    assert summary["answers"]["lenient_accuracy"] == 1.0  # abstention reads as the null gold
    assert summary["answers"]["exact_match"] == 0.5
    assert summary["latency_ms"]["search"]["p50"] == 3.0
    assert "| **" in render_report(summary)
    assert "In-sample" not in render_report(summary)
    # The shipped ranker learned from the dev split: a dev run says its figures are in-sample.
    summary["settings"] = {"ids": "../shared/eval/multihop/dev_ids.txt", "rerank": True}
    assert "In-sample" in render_report(summary)
    summary["settings"] = {"ids": "other_ids.txt", "rerank": True}
    assert "In-sample" not in render_report(summary)
    assert "| abstains on null queries | 1.0000 |" in render_report(summary)
    # A run without a null query has no abstention rate on them (it said 0.0000).
    summary = summarise_run(outcomes[:1], {"d1": "a1"}, mode="extractive", model=None)
    assert "| abstains on null queries | - |" in render_report(summary)


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0], 95) == 10.0


# -- summaries --------------------------------------------------------------------------------


def test_lead_sentences_takes_the_first_three_one_per_line() -> None:
    text = 'First one here. Second one "quoted." Third one here! Fourth sentence here.'
    assert lead_sentences(text) == 'First one here.\nSecond one "quoted."\nThird one here!'


def test_summaries_are_scored_per_dataset_beside_lead3() -> None:
    items = [
        SummItem("s1", "Alpha beta gamma. Delta epsilon zeta. Eta theta iota. Kappa.",
                 "Alpha beta gamma . Delta epsilon zeta", "cnn_dailymail"),
        SummItem("s2", "One two three. Four five six.", "Nothing alike", "xsum"),
    ]
    result = evaluate_summaries(items, lambda item: item.article.split(".")[0])
    assert result["n"] == 2 and set(result["by_dataset"]) == {"cnn_dailymail", "xsum"}
    cnn = result["by_dataset"]["cnn_dailymail"]
    assert cnn["lead3"]["rouge1"] > cnn["system"]["rouge1"] > 0
    assert result["by_dataset"]["xsum"]["lead3"]["rouge1"] == 0.0


def test_rouge_of_identical_text_is_one_and_disjoint_is_zero() -> None:
    same = mean_rouge([("the cat sat", "the cat sat")])
    assert same["rouge1"] == same["rouge2"] == same["rougeL"] == 1.0
    assert mean_rouge([("dogs bark", "cats purr")])["rouge1"] == 0.0


# -- end to end through the CLI on a hand-made corpus ------------------------------------------

TINY_CORPUS = [
    {"id": "doc-0", "title": "Harbor bridge reopens after repairs", "source": "Coast Daily",
     "published_at": "2023-10-02T09:00:00+00:00", "url": "https://coast.example/bridge",
     "body": "The Harbor Bridge reopened on Monday after eight months of repairs. "
             "City engineer Mara Quist said the new cables will last fifty years. "
             "Traffic returned to normal by the evening rush hour."},
    {"id": "doc-1", "title": "Orchard festival draws record crowd", "source": "Valley News",
     "published_at": "2023-10-05T12:00:00+00:00", "url": "https://valley.example/orchard",
     "body": "The autumn orchard festival drew a record crowd of 40,000 visitors. "
             "Organiser Tomas Reyl credited the warm weather and a new cider tent. "
             "Next year the festival will move to the river meadow."},
    {"id": "doc-2", "title": "Bridge engineer honoured", "source": "Valley News",
     "published_at": "2023-11-01T08:00:00+00:00", "url": "https://valley.example/honour",
     "body": "Mara Quist received the regional engineering medal for the Harbor Bridge work. "
             "The award committee praised her cable design. "
             "She will lead the tunnel project next spring."},
]
TINY_QUERIES = [
    {"id": "q-a", "query": "Which engineer led the Harbor Bridge repairs and was later honoured?",
     "answer": "Mara Quist", "question_type": "inference_query",
     "evidence": [
         {"fact": "City engineer Mara Quist said the new cables will last fifty years.",
          "doc_id": "doc-0", "url": "https://coast.example/bridge"},
         {"fact": "Mara Quist received the regional engineering medal for the Harbor Bridge "
                  "work.", "doc_id": "doc-2", "url": "https://valley.example/honour"}]},
    {"id": "q-b", "query": "How many visitors came to the orchard festival?",
     "answer": "40,000", "question_type": "comparison_query",
     "evidence": [{"fact": "The autumn orchard festival drew a record crowd of 40,000 visitors.",
                   "doc_id": "doc-1", "url": "https://valley.example/orchard"}]},
    {"id": "q-held", "query": "A held-out question that must never run?",
     "answer": "x", "question_type": "inference_query",
     "evidence": [{"fact": "Traffic returned", "doc_id": "doc-0"}]},
    {"id": "q-null", "query": "What did the mayor of Atlantis say about submarine taxes?",
     "answer": "Insufficient information.", "question_type": "null_query", "evidence": []},
]


@pytest.fixture
def tiny_multihop(tmp_path: Path) -> Path:
    folder = tmp_path / "multihop"
    folder.mkdir()
    _write_jsonl(folder / "corpus.jsonl", TINY_CORPUS)  # type: ignore[arg-type]
    _write_jsonl(folder / "queries.jsonl", TINY_QUERIES)  # type: ignore[arg-type]
    (folder / "dev_ids.txt").write_text("q-a\nq-b\nq-null\n", encoding="utf-8")
    return folder


def test_cli_multihop_smoke_run(tiny_multihop: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from newsqa.app.cli import cli

    dump, report = tmp_path / "dump.json", tmp_path / "report.md"
    args = ["eval", "multihop", "--data", str(tiny_multihop), "--db", str(tmp_path / "db"),
            "--json", "--dump", str(dump), "--report", str(report)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert summary["n_queries"] == 3
    retrieval = summary["retrieval"]
    assert retrieval["n"] == 2  # the null query is left out, as in the paper
    # three one-chunk articles and top 10: every fact is retrieved somewhere
    assert retrieval["hits@10"] == 1.0 and 0 < retrieval["mrr@10"] <= 1
    assert set(retrieval["by_type"]) == {"inference_query", "comparison_query"}
    assert summary["citations"]["verified_rate"] == 1.0
    assert summary["answers"]["mode"] == "extractive"
    assert 0 <= summary["abstention"]["null_abstain_rate"] <= 1
    rows = json.loads(dump.read_text(encoding="utf-8"))
    assert [r["id"] for r in rows] == ["q-a", "q-b", "q-null"]  # dev ids only, in order
    assert all(len(r["retrieval_list"]) == 3 for r in rows)
    assert rows[0]["gold_list"][0]["fact"].startswith("City engineer")
    assert "0.7467" in report.read_text(encoding="utf-8")
    # A second run reuses the index (ingest is idempotent) and scores the same.
    again = CliRunner().invoke(cli, [*args[:-4], "--no-answers"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["retrieval"] == retrieval
    assert json.loads(again.stdout)["settings"]["ingest"]["added"] == 0


def test_cli_skips_cleanly_without_data(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from newsqa.app.cli import cli

    for command in ("multihop", "summ"):
        result = CliRunner().invoke(cli, ["eval", command, "--data", str(tmp_path / "absent")])
        assert result.exit_code == 0
        assert "not found; skipping" in result.stderr
