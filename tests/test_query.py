"""Reading publishers and dates out of questions (newsqa.query)."""

from __future__ import annotations

import datetime as dt

import pytest

from newsqa.retrieval.query import Mention, SourceMatcher, parse_dates, parse_query, source_aliases

STORED = [
    "The Verge",
    "TechCrunch",
    "Fortune",
    "The Age",
    "Cnbc | World Business News Leader",
    "The Independent - Sports",
    "The Independent - Travel",
    "Live Science: The Most Interesting Articles",
    "CBSSports.com",
    "Sporting News",
]


@pytest.fixture(scope="module")
def matcher() -> SourceMatcher:
    return SourceMatcher(STORED)


def test_full_names_and_quoted_names_are_found_in_order(matcher: SourceMatcher) -> None:
    hints = parse_query(
        "Did 'The Age' and TechCrunch, as reported by The Verge, agree?", matcher
    )
    assert hints.named_sources == ("The Age", "TechCrunch", "The Verge")


def test_short_forms_name_the_stored_feed(matcher: SourceMatcher) -> None:
    hints = parse_query("What did CNBC and Live Science report?", matcher)
    assert hints.named_sources == ("Cnbc | World Business News Leader",
                                   "Live Science: The Most Interesting Articles")


def test_a_short_form_shared_by_feeds_means_all_of_them(matcher: SourceMatcher) -> None:
    hints = parse_query("According to The Independent, who won?", matcher)
    assert set(hints.named_sources) == {"The Independent - Sports", "The Independent - Travel"}


def test_ordinary_words_that_spell_a_publisher_are_not_publishers(
    matcher: SourceMatcher,
) -> None:
    question = "Did the age of the fortune hunters end, as CBSSports.com claims?"
    assert parse_query(question, matcher).named_sources == ("CBSSports.com",)


def test_a_matcher_within_a_pool_keeps_only_the_pools_publishers(matcher: SourceMatcher) -> None:
    """A search's pool holds some feeds; its matcher shares the index's pattern, so a
    named feed outside the pool is no mention, never a sibling feed under its short form."""
    pool = matcher.within(["The Independent - Sports", "TechCrunch"])
    question = "Did The Independent - Travel, TechCrunch and The Independent agree?"
    assert [m.sources for m in pool.find(question)] == [
        ("TechCrunch",), ("The Independent - Sports",)
    ]
    assert matcher.find(question)[0].sources == ("The Independent - Travel",)


def test_longest_name_wins_over_its_prefix() -> None:
    matcher = SourceMatcher(["Fox News", "Fox News - Health", "Fox"])
    hints = parse_query("Per Fox News - Health and Fox, was it safe?", matcher)
    assert [m.sources for m in hints.sources] == [
        ("Fox News - Health",), ("Fox",)
    ]


def test_source_aliases() -> None:
    assert source_aliases("Cnbc | World Business News Leader") == [
        "Cnbc | World Business News Leader", "Cnbc"]
    assert source_aliases("CBSSports.com") == ["CBSSports.com", "CBSSports"]
    assert source_aliases("Wired") == ["Wired"]


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("published on October 7, 2023, said", dt.date(2023, 10, 7)),
        ("on Oct. 7th 2023", dt.date(2023, 10, 7)),
        ("on 7 October 2023", dt.date(2023, 10, 7)),
        ("dated 2023-10-07", dt.date(2023, 10, 7)),
        ("on Sept 30, 2023", dt.date(2023, 9, 30)),
    ],
)
def test_dates_in_common_spellings(text: str, day: dt.date) -> None:
    assert [d.day for d in parse_dates(text)] == [day]


def test_impossible_and_partial_dates_are_ignored() -> None:
    assert parse_dates("on February 30, 2023 and in October 2023 and on May 5") == []


def test_before_and_after_become_bounds() -> None:
    dates = parse_dates(
        "Published after October 1, 2023 but before November 15, 2023, or on December 2, 2023"
    )
    assert [(d.day, d.relation) for d in dates] == [
        (dt.date(2023, 10, 1), "after"),
        (dt.date(2023, 11, 15), "before"),
        (dt.date(2023, 12, 2), "on"),
    ]


def test_bounds_give_a_date_range(matcher: SourceMatcher) -> None:
    hints = parse_query("What did TechCrunch say after October 1, 2023 and before "
                        "November 15, 2023?", matcher)
    assert hints.since == dt.date(2023, 10, 1) and hints.until == dt.date(2023, 11, 15)
    assert parse_query("What did TechCrunch say?", matcher).since is None


def test_each_day_belongs_to_the_publisher_named_before_it(matcher: SourceMatcher) -> None:
    hints = parse_query(
        "Between the TechCrunch report published on October 6, 2023, and the Fortune "
        "report published on October 7, 2023, and The Verge's take, what changed?",
        matcher,
    )
    assert _pairs(hints.mentions()) == [
        (("TechCrunch",), dt.date(2023, 10, 6)),
        (("Fortune",), dt.date(2023, 10, 7)),
        (("The Verge",), None),
    ]
    assert [m.clause for m in hints.mentions()] == [
        "TechCrunch report published on October 6, 2023, and the ",
        "Fortune report published on October 7, 2023, and ",
        "The Verge's take, what changed?",
    ]


def test_two_days_for_one_publisher_are_two_mentions(matcher: SourceMatcher) -> None:
    hints = parse_query(
        "After TechCrunch reported on October 31, 2023, and again on December 15, 2023, ...",
        matcher,
    )
    assert _pairs(hints.mentions()) == [
        (("TechCrunch",), dt.date(2023, 10, 31)),
        (("TechCrunch",), dt.date(2023, 12, 15)),
    ]


def test_a_day_before_any_publisher_goes_to_the_first_one(matcher: SourceMatcher) -> None:
    hints = parse_query("On October 6, 2023, did Fortune say so?", matcher)
    assert _pairs(hints.mentions()) == [(("Fortune",), dt.date(2023, 10, 6))]


def test_a_day_with_no_publisher_named_is_a_mention_of_its_own(matcher: SourceMatcher) -> None:
    question = "What happened on October 6, 2023?"
    assert parse_query(question, matcher).mentions() == [
        Mention(day=dt.date(2023, 10, 6), clause=question)
    ]


def test_one_publisher_named_twice_about_two_stories_gives_two_clauses(
    matcher: SourceMatcher,
) -> None:
    hints = parse_query("Did the TechCrunch story on A and the TechCrunch story on B agree?",
                        matcher)
    assert [m.clause for m in hints.mentions()] == [
        "TechCrunch story on A and the ", "TechCrunch story on B agree?"]


def _pairs(mentions: list[Mention]) -> list[tuple[tuple[str, ...], dt.date | None]]:
    return [(m.sources, m.day) for m in mentions]


def test_no_names_no_mentions(matcher: SourceMatcher) -> None:
    assert parse_query("Who won the match?", matcher).mentions() == []
    assert SourceMatcher([]).find("The Verge") == []


def test_attributed_claims_come_before_the_publisher(matcher: SourceMatcher) -> None:
    hints = parse_query(
        "Which firm lost in court, as reported by TechCrunch, and cut 16% of staff "
        "according to another report by Fortune?",
        matcher,
    )
    assert [m.clause for m in hints.mentions()] == [
        "Which firm lost in court, as reported by TechCrunch",
        ", and cut 16% of staff according to another report by Fortune",
    ]
