"""The offline engine on the seed articles: what a reader would ask, and what it cannot know."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsqa import NewsQA
from newsqa.extractive import ABSTAIN_BELOW, rank_sentences
from newsqa.models import Passage

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> NewsQA:
    qa = NewsQA(db=tmp_path_factory.mktemp("extractive-db"), llm="extractive")
    qa.ingest([SEEDS])
    return qa


ANSWERABLE = [
    ("Who did Qaani meet in Baghdad?", ["Coordination Framework"]),
    ("What did Qaani warn?", ["would not remain silent"]),
    ("How many troops were sent to Kuwait?", ["3,000 to 3,500"]),
    ("How many US troops are deployed in Iraq?", ["5,200"]),
    ("Who was named to succeed Soleimani?", ["Esmail Qaani"]),
    ("What did Khamenei vow?", ["severe revenge"]),
    ("Who did Hegseth call?", ["al-Sudani"]),
    # The warning's content is the next sentence ("He cautioned ..."), in the next chunk.
    ("What did Hegseth warn al-Sudani about?", ["American military response"]),
]

UNANSWERABLE = [
    "Who won the 2022 World Cup?",
    "What is the capital of France?",
    "How much did the new iPhone cost at launch?",
    "What did the European Central Bank decide about interest rates?",
]


@pytest.mark.parametrize(("question", "facts"), ANSWERABLE)
def test_answers_seed_questions_with_the_fact(qa: NewsQA, question: str, facts: list[str]) -> None:
    answer = qa.ask(question)
    assert answer.answerable, answer.reason
    assert answer.mode == "extractive"
    for fact in facts:
        assert fact in answer.answer
    for c in answer.citations:
        assert qa.get_article(c.article_id).text[c.start : c.end] == c.quote
        assert c.quote in answer.answer  # the answer is made of the cited sentences


@pytest.mark.parametrize("question", UNANSWERABLE)
def test_abstains_when_the_archive_cannot_answer(qa: NewsQA, question: str) -> None:
    answer = qa.ask(question)
    assert not answer.answerable
    assert answer.citations == []
    assert answer.reason and "abstains" in answer.reason
    assert answer.passages  # what was looked at is still reported


def test_markers_number_the_citations_in_order(qa: NewsQA) -> None:
    answer = qa.ask("How many troops were sent to Kuwait?")
    for i, c in enumerate(answer.citations, 1):
        assert f"{c.quote} [{i}]" in answer.answer


def test_filters_that_exclude_everything_make_it_abstain(qa: NewsQA) -> None:
    answer = qa.ask("What did Qaani warn?", sources=["Nobody"])
    assert not answer.answerable and answer.passages == []


def test_context_sentence_counts_for_pronouns() -> None:
    text = "Qaani met the leaders. However, he warned of strikes."
    passage = Passage(chunk_id="a:0", article_id="a", text=text, start=0, end=len(text),
                      score=1.0)
    best = rank_sentences("What did Qaani warn?", [passage])[0]
    assert best.text == "However, he warned of strikes."
    assert best.support >= ABSTAIN_BELOW
