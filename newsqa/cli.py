"""The `newsqa` command: a thin layer over `NewsQA`.

Each command parses options, calls one API method and prints. Every
`NewsQAError` becomes a one-line message on stderr and exit status 1 (2 for
usage errors, which click handles), never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .errors import NewsQAError

if TYPE_CHECKING:
    from .api import NewsQA

F = TypeVar("F", bound=Callable[..., Any])


def store_options(func: F) -> F:
    """--db / --chroma-url / --collection, shared by every command that opens the index."""
    func = click.option(
        "--collection", default=None, help="Chroma collection name (default: newsqa)."
    )(func)
    func = click.option(
        "--chroma-url",
        default=None,
        help="Chroma server URL (HttpClient) instead of an embedded folder.",
    )(func)
    func = click.option(
        "--db",
        default=None,
        type=click.Path(file_okay=False),
        help="Folder of the embedded Chroma index (default: $NEWSQA_DB or ./.newsqa).",
    )(func)
    return func


def open_qa(
    db: str | None, chroma_url: str | None, collection: str | None, **options: Any
) -> NewsQA:
    from .api import NewsQA

    return NewsQA(db=db, chroma_url=chroma_url, collection=collection, **options)


def handle_errors(func: F) -> F:
    """Turn our typed errors into one clear line and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NewsQAError as exc:
            click.echo(f"newsqa: error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("newsqa: interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@click.group()
@click.version_option(package_name="newsqa")
def cli() -> None:
    """Answers and summaries over news articles, every citation a checked verbatim span."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
