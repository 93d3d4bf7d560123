"""What a model fills in: draft claims with the quotes they rest on, before any check.

Answers, summaries and timelines all hand the grounder `DraftClaim`s; nothing here is
trusted until `grounder.Grounder` has found each quote and checked it backs its claim.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# What a model writes when it has no answer, in the direct-answer slot.
_NO_ANSWER = re.compile(
    r"^\W*(insufficient information|not enough information|unknown|none|n/?a|"
    r"the sources do not (say|contain|mention)\b.*)\W*$",
    re.IGNORECASE,
)


def quotes_required(field: str) -> ConfigDict:
    """Show the model `field` (a list of quotes) as required, with at least one item.

    Parsing stays lenient (a claim without quotes still parses, and the grounder rejects
    it with its reason), but the schema a server constrains its output with asks for the
    quotes. llama.cpp's grammar writes required properties first and may leave optional
    ones out: with the quotes optional, a real model wrote its claim first and, asked
    again, dropped the quotes in 31 of 32 re-asks (issue 15's run).
    """

    def extra(schema: dict[str, Any]) -> None:
        wanted = {*schema.get("required", []), field}
        schema["required"] = [name for name in schema["properties"] if name in wanted]
        schema["properties"][field]["minItems"] = 1

    shown: Callable[[dict[str, Any]], None] = extra
    return ConfigDict(json_schema_extra=shown)


class DraftCitation(BaseModel):
    source_id: str
    quote: str


class DraftClaim(BaseModel):
    model_config = quotes_required("citations")

    # Quotes first, then the claim: a model that has just copied its evidence writes a
    # claim that says what the evidence says, rather than restating the question.
    citations: list[DraftCitation] = Field(default_factory=list)
    text: str


class DraftAnswer(BaseModel):
    """What the model fills in. Field order matters: it streams in this order."""

    answerable: bool
    answer: str = Field(
        default="",
        description="The short answer the question asks for: yes or no, a name, a number, "
        "a date, or 'insufficient information'.",
    )
    reason: str | None = None
    claims: list[DraftClaim] = Field(default_factory=list)


_YES_NO = re.compile(r"^\W*(yes|no)\b\W*$", re.IGNORECASE)


def is_no_answer(text: str) -> bool:
    return bool(_NO_ANSWER.match(text.strip())) if text.strip() else True


def is_yes_no(text: str) -> bool:
    """A bare "Yes" or "No" (a marker or a full stop aside) in the direct-answer slot."""
    return bool(_YES_NO.match(text))


# Summaries and timelines: bullets and events, each with the quotes it rests on.


class QuotedSource(BaseModel):
    source: str = Field(description="the id of the source the quote is copied from")
    quote: str = Field(description="a verbatim span copied from that source")


class DraftBullet(BaseModel):
    model_config = quotes_required("quotes")

    text: str
    quotes: list[QuotedSource] = Field(default_factory=list)


class DraftSummary(BaseModel):
    headline: str
    bullets: list[DraftBullet] = Field(default_factory=list)
    disagreements: list[DraftBullet] = Field(default_factory=list)


class DraftEvent(BaseModel):
    model_config = quotes_required("quotes")

    date: str = Field(description="YYYY-MM-DD")
    date_source: Literal["text", "published_at"] = "published_at"
    text: str
    quotes: list[QuotedSource] = Field(default_factory=list)


class DraftTimeline(BaseModel):
    events: list[DraftEvent] = Field(default_factory=list)
