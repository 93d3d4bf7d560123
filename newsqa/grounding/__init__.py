"""Grounding: from a model's draft claims to what a reader may see, for every task.

Its modules import only downward:

    grounder.py      Grounder: each draft claim's quotes found, checked, numbered
       |   |   |
       |   |   support.py    does a verified quote back its claim (lexical, no model)
       |   citations.py      a quote located character-exact in its article
       drafts.py, sources.py the draft types a model fills in; sources as it is shown
                             them (labelled, escaped) and as it names them back

Answers, summaries and timelines all go through `Grounder`;
`from newsqa.grounding import X` hands on the names the engines use.
"""

from .citations import ClaimedQuote, citation_for, locate, verify, verify_one
from .drafts import (
    DraftAnswer,
    DraftBullet,
    DraftCitation,
    DraftClaim,
    DraftEvent,
    DraftSummary,
    DraftTimeline,
    QuotedSource,
    is_no_answer,
    is_yes_no,
    quotes_required,
)
from .grounder import Failure, Grounder, reask_message
from .sources import format_sources, passage_for_label, source_label, unescape_quote
from .support import check_support, is_instruction

__all__ = [
    "ClaimedQuote", "DraftAnswer", "DraftBullet", "DraftCitation", "DraftClaim", "DraftEvent",
    "DraftSummary", "DraftTimeline", "Failure", "Grounder", "QuotedSource", "check_support",
    "citation_for", "format_sources", "is_instruction", "is_no_answer", "is_yes_no", "locate",
    "passage_for_label",
    "quotes_required", "reask_message", "source_label", "unescape_quote", "verify", "verify_one",
]
