"""Publishers and days named in a question steer retrieval (real Chroma, real model)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from newsqa import Article, NewsQA
from newsqa.errors import ConfigError
from newsqa.retrieval import (
    Filters,
    FusionWeights,
    KeywordIndex,
    Retriever,
    SentenceIndex,
    _convex,
    _split_units,
    bigrams,
    interleave,
)
from newsqa.store.index import ChunkTable
from newsqa.text.lexical import terms


def _story(title: str, source: str, day: dt.date, body: str) -> Article:
    return Article(title=title, source=source, published_at=day, text=body)


STRIKE = ("Dock workers in Rotterdam kept the port strike going over pay. The union said "
          "the strike at the port of Rotterdam would go on until dock wages rose. ")
STORIES = [
    *[
        _story(f"Rotterdam port strike, day {n}", "Harbor Times", dt.date(2024, 5, n),
               STRIKE * 2 + f"Day {n} of the dock strike passed without talks.")
        for n in range(1, 6)
    ],
    _story("Shipping lines reroute", "The Wire", dt.date(2024, 5, 3),
           "Shipping lines diverted vessels to Antwerp while Rotterdam was shut. "
           "Freight rates for the North Sea rose by a tenth."),
    _story("Harvest festival", "The Wire", dt.date(2024, 5, 9),
           "Farmers in Friesland celebrated a record tulip harvest with a parade."),
]

QUESTION = ("Did the dock workers' strike at the port of Rotterdam over pay, according to "
            "Harbor Times, affect freight, according to The Wire?")


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> NewsQA:
    qa = NewsQA(db=tmp_path_factory.mktemp("hints-db"), llm="extractive")
    assert qa.ingest(STORIES).added == len(STORIES)
    return qa


def _search(qa: NewsQA, weights: FusionWeights, question: str, top_k: int = 3,
            filters: Filters | None = None) -> list[str]:
    retriever = Retriever(qa.index, qa.embedder, qa.settings, weights)
    return [p.source for p in retriever.search(question, top_k=top_k, filters=filters)]


def test_each_named_publisher_gets_a_slot_near_the_top(qa: NewsQA) -> None:
    # The slots are the first stage's promise: the second stage may reorder them (here
    # the five near-identical Harbor Times stories corroborate each other's words).
    on = FusionWeights(hints=True, mention_slots=1, max_per_article=1, rerank=False)
    off = replace(on, hints=False)
    # Five near-identical strike stories crowd out the other publisher without hints.
    assert "The Wire" not in _search(qa, off, QUESTION, top_k=2)
    assert set(_search(qa, on, QUESTION, top_k=2)) == {"Harbor Times", "The Wire"}


def test_a_named_day_puts_that_days_article_first(qa: NewsQA) -> None:
    retriever = Retriever(qa.index, qa.embedder, qa.settings, FusionWeights(mention_slots=1))
    for day in (2, 4):
        question = f"What did Harbor Times report on May {day}, 2024 about the Rotterdam strike?"
        top = retriever.search(question, top_k=3)[0]
        assert top.published_at is not None and top.published_at.day == day


def test_caller_filters_still_exclude_named_publishers(qa: NewsQA) -> None:
    hits = _search(qa, FusionWeights(), QUESTION, top_k=5,
                   filters=Filters.build(sources=["Harbor Times"]))
    assert hits and set(hits) == {"Harbor Times"}
    hits = _search(qa, FusionWeights(), QUESTION, top_k=5,
                   filters=Filters.build(since="2024-05-09"))
    assert hits == ["The Wire"]


def test_a_day_nothing_was_published_on_falls_back_instead_of_emptying(qa: NewsQA) -> None:
    question = "What did Harbor Times report on June 30, 2024 about the Rotterdam port strike?"
    hits = _search(qa, FusionWeights(), question, top_k=3)
    assert hits and set(hits) == {"Harbor Times"}


def test_day_without_publisher_still_pins_the_day(qa: NewsQA) -> None:
    # Two stories ran on May 3, by different publishers: the first stage puts both first.
    question = "Which article from May 3, 2024 covered the port?"
    first = FusionWeights(mention_slots=2, rerank=False)
    top = Retriever(qa.index, qa.embedder, qa.settings, first).search(question, top_k=2)
    assert {p.published_at.day for p in top if p.published_at} == {3}
    # The second stage weighs the day against the words: The Wire's May 3 story never
    # says "port", so it may fall behind other days' port stories, but the May 3 one
    # that does say it stays first.
    both = replace(first, rerank=True)
    best = Retriever(qa.index, qa.embedder, qa.settings, both).search(question, top_k=1)[0]
    assert best.published_at is not None and best.published_at.day == 3


def test_weights_come_from_the_environment() -> None:
    weights = FusionWeights.from_env({
        "NEWSQA_RETRIEVAL_HINTS": "off", "NEWSQA_RETRIEVAL_DENSE": "0.2",
        "NEWSQA_RETRIEVAL_FUSION": "convex", "NEWSQA_RETRIEVAL_MENTION_SLOTS": "3",
    })
    assert (weights.hints, weights.dense, weights.fusion, weights.mention_slots) == (
        False, 0.2, "convex", 3)
    assert FusionWeights.from_env({}) == FusionWeights()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NEWSQA_RETRIEVAL_DENSE": "lots"}, "NEWSQA_RETRIEVAL_DENSE"),
        ({"NEWSQA_RETRIEVAL_HINTS": "maybe"}, "NEWSQA_RETRIEVAL_HINTS"),
        ({"NEWSQA_RETRIEVAL_FUSION": "max"}, "rrf or convex"),
    ],
)
def test_bad_environment_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FusionWeights.from_env(env)


def test_interleave_takes_turns_without_repeats() -> None:
    assert interleave([[1, 2, 3], [4, 1], [], [5]]) == [1, 4, 5, 2, 3]
    assert interleave([]) == []


def test_a_chunk_scores_by_its_best_sentence() -> None:
    texts = [
        "Rain fell. Freight rates rose sharply in Rotterdam after the strike.",
        "Freight was late. Rates of pay were discussed. Rotterdam had rain. The strike went on.",
        "",
    ]
    index = SentenceIndex.from_texts(texts)
    best = index.best(terms("freight rates rose rotterdam strike"))
    assert best is not None and best.shape == (3,)
    # Both chunks hold every word; only the first says it in one sentence.
    assert best[0] > best[1] > 0 and best[2] == 0
    assert index.best(terms("zebra")) is None


def _table(texts: list[str]) -> ChunkTable:
    metas: list[dict[str, Any]] = [{"source": "S", "title": f"t{i}"} for i in range(len(texts))]
    return ChunkTable(ids=[f"c{i}" for i in range(len(texts))], texts=texts,
                      metadatas=metas, revision="r")


def test_one_tokenisation_pass_gives_the_same_chunk_terms_as_the_whole_text() -> None:
    texts = ["Title | Source | 2024-05-01\nDock workers struck. Rates rose!\n\nShips waited.",
             "No header here. Just text."]
    metas: list[dict[str, Any]] = [{"text_offset": texts[0].index("Dock")},
                                   {"text": "Something else entirely."}]
    split = _split_units(ChunkTable(ids=["a", "b"], texts=texts, metadatas=metas, revision="r"))
    assert split.chunk_terms == [terms(texts[0]), terms(texts[1])]
    assert split.sentence_owner == [0, 0, 0, 1]
    assert split.sentence_terms[:3] == [terms("Dock workers struck."), terms("Rates rose!"),
                                        terms("Ships waited.")]


def test_adjacent_word_pairs_outscore_the_same_words_apart() -> None:
    keyword = KeywordIndex.build(_table([
        "The suit was filed by a class of workers; the action was swift.",
        "A class action suit was filed against the company.",
        "Nothing related here at all.",
    ]))
    pairs = keyword.bigram_scores(terms("class action suit"))
    assert pairs is not None and pairs[1] > 0 == pairs[0] == pairs[2]
    assert bigrams(["class", "action", "suit"]) == ["class_action", "action_suit"]
    assert keyword.bigram_scores(terms("zebra crossing")) is None


def test_convex_fusion_keeps_score_gaps_and_scales_each_side() -> None:
    weights = FusionWeights(fusion="convex", keyword=1.0, dense=0.5)
    scores = np.array([10.0, 9.0, 1.0, 0.0])
    ranked = _convex([(0, 10.0), (1, 9.0), (2, 1.0)], [(3, 0.9), (2, 0.5)], scores, weights)
    # bm25/10 + 0.5 * (cos - 0.5) / 0.4: row 3 has no keyword score but the best cosine.
    assert ranked.rows == [0, 1, 3, 2]
    assert ranked.fused[3] == pytest.approx(0.5) and ranked.fused[2] == pytest.approx(0.1)
