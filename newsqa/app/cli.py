"""The `newsqa` command: a thin layer over `NewsQA`.

Each command parses options, calls one API method and prints. Every failure, ours
(`NewsQAError`) or a dependency's (an ImportError from onnxruntime, a chromadb
exception), becomes one line on stderr and exit status 1 (2 for usage errors, which
click handles), never a traceback; `--debug` or NEWSQA_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import (
    ConfigError,
    IndexInUse,
    IndexMissing,
    NewsQAError,
    SetupError,
    StoreError,
    shown,
)

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
        # No click.Path checks: a file given as --db gets our one-line error, not a usage page.
        help="Folder of the embedded Chroma index (default: $NEWSQA_DB or ./.newsqa).",
    )(func)
    return func


def open_qa(
    db: str | None, chroma_url: str | None, collection: str | None, *, create: bool = False,
    **options: Any,
) -> NewsQA:
    """The archive; only commands that write pass create=True, so a mistyped --db in a
    reading command is an error instead of a new, empty index."""
    # Deferred for start-up time: api loads the store, retrieval and engines (numpy, scipy,
    # lightgbm...), which `newsqa --help` and a mistyped command never need.
    from .api import NewsQA

    return NewsQA(db=db, chroma_url=chroma_url, collection=collection, create=create,
                  **options)


def one_line(text: str) -> str:
    """Control characters escaped: a message from anywhere (a chromadb error, a file
    name) stays on the one line a user or a log parser expects."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.strip())


def _debugging() -> bool:
    """--debug on the `newsqa` group, or NEWSQA_DEBUG=1 in the environment."""
    context = click.get_current_context(silent=True)
    if context is not None and context.find_root().params.get("debug"):
        return True
    return os.environ.get("NEWSQA_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def _error_line(exc: Exception, debugging: bool) -> str:
    """Ours say what failed and what to do; anything else also says where to look."""
    if isinstance(exc, NewsQAError) and not isinstance(exc, SetupError):
        return f"newsqa: error: {one_line(str(exc))}"
    if isinstance(exc, SetupError):
        what = str(exc)
    else:
        context = click.get_current_context(silent=True)
        command = context.info_name if context is not None else "newsqa"
        what = f"{command} failed: {type(exc).__name__}: {exc}"
    hint = "" if debugging else " (run with --debug for the traceback)"
    return f"newsqa: error: {one_line(what)}{hint}"


def handle_errors(func: F) -> F:
    """Turn every failure into one clear line and exit 1; the traceback only on request."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort):
            raise  # click's own: usage errors and exits it reports itself
        except KeyboardInterrupt:
            click.echo("newsqa: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `newsqa articles | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)  # as a shell reports a process ended by SIGPIPE
        except Exception as exc:
            debugging = _debugging()
            if debugging:
                traceback.print_exception(exc, file=sys.stderr)
            click.echo(_error_line(exc, debugging), err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@click.group()
@click.version_option(package_name="newsqa")
@click.option("--debug", is_flag=True,
              help="On an error, show the full traceback too (also NEWSQA_DEBUG=1).")
def cli(debug: bool) -> None:
    """Answers and summaries over news articles, every citation a checked verbatim span."""


# -- ingest and manage (logic in newsqa/store/ingest.py and newsqa/store/index.py) -----------


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@handle_errors
def ingest(
    paths: tuple[str, ...], db: str | None, chroma_url: str | None, collection: str | None,
    as_json: bool,
) -> None:
    """Add article files or folders (text/Markdown, JSON/JSONL, HTML); unchanged ones are free."""
    qa = open_qa(db, chroma_url, collection, create=True)
    report = _with_ingest_progress(lambda progress: qa.ingest(list(paths), progress=progress))
    if as_json:
        print_json(report.as_json())
    else:
        click.echo(
            f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
            f"duplicates {report.duplicates}, failed {len(report.failed)}; "
            f"{report.chunks} chunks in the index"
        )
        for failure in report.failed:
            click.echo(f"{shown(failure.path)}: {one_line(failure.error)}", err=True)
    sys.exit(1 if report.failed else 0)


def _with_ingest_progress(work: Callable[[Any], Any]) -> Any:
    """A rich bar on a terminal only: pipes and CI logs get no control characters."""
    if not sys.stderr.isatty():
        return work(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("ingesting", total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))


@cli.command()
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@handle_errors
def articles(db: str | None, chroma_url: str | None, collection: str | None,
             as_json: bool) -> None:
    """List stored articles: id, date, source, chunks, title, url."""
    infos = open_qa(db, chroma_url, collection).articles()
    if as_json:
        print_json([info.model_dump(mode="json") for info in infos])
        return
    rows = [
        (i.id, _date(i.published_at), i.source, str(i.chunks), i.title, i.url or "")
        for i in infos
    ]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table("id", "published", "source", "chunks", "title", "url")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:
        for row in rows:
            click.echo("\t".join(row))


def _date(value: Any) -> str:
    return value.isoformat() if value is not None else ""


@cli.command()
@click.argument("article_id")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@handle_errors
def show(article_id: str, db: str | None, chroma_url: str | None, collection: str | None,
         as_json: bool) -> None:
    """Print one stored article with its full text (the text citations point into)."""
    article = open_qa(db, chroma_url, collection).get_article(article_id)
    if as_json:
        print_json(article.model_dump(mode="json"))
        return
    for label, value in (("id", article.id), ("title", article.title),
                         ("source", article.source), ("published", _date(article.published_at)),
                         ("url", article.url or "")):
        if value:
            click.echo(f"{label}: {value}")
    click.echo("")
    click.echo(article.text)


@cli.command()
@click.argument("article_id")
@store_options
@handle_errors
def remove(article_id: str, db: str | None, chroma_url: str | None,
           collection: str | None) -> None:
    """Remove one article and its chunks from the index."""
    open_qa(db, chroma_url, collection).remove(article_id)
    click.echo(f"removed {article_id}")


# -- eval (benchmarks; logic in newsqa/app/evaluation.py) ----------------------------------


def _with_eval_progress(work: Callable[[Any], Any]) -> Any:
    """Run `work(progress)` under a rich bar on a terminal; plain (no bar) in pipes and CI."""
    if not sys.stderr.isatty():
        return work(None)
    from rich.console import Console
    from rich.progress import Progress

    tasks: dict[str, Any] = {}
    with Progress(console=Console(stderr=True), transient=True) as bar:

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        return work(update)


@cli.group(name="eval")
def eval_group() -> None:
    """Score newsqa on public benchmarks in ../shared/eval (dev ids unless told otherwise)."""


def _harness(data: str, what: str) -> ModuleType | None:
    """The benchmark harness, or None (said on stderr) when its data folder is absent."""
    from . import evaluation  # deferred: the optional benchmark harness, only for `newsqa eval`

    try:
        evaluation.require_folder(data, what)
    except evaluation.DataMissing as exc:
        click.echo(f"newsqa: {exc}", err=True)
        return None
    return evaluation


@eval_group.command("multihop")
@click.option("--data", default="../shared/eval/multihop", show_default=True,
              type=click.Path(file_okay=False), help="MultiHop-RAG folder.")
@click.option("--ids", "ids_file", default=None, type=click.Path(dir_okay=False),
              help="Query ids to run, one per line (default: the folder's dev_ids.txt).")
@click.option("--db", default=".newsqa-eval-multihop", show_default=True,
              type=click.Path(file_okay=False), help="Index for the corpus, apart from yours.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N ids.")
@click.option("--no-answers", is_flag=True, help="Score retrieval only.")
@click.option("--llm", default=None, help="Answer model (default: $NEWSQA_LLM or extractive).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Write a markdown report beside the paper's figures.")
@click.option("--dump", type=click.Path(dir_okay=False), default=None,
              help="Write per-query rankings that the paper's retrieval_evaluate.py reads.")
@handle_errors
def eval_multihop(
    data: str, ids_file: str | None, db: str, limit: int | None, no_answers: bool,
    llm: str | None, as_json: bool, report: str | None, dump: str | None,
) -> None:
    """Retrieval (Hits/MRR/MAP as the paper), abstention, citations, answers, latency."""
    evaluation = _harness(data, "MultiHop-RAG")
    if evaluation is None:
        return
    qa = open_qa(db, None, None, create=True, llm=llm)  # it ingests the corpus first
    run = _with_eval_progress(lambda progress: evaluation.evaluate_multihop(
        qa, data, ids_file=ids_file, limit=limit, answers=not no_answers, progress=progress))
    if dump:
        evaluation.write_dump(run.outcomes, dump)
    markdown = evaluation.render_report(run.summary)
    if report:
        Path(report).write_text(markdown, encoding="utf-8")
    if as_json:
        print_json(run.summary)
    else:
        click.echo(markdown)


@eval_group.command("summ")
@click.option("--data", default="../shared/eval/summ", show_default=True,
              type=click.Path(file_okay=False), help="Summarisation folder.")
@click.option("--ids", "ids_file", default=None, type=click.Path(dir_okay=False),
              help="Item ids, one per line (default: the folder's dev_ids.txt).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N ids.")
@click.option("--embedding", default="minilm", show_default=True,
              help="Sentence vectors for the extractive summariser ('tfidf': no model).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@handle_errors
def eval_summ(
    data: str, ids_file: str | None, limit: int | None, embedding: str, as_json: bool
) -> None:
    """ROUGE-1/2/L of the extractive summariser, lead-3 beside it."""
    evaluation = _harness(data, "summarisation")
    if evaluation is None:
        return
    vectors = None if embedding == "tfidf" else embedding
    result = _with_eval_progress(lambda progress: evaluation.evaluate_summ(
        data, ids_file=ids_file, limit=limit, embedding=vectors, progress=progress))
    if as_json:
        print_json(result)
    else:
        click.echo(evaluation.render_summ(result))


@cli.command()
@store_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: a free one, said in the URL).")
@click.option("--api-key", envvar="NEWSQA_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on /v1/* (default: $NEWSQA_API_KEY).")
@click.option("--insecure-no-auth", is_flag=True,
              help="Serve a non-loopback --host without an API key (anyone who can connect "
                   "may query the archive).")
@click.option("--llm", default=None, help="Answer model (default: $NEWSQA_LLM or extractive).")
@handle_errors
def serve(db: str | None, chroma_url: str | None, collection: str | None, host: str,
          port: int, api_key: str | None, insecure_no_auth: bool, llm: str | None) -> None:
    """Serve an OpenAI-compatible /v1/chat/completions over the archive."""
    from .server import serve as run_server  # deferred: fastapi and uvicorn load only here

    _check_exposure(host, api_key, insecure_no_auth)
    qa = open_qa(db, chroma_url, collection, llm=llm)
    _require_index_or_warn(qa)
    if not api_key:
        click.echo(f"newsqa: warning: serving without an API key: anyone who can connect to "
                   f"{host}:{port} can query the archive (pass --api-key or set "
                   "NEWSQA_API_KEY)", err=True)
    run_server(qa, host=host, port=port, api_key=api_key or None, on_ready=lambda url: click.echo(
        f"newsqa: serving on {url} (model id: newsqa)", err=True))


def _is_loopback(host: str) -> bool:
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _check_exposure(host: str, api_key: str | None, insecure_no_auth: bool) -> None:
    """An archive served beyond this machine without a key is open to anyone: refuse,
    unless told in so many words."""
    if api_key or insecure_no_auth or _is_loopback(host):
        return
    raise ConfigError(
        f"refusing to serve on {host} without an API key: pass --api-key (or set "
        "NEWSQA_API_KEY), or --insecure-no-auth to serve it to anyone who can connect"
    )


def _require_index_or_warn(qa: NewsQA) -> None:
    """A missing index, or an embedded one another process holds, stops the server before
    it starts (it said it served, then answered every request 503); a Chroma server not
    reachable yet does not (requests retry it), but is said."""
    try:
        qa.require_index()
        if not qa.settings.chroma_url:
            qa.index  # noqa: B018  # opening the folder takes its lock
    except (IndexMissing, IndexInUse):
        raise
    except StoreError as exc:
        click.echo(f"newsqa: warning: {one_line(str(exc))} (serving anyway; requests will "
                   "retry)", err=True)


@cli.command()
@store_options
@click.option("--llm", default=None, help="Answer model (default: $NEWSQA_LLM or extractive).")
@handle_errors
def chat(db: str | None, chroma_url: str | None, collection: str | None,
         llm: str | None) -> None:
    """Chat with the archive in the terminal; follow-ups may say "he" or "that"."""
    from .chat import run_terminal  # deferred with api (see open_qa): asyncio, chat models

    qa = open_qa(db, chroma_url, collection, llm=llm)
    qa.require_index()  # before the prompt, not at the first question
    run_terminal(qa.chat())


# -- summarize and timeline (logic in newsqa/engines/summarize.py, llm_summary.py) -----------


def filter_options(func: F) -> F:
    """--source / --since / --until: which articles a query may draw on."""
    func = click.option("--until", default=None, help="Only articles published on or before.")(func)
    func = click.option("--since", default=None, help="Only articles published on or after.")(func)
    func = click.option("--source", "sources", multiple=True,
                        help="Only this source (repeatable).")(func)
    return func


# -- ask (logic in newsqa/app/api.py -> retrieval -> engines -> grounding) -------------------


@cli.command()
@click.argument("question")
@filter_options
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="Passages to retrieve (default: 8).")
@click.option("--llm", default=None, help="Answer model (default: $NEWSQA_LLM or extractive).")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print the Answer as JSON.")
@handle_errors
def ask(question: str, sources: tuple[str, ...], since: str | None, until: str | None,
        top_k: int | None, llm: str | None, db: str | None, chroma_url: str | None,
        collection: str | None, as_json: bool) -> None:
    """Answer QUESTION from the archive; every citation is a verified verbatim span."""
    from .chat import format_reply  # deferred with api (see open_qa): asyncio, chat models

    qa = open_qa(db, chroma_url, collection, llm=llm)
    result = qa.ask(question, sources=sources or None, since=since, until=until, top_k=top_k)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    click.echo(format_reply(result))
    if result.mode == "extractive":
        click.echo("\n(extractive answer: verbatim source sentences, no language model)", err=True)
    if result.rejected_citations:
        click.echo(f"({len(result.rejected_citations)} citation(s) could not be verified "
                   "and were dropped)", err=True)


@cli.command()
@click.argument("article_id", required=False)
@click.option("--query", default=None, help="Summarise what the archive says about this.")
@filter_options
@click.option("--bullets", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--max-words", default=None, type=click.IntRange(min=5),
              help="Word budget for all bullets.")
@click.option("--focus", default=None, help="Favour what the sources say about this.")
@click.option("--template", default="summarize", show_default=True,
              help="The prompt a model summarises with (prompts/NAME.md), e.g. compare.")
@click.option("--llm", default=None, help="Model (default: $NEWSQA_LLM or extractive).")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@handle_errors
def summarize(article_id: str | None, query: str | None, sources: tuple[str, ...],
              since: str | None, until: str | None, bullets: int, max_words: int | None,
              focus: str | None, template: str, llm: str | None, db: str | None,
              chroma_url: str | None, collection: str | None, as_json: bool) -> None:
    """Summarise one article (ARTICLE_ID) or, with --query, several; every bullet cited."""
    if (article_id is None) == (not (query or "").strip()):  # a usage error: exit 2, as click's
        raise click.UsageError("give exactly one of ARTICLE_ID or a non-empty --query")
    qa = open_qa(db, chroma_url, collection, llm=llm)
    summary = qa.summarize(article_id, query=query, sources=sources or None, since=since,
                           until=until, bullets=bullets, max_words=max_words, focus=focus,
                           template=template)
    if as_json:
        print_json(summary.model_dump(mode="json"))
        return
    click.echo(summary.headline)
    groups = [(b.text, b.citations) for b in summary.bullets]
    groups += [(f"Disagreement: {b.text}", b.citations) for b in summary.disagreements]
    _echo_cited(groups)


@cli.command()
@click.argument("query")
@filter_options
@click.option("--max-events", default=12, show_default=True, type=click.IntRange(min=1))
@click.option("--llm", default=None, help="Model (default: $NEWSQA_LLM or extractive).")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@handle_errors
def timeline(query: str, sources: tuple[str, ...], since: str | None, until: str | None,
             max_events: int, llm: str | None, db: str | None, chroma_url: str | None,
             collection: str | None, as_json: bool) -> None:
    """Dated events about QUERY, oldest first; "~" marks a date taken from publication."""
    qa = open_qa(db, chroma_url, collection, llm=llm)
    result = qa.timeline(query, sources=sources or None, since=since, until=until,
                         max_events=max_events)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    if not result.events:
        click.echo(f"Nothing found about {query!r}")
        return
    _echo_cited([
        (f"{e.date.isoformat()}{'' if e.date_source == 'text' else '~'}  {e.text}", e.citations)
        for e in result.events
    ])


def _echo_cited(items: list[tuple[str, list[Any]]]) -> None:
    """Lines with [n] markers, then the numbered sources (one number per distinct span)."""
    numbers: dict[tuple[str, int, int], int] = {}
    cited: list[Any] = []
    for text, citations in items:
        marks = []
        for c in citations:
            key = (c.article_id, c.start, c.end)
            if key not in numbers:
                numbers[key] = len(numbers) + 1
                cited.append(c)
            marks.append(f"[{numbers[key]}]")
        click.echo(f"- {text} {''.join(marks)}".rstrip())
    if cited:
        click.echo("\nSources:")
    for n, c in enumerate(cited, 1):
        where = ", ".join(x for x in (c.source, c.title, _date(c.published_at)) if x)
        click.echo(f"[{n}] {where or c.article_id} ({c.article_id} {c.start}-{c.end}): "
                   f"“{' '.join(c.quote.split())}”")

def main() -> None:
    cli()


if __name__ == "__main__":
    main()
