"""Quote location and verification: what counts as a verbatim span, and what never does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsqa.grounding.citations import ClaimedQuote, locate, verify
from newsqa.models import Article

TEXT = (
    "BAGHDAD — The commander of Iran's Quds Force, Esmail Qaani, met Iraqi leaders "
    "on Tuesday, officials said.\n\n"
    "“We discussed the security of the border,” one official told reporters, adding "
    "that the talks lasted   three hours.\n"
    "Oil prices rose 2.5% after the meeting."
)


def span_text(quote: str, text: str = TEXT) -> str | None:
    span = locate(quote, text)
    return None if span is None else text[span[0]:span[1]]


def test_exact_quote_is_found_at_its_offsets() -> None:
    quote = "met Iraqi leaders on Tuesday"
    assert locate(quote, TEXT) == (TEXT.index(quote), TEXT.index(quote) + len(quote))


def test_straight_quotes_match_curly_quotes_and_return_the_article_characters() -> None:
    found = span_text('"We discussed the security of the border," one official')
    assert found == "We discussed the security of the border,” one official"


def test_collapsed_whitespace_matches_extra_spaces_in_the_article() -> None:
    assert span_text("the talks lasted three hours") == "the talks lasted   three hours"


def test_case_differences_are_ignored() -> None:
    assert span_text("OIL PRICES ROSE 2.5%") == "Oil prices rose 2.5"


def test_a_small_typo_is_accepted_and_snapped_to_whole_words() -> None:
    found = span_text("the comander of Iran's Quds Force, Esmail Qaani")
    assert found == "The commander of Iran's Quds Force, Esmail Qaani"


def test_a_quote_spanning_two_paragraphs_is_found() -> None:
    found = span_text("officials said. “We discussed the security")
    assert found == "officials said.\n\n“We discussed the security"


@pytest.mark.parametrize(
    "quote",
    [
        "Qaani was seen meeting Iraqi politicians on a weekday",  # paraphrase
        "The president announced new sanctions against the country",  # invented
        "Oil prices fell 2.5% after the meeting",  # one word changes the fact
        "Oil prices rose 3.5% after the meeting",  # a changed number
        "the talks lasted not three hours",  # an added negation
        "one official told reporters, adding that talks lasted three hours",  # dropped word
        "",
        "   ",
    ],
)
def test_paraphrases_inventions_and_empty_quotes_are_not_located(quote: str) -> None:
    assert locate(quote, TEXT) is None


def test_a_word_fragment_is_snapped_to_the_whole_word() -> None:
    # "fficial" only occurs inside words; the citation must show the real words.
    found = span_text("FFICIAL TOLD")
    assert found == "official told"


def test_verify_returns_citations_with_article_metadata_and_reasons_for_rejections() -> None:
    article = Article(id="a1", title="Qaani in Baghdad", source="Wire", text=TEXT)
    claims = [
        ClaimedQuote("a1", "met Iraqi leaders", label="S1"),
        ClaimedQuote("a1", "He resigned on Friday.", label="S1"),
        ClaimedQuote("zz", "met Iraqi leaders", label="S9"),
        ClaimedQuote("a1", "  ", label="S1"),
    ]
    citations, rejected = verify(claims, {"a1": article})
    assert [(c.article_id, c.title, c.source, c.quote) for c in citations] == [
        ("a1", "Qaani in Baghdad", "Wire", "met Iraqi leaders")
    ]
    assert [r.reason for r in rejected] == [
        "quote not found in S1",
        "unknown article S9",
        "empty quote for S1",
    ]


def test_verify_prefers_the_occurrence_inside_the_hinted_passage() -> None:
    text = "Talks resumed. " + "x " * 50 + "Talks resumed."
    article = Article(id="a1", text=text)
    hint = (len(text) - 20, len(text))
    citations, _ = verify([ClaimedQuote("a1", "talks resumed", hint=hint)], {"a1": article})
    assert citations[0].start == len(text) - len("Talks resumed.")
    assert text[citations[0].start:citations[0].end] == "Talks resumed"


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=300), st.data())
def test_any_substring_is_found_verbatim(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    quote = text[start:end]
    span = locate(quote, text)
    if not quote.strip():
        assert span is None
        return
    assert span is not None
    assert text[span[0]:span[1]] == quote


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=80))
def test_every_returned_span_is_a_non_empty_slice_of_the_text(text: str, quote: str) -> None:
    span = locate(quote, text)
    if span is not None:
        start, end = span
        assert 0 <= start < end <= len(text)
    # An Article stores its text in one form (NFC, no soft hyphens or control characters:
    # models._composed); citations are spans of what is stored.
    try:
        article = Article(id="a", text=text)
    except ValueError:
        return
    stored = locate(quote, article.text)
    if stored is not None:
        citations, _ = verify([ClaimedQuote("a", quote)], {"a": article})
        assert citations and citations[0].quote == article.text[stored[0]:stored[1]]
