"""Keyword terms: one tokenizer for BM25 retrieval and the extractive engine.

Both must agree on what a "term" is, otherwise a sentence the retriever found
by a word could be judged by the engine not to contain it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

_WORD = re.compile(r"[^\W_]+(?:[’'][^\W_]+)?", re.UNICODE)

# Small on purpose: news questions lean on words like "after", "before", "report"
# that a generic list would drop, and those carry the temporal intent.
STOPWORDS = frozenset(
    """a an and are as at be been being but by can could did do does doing for from had has
    have having he her hers him his how i if in into is it its itself me my of on or our
    ours she should so than that the their theirs them then there these they this those to
    too us was we were what when where which while who whom whose why will with would you
    your yours about also any both each few more most other some such no nor not only own
    same just s t don now""".split()
)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def _fold(text: str) -> str:
    # Curly apostrophes and accents should not split "Qaani’s" from "Qaani's" or "Sudani".
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).replace("’", "'").lower()


def words(text: str) -> list[str]:
    """Lower-cased words with possessives dropped, stopwords kept."""
    out = []
    for match in _WORD.finditer(_fold(text)):
        word = match.group()
        if word.endswith("'s"):
            word = word[:-2]
        out.append(word.replace("'", ""))
    return out


def terms(text: str) -> list[str]:
    """Stemmed content words: the unit of keyword matching."""
    kept = [w for w in words(text) if w not in STOPWORDS]
    return list(_stemmer().stemWords(kept)) if kept else []


def terms_many(texts: Iterable[str]) -> list[list[str]]:
    stem = _stemmer().stemWords
    out = []
    for text in texts:
        kept = [w for w in words(text) if w not in STOPWORDS]
        out.append(list(stem(kept)) if kept else [])
    return out
