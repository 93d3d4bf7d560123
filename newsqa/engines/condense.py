"""Follow-ups made standalone: offline from the previous turn's names, or by a model.

Retrieval only sees one question, so "what did he warn?" would retrieve nothing
useful. Each turn is first condensed into a standalone question: by the LLM when
the engine has one, offline by carrying the previous turn's named entities and key
words into the question. Engines call these (`Engine.condense`); chat sessions keep
the history they work on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from ..errors import LLMError
from ..models import Usage
from .prompts import render

if TYPE_CHECKING:
    from .llm import LLM

MAX_CONTEXT_TERMS = 5
MAX_STANDALONE_CHARS = 1000


@dataclass(frozen=True)
class Turn:
    """One exchange as the session remembers it."""

    question: str
    answer: str
    rewritten_question: str | None = None

    @property
    def standalone(self) -> str:
        return self.rewritten_question or self.question


@dataclass(frozen=True)
class Rewrite:
    """A condensed follow-up: the question retrieval sees, and what the model call cost."""

    question: str
    usage: Usage



# -- the offline rewrite ---------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that point back at something said before: their presence is what makes a
# question a follow-up rather than a new topic.
_ANAPHORA = _words(
    """he him his himself she her hers herself it its itself they them their theirs
    themselves this that these those there such former latter"""
)  # not "the": "What did the Pentagon say?" is a new question
_FOLLOW_UP_OPENERS = (
    "and ", "also ", "what about", "how about", "but ", "so ", "then ", "why", "when",
    "where", "how come", "what else", "anything else", "more on", "tell me more",
)
_QUESTION_WORDS = _words(
    "who whom whose what which when where why how is are was were do does did can could "
    "will would should shall may might has have had"
)
_STOPWORDS = _words(
    """a an the and or but if of in on at to for from by with about into over after before
    under between through during without within than then so as is are was were be been
    being do does did done have has had having will would should could can may might must
    shall not no nor yes it its this that these those there here he him his she her they
    them their we us our you your i me my who whom whose what which when where why how
    said say says tell told also any some all more most other such only own same very just
    up down out off again further once both each few many much there's what's let's
    one two according report reports reported reportedly source sources mr mrs ms
    happen happened happens going"""
)
_WORD = re.compile(r"[A-Za-z][\w'’\-]*")
# A run of capitalised words (with particles like al-/bin inside names), or an acronym.
_ENTITY = re.compile(
    r"\b(?:[A-Z]\.){2,}(?:\s+[A-Z][\w’'\-]*)*"  # "U.S. Army": one name, not "U" and "S"
    r"|(?:\b(?:al|el|bin|ibn|de|van|von)-?)?\b[A-Z][\w’'\-]*"
    r"(?:\s+(?:(?:al|el|bin|ibn|de|da|van|von|of|the)[\s\-])?(?:al-|el-)?[A-Z][\w’'\-]*)*"
)
_POSSESSIVE = re.compile(r"['’]s?$")
# A sentence's start, or a quotation's: "“Easily,” he said" opens with no name.
_SENTENCE_START = re.compile(r"(?:^|[.!?;\"“”]\s+|\n\s*|[\"“‘(]\s*)$")


def is_follow_up(question: str) -> bool:
    """Does the question lean on the conversation (pronouns, "and ...", a bare "why?")?"""
    text = question.strip().lower()
    words = [w.strip("'’") for w in _WORD.findall(text)]
    if any(w in _ANAPHORA for w in words):
        return True
    if any(text.startswith(opener) for opener in _FOLLOW_UP_OPENERS) and not named_entities(
        question
    ):
        return True
    content = [w for w in words if w not in _STOPWORDS and w not in _QUESTION_WORDS]
    return len(content) <= 1 and not named_entities(question)


_CALENDAR = _words(
    """monday tuesday wednesday thursday friday saturday sunday january february march
    april may june july august september october november december today yesterday"""
)


def _mid_sentence_words(text: str) -> set[str]:
    words: set[str] = set()
    for match in _ENTITY.finditer(text):
        if not _SENTENCE_START.search(text[: match.start()]):
            words.update(_POSSESSIVE.sub("", w) for w in match.group(0).split())
    return words


def named_entities(text: str, *, context: str = "") -> list[str]:
    """Capitalised spans, most salient first, without sentence-initial common words.

    No tagger is available offline, so a lone capitalised word at the start of a
    sentence counts only if it is an acronym ("US") or is capitalised mid-sentence
    somewhere in `text` or `context`; otherwise "Sources revealed ..." would yield
    "Sources".
    """
    known = _mid_sentence_words(text) | _mid_sentence_words(context)
    counts: Counter[str] = Counter()
    order: dict[str, int] = {}
    for match in _ENTITY.finditer(text):
        at_start = bool(_SENTENCE_START.search(text[: match.start()]))
        words = [_POSSESSIVE.sub("", w) for w in match.group(0).split()]
        while words and words[0].lower() in _QUESTION_WORDS | _STOPWORDS:
            words, at_start = words[1:], False  # "What Qaani said" -> "Qaani"
        if not words or all(w.lower() in _STOPWORDS | _CALENDAR for w in words):
            continue
        span = " ".join(words)
        if at_start and len(words) == 1 and not span.isupper() and span not in known:
            continue
        counts[span] += 1
        order.setdefault(span, len(order))
    return sorted(counts, key=lambda s: (-counts[s], order[s]))


def key_words(text: str) -> list[str]:
    """Lower-case content words, for carrying a topic that has no proper name."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text):
        lowered = _POSSESSIVE.sub("", word.lower())
        if len(lowered) > 3 and lowered not in _STOPWORDS and lowered not in _QUESTION_WORDS:
            seen.setdefault(lowered, None)
    return list(seen)


def context_terms(turn: Turn, question: str, limit: int = MAX_CONTEXT_TERMS) -> list[str]:
    """What the previous turn was about: its question's entities first, then its answer's.

    The question's entities (including those it carried itself) are the user's own
    topic, so they rank above whatever the answer happened to mention; names the
    new question already contains are skipped.
    """
    present = {w.lower() for w in _WORD.findall(question)}
    terms: list[str] = []

    def add(candidates: Iterable[str]) -> None:
        for term in candidates:
            lowered = term.lower()
            if len(terms) >= limit or lowered.split()[-1] in present:
                continue
            if any(lowered in t.lower() or t.lower() in lowered for t in terms):
                continue
            terms.append(term)

    asked, answer = turn.standalone, turn.answer
    add(named_entities(asked, context=answer))
    add(named_entities(answer, context=asked)[:2])
    if not terms:
        add(key_words(_CONTEXT_NOTE.sub("", asked))[:3])
    return terms


_CONTEXT_NOTE = re.compile(r"\s*\(context: [^()]*\)\s*$")


_SINGULAR_PERSONAL = re.compile(r"\b(he|she|him|his|hers|her|himself|herself)\b", re.I)
_POSSESSIVE_PRONOUNS = frozenset({"his", "hers"})


def subject_of(turn: Turn, question: str) -> str | None:
    """The name "he"/"she" most likely means: the first name the previous turn asked about.

    A question names its subject first ("Who did Qaani meet in Baghdad?"), so the
    previous question's first entity wins; its answer's first entity is the fallback,
    and wins when the question asked for the subject ("Who leads the Quds Force?").
    Names the new question has are skipped: in "What did he urge al-Sudani to do?",
    "he" is not al-Sudani.
    """
    present = {w.lower() for w in _WORD.findall(question)}
    asked = turn.standalone
    candidates = [*_in_order(asked, turn.answer), *_in_order(turn.answer, asked)]
    if _asks_who_did(asked):  # "Who leads the Quds Force?": the answer names the subject
        candidates = [*_in_order(turn.answer, asked), *_in_order(asked, turn.answer)]
    for entity in candidates:
        if entity.lower().split()[-1] not in present:
            return entity
    return None


_WHO_VERB = re.compile(r"^\W*who\s+(\w+)", re.I)


def _asks_who_did(question: str) -> bool:
    """ "Who leads X?" asks for a subject; "Who is X?"/"Who did X meet?" are about X."""
    match = _WHO_VERB.match(question)
    return match is not None and match.group(1).lower() not in _QUESTION_WORDS


def _in_order(text: str, context: str) -> list[str]:
    found = named_entities(text, context=context)
    return sorted(found, key=lambda e: text.find(e) if e in text else len(text))


_OBJECT_PRONOUNS = frozenset({"him", "her"})


def _substitute(question: str, subject: str) -> str:
    """Replace singular personal pronouns by `subject` ("his" -> "Qaani's"); in "What did
    he urge him to do?" they are two people, so only the subject is."""
    said = [m.group(0).lower() for m in _SINGULAR_PERSONAL.finditer(question)]
    two = any(w in ("he", "she") for w in said) and any(w in _OBJECT_PRONOUNS for w in said)

    def replace(match: re.Match[str]) -> str:
        word = match.group(0).lower()
        after = question[match.end():].lstrip()
        next_word = after.split()[0].lower() if after.split() else ""
        possessive = word in _POSSESSIVE_PRONOUNS or (
            word == "her" and next_word.isalpha() and next_word not in _STOPWORDS
        )
        if two and word not in ("he", "she"):
            return match.group(0)
        if word in ("himself", "herself"):
            return subject
        return f"{subject}'s" if possessive and word != "hers" else subject

    return _SINGULAR_PERSONAL.sub(replace, question)


def condense_offline(question: str, history: Sequence[Turn]) -> str:
    """Make a follow-up standalone from what the previous turn was about.

    "he"/"she" become the previous turn's subject, so "What did he warn?" is
    asked as "What did Qaani warn?": the engines score sentences by the question's
    terms, and a substituted name keeps the question as sharp as the user's.
    Other references ("that", "they", a bare "why?") cannot be bound to one name
    without a parser, so the previous turn's salient names are appended instead.
    A rewritten question carries its names along, so a chain of follow-ups stays
    on topic.
    """
    question = question.strip()
    if not history or not is_follow_up(question):
        return question
    previous = history[-1]
    subject = subject_of(previous, question)
    rewritten = _substitute(question, subject) if subject else question
    if rewritten != question and not is_follow_up(rewritten):
        return rewritten
    terms = context_terms(previous, rewritten)
    if not terms:
        return rewritten
    return f"{rewritten} (context: {', '.join(terms)})"



# -- the LLM rewrite --------------------------------------------------------------------------


class Condensed(BaseModel):
    """What the model returns for a rewrite: one question, nothing else."""

    standalone_question: str = Field(
        description="The user's last question rewritten to be understood without the chat."
    )


def _format_history(history: Sequence[Turn]) -> str:
    lines = []
    for turn in history:
        lines.append(f"User: {turn.question}")
        lines.append(f"Assistant: {turn.answer}")
    return "\n".join(lines)


def _checked_rewrite(candidate: str, question: str) -> str | None:
    """The model's rewrite is untrusted: keep it only if it is one plausible question."""
    text = " ".join(candidate.split())
    if not text or len(text) > MAX_STANDALONE_CHARS or len(text) > 10 * max(len(question), 40):
        return None
    return text


def _condense_messages(question: str, history: Sequence[Turn]) -> list[dict[str, str]]:
    return render("condense", history=_format_history(history), question=question)


def condense_with_llm(question: str, history: Sequence[Turn], llm: LLM) -> tuple[str, Usage]:
    """Ask the model for a standalone question; fall back to the offline rewrite."""
    if not history:
        return question.strip(), Usage()
    try:
        result, usage = llm.structured(_condense_messages(question, history), Condensed)
    except LLMError:
        return condense_offline(question, history), Usage()
    rewrite = _checked_rewrite(result.standalone_question, question)
    return (rewrite or condense_offline(question, history)), usage
