"""Month names: the one table behind every reading of a date in words.

Dates arrive in four shapes, each read where it arrives and with its own rules: article
metadata (ISO 8601 or RFC 2822, store/articles.py), the CLI's --since/--until bounds
(retrieval/keywords.py), dates named in a question (retrieval/query.py) and dates in
article text for timelines (engines/summarize.py, which also reads weekdays and
"yesterday"). What they share, the month names and their abbreviations, is here.
"""

from __future__ import annotations

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
