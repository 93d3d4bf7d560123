"""Sentence boundaries as character spans: one splitter for chunks, quotes and summaries.

Abbreviations ("Dr.", "Jan."), initials ("U.S.") and hard-wrapped lines do not end a
sentence; a line break after punctuation or a blank line does. Spans are trimmed of
whitespace, so `text[start:end]` is the visible sentence.
"""

from __future__ import annotations

import itertools
import re

_ABBREVIATION_WORDS = """
mr mrs ms dr prof sr jr st gen col lt sgt capt cmdr adm gov sen rep rev hon pres maj
cpl pvt supt det insp fr messrs mme mlle inc ltd co corp bros plc llc dept
univ assn est approx vs etc al fig no nos vol ed eds pp jan feb mar apr jun jul aug
sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun mt ft ave blvd rd
hwy calif fla mass penn wash ariz conn ill mich minn tenn tex va wis"""
_ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
# Chinese and Japanese end a sentence with a full-width mark and no space after it.
_BOUNDARY = re.compile(r"([.!?…]+[\"'”’»)\]]*(?=\s)|[。！？]+[」』”’）]*|\n)(\s*)(?=(\S?))")
_LAST_WORD = re.compile(r"(\S+)$")
_INITIALS = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")  # "J", "U.S", "e.g", "a.m"


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, trimmed of whitespace, covering all visible text."""
    cuts = [0]
    for match in _BOUNDARY.finditer(text):
        if _is_break(text, match):
            cuts.append(match.end(1))
    cuts.append(len(text))
    spans = []
    for start, end in itertools.pairwise(cuts):
        span = trim_span(text, start, end)
        if span is not None:
            spans.append(span)
    return spans


def _is_break(text: str, match: re.Match[str]) -> bool:
    mark, space, following = match.groups()
    if "\n" in space:
        return True  # a line ends after the punctuation, or a blank line follows
    if mark == "\n":
        # A line that goes on in lower case is a hard-wrapped sentence, not a new one.
        return not following.islower()
    if following.islower():
        return False  # "approx. five", "... and then"
    if mark.rstrip("\"'”’»)]") != ".":
        return True
    word = _LAST_WORD.search(text, max(0, match.start() - 40), match.start())
    if word is None:
        return True
    stem = word.group(1).lstrip("(\"'“‘[")
    return not (stem.lower() in _ABBREVIATIONS or _INITIALS.fullmatch(stem))


def trim_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None
