"""Loaders: text/Markdown, JSON/JSONL and HTML files (and folders of them) into Articles.

Every per-file or per-record problem becomes an `InputError` naming the file (and
line), yielded in place of the article, so one bad file never stops a folder.
All cleaning happens before the `Article` is built: its `text` is exactly what
citations will point into, and nothing may alter it afterwards.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from ..errors import ConfigError, InputError
from ..models import Article, MetadataValue
from ..text.sentences import sentence_spans

MAX_ARTICLE_BYTES = 10 * 1024 * 1024
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ""})
JSON_SUFFIXES = frozenset({".json"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED = TEXT_SUFFIXES | JSON_SUFFIXES | JSONL_SUFFIXES | HTML_SUFFIXES
TITLE_CHARS = 120

_TEXT_FIELDS = ("body", "text", "content")
_DATE_FIELDS = ("published_at", "date", "published")
_CORE_FIELDS = frozenset({"title", "source", "url", "id", *_TEXT_FIELDS, *_DATE_FIELDS})
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Loaded:
    """An article and where it came from: "path", or "path:LINE" for a JSONL record."""

    origin: str
    article: Article


def max_article_bytes() -> int:
    """The size limit, read per call so NEWSQA_MAX_FILE_MB can change it at run time."""
    raw = os.environ.get("NEWSQA_MAX_FILE_MB")
    if not raw:
        return MAX_ARTICLE_BYTES
    try:
        megabytes = float(raw)
    except ValueError:
        raise ConfigError(f"NEWSQA_MAX_FILE_MB must be a number, got {raw!r}") from None
    if not megabytes > 0 or math.isinf(megabytes):
        raise ConfigError(f"NEWSQA_MAX_FILE_MB must be positive, got {raw!r}")
    return int(megabytes * 1024 * 1024)


def read_paths(paths: Iterable[str | Path]) -> Iterator[Loaded | InputError]:
    """Articles from files and folders (recursively, in sorted order), errors in place."""
    limit = max_article_bytes()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from _read_folder(path, limit)
        elif path.exists() and not path.is_file():
            yield InputError(str(path), NOT_REGULAR)
        elif path.exists():
            if _suffix(path) not in SUPPORTED:
                yield InputError(
                    str(path), f"unsupported file type {_suffix(path)!r} "
                    f"(expected one of {', '.join(sorted(s for s in SUPPORTED if s))} or none)"
                )
            else:
                yield from read_file(path, limit=limit)
        else:
            yield InputError(str(path), "no such file or directory")


# Opening a FIFO for reading waits for a writer: a new user's ingest hung on one.
NOT_REGULAR = "not a regular file (a FIFO, socket, device or broken link): not read"


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _read_folder(folder: Path, limit: int) -> Iterator[Loaded | InputError]:
    found = failed = False
    for item in _walk(folder):
        if isinstance(item, InputError):
            failed = True
            yield item
        else:
            found = True
            yield from read_file(item, limit=limit)
    if not found and not failed:
        yield InputError(str(folder), "folder holds no .txt, .md, .json, .jsonl or .html files")


def _walk(folder: Path) -> Iterator[Path | InputError]:
    """Supported files under folder, depth first in sorted order, skipping hidden names;
    symlinked dirs not followed.

    Iterative, with a stack of listings: a folder nested 1,100 deep once ended the whole
    ingest in a RecursionError. A folder that cannot be listed (permissions, a path past
    PATH_MAX) is one error naming it, in place, and the walk goes on with the rest.
    """
    stack: list[Iterator[os.DirEntry[str]]] = []
    yield from _push_listing(stack, folder)
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif entry.name.startswith("."):
            continue
        elif (kind := _kind_of(entry)) == "folder":
            yield from _push_listing(stack, Path(entry.path))
        elif _suffix(Path(entry.path)) in SUPPORTED:
            yield Path(entry.path) if kind == "file" else InputError(entry.path, NOT_REGULAR)


def _push_listing(stack: list[Iterator[os.DirEntry[str]]], folder: Path) -> Iterator[InputError]:
    """Put folder's sorted entries on the stack, or yield the one error saying why not."""
    try:
        with os.scandir(folder) as entries:
            stack.append(iter(sorted(entries, key=lambda entry: entry.name)))
    except OSError as error:
        yield InputError(str(folder), f"cannot read folder: {error.strerror or error}")


def _kind_of(entry: os.DirEntry[str]) -> str:
    """"folder" (not through a symlink), "file" (symlinks followed) or "other"; an entry
    that cannot even be stat'ed is left to read_file, which reports it."""
    try:
        if entry.is_dir(follow_symlinks=False):
            return "folder"
        return "file" if entry.is_file() else "other"
    except OSError:
        return "file"


def read_file(path: Path, *, limit: int | None = None) -> Iterator[Loaded | InputError]:
    """One file's articles (JSONL and JSON lists may hold many)."""
    limit = max_article_bytes() if limit is None else limit
    suffix = _suffix(path)
    try:
        if suffix in JSONL_SUFFIXES:
            yield from _read_jsonl(path, limit)
            return
        text = _read_text(path, limit)
        if suffix in JSON_SUFFIXES:
            yield from _read_json(path, text)
        elif suffix in HTML_SUFFIXES:
            yield Loaded(str(path), _from_html(path, text))
        else:
            yield Loaded(str(path), _from_plain(path, text))
    except InputError as error:
        yield error
    except OSError as error:
        yield InputError(str(path), error.strerror or str(error))


# ----------------------------------------------------------------------- raw bytes


def _read_text(path: Path, limit: int) -> str:
    """Whole file as text, refusing huge, empty, binary and non-UTF-8 files first."""
    size = path.stat().st_size
    if size > limit:
        raise InputError(
            str(path), f"file is {size / 1048576:.1f} MB, over the {limit / 1048576:g} MB limit "
            "for one article (NEWSQA_MAX_FILE_MB; use JSONL for large collections)"
        )
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew since stat
        raise InputError(str(path), f"file is over the {limit / 1048576:g} MB limit")
    return _decode(str(path), data, offset=0, what="file")


def _decode(where: str, data: bytes, *, offset: int, what: str) -> str:
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError(
            where, f"binary {what} (NUL byte at offset {offset + nul}), expected UTF-8 text"
        )
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            where, f"not valid UTF-8 at byte offset {offset + bom + error.start} ({error.reason})"
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise InputError(where, f"empty {what}")
    return text


# ------------------------------------------------------------------ text, Markdown

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_LINE = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:[ \t]*(.*?)[ \t]*$")
_HEADING = re.compile(r"\A#[ \t]+(.+?)[ \t#]*(?:\n|\Z)")
# " date 2025-03-19 Shafaq News/ Iran's ..." - a scraper's dateline, not article text.
_DATELINE = re.compile(
    r"\A\s*date[ \t]*:?[ \t]*(\d{4}-\d{2}-\d{2})(?:[ \t]+([^/\n]{1,60}?)[ \t]*/)?[ \t]*",
    re.IGNORECASE,
)
_BOILERPLATE_LINE = re.compile(
    r"^[ \t]*(?:read more|read also|also read|see also|related)[ \t]*:.*(?:\n|\Z)",
    re.IGNORECASE | re.MULTILINE,
)
_HEADLINE_MAX = 200


@dataclass
class _Fields:
    """What a loader has learned about an article before it is built."""

    title: str = ""
    source: str = ""
    published_at: dt.datetime | dt.date | None = None
    url: str | None = None
    metadata: dict[str, MetadataValue] | None = None


def _from_plain(path: Path, text: str) -> Article:
    fields = _Fields()
    text = _take_front_matter(str(path), text, fields)
    text = _take_heading(text, fields)
    text = _take_dateline(text, fields)
    text = _take_headline(text, fields)
    text = _BOILERPLATE_LINE.sub("", text).strip()
    if not text:
        raise InputError(str(path), "no article text after the title and header lines")
    if not fields.title:
        fields.title = _first_sentence(text)
    return _build(str(path), text, fields)


def _take_front_matter(where: str, text: str, fields: _Fields) -> str:
    """YAML-ish `key: value` lines between --- markers (no YAML library, no surprises)."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return text
    metadata: dict[str, MetadataValue] = {}
    for number, line in enumerate(match.group(1).split("\n"), start=2):
        item = _FRONT_LINE.match(line)
        if item is None:
            continue
        key, value = item.group(1).lower(), _unquote(item.group(2))
        if not value:
            continue
        if key == "title":
            fields.title = value
        elif key == "source":
            fields.source = value
        elif key == "url":
            fields.url = value
        elif key in _DATE_FIELDS:
            fields.published_at = _parse_date(value, f"{where}:{number}", key)
        else:
            metadata[key] = value
    fields.metadata = metadata or None
    return text[match.end() :]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _take_heading(text: str, fields: _Fields) -> str:
    match = _HEADING.match(text.lstrip("\n"))
    if match is None:
        return text
    if not fields.title:
        fields.title = match.group(1)
    return text.lstrip("\n")[match.end() :]


def _take_dateline(text: str, fields: _Fields) -> str:
    match = _DATELINE.match(text)
    if match is None:
        return text
    try:
        published = dt.date.fromisoformat(match.group(1))
    except ValueError:
        return text  # not a real date: leave the text alone rather than guess
    fields.published_at = fields.published_at or published
    if match.group(2) and not fields.source:
        fields.source = match.group(2).strip()
    return text[match.end() :]


def _take_headline(text: str, fields: _Fields) -> str:
    """A short first line without closing punctuation, set off by a blank line, is a headline."""
    if fields.title:
        return text  # already titled: a short first paragraph is then content, e.g. a kicker
    stripped = text.lstrip()
    first, sep, rest = stripped.partition("\n")
    first = first.strip()
    is_headline = (
        sep
        and rest.startswith("\n")
        and rest.strip()
        and 0 < len(first) <= _HEADLINE_MAX
        and first[-1] not in ".!?:;,…\"'”’"
    )
    if not is_headline:
        return text
    fields.title = first
    return rest


def _first_sentence(text: str) -> str:
    spans = sentence_spans(text[:2000])
    sentence = " ".join(text[spans[0][0] : spans[0][1]].split()) if spans else ""
    if len(sentence) <= TITLE_CHARS:
        return sentence
    cut = sentence[:TITLE_CHARS].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


# ---------------------------------------------------------------------- JSON, JSONL


def _read_json(path: Path, text: str) -> Iterator[Loaded | InputError]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            str(path), f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    if isinstance(data, dict):
        yield _loaded_record(str(path), data)
    elif isinstance(data, list):
        if not data:
            raise InputError(str(path), "JSON list holds no records")
        for number, record in enumerate(data):
            yield _loaded_record(f"{path}[{number}]", record)
    else:
        raise InputError(
            str(path), f"expected a JSON object or a list of objects, got {_kind(data)}"
        )


def _read_jsonl(path: Path, limit: int) -> Iterator[Loaded | InputError]:
    """One record per line, streamed: a corpus of any size, a line of at most `limit` bytes."""
    records = 0
    with path.open("rb") as handle:
        for number, offset, line in _lines(handle, limit):
            where = f"{path}:{number}"
            if line is None:
                yield InputError(where, f"line is over the {limit / 1048576:g} MB limit")
                records += 1
                continue
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line, offset = line[3:], offset + 3
            if not line.strip():
                continue
            records += 1
            try:
                text = _decode(where, line, offset=offset, what="line")
                record = json.loads(text)
            except InputError as error:
                yield error
            except json.JSONDecodeError as error:
                yield InputError(where, f"invalid JSON at column {error.colno}: {error.msg}")
            else:
                yield _loaded_record(where, record)
    if records == 0:
        yield InputError(str(path), "empty file")


def _lines(handle: BinaryIO, limit: int) -> Iterator[tuple[int, int, bytes | None]]:
    """(line number, byte offset, bytes) per line; None for a line over the limit, skipped
    without holding it in memory."""
    offset = 0
    number = 0
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        number += 1
        start = offset
        offset += len(line)
        if len(line) > limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = handle.readline(1 << 20)
                offset += len(line)
            yield number, start, None
        else:
            yield number, start, line


def _loaded_record(where: str, record: Any) -> Loaded | InputError:
    try:
        return Loaded(where, _from_record(where, record))
    except InputError as error:
        return error


def _from_record(where: str, record: Any) -> Article:
    if not isinstance(record, dict):
        raise InputError(where, f"record is {_kind(record)}, expected a JSON object")
    text = _record_text(where, record)
    fields = _Fields(
        title=_string_field(where, record, "title"),
        source=_string_field(where, record, "source"),
        url=_string_field(where, record, "url") or None,
        published_at=_record_date(where, record),
        metadata=_record_metadata(where, record),
    )
    return _build(where, text, fields)


def _record_text(where: str, record: Mapping[str, Any]) -> str:
    for name in _TEXT_FIELDS:
        value = record.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InputError(where, f"field {name!r} must be a string, got {_kind(value)}")
        if value.strip():
            _check_unicode(where, name, value)
            return value.replace("\r\n", "\n").replace("\r", "\n")
    raise InputError(where, "record has no text (expected a non-empty body, text or content field)")


def _string_field(where: str, record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(where, f"field {name!r} must be a string, got {_kind(value)}")
    _check_unicode(where, name, value)
    return value.strip()


def _record_date(where: str, record: Mapping[str, Any]) -> dt.datetime | dt.date | None:
    for name in _DATE_FIELDS:
        value = record.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InputError(
                where, f"field {name!r} must be an ISO date string, got {_kind(value)}"
            )
        return _parse_date(value, where, name)
    return None


def _record_metadata(where: str, record: Mapping[str, Any]) -> dict[str, MetadataValue] | None:
    """Other scalar fields ride along for filters and display; Chroma wants flat scalars."""
    metadata: dict[str, MetadataValue] = {}
    for key, value in record.items():
        if key in _CORE_FIELDS and key != "id":
            continue
        name = "record_id" if key == "id" else str(key)
        flat = _flatten(value)
        if flat is not None:
            if isinstance(flat, str):
                _check_unicode(where, name, flat)
            metadata[name] = flat
    return metadata or None


def _flatten(value: Any) -> MetadataValue | None:
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list):
        items = [str(item) for item in value if isinstance(item, (str, int, float, bool))]
        return ", ".join(items) if items else None
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _check_unicode(where: str, name: str, value: str) -> None:
    if _SURROGATE.search(value):
        raise InputError(where, f"field {name!r} holds an invalid \\u escape (lone surrogate)")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if type(value) in names:
        return names[type(value)]
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


def _parse_date(value: str, where: str, field: str) -> dt.datetime | dt.date:
    """ISO 8601 (date-only stays a date), or RFC 2822 as feeds write it; nothing fuzzier."""
    raw = value.strip()
    if raw.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not read "Z"
        raw = raw[:-1] + "+00:00"
    try:
        if len(raw) == 10:
            return dt.date.fromisoformat(raw)
        return dt.datetime.fromisoformat(raw)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        raise InputError(
            where, f"field {field!r} is not a date: {raw[:40]!r} (expected ISO 8601: 2024-05-01)"
        ) from None


# ---------------------------------------------------------------------------- HTML


def _from_html(path: Path, html: str) -> Article:
    """Main text and metadata via trafilatura, from the string only: no URL, no network."""
    from trafilatura import bare_extraction

    document = bare_extraction(
        html, with_metadata=True, include_comments=False, include_tables=True, as_dict=False
    )
    found = _document_dict(document)
    text = (found.get("text") or "").replace("\r\n", "\n").strip()
    title = " ".join(str(found.get("title") or "").split())
    if title and text.startswith(title):  # the page's own <h1> repeats the title
        text = text[len(title) :].lstrip()
    if not text:
        raise InputError(str(path), "no article text found in the HTML")
    fields = _Fields(
        title=title or _first_sentence(text),
        source=str(found.get("sitename") or found.get("hostname") or ""),
        url=found.get("url") or None,
        published_at=_html_date(str(path), found.get("date")),
        metadata=_html_metadata(found),
    )
    return _build(str(path), text, fields)


def _document_dict(document: Any) -> dict[str, Any]:
    if document is None:
        return {}
    if isinstance(document, dict):
        return document
    as_dict = getattr(document, "as_dict", None)
    return dict(as_dict()) if callable(as_dict) else {}


def _html_date(where: str, value: Any) -> dt.date | dt.datetime | None:
    if not value:
        return None
    try:
        return _parse_date(str(value), where, "date")
    except InputError:
        return None  # a page's guessed date is a hint, not a reason to refuse the page


def _html_metadata(found: Mapping[str, Any]) -> dict[str, MetadataValue] | None:
    metadata: dict[str, MetadataValue] = {}
    for key in ("author", "description", "categories", "tags", "language"):
        flat = _flatten(found.get(key))
        if flat is not None and flat != "":
            metadata[key] = flat
    return metadata or None


# --------------------------------------------------------------------------- build


def _build(where: str, text: str, fields: _Fields) -> Article:
    try:
        return Article(
            title=fields.title,
            source=fields.source,
            published_at=fields.published_at,
            url=fields.url,
            text=text,
            metadata=fields.metadata or {},
        )
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first.get("loc", ()))
        raise InputError(where, f"invalid article ({location}: {first.get('msg')})") from None
