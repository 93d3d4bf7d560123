"""The learned second stage: features, shipped model, guards (real index, real model)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from newsqa import Article, NewsQA
from newsqa.errors import ConfigError
from newsqa.retrieval import Filters, FusionWeights, KeywordIndex, Retriever, whole_articles
from newsqa.retrieval.rerank import (
    ARTICLE_SIGNALS,
    BRIDGE_FEATURES,
    CANDIDATE_FEATURES,
    FEATURES,
    MODEL_FILE,
    ArticleGroups,
    Ranker,
    article_columns,
    bridge_columns,
    coverage,
    load_ranker,
    segments,
)
from newsqa.retrieval.search import blend
from newsqa.retrieval.training import map_lambdas, train
from newsqa.store.index import ChunkTable
from newsqa.text.lexical import terms


def _table(texts: list[str]) -> ChunkTable:
    metas: list[dict[str, Any]] = [{"source": "S", "article_id": f"a{i}", "chunk_index": 0}
                                   for i in range(len(texts))]
    return ChunkTable(ids=[f"c{i}" for i in range(len(texts))], texts=texts,
                      metadatas=metas, revision="r")


def test_questions_split_into_the_parts_that_ask_for_separate_facts() -> None:
    question = ("Did the port strike in Rotterdam raise freight rates, while the tulip "
                "harvest in Friesland broke a record?")
    parts = segments(question)
    assert len(parts) == 2
    assert "rotterdam" in parts[0] and "friesland" in parts[1]
    assert segments("Why?") == []


def test_coverage_is_the_share_of_a_parts_weight_inside_one_sentence() -> None:
    keyword = KeywordIndex.build(_table([
        "Freight rates rose in Rotterdam. The tulip harvest was late.",
        "Freight was late. Rates were discussed in Rotterdam.",
        "Nothing related here at all.",
    ]))
    part = {t: keyword.idf(t) for t in terms("freight rates Rotterdam")}
    cover = coverage(keyword, [0, 1, 2], [part])
    assert cover.shape == (3, 1)
    # Chunk 1 holds every word too, but split over two sentences.
    assert cover[0, 0] == pytest.approx(1.0)
    assert 0 < cover[1, 0] < 1 and cover[2, 0] == 0
    assert keyword.idf("zebra") > keyword.idf("freight") > 0


def test_the_leading_articles_join_the_pool_whole_inside_the_filters() -> None:
    table = _table([f"chunk {i}" for i in range(6)])
    for row, article in enumerate("aabbbc"):
        table.metadatas[row]["article_id"] = article
    keyword = KeywordIndex.build(table)
    # The pool's first passage is b's middle chunk: b's others join, a and c do not.
    assert whole_articles(keyword, [3, 0], 1, None) == [2, 4]
    assert whole_articles(keyword, [3, 0], 2, None) == [2, 4, 1]
    outside = np.array([True, True, True, True, False, True])
    assert whole_articles(keyword, [3, 0], 2, outside) == [2, 1]
    # A limit on the pool keeps the leading articles whole and drops the rest.
    assert whole_articles(keyword, [3, 0], 2, None, limit=4) == [2, 4]
    assert whole_articles(keyword, [3, 0], 2, None, limit=3) == []


def test_article_columns_rank_each_chunk_against_its_own_articles_best() -> None:
    table = np.zeros((4, len(CANDIDATE_FEATURES)))
    column = FEATURES.index("segment_coverage")
    table[:, column] = [0.2, 0.9, 0.5, 0.4]
    out = article_columns(table, ArticleGroups.of(["x", "y", "x", "x"]))
    k = ARTICLE_SIGNALS.index("segment_coverage")
    assert out[:, 2 * k].tolist() == [2, 0, 0, 1]  # x: 0.5 > 0.4 > 0.2; y alone
    assert out[:, 2 * k + 1] == pytest.approx([-0.3, 0.0, 0.0, -0.1])
    assert out[:, -1].tolist() == [3, 1, 3, 3]
    assert out.shape[1] == len(FEATURES) - FEATURES.index("bm25_chunk_article_rank")


def test_bridges_are_rare_words_outside_the_question_shared_with_other_articles() -> None:
    texts = [
        "Ledgerline paid a record fine on Tuesday.",  # a, The Wire: a fact
        "Markets were calm on Tuesday afternoon.",  # a, The Wire: its neighbour
        "The chief executive of Ledgerline resigned.",  # b, The Post: the other fact
        "An executive of Ledgerline opened an office in Lisbon.",  # c, The Wire
    ]
    table = _table(texts + [f"Gardeners planted bulbs in plot {i}." for i in range(200)])
    for row, (article, source) in enumerate(["aW", "aW", "bP", "cW"]):
        table.metadatas[row].update(article_id=article, source=source)
    keyword = KeywordIndex.build(table)
    question = "Which company paid a fine, and whose chief executive resigned?"
    groups = ArticleGroups.of(["a", "a", "b", "c"])
    out = bridge_columns(keyword, np.arange(4), terms(question), groups)
    column = {name: out[:, i] for i, name in enumerate(BRIDGE_FEATURES)}
    name = keyword.idf(terms("Ledgerline")[0])
    own = name + keyword.idf(terms("record")[0]) + keyword.idf(terms("Tuesday")[0])
    # The company the question only describes links the facts; "Tuesday" is shared inside
    # article a only, and the question's own words ("chief", "resigned") link nothing.
    assert column["bridge"] == pytest.approx([name, 0.0, name, name], rel=1e-5)
    assert column["bridge_source"] == pytest.approx([name, 0.0, name, name], rel=1e-5)
    assert column["bridge_articles"].tolist() == [2, 0, 2, 2]
    assert column["bridge_margin"] == pytest.approx([0.0, -name, 0.0, 0.0], abs=1e-4)
    assert column["corroboration"][0] == pytest.approx(2 * name, rel=1e-5)
    assert column["bridge_share"][0] == pytest.approx(name / own, rel=1e-5)
    alone = ArticleGroups.of(["a", "a"])  # one article bridges to nothing
    assert bridge_columns(keyword, np.arange(2), terms(question), alone).sum() == 0


def test_a_sentence_bridge_is_the_chunks_best_single_sentence() -> None:
    texts = ["Ledgerline paid a fine. Gardeners planted bulbs in plot 999.",
             "Ledgerline resigned."]
    table = _table(texts + [f"Gardeners planted bulbs in plot {i}." for i in range(200)])
    keyword = KeywordIndex.build(table)
    out = bridge_columns(keyword, np.arange(2), terms("Which company paid a fine?"),
                         ArticleGroups.of(["a", "b"]))
    column = {name: out[:, i] for i, name in enumerate(BRIDGE_FEATURES)}
    name = keyword.idf(terms("Ledgerline")[0])
    assert column["bridge_sentence"] == pytest.approx([name, name], rel=1e-5)
    # The first sentence is all bridge; the chunk as a whole is diluted by the second.
    resigned = name / (name + keyword.idf(terms("resigned")[0]))
    assert column["bridge_sentence_share"] == pytest.approx([1.0, resigned], rel=1e-5)
    assert column["bridge_share"][0] < 0.5


class _Labels:
    def __init__(self, labels: list[float]) -> None:
        self.labels = np.asarray(labels)

    def get_label(self) -> np.ndarray:
        return self.labels


def test_map_lambdas_push_a_fact_up_as_hard_as_map_at_10_rewards_it() -> None:
    objective = map_lambdas([3, 3, 2])
    # Question 1: the fact is ranked 2nd; question 2: 3rd; question 3 has no fact.
    scores = np.array([3.0, 2.0, 1.0, 3.0, 2.0, 1.0, 1.0, 0.0])
    labels = _Labels([0, 1, 0, 0, 0, 1, 0, 0])
    grad, hess = objective(scores, labels)
    assert grad[1] < 0 and grad[5] < 0  # the facts are pushed up...
    assert grad[0] > 0 and grad[3] > 0  # ...past what outranks them
    # Rank 1 <-> 2 is worth 1 - 1/2 in MAP@10, rank 1 <-> 3 is worth 1 - 1/3.
    assert grad[0] / grad[3] == pytest.approx((1 - 1 / 2) / (1 - 1 / 3), rel=0.3)
    assert not grad[6:].any() and (hess[:6] > 0).all()
    # Past the cut a swap keeps a tenth of its weight, so the trees still see it.
    ranks_11_12 = (-np.arange(12.0), _Labels([0.0] * 11 + [1.0]))  # the fact is 12th
    assert map_lambdas([12], cut=10, floor=0.1)(*ranks_11_12)[0][10] > 0
    assert map_lambdas([12], cut=10, floor=0.0)(*ranks_11_12)[0][10] == 0


def test_the_shipped_model_matches_the_features_it_is_fed() -> None:
    ranker = load_ranker()
    assert ranker.path == MODEL_FILE
    assert ranker.booster.num_feature() == len(FEATURES)
    scores = ranker.scores(np.zeros((3, len(FEATURES))))
    assert scores.shape == (3,) and np.all(scores == scores[0])
    # Equal scores keep the first stage's order.
    assert ranker.order([7, 3, 5], np.zeros((3, len(FEATURES)))) == [7, 3, 5]


def _toy_model(tmp_path: Path, names: list[str]) -> Path:
    import lightgbm

    rng = np.random.RandomState(0)
    x, y = rng.rand(40, len(names)), (rng.rand(40) > 0.5).astype(float)
    data = lightgbm.Dataset(x, y, group=[10] * 4, feature_name=names)
    model = lightgbm.train({"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 1},
                           data, num_boost_round=2)
    path = tmp_path / "model.txt"
    model.save_model(str(path))
    return path


def test_a_model_trained_on_other_features_is_refused_by_name(tmp_path: Path) -> None:
    path = _toy_model(tmp_path, [f"f{i}" for i in range(len(FEATURES) - 1)])
    with pytest.raises(ConfigError, match="trained on other features"):
        Ranker(path)
    (tmp_path / "broken.txt").write_text("tree\nnot a model", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.txt"):
        Ranker(tmp_path / "broken.txt")
    with pytest.raises(ConfigError, match="not found"):
        Ranker(tmp_path / "absent.txt")


def test_train_gives_a_model_the_ranker_accepts(tmp_path: Path) -> None:
    rng = np.random.RandomState(1)
    groups = [(rng.rand(12, len(FEATURES)), (rng.rand(12) > 0.7).astype(float)) for _ in range(6)]
    model = train(groups, {"min_data_in_leaf": 1}, rounds=3)
    model.save_model(str(tmp_path / "m.txt"))
    assert Ranker(tmp_path / "m.txt").scores(groups[0][0]).shape == (12,)


def _story(title: str, source: str, day: int, body: str) -> Article:
    return Article(title=title, source=source, published_at=dt.date(2024, 5, day), text=body)


STORIES = [
    _story("Port strike", "Harbor Times", 1,
           "Dock workers in Rotterdam kept the port strike going over pay. "
           "The union said talks had failed. Freight rates for the North Sea rose by a tenth."),
    _story("Tulips", "The Wire", 2,
           "Farmers in Friesland celebrated a record tulip harvest with a parade. "
           "Growers said the spring had been mild."),
    _story("Ferries", "The Wire", 3,
           "Ferry operators added sailings to Hull while the Rotterdam port was shut."),
]
QUESTION = ("Did freight rates for the North Sea rise during the Rotterdam port strike, "
            "according to Harbor Times, while Friesland farmers had a record tulip harvest, "
            "according to The Wire?")


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> NewsQA:
    qa = NewsQA(db=tmp_path_factory.mktemp("rerank-db"), llm="extractive")
    assert qa.ingest(STORIES).added == len(STORIES)
    return qa


def test_second_stage_puts_each_parts_fact_on_top(qa: NewsQA) -> None:
    retriever = Retriever(qa.index, qa.embedder, qa.settings, FusionWeights())
    top = retriever.search(QUESTION, top_k=2)
    assert {p.title for p in top} == {"Port strike", "Tulips"}
    # The second stage's score explains the order it chose.
    assert top[0].scores["rerank"] >= top[1].scores["rerank"]


def test_second_stage_respects_the_callers_filters(qa: NewsQA) -> None:
    retriever = Retriever(qa.index, qa.embedder, qa.settings, FusionWeights())
    hits = retriever.search(QUESTION, top_k=5, filters=Filters.build(sources=["The Wire"]))
    assert hits and {p.source for p in hits} == {"The Wire"}
    hits = retriever.search(QUESTION, top_k=5, filters=Filters.build(until="2024-05-01"))
    assert [p.title for p in hits] == ["Port strike"]


def test_features_cover_the_pool_and_each_parts_best(qa: NewsQA) -> None:
    weights = replace(FusionWeights(), rerank_pool=1)
    retriever = Retriever(qa.index, qa.embedder, qa.settings, weights)
    keyword = retriever.keyword_index()
    stage = retriever.first_stage(keyword, QUESTION, [], Filters())
    rows, features = retriever.candidates(keyword, stage)
    assert features.shape == (len(rows), len(FEATURES))
    # A pool of one, plus the best chunk of each part of the question.
    assert len(rows) > 1 and len(set(rows)) == len(rows)
    assert np.isfinite(features).all()
    assert features[:, FEATURES.index("position")].tolist() == list(range(len(rows)))


def test_rerank_can_be_turned_off_from_the_environment() -> None:
    assert FusionWeights.from_env({"NEWSQA_RETRIEVAL_RERANK": "0"}).rerank is False
    assert FusionWeights().rerank is True


def test_more_passages_than_the_pool_continue_in_first_stage_order(qa: NewsQA) -> None:
    weights = replace(FusionWeights(), rerank_pool=1, max_per_article=1)
    retriever = Retriever(qa.index, qa.embedder, qa.settings, weights)
    # One word: no parts to add candidates, so the second stage sees a pool of one.
    everything = retriever.search("Rotterdam?", top_k=50)
    assert len({p.chunk_id for p in everything}) == len(everything) == qa.index.chunk_count()


def test_a_question_of_unknown_words_still_ranks(qa: NewsQA) -> None:
    retriever = Retriever(qa.index, qa.embedder, qa.settings, FusionWeights())
    hits = retriever.search("Zebra xylophone quokka?", top_k=3)
    assert len(hits) <= 3  # dense neighbours only, reordered without error


def test_a_ranker_file_of_ones_own_is_used_or_named_when_missing(
    qa: NewsQA, tmp_path: Path
) -> None:
    rng = np.random.RandomState(2)
    groups = [(rng.rand(12, len(FEATURES)), (rng.rand(12) > 0.7).astype(float)) for _ in range(6)]
    train(groups, {"min_data_in_leaf": 1}, rounds=2).save_model(str(tmp_path / "own.txt"))
    weights = FusionWeights.from_env({"NEWSQA_RETRIEVAL_RANKER": str(tmp_path / "own.txt")})
    retriever = Retriever(qa.index, qa.embedder, qa.settings, weights)
    assert retriever.search(QUESTION, top_k=2)
    missing = replace(weights, ranker=str(tmp_path / "gone.txt"))
    with pytest.raises(ConfigError, match="gone"):
        Retriever(qa.index, qa.embedder, qa.settings, missing).search(QUESTION, top_k=2)


def test_blend_weighs_the_two_stages_ranks() -> None:
    rows = [10, 11, 12, 13]  # the first stage's order
    ranked = [(13, 4.0), (12, 3.0), (11, 2.0), (10, 1.0)]  # the ranker's
    assert [r for r, _ in blend(rows, ranked, 1.0)] == [13, 12, 11, 10]
    assert [r for r, _ in blend(rows, ranked, 0.0)] == [10, 11, 12, 13]
    # Ties go to the first stage's order; the ranker's scores stay with their rows.
    assert blend(rows, ranked, 0.5) == [(10, 1.0), (13, 4.0), (11, 2.0), (12, 3.0)]


def test_a_one_part_question_naming_no_publisher_or_day_keeps_the_first_stages_order(
    qa: NewsQA,
) -> None:
    question = "Why did the freight rates rise?"
    first = Retriever(qa.index, qa.embedder, qa.settings, replace(FusionWeights(), rerank=False))
    gated = Retriever(qa.index, qa.embedder, qa.settings, FusionWeights())
    expected = [p.chunk_id for p in first.search(question, top_k=3)]
    hits = gated.search(question, top_k=3)
    assert [p.chunk_id for p in hits] == expected
    assert all("rerank" not in p.scores for p in hits)
    ranked = Retriever(qa.index, qa.embedder, qa.settings,
                       replace(FusionWeights(), rerank_single=1.0)).search(question, top_k=3)
    assert all("rerank" in p.scores for p in ranked)
    # A question naming a publisher, or asking two things, still goes through the ranker.
    assert "rerank" in gated.search(QUESTION, top_k=1)[0].scores
    two = "Why did the freight rates rise while farmers had a record tulip harvest?"
    assert "rerank" in gated.search(two, top_k=1)[0].scores
