"""Hybrid retrieval over a real embedded Chroma with the real embedding model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from newsqa import Article, NewsQA
from newsqa.errors import InputError
from newsqa.retrieval import Filters, bm25_scores, diversify
from newsqa.text.lexical import terms

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def _story(title: str, source: str, day: dt.date, body: str) -> Article:
    return Article(title=title, source=source, published_at=day, text=body)


EXTRA = [
    _story("Port strike ends", "Harbor Times", dt.date(2024, 5, 2),
           "Dock workers in Rotterdam ended a nine-day strike on Thursday after a pay deal. "
           "The union said 4,000 members voted to accept the offer."),
    _story("Port strike begins", "Daily Wire Service", dt.date(2024, 4, 20),
           "Dock workers in Rotterdam walked out on Saturday demanding higher pay. "
           "Shipping lines diverted vessels to Antwerp."),
    _story("Volcano erupts in Iceland", "Harbor Times", dt.date(2023, 12, 19),
           "A volcano erupted near Grindavik in Iceland, sending lava fountains into the sky. "
           "Residents had been evacuated weeks earlier."),
]


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> NewsQA:
    qa = NewsQA(db=tmp_path_factory.mktemp("retrieval-db"), llm="extractive")
    report = qa.ingest([SEEDS, *EXTRA])
    assert report.added == 5 and not report.failed
    return qa


def test_passages_are_exact_spans_of_their_articles(qa: NewsQA) -> None:
    passages = qa.search("Qaani visit to Baghdad", top_k=5)
    assert passages
    for p in passages:
        article = qa.get_article(p.article_id)
        assert article.text[p.start : p.end] == p.text
        assert "fused" in p.scores


def test_keyword_and_dense_both_contribute(qa: NewsQA) -> None:
    top = qa.search("How many soldiers went to Kuwait?", top_k=3)[0]
    assert "Kuwait" in top.text
    assert {"bm25", "dense"} <= set(top.scores)


def test_dense_side_finds_paraphrase_without_shared_keywords(qa: NewsQA) -> None:
    # No content word of the question occurs in the Iceland story; meaning does.
    top = qa.search("magma burst from a mountain", top_k=1)[0]
    assert top.title == "Volcano erupts in Iceland"


def test_source_filter_is_case_insensitive_and_exclusive(qa: NewsQA) -> None:
    hits = qa.search("dock workers strike pay", sources=["harbor times"], top_k=5)
    assert hits and {p.source for p in hits} == {"Harbor Times"}


def test_a_source_may_be_named_by_a_unique_part_of_its_name(qa: NewsQA) -> None:
    # A new user's `--source Shafaq` for "Shafaq News" found nothing, silently.
    hits = qa.search("dock workers strike pay", sources=["harbor"], top_k=5)
    assert hits and {p.source for p in hits} == {"Harbor Times"}
    assert {p.source for p in qa.search("dock workers", sources=["Wire"], top_k=5)} == {
        "Daily Wire Service"}


def test_a_part_of_several_sources_names_is_refused_naming_them() -> None:
    from newsqa.retrieval.keywords import match_sources

    stored = ["Shafaq News", "Sporting News", "The Verge"]
    assert match_sources(["the verge", "Shafaq"], stored) == ["The Verge", "Shafaq News"]
    assert match_sources(["Verg"], stored) == []  # whole words only
    with pytest.raises(InputError, match="several publishers' names: Shafaq News, Sporting News"):
        match_sources(["news"], stored)


def test_unknown_source_returns_nothing(qa: NewsQA) -> None:
    assert qa.search("dock workers strike", sources=["No Such Paper"], top_k=5) == []


def test_date_range_filters_both_retrievers(qa: NewsQA) -> None:
    hits = qa.search("dock workers strike Rotterdam", since="2024-05-01", until="2024-12", top_k=5)
    assert {p.title for p in hits} == {"Port strike ends"}
    hits = qa.search("dock workers strike Rotterdam", since="2024", until="2024-04-30", top_k=5)
    assert "Port strike ends" not in {p.title for p in hits}
    assert "Port strike begins" in {p.title for p in hits}


def test_undated_articles_are_excluded_by_a_date_filter(qa: NewsQA) -> None:
    hits = qa.search("Soleimani drone strike Baghdad airport", since="2000-01-01", top_k=8)
    assert all(p.published_at is not None for p in hits)


def test_new_articles_are_searchable_after_ingest(tmp_path: Path) -> None:
    qa = NewsQA(db=tmp_path / "db", llm="extractive")
    qa.ingest(EXTRA[:1])
    assert all("Iceland" not in p.text for p in qa.search("Grindavik volcano lava", top_k=3))
    qa.ingest(EXTRA[2:])
    assert "Grindavik" in qa.search("Grindavik volcano lava", top_k=3)[0].text


def test_empty_index_and_empty_question(tmp_path: Path) -> None:
    qa = NewsQA(db=tmp_path / "db", llm="extractive")
    assert qa.search("anything at all", top_k=3) == []
    with pytest.raises(InputError, match="question"):
        qa.search("   ", top_k=3)


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [("yesterday", None, "not a date"), ("2024-05-01", "2024-04-01", "is after")],
)
def test_bad_filters_are_clear_errors(since: str, until: str | None, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Filters.build(since=since, until=until)


def test_month_and_year_filters_cover_the_whole_period() -> None:
    f = Filters.build(since="2024-02", until="2024")
    assert f.since == dt.date(2024, 2, 1) and f.until == dt.date(2024, 12, 31)
    f = Filters.build(until="2024-02")
    assert f.until == dt.date(2024, 2, 29)


def test_filters_and_shown_dates_are_the_same_utc_day(tmp_path: Path) -> None:
    # A new user's article stamped 2024-03-10T23:30-05:00 was shown dated 2024-03-10 but
    # left out by --until 2024-03-10 (filters are UTC days); "--since 2024-01-01 junk" and a
    # time with an offset were cut to their first ten characters without a word.
    from newsqa.app.chat import _source_line

    qa = NewsQA(db=tmp_path / "db", llm="extractive")
    late = dt.datetime(2024, 3, 10, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    qa.ingest([Article(title="Harbour bridge closed", source="Port Gazette", url="u:bridge",
                       published_at=late, text="The harbour bridge closed for inspections "
                                               "that will take three weeks, officials said.")])
    question = "How long will inspections of the harbour bridge take?"
    assert qa.search(question, until="2024-03-10") == []
    found = qa.ask(question, until="2024-03-11")
    assert found.answerable and "Port Gazette, 2024-03-11" in _source_line(1, found.citations[0])
    assert Filters.build(since="2024-01-01T00:00:00+09:00").since == dt.date(2023, 12, 31)
    for bad in ("2024-01-01 junk here", "2024-01-01T99:99"):
        with pytest.raises(InputError, match="not a date"):
            Filters.build(since=bad)


def test_diversify_gives_other_articles_a_turn_then_fills_in_order() -> None:
    order = [0, 1, 2, 3, 4, 5]
    articles = ["a", "a", "a", "a", "b", "c"]
    assert diversify(order, articles, 4, max_per_article=2) == [0, 1, 4, 5]
    assert diversify(order[:4], articles[:4], 3, max_per_article=2) == [0, 1, 2]


def test_terms_fold_possessives_accents_and_irregular_verbs() -> None:
    assert terms("Qaani’s envoy met al-Sūdani") == terms("qaani's envoy meets al-sudani")
    assert "meet" in terms("They met on Sunday")
    assert terms("the and of") == []


def test_bm25_scores_equal_bm25s_own_for_any_terms() -> None:
    import bm25s
    import numpy as np

    docs = [["port", "strike", "rotterdam"], ["strike", "pay"], ["tulip"], ["port", "port", "pay"]]
    index = bm25s.BM25()
    index.index(docs, show_progress=False)
    for known in (["port"], ["strike", "pay", "port"], ["pay", "pay"], ["tulip", "rotterdam"]):
        ours = bm25_scores(index, known)
        assert ours == pytest.approx(np.asarray(index.get_scores(known), dtype=float), rel=1e-6)
        assert ours.shape == (4,)

