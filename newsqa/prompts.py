"""Prompt templates as files, and sources rendered as clearly delimited data.

Templates live in `prompts/` at the top of the source tree, shipped in the wheel as
`newsqa/prompts`, so wording can be reviewed and changed without touching code.
A template is one Markdown file with a `<!-- system -->` and a `<!-- user -->`
section; `$name` placeholders are filled by `string.Template` (values are inserted
verbatim and never re-parsed, so a `$` or `{` in an article cannot break rendering).

Article text is untrusted: `format_sources` escapes it so nothing inside an article
can close its `<source>` tag or open a fake one, and the system prompts say that
what is inside the tags is data, never instructions.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import string
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError
from .models import Passage

_SECTION = re.compile(r"^<!--\s*(system|user)\s*-->\s*$", re.MULTILINE)


def template_dir() -> Path:
    """The installed `newsqa/prompts`, else the source tree's `prompts/`."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "prompts", here.parent / "prompts"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"prompt templates not found in {here / 'prompts'} or {here.parent}/prompts")


def available() -> list[str]:
    """Template names, for error messages and listings."""
    return sorted(p.stem for p in template_dir().glob("*.md"))


def render(name: str, **values: str) -> list[dict[str, str]]:
    """Chat messages (system, then user) from template `name` with `values` filled in."""
    sections = _load(name)
    messages = []
    for role in ("system", "user"):
        try:
            content = sections[role].substitute(values)
        except KeyError as missing:
            raise ConfigError(f"prompt {name!r} needs a value for {missing.args[0]!r}") from None
        except ValueError as bad:
            raise ConfigError(f"prompt {name!r} ({role}) has a bad placeholder: {bad}") from None
        messages.append({"role": role, "content": content.strip()})
    return messages


@lru_cache(maxsize=64)
def _load(name: str) -> dict[str, string.Template]:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ConfigError(f"bad prompt name {name!r}")
    path = template_dir() / f"{name}.md"
    if not path.is_file():
        raise ConfigError(f"no prompt template {name!r}; available: {', '.join(available())}")
    return _parse(path.read_text(encoding="utf-8"), path)


def _parse(text: str, path: Path) -> dict[str, string.Template]:
    parts = _SECTION.split(text)
    # split() yields [preamble, role, body, role, body, ...]; the preamble is a comment.
    sections = {parts[i]: string.Template(parts[i + 1]) for i in range(1, len(parts) - 1, 2)}
    missing = {"system", "user"} - sections.keys()
    if missing:
        raise ConfigError(f"{path}: missing <!-- {' -->, <!-- '.join(sorted(missing))} --> section")
    return sections


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
