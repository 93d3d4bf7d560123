"""Prompt templates as files.

Templates live in `prompts/` at the top of the source tree, shipped in the wheel as
`newsqa/engines/prompts`, so wording can be reviewed and changed without touching code.
A template is one Markdown file with a `<!-- system -->` and a `<!-- user -->`
section; `$name` placeholders are filled by `string.Template` (values are inserted
verbatim and never re-parsed, so a `$` or `{` in an article cannot break rendering).

Article text is untrusted: `grounding.sources.format_sources` escapes it so nothing
inside an article can close its `<source>` tag or open a fake one, and the system
prompts say that what is inside the tags is data, never instructions.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from pathlib import Path

from ..errors import ConfigError

_SECTION = re.compile(r"^<!--\s*(system|user)\s*-->\s*$", re.MULTILINE)


def template_dir() -> Path:
    """The installed `newsqa/engines/prompts`, else the source tree's `prompts/`."""
    here = Path(__file__).resolve().parent
    tree = here.parents[1] / "prompts"
    for candidate in (here / "prompts", tree):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"prompt templates not found in {here / 'prompts'} or {tree}")


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


# Prompts of newsqa's own tasks, and the reduce steps of summary templates: no summary
# template a user may name (`--template answer` failed late, on a missing placeholder).
_TASK_PROMPTS = frozenset({"answer", "condense", "timeline"})


def summary_templates() -> list[str]:
    """The templates `summarize --template` takes."""
    return [n for n in available() if n not in _TASK_PROMPTS and not n.endswith("_reduce")]


def check_template(name: str) -> None:
    """A one-line `ConfigError` now, before any retrieval, for a summary template that is
    missing or is another task's prompt."""
    if name not in summary_templates():
        raise ConfigError(f"no prompt template {name!r}; available: "
                          f"{', '.join(summary_templates())} (summary templates; "
                          "CONTRIBUTING.md shows how to add one)")
    _load(name)


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
