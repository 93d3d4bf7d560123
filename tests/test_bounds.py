"""Inputs with a bound: an over-long question is refused before any work, everywhere it enters.

A 900 KB question cost 5.6 s of CPU (and, ten at once, 1.7 GB in `newsqa serve`); the
offline chat rewrite grows with the square of the text. The limit is one constant,
checked in the API layer, so the CLI, the server and library users all meet it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsqa.app.api import NewsQA
from newsqa.app.chat import ChatSession, Turn, strip_reply
from newsqa.app.cli import cli
from newsqa.errors import IndexMissing, InputError
from newsqa.models import MAX_QUESTION_CHARS
from tests.conftest import REPO

SEEDS = REPO / "seeds"
TOO_LONG = "Who met whom in Baghdad? " * (MAX_QUESTION_CHARS // 25 + 1)
LIMIT = f"the limit is {MAX_QUESTION_CHARS:,}"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("bounds-db")
    with NewsQA(db=db, llm="extractive") as qa:
        assert qa.ingest(SEEDS).added == 2
    return db


@pytest.fixture
def qa(seeded: Path) -> NewsQA:
    return NewsQA(db=seeded, llm="extractive")


def _drain(items: Any) -> list[Any]:
    return list(items)


async def _adrain(items: Any) -> list[Any]:
    return [item async for item in items]


CALLS: list[tuple[str, Callable[[NewsQA, str], Any]]] = [
    ("search", lambda qa, q: qa.search(q)),
    ("ask", lambda qa, q: qa.ask(q)),
    ("aask", lambda qa, q: asyncio.run(qa.aask(q))),
    ("stream", lambda qa, q: _drain(qa.stream(q))),
    ("astream", lambda qa, q: asyncio.run(_adrain(qa.astream(q)))),
    ("summarize query", lambda qa, q: qa.summarize(query=q)),
    ("summarize focus", lambda qa, q: qa.summarize(query="Baghdad", focus=q)),
    ("timeline", lambda qa, q: qa.timeline(q)),
    ("chat", lambda qa, q: qa.chat().ask(q)),
]


@pytest.mark.parametrize("call", [c[1] for c in CALLS], ids=[c[0] for c in CALLS])
def test_every_entry_point_refuses_an_over_long_question(
    qa: NewsQA, call: Callable[[NewsQA, str], Any]
) -> None:
    with pytest.raises(InputError, match=LIMIT) as caught:
        call(qa, TOO_LONG)
    assert f"{len(TOO_LONG):,} characters" in str(caught.value)


NOT_TEXT = [(name, call, question) for name, call in CALLS
            for question in (None, 42, b"Who met whom?")
            if not (question is None and name.startswith("summarize"))]  # optional there


@pytest.mark.parametrize(("call", "question"), [(c, q) for _, c, q in NOT_TEXT],
                         ids=[f"{n}-{q!r}" for n, _, q in NOT_TEXT])
def test_every_entry_point_refuses_what_is_no_text(
    qa: NewsQA, call: Callable[[NewsQA, Any], Any], question: Any
) -> None:
    # A new user's session: qa.ask(None) raised AttributeError from deep inside.
    with pytest.raises(InputError, match="must be text"):
        call(qa, question)


@pytest.mark.parametrize(("option", "value"), [
    ("top_k", "3"), ("top_k", 2.5), ("top_k", 0), ("top_k", -1), ("top_k", True),
    ("since", 2025), ("until", 20250101), ("sources", [1]),
])
def test_an_option_of_the_wrong_kind_is_refused_by_name(
    qa: NewsQA, option: str, value: Any
) -> None:
    with pytest.raises(InputError, match=f"^{option}: "):
        qa.ask("Who met whom in Baghdad?", **{option: value})


def test_a_question_at_the_limit_is_answered(qa: NewsQA) -> None:
    question = ("Who did Qaani meet in Baghdad? " * 100)[:MAX_QUESTION_CHARS]
    assert len(question) == MAX_QUESTION_CHARS
    assert qa.ask(question).passages


def test_the_check_comes_before_any_work(tmp_path: Path) -> None:
    """Nothing is opened or loaded: a missing index is not even noticed."""
    qa = NewsQA(db=tmp_path / "missing", create=False)
    with pytest.raises(InputError, match=LIMIT):
        qa.ask(TOO_LONG)
    assert "index" not in vars(qa) and "embedder" not in vars(qa)
    with pytest.raises(IndexMissing):
        qa.ask("Who met whom?")


def test_a_chat_follow_up_is_checked_before_it_is_rewritten(qa: NewsQA) -> None:
    """The offline rewrite of a long follow-up alone took minutes: refuse it first."""
    session = qa.chat(history=[Turn("Who is Qaani?", "Esmail Qaani leads the Quds Force.")])
    follow_up = "What did he say about it? " * 20_000
    with pytest.raises(InputError, match=LIMIT):
        session.ask(follow_up)
    assert len(session.history) == 1


def test_a_session_built_directly_checks_too(qa: NewsQA) -> None:
    """Not only `qa.chat()`: the bound lives with the types, so ChatSession meets it."""
    with pytest.raises(InputError, match=LIMIT):
        ChatSession(qa).ask(TOO_LONG)


def test_strip_reply_drops_the_sources_whatever_precedes_them() -> None:
    """A long run of newlines once made the sources pattern backtrack for minutes."""
    assert strip_reply("Qaani met them. [1]\n\nSources:\n[1] a") == "Qaani met them."
    blank = "Qaani met them." + "\n" * 200_000 + "no sources here"
    assert strip_reply(blank) == blank.strip()


def test_the_cli_says_so_in_one_line(seeded: Path) -> None:
    result = CliRunner().invoke(cli, ["ask", TOO_LONG, "--db", str(seeded)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"newsqa: error: question: is {len(TOO_LONG):,} characters long; {LIMIT} "
        "(ask something shorter)"
    ]
    timeline = CliRunner().invoke(cli, ["timeline", TOO_LONG, "--db", str(seeded)])
    assert timeline.exit_code == 1 and LIMIT in timeline.stderr


# -- reading with create=False, writing creates --------------------------------------------------


def test_reading_a_missing_index_through_the_api_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    qa = NewsQA(db=typo, create=False)
    for read in (qa.articles, lambda: qa.get_article("x"), lambda: qa.search("Baghdad")):
        with pytest.raises(IndexMissing, match="no newsqa index at"):
            read()
    assert not typo.exists()
    assert qa.ingest(SEEDS).added == 2  # ingest is the one operation that creates
    assert len(qa.articles()) == 2


def test_another_collection_in_an_existing_folder_is_missing_too(seeded: Path) -> None:
    with pytest.raises(IndexMissing, match="no collection 'elsewhere'"):
        NewsQA(db=seeded, collection="elsewhere", create=False).articles()
    assert len(NewsQA(db=seeded, create=False).articles()) == 2


def test_a_missing_collection_on_a_chroma_server(chroma_server: str) -> None:
    qa = NewsQA(chroma_url=chroma_server, collection="never-ingested", create=False)
    for _ in range(2):  # the first refusal created nothing for the second to find
        with pytest.raises(IndexMissing, match="no collection 'never-ingested' on the Chroma"):
            qa.articles()


def test_search_options_are_spelled_once_and_a_misspelt_one_is_refused(tmp_path: Path) -> None:
    """issue 17: NewsQA's question-taking calls and ChatSession share SearchOptions."""
    from newsqa import NewsQA
    from newsqa.app.chat import ChatSession

    qa = NewsQA(db=tmp_path / "db", llm=None)
    with pytest.raises(TypeError, match="'source'"):
        qa.search("Who met in Baghdad?", source=["Reuters"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'topk'"):
        ChatSession(qa, topk=3)  # type: ignore[call-arg]
