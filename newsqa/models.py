"""The pydantic types users see.

Validation lives here (instructor's lesson): a `Citation` cannot exist with an
inconsistent span, an `Answer` cannot claim to be grounded without a verified
citation. Everything downstream can then trust the type instead of re-checking.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import InputError

MetadataValue = str | int | float | bool

_WS = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """The form used to decide whether two texts are "the same article"."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip().lower()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline


def _composed(text: str) -> str:
    """What is stored of a text: one Unicode form (NFC), no soft hyphens, no control
    characters. A feed writing "Montre\u0301al" (e + a combining accent) or
    "Bundes\u00adliga" split its names and words, so a new user's questions found
    neither; one writing escape sequences ("\x1b]0;...\x07") retitled or cleared the
    terminal of whoever read its answers. Citations point into this text."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    if text.isascii():
        return text
    return unicodedata.normalize("NFC", text).replace("\u00ad", "")


def article_id_for(*, url: str | None, text: str) -> str:
    """Stable id: the URL identifies a story across edits; without one, the text does."""
    basis = url.strip() if url and url.strip() else "text:" + normalise_text(text)
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:16]


MAX_QUESTION_CHARS = 2000
"""The longest question (or summary query, focus, timeline query, chat turn) accepted.

Work grows faster than the text: a 900 KB question cost 5.6 s of CPU and, ten at
once, grew `newsqa serve` to 1.7 GB; the offline chat rewrite of one took minutes.
It lives with the types so every entry point (API, chat session, server) checks the
same bound."""


def check_question(text: object, what: str = "question", *, required: bool = True) -> None:
    """Refuse what is no text, or an over-long question, before any work is done on it
    (None only where the text is not `required`)."""
    if text is None and not required:
        return
    if not isinstance(text, str):
        raise InputError(what, f"must be text, got {type(text).__name__}")
    if len(text) > MAX_QUESTION_CHARS:
        raise InputError(
            what, f"is {len(text):,} characters long; the limit is {MAX_QUESTION_CHARS:,} "
            "(ask something shorter)"
        )



# What a date filter takes: a date, a datetime, an ISO string, or nothing.
DateLike = dt.date | dt.datetime | str | None


class SearchOptions(TypedDict, total=False):
    """The options every question-taking call shares (`NewsQA.search/ask/stream`, chat
    sessions, the LlamaIndex adapters): spelled once, passed on as `**options`."""

    sources: Sequence[str] | None  # publishers, as stored or a unique part of the name
    since: DateLike  # published on or after
    until: DateLike  # published on or before
    top_k: int | None  # passages to retrieve (the settings' top_k when None)


def check_options(options: SearchOptions) -> None:
    """A misspelt option fails as a misspelt keyword argument always did; a value of the
    wrong kind is an InputError naming the option, not a TypeError from deep inside."""
    unknown = sorted(set(options) - set(SearchOptions.__annotations__))
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
    top_k = options.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool)
                              or top_k < 1):
        raise InputError("top_k", f"must be a whole number of at least 1, got {top_k!r}")
    for name in ("since", "until"):
        value = options.get(name)
        if value is not None and not isinstance(value, (str, dt.date)):
            raise InputError(name, f"must be a date or an ISO string (YYYY-MM-DD), got {value!r}")
    sources = options.get("sources")
    if sources is not None and (not isinstance(sources, (str, Sequence))
                                or not all(isinstance(s, str) for s in sources)):
        raise InputError("sources", f"must be publisher names, got {sources!r}")


class Article(BaseModel):
    """One news article. `text` is exactly what citations point into."""

    model_config = ConfigDict(frozen=True)

    id: str = ""
    title: str = ""
    source: str = ""
    published_at: dt.datetime | dt.date | None = None
    url: str | None = None
    text: str
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        value = _composed(value)
        if not value.strip():
            raise ValueError("article text is empty")
        return value

    @field_validator("title", "source")
    @classmethod
    def _field_composed(cls, value: str) -> str:
        return _composed(value)

    @field_validator("published_at")
    @classmethod
    def _aware(cls, value: dt.datetime | dt.date | None) -> dt.datetime | dt.date | None:
        # A naive datetime is ambiguous across sources; news archives are UTC by convention.
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        if isinstance(value, dt.datetime):
            try:  # stored in UTC: "0001-01-01T00:00+01:00" has no UTC time, and once
                value.astimezone(dt.timezone.utc)  # aborted a whole ingest at the store
            except OverflowError:
                raise ValueError(f"{value.isoformat()} is out of range in UTC") from None
        return value

    @model_validator(mode="after")
    def _fill_id(self) -> Article:
        if not self.id:
            object.__setattr__(self, "id", article_id_for(url=self.url, text=self.text))
        return self

    @property
    def content_hash(self) -> str:
        """Changes whenever anything stored for the article changes."""
        payload = "\x1f".join(
            [self.title, self.source, _iso(self.published_at), self.url or "", self.text,
             repr(sorted(self.metadata.items()))]
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def utc_day(value: dt.datetime | dt.date | None) -> dt.date | None:
    """The calendar day a publication time falls on in UTC: the day date filters and
    timelines use (an article stamped 23:30 at -05:00 is the next day's), shown the same
    everywhere so `--until` never leaves out an article shown with that day."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).date()
    return value


def _iso(value: dt.datetime | dt.date | None) -> str:
    return value.isoformat() if value is not None else ""


class Chunk(BaseModel):
    """A token-bounded slice of an article: `article.text[start:end] == text`."""

    model_config = ConfigDict(frozen=True)

    article_id: str
    index: int
    text: str
    start: int
    end: int
    n_tokens: int

    @model_validator(mode="after")
    def _span(self) -> Chunk:
        if not 0 <= self.start <= self.end or self.end - self.start != len(self.text):
            raise ValueError(f"chunk span {self.start}:{self.end} does not match its text")
        return self


class ArticleInfo(BaseModel):
    """A row of `newsqa articles`: what is stored, without the text."""

    id: str
    title: str = ""
    source: str = ""
    published_at: dt.datetime | dt.date | None = None
    url: str | None = None
    chunks: int = 0


class Passage(BaseModel):
    """A retrieved chunk with the article facts a reader needs and its scores."""

    chunk_id: str
    article_id: str
    title: str = ""
    source: str = ""
    published_at: dt.datetime | dt.date | None = None
    url: str | None = None
    text: str
    start: int
    end: int
    score: float
    scores: dict[str, float] = Field(default_factory=dict)


class Citation(BaseModel):
    """A verified, character-exact span of a named article."""

    article_id: str
    title: str = ""
    source: str = ""
    published_at: dt.datetime | dt.date | None = None
    url: str | None = None
    quote: str
    start: int
    end: int
    # The source label the model named when the quote was found in another of the
    # sources it was shown (a wrong label, not a wrong quote): kept, and said so.
    reattributed_from: str | None = None
    # True when the model's own quotes for the claim failed and newsqa found this sentence,
    # among those the model was shown, holding nearly all of the claim (grounding/grounder.py).
    found_by_newsqa: bool = False

    @model_validator(mode="after")
    def _span(self) -> Citation:
        if not 0 <= self.start < self.end or self.end - self.start != len(self.quote):
            raise ValueError(f"citation span {self.start}:{self.end} does not match its quote")
        return self


class RejectedCitation(BaseModel):
    """What the model (or a caller) cited that could not be verified, and why."""

    article_id: str | None = None
    quote: str
    reason: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_cost_usd: float | None = None

    def __add__(self, other: Usage) -> Usage:
        cost = None
        if self.estimated_cost_usd is not None or other.estimated_cost_usd is not None:
            cost = (self.estimated_cost_usd or 0.0) + (other.estimated_cost_usd or 0.0)
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            estimated_cost_usd=cost,
        )


Mode = Literal["llm", "extractive"]


class Reask(BaseModel):
    """The one re-ask after claims failed verification or support: what it won back."""

    failed_claims: int
    recovered_claims: int
    usage: Usage = Field(default_factory=Usage)


class Answer(BaseModel):
    """The reply to one question. `answerable` is never True without a verified citation.

    `direct_answer` is the short answer the question asks for (yes/no, a name, a
    number, a date); it is set only when a kept claim's quotes support it. A model's
    `answer` then starts with it, followed by the supported claims with markers; the
    offline engine's `answer` is its cited sentences, the short answer (a span of the
    first) in this field only (`engines/direct.py`, `LEAD_WITH`).
    """

    question: str
    answer: str
    answerable: bool
    direct_answer: str | None = None
    reason: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    rejected_citations: list[RejectedCitation] = Field(default_factory=list)
    passages: list[Passage] = Field(default_factory=list)
    mode: Mode
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)
    rewritten_question: str | None = None
    reask: Reask | None = None

    @model_validator(mode="after")
    def _grounded(self) -> Answer:
        if self.answerable and not self.citations:
            raise ValueError("an answer without a verified citation cannot be answerable")
        if not self.answerable and not self.reason:
            raise ValueError("an unanswerable answer must say why")
        if self.direct_answer is not None and not self.answerable:
            raise ValueError("a direct answer needs a supported claim")
        return self


class Bullet(BaseModel):
    text: str
    citations: list[Citation] = Field(default_factory=list)


class Summary(BaseModel):
    headline: str
    bullets: list[Bullet] = Field(default_factory=list)
    article_ids: list[str] = Field(default_factory=list)
    disagreements: list[Bullet] = Field(default_factory=list)
    rejected_citations: list[RejectedCitation] = Field(default_factory=list)
    mode: Mode
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)


DateSource = Literal["text", "published_at"]


class TimelineEvent(BaseModel):
    date: dt.date
    date_source: DateSource
    text: str
    citations: list[Citation] = Field(default_factory=list)


class Timeline(BaseModel):
    query: str
    events: list[TimelineEvent] = Field(default_factory=list)
    article_ids: list[str] = Field(default_factory=list)
    rejected_citations: list[RejectedCitation] = Field(default_factory=list)
    mode: Mode
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)


class IngestFailure(BaseModel):
    path: str
    error: str


class IngestReport(BaseModel):
    """What one ingest did; the CLI prints it as-is with --json."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    failed: list[IngestFailure] = Field(default_factory=list)
    chunks: int = 0
    duplicate_of: dict[str, str] = Field(default_factory=dict, exclude=True)

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
