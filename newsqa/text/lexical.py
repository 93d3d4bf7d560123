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


# Snowball leaves irregular past forms alone ("met" never meets "meet"); news is
# written in the past tense and asked about in the present, so map the common ones.
_IRREGULAR = dict(
    pair.split(":")
    for pair in """met:meet said:say told:tell went:go gone:go took:take taken:take gave:give
    given:give made:make held:hold led:lead won:win lost:lose fought:fight sent:send
    spent:spend built:build bought:buy sold:sell paid:pay brought:bring thought:think
    found:find knew:know known:know rose:rise risen:rise fell:fall fallen:fall struck:strike
    began:begin begun:begin wrote:write written:write came:come became:become ran:run
    spoke:speak spoken:speak chose:choose chosen:choose drove:drive driven:drive flew:fly
    flown:fly grew:grow grown:grow kept:keep shot:shoot stood:stand fled:flee sought:seek
    caught:catch broke:break broken:break threw:throw thrown:throw drew:draw drawn:draw
    heard:hear meant:mean felt:feel slain:slay slew:slay hid:hide hidden:hide swore:swear
    sworn:swear wore:wear worn:wear froze:freeze frozen:freeze stole:steal stolen:steal
    forgave:forgive forgiven:forgive overtook:overtake overtaken:overtake withdrew:withdraw
    withdrawn:withdraw undertook:undertake arose:arise arisen:arise bore:bear borne:bear
    beaten:beat bitten:bite bit:bite dealt:deal dug:dig fed:feed laid:lay lent:lend lit:light
    rode:ride rang:ring sang:sing sank:sink sat:sit slept:sleep spun:spin split:split
    stuck:stick stung:sting swept:sweep swung:swing understood:understand woke:wake""".split()
)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


_APOSTROPHES = str.maketrans({"’": "'", "‘": "'"})
# Accents, and the vowel marks Arabic and Hebrew write only now and then ("عمّان" is
# "عمان"): folded away, as search engines fold them.
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
                        r"\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed]")
# Chinese and Japanese write no spaces: a run of their characters is read as its
# overlapping pairs, as CJK analyzers do ("大熊猫" is "大熊" "熊猫").
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def _fold(text: str) -> str:
    """Curly apostrophes and accents must not split "Qaani’s" from "Qaani's" or "Sūdani".

    Runs over every chunk, sentence and word pair of the corpus when the keyword
    index is built, so ASCII text skips Unicode decomposition altogether.
    """
    text = text.translate(_APOSTROPHES)
    if not text.isascii():
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    return text.lower()


def words(text: str) -> list[str]:
    """Lower-cased words with possessives dropped, stopwords kept."""
    folded = _fold(text)
    if not folded.isascii():
        return _words_beyond_ascii(folded)
    out = []
    for match in _WORD.finditer(folded):
        word = match.group()
        if word.endswith("'s"):
            word = word[:-2]
        out.append(word.replace("'", ""))
    return out


@lru_cache(maxsize=1)
def _marked_word() -> re.Pattern[str]:
    """A word whose letters may carry marks: other scripts' marks are part of their words
    (Devanagari's vowel signs: "भारत" is one word, not "भ" and "रत"). Built at the first
    text beyond ASCII (~20 ms), not at import."""
    blocks = (range(0x300, 0x2000), range(0x3000, 0x3100), range(0xA800, 0xAC00))
    marks = "".join(chr(c) for block in blocks for c in block
                    if unicodedata.category(chr(c)) in ("Mn", "Mc"))
    letter = f"[\\w{re.escape(marks)}]"
    return re.compile(f"{letter}+(?:'{letter}+)?")


def _words_beyond_ascii(folded: str) -> list[str]:
    """`words` for text with other scripts: marks kept inside words, CJK runs as pairs."""
    out = []
    for match in _marked_word().finditer(folded.replace("_", " ")):
        word = match.group()
        if word.endswith("'s"):
            word = word[:-2]
        word = word.replace("'", "")
        if not _CJK.search(word):
            out.append(word)
            continue
        for part in re.split(f"({_CJK.pattern})", word):
            if _CJK.fullmatch(part):
                out += [part[i : i + 2] for i in range(max(1, len(part) - 1))]
            elif part:
                out.append(part)
    return out


def terms(text: str) -> list[str]:
    """Stemmed content words: the unit of keyword matching."""
    return terms_many([text])[0]


def terms_many(texts: Iterable[str]) -> list[list[str]]:
    stem = _stemmer().stemWords
    irregular = _IRREGULAR.get
    out = []
    for text in texts:
        kept = [irregular(w, w) for w in words(text) if w not in STOPWORDS]
        out.append(list(stem(kept)) if kept else [])
    return out


_NAME_WORD = re.compile(r"\b[^\W\d_]*[A-Z][\w'’&.-]*")  # "Qaani", "ECB", "iPhone"


def name_terms(text: str, *, first_word: bool = False) -> list[str]:
    """Terms of the text's capitalised words: the names it asks about. A question's first
    word is capitalised by grammar and left out unless `first_word` (a summary's query,
    "Soleimani killing", often opens with its name); a capitalised stopword has no term."""
    found: list[str] = []
    text = unicodedata.normalize("NFC", text)  # "Montre\u0301al" is one word
    for match in _NAME_WORD.finditer(text):
        if first_word or text[: match.start()].strip():
            found += terms(match.group())
    return list(dict.fromkeys(found))
