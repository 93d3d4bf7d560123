"""Sources as a model is shown them and as it names them back.

`format_sources` puts each passage in its own labelled `<source>` element (S1, S2, ...
by rank) with its text escaped, so nothing inside an article can close its tag or
open a fake one; `unescape_quote` undoes that escaping in a quote the model copied;
`passage_for_label` reads the label a model wrote back ("S2", "[S2]", "Source 2").
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Sequence

from ..models import Passage


def source_label(position: int) -> str:
    """The id a passage gets in a prompt: S1 for the first, S2 for the second..."""
    return f"S{position + 1}"


def format_sources(passages: Sequence[Passage]) -> str:
    """Each passage in its own labelled `<source>` element, text escaped as data.

    Escaping `&`, `<` and `>` means an article can contain "</source>" or
    '<source id="S9">' and they arrive as inert text; a quote copied from the
    escaped form is unescaped again before it is verified.
    """
    blocks = []
    for position, passage in enumerate(passages):
        attrs = {
            "id": source_label(position),
            "title": passage.title,
            "source": passage.source,
            "date": _date(passage.published_at),
        }
        rendered = " ".join(f'{key}="{_attr(value)}"' for key, value in attrs.items() if value)
        body = html.escape(passage.text, quote=False)
        blocks.append(f"<source {rendered}>\n{body}\n</source>")
    return "<sources>\n" + "\n".join(blocks) + "\n</sources>"


def unescape_quote(quote: str) -> str:
    """Undo `format_sources` escaping in a quote the model copied from a source."""
    return html.unescape(quote) if "&" in quote else quote


def _attr(value: str) -> str:
    return html.escape(" ".join(value.split()), quote=True)


def _date(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return ""
    return value.date().isoformat() if isinstance(value, dt.datetime) else value.isoformat()


def passage_for_label(label: str, used: Sequence[Passage]) -> Passage | None:
    """"S2", "[S2]", "s2", "Source 2" or "2" name the second passage, an article id its
    first passage; anything else none."""
    clean = label.strip().strip("[]()").strip()
    for passage in used:
        if clean and clean == passage.article_id:
            return passage
    found = re.fullmatch(r"(?:s|source|src)?\s*#?\s*(\d+)", clean, re.IGNORECASE)
    if found is None:
        return None
    number = int(found.group(1))
    return used[number - 1] if 1 <= number <= len(used) else None
