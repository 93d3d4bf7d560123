"""Dates in words: the month and weekday names, and the dates a sentence states.

Dates arrive in four shapes, each read where it arrives and with its own rules: article
metadata (ISO 8601 or RFC 2822, store/articles.py), the CLI's --since/--until bounds
(retrieval/keywords.py), dates named in a question (retrieval/query.py) and dates in
article text (`find_dates` here: timelines, and the extractive engine's date answers,
which also read weekdays and "yesterday"). What they share, the month and weekday names
and their abbreviations, is here.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august",
               "september", "october", "november", "december")
# Each month's full name and its abbreviations ("sept" too), lower case, to its number.
MONTH_NUMBERS: dict[str, int] = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
            ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
            ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}


def full_month(word: str) -> str:
    """A lower-case month abbreviation spelled out ("sept" -> "september"); any other word as is."""
    number = MONTH_NUMBERS.get(word)
    return MONTH_NAMES[number - 1] if number else word


# A month name or abbreviation as a regular expression (capitalised, as text writes it).
MONTH_PATTERN = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
WEEKDAY_PATTERN = "|".join(name.capitalize() for name in WEEKDAY_NAMES)

_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_DATE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("iso", re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")),
    ("mdy", re.compile(rf"\b{MONTH_PATTERN}\.?\s+{_DAY}(?:,?\s+\d{{4}})?\b")),
    ("dmy", re.compile(rf"\b{_DAY}\s+(?:of\s+)?{MONTH_PATTERN}\.?(?:,?\s+\d{{4}})?\b")),
    ("weekday", re.compile(
        rf"\b(?:(last|next|this|on|since|until|by|come)\s+)?({WEEKDAY_PATTERN})\b")),
    ("relative", re.compile(r"\b(yesterday|today|tomorrow|tonight|last night)\b", re.I)),
)


@dataclass(frozen=True)
class FoundDate:
    date: dt.date
    start: int  # span of the date expression within the searched text
    end: int
    kind: str


_FORWARD = re.compile(r"\b(will|due|scheduled|expected)\b", re.I)
# Anywhere in the sentence: "United host City in a Super Sunday derby this weekend" (a
# Saturday's preview) was dated the Sunday before.
# ("ahead of" and "set to" were left out: "On Sunday, ahead of the summit, ministers met".)
_UPCOMING = re.compile(r"\b(this weekend|upcoming)\b", re.I)
# Or in the clause the weekday opens: "On Monday, Epic Games will drag Google to court"
# (a Sunday's preview, dated the Monday before); not reported speech ("On Monday, he
# said he will ...").
_FORWARD_AFTER = re.compile(r"^\W{0,3}(?:[\w'’-]+\s+){0,5}?(?:will|is due|are due)\b", re.I)
_REPORTED = re.compile(r"\b(said|says|told|announced|added)\b", re.I)


def find_dates(text: str, published: dt.date | None) -> list[FoundDate]:
    """Dates a sentence states, normalised; relative ones ("on Sunday") need `published`.

    Weekdays resolve to the latest such day on or before publication (news reports the
    past), unless "next", "come", a "will" earlier in the sentence or in the clause the
    weekday opens points forward, or "this Sunday", "this weekend", "upcoming" say it is
    the coming one.
    """
    found: list[FoundDate] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            if any(match.start() < e and s < match.end() for s, e in taken):
                continue
            value = _resolve(kind, match, text, published)
            if value is not None:
                taken.append((match.start(), match.end()))
                found.append(FoundDate(value, match.start(), match.end(), kind))
    found.sort(key=lambda f: f.start)
    return found


def _resolve(
    kind: str, match: re.Match[str], text: str, published: dt.date | None
) -> dt.date | None:
    if kind in ("iso", "mdy", "dmy"):
        return _parse_explicit(match.group(), published)
    if published is None:
        return None
    if kind == "weekday":
        target = WEEKDAY_NAMES.index(match.group(2).lower())
        ahead = (target - published.weekday()) % 7
        prefix = (match.group(1) or "").lower()
        if prefix == "this" or _UPCOMING.search(text):  # "this Sunday": today or after
            return published + dt.timedelta(days=ahead)
        if prefix in ("next", "come") or _FORWARD.search(text[: match.start()]) or (
                _points_forward(text[match.end():])):
            return published + dt.timedelta(days=ahead or 7)
        return published - dt.timedelta(days=(published.weekday() - target) % 7)
    offsets = {"yesterday": -1, "today": 0, "tonight": 0, "last night": -1, "tomorrow": 1}
    return published + dt.timedelta(days=offsets[match.group(1).lower()])


def _points_forward(after: str) -> bool:
    """Whether the clause after a weekday says it is still to come (see `_FORWARD_AFTER`)."""
    found = _FORWARD_AFTER.match(after)
    return found is not None and not _REPORTED.search(found.group())


def _parse_explicit(expression: str, published: dt.date | None) -> dt.date | None:
    """dateutil parses the expression; a missing year comes from publication, and a date that
    would then lie far after publication belongs to the year before."""
    from dateutil import parser

    has_year = bool(re.search(r"\d{4}", expression))
    if not has_year and published is None:
        return None
    anchor = published or dt.date(2000, 1, 1)
    default = dt.datetime(anchor.year, 1, 1)
    try:
        value = parser.parse(expression.replace(" of ", " "), default=default, fuzzy=False).date()
    except (ValueError, OverflowError):
        return None
    if not has_year and published is not None and value - published > dt.timedelta(days=183):
        value = value.replace(year=value.year - 1)
    return value
