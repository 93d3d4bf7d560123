"""News metadata named in a question: which publishers, which publication dates.

Multi-source news questions say where each fact was reported ("as reported by
The Verge and TechCrunch", "the Fortune report published on September 26,
2023"). Those names and dates are the strongest evidence of which articles hold
the answer, stronger than any word of the question, so retrieval reads them out
and gives each named publisher (and each named day) its own slot.

Publishers are matched against the sources the index actually holds, never a
fixed list: a stored name like "Cnbc | World Business News Leader" is also
known by its short form "CNBC", and "The Independent" may stand for several
stored feeds ("The Independent - Sports", "... - Travel").
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..text.dates import MONTH_NUMBERS

_MONTH = r"(?P<month>" + "|".join(sorted(MONTH_NUMBERS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d{2})"
_DATE_PATTERNS = (
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.IGNORECASE),  # October 7, 2023
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", re.IGNORECASE),  # 7 October 2023
    re.compile(r"\b(?P<year>(?:19|20)\d{2})-(?P<month>\d{2})-(?P<day>\d{2})\b"),  # 2023-10-07
)
# Words just before a date that turn it into a bound rather than a day.
_AFTER = re.compile(r"\b(after|since|following|later than)\s+(?:on\s+)?$", re.IGNORECASE)
_BEFORE = re.compile(r"\b(before|prior to|until|earlier than|by)\s+(?:on\s+)?$", re.IGNORECASE)
# "..., as reported by <publisher>": the claim came before the name.
_ATTRIBUTION = re.compile(
    r"(?:\b(?:reported|described|covered|mentioned|noted|stated|detailed|discussed|"
    r"highlighted|suggested|indicated|claimed|explained|outlined)\s+(?:by|in|on)"
    r"|\baccording\s+to|\bper|\bas\s+reported)"
    r"\s+(?:both\s+|(?:another|an?|the|one)\s+(?:other\s+|second\s+)?"
    r"(?:article|report|piece|story|stories|articles|reports)\s+(?:by|from|in)\s+)?['\"‘“]?$",
    re.IGNORECASE,
)
# How a stored feed name is split into the short name people use for it.
_ALIAS_CUT = re.compile(r"\s+(?:\||-|–|—|:)\s+|:\s+")


@dataclass(frozen=True)
class DateMention:
    """A calendar day named in the question, and whether it was a bound."""

    day: dt.date
    start: int  # character offset in the question
    relation: str = "on"  # "on" | "after" | "before"


@dataclass(frozen=True)
class SourceMention:
    """A publisher named in the question, as the stored source names it may mean."""

    sources: tuple[str, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Mention:
    """One thing the question points at: a publisher, a day, or a publisher on a day."""

    sources: tuple[str, ...] = ()
    day: dt.date | None = None
    clause: str = ""  # the part of the question about this publisher, for a sharper sub-query


@dataclass(frozen=True)
class QueryHints:
    sources: tuple[SourceMention, ...] = ()
    dates: tuple[DateMention, ...] = ()
    question: str = ""

    @property
    def named_sources(self) -> tuple[str, ...]:
        """Every stored source any mention may mean, in order of first mention."""
        return tuple(dict.fromkeys(s for m in self.sources for s in m.sources))

    @property
    def since(self) -> dt.date | None:
        after = [d.day for d in self.dates if d.relation == "after"]
        return min(after) if after else None

    @property
    def until(self) -> dt.date | None:
        before = [d.day for d in self.dates if d.relation == "before"]
        return max(before) if before else None

    def mentions(self) -> list[Mention]:
        """Publishers and days paired up: each day goes with the publisher named before it.

        Questions are written "the <publisher> report on ... published on <day>",
        so the nearest publisher to the left owns a day (the first one to the
        right when none precedes). A publisher without a day is a mention of its own.
        """
        ordered = sorted(self.sources, key=lambda m: m.start)
        out: list[Mention] = []
        dated: set[int] = set()
        # Even "published before <day>" names a report of that day in practice (every
        # such bound in MultiHop-RAG's dev questions is an evidence article's date),
        # so bounds are mentions too; `since`/`until` keep the range for callers.
        for date in self.dates:
            owner = _owner(ordered, date.start)
            if owner is None:
                out.append(Mention(day=date.day, clause=self.question))
                continue
            dated.add(ordered.index(owner))
            out.append(Mention(owner.sources, date.day, self._clause(ordered, owner)))
        out.extend(
            Mention(sources=m.sources, clause=self._clause(ordered, m))
            for i, m in enumerate(ordered)
            if i not in dated
        )
        return list(dict.fromkeys(out))

    def _clause(self, ordered: list[SourceMention], mention: SourceMention) -> str:
        """The words about this publisher's story.

        "X, as reported by <publisher>" puts them before the name; "the
        <publisher> article says X" after it, up to the next publisher named.
        """
        if _ATTRIBUTION.search(self.question, 0, mention.start):
            earlier = [m.end for m in ordered if m.end <= mention.start]
            return self.question[max(earlier, default=0) : mention.end]
        later = [m.start for m in ordered if m.start >= mention.end]
        return self.question[mention.start : min(later, default=len(self.question))]


def _owner(ordered: list[SourceMention], position: int) -> SourceMention | None:
    before = [m for m in ordered if m.end <= position]
    if before:
        return before[-1]
    return ordered[0] if ordered else None


def parse_dates(question: str) -> list[DateMention]:
    """Full dates (day, month and year) in the question, left to right."""
    found: dict[int, DateMention] = {}
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(question):
            day = _to_date(match)
            if day is None or match.start() in found:
                continue
            head = question[: match.start()]
            relation = (
                "after" if _AFTER.search(head) else "before" if _BEFORE.search(head) else "on"
            )
            found[match.start()] = DateMention(day=day, start=match.start(), relation=relation)
    return [found[k] for k in sorted(found)]


def _to_date(match: re.Match[str]) -> dt.date | None:
    month_text = match.group("month").lower().rstrip(".")
    month = int(month_text) if month_text.isdigit() else MONTH_NUMBERS.get(month_text)
    try:
        return dt.date(int(match.group("year")), month or 0, int(match.group("day")))
    except ValueError:
        return None


class SourceMatcher:
    """Finds the index's publishers in a question: full names and their short forms."""

    def __init__(self, stored: Iterable[str]) -> None:
        aliases: dict[str, set[str]] = {}
        for name in stored:
            for alias in source_aliases(name):
                aliases.setdefault(alias.lower(), set()).add(name)
        self.aliases = {a: tuple(sorted(s)) for a, s in aliases.items()}
        self._spelling = {a.lower(): a for name in stored for a in source_aliases(name)}
        ordered = sorted(self.aliases, key=len, reverse=True)
        self._pattern = (
            re.compile(
                r"(?<![\w.])(" + "|".join(re.escape(a) for a in ordered) + r")(?![\w])",
                re.IGNORECASE,
            )
            if ordered
            else None
        )

    allowed: frozenset[str] | None = None  # set by `within`

    def within(self, names: Iterable[str]) -> SourceMatcher:
        """This matcher for a subset of its publishers (a search's pool), sharing the
        compiled pattern: compiling one per pool cost ~3 ms a search. A mention of
        publishers outside the subset is dropped, as the subset's own pattern would."""
        narrowed = copy.copy(self)
        narrowed.allowed = frozenset(names)
        return narrowed

    def find(self, question: str) -> list[SourceMention]:
        if self._pattern is None:
            return []
        out = []
        for match in self._pattern.finditer(question):
            alias = match.group(1).lower()
            names = self.aliases[alias]
            if self.allowed is not None:
                names = tuple(n for n in names if n in self.allowed)
            if names and _capitalised_like(match.group(1), self._spelling[alias]):
                out.append(SourceMention(names, match.start(), match.end()))
        return out


def matcher_for(stored: Iterable[str]) -> SourceMatcher:
    """The matcher for these publishers, built once per set of names (a search asks for it
    three times, and compiling its pattern cost ~2 ms each time)."""
    return _matcher(tuple(sorted(set(stored))))


@functools.lru_cache(maxsize=8)
def _matcher(stored: tuple[str, ...]) -> SourceMatcher:
    return SourceMatcher(stored)


def source_aliases(name: str) -> list[str]:
    """A feed's full name and the publisher part before " | ", " - " or ": "."""
    name = " ".join(name.split())
    out = [name]
    short = _ALIAS_CUT.split(name, maxsplit=1)[0].strip()
    if short and short != name and len(short) >= 3:
        out.append(short)
    if name.lower().endswith(".com") and len(name) > 7:
        out.append(name[:-4])
    return out


def _capitalised_like(found: str, alias: str) -> bool:
    """"The Age" the paper, not "the age of"; "CNBC" still names "Cnbc"."""
    for got, want in zip(found.split(), alias.split(), strict=False):
        if want[:1].isupper() and not got[:1].isupper():
            return False
    return True


def parse_query(question: str, matcher: SourceMatcher) -> QueryHints:
    return QueryHints(
        sources=tuple(matcher.find(question)), dates=tuple(parse_dates(question)), question=question
    )
