"""Chat sessions: follow-up rewriting (offline and by LLM), history budget, streaming."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from newsqa.app.chat import (
    MAX_HISTORY_CHARS,
    MAX_HISTORY_PAIRS,
    ChatSession,
    format_reply,
    replay_history,
    reply_remainder,
    strip_reply,
    trim_history,
)
from newsqa.engines.condense import (
    Turn,
    condense_offline,
    context_terms,
    is_follow_up,
    named_entities,
)
from newsqa.errors import InputError
from newsqa.models import Answer, Citation
from newsqa.store.chunking import count_tokens
from tests.openai_server import FakeOpenAIServer, Reply
from tests.openai_server import openai_server as openai_server  # the fixture

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"

QAANI_ANSWER = (
    "Qaani met with leaders of the Coordination Framework, commanders of armed factions, "
    "the Popular Mobilization Forces (PMF), and Iran’s ambassador to Iraq."
)
HEGSETH_ANSWER = (
    "Sources revealed that US Defense Secretary Pete Hegseth, in a call with Iraqi Prime "
    "Minister Mohammed Shia al-Sudani on Sunday, issued a strong warning."
)


# -- the offline rewrite: pure functions ---------------------------------------------------


@pytest.mark.parametrize(
    "question",
    [
        "What did he warn?",
        "and what did the US say about that?",
        "Why?",
        "What did they agree on?",
        "Tell me more",
        "When did it happen?",
    ],
)
def test_follow_ups_are_recognised(question: str) -> None:
    assert is_follow_up(question)


@pytest.mark.parametrize(
    "question",
    [
        "Who did Qaani meet in Baghdad?",
        "Who is Pete Hegseth?",
        "What happened to Soleimani near Baghdad airport?",
        "How many soldiers were sent to Kuwait?",
    ],
)
def test_standalone_questions_are_left_alone(question: str) -> None:
    assert not is_follow_up(question)
    history = [Turn("Who did Qaani meet in Baghdad?", QAANI_ANSWER)]
    assert condense_offline(question, history) == question


def test_a_quotation_opens_like_a_sentence() -> None:
    # A new user's follow-up was rewritten "What did Easily say ...?"
    answer = "Asked about the deal, Cue said: “Easily, the best deal we have.” [1]"
    assert named_entities(answer) == ["Cue"]


def test_named_entities_skip_sentence_initial_common_words() -> None:
    found = named_entities(HEGSETH_ANSWER)
    assert "Sources" not in found
    assert "Sunday" not in found  # calendar words carry no topic
    assert any("Pete Hegseth" in e for e in found)
    assert any(e.endswith("al-Sudani") for e in found)


def test_named_entities_keep_sentence_initial_names_seen_mid_sentence() -> None:
    text = "Qaani met the leaders. Later the envoy said Qaani left."
    assert named_entities(text)[0] == "Qaani"


def test_named_entities_strip_question_words_and_possessives() -> None:
    assert named_entities("What Qaani’s visit meant for Baghdad") == ["Qaani", "Baghdad"]


def test_he_becomes_the_previous_subject() -> None:
    history = [Turn("Who did Qaani meet in Baghdad?", QAANI_ANSWER)]
    assert condense_offline("What did he warn?", history) == "What did Qaani warn?"


def test_possessive_and_object_pronouns_are_substituted() -> None:
    history = [Turn("Who did Qaani meet in Baghdad?", QAANI_ANSWER)]
    assert condense_offline("What was his message?", history) == "What was Qaani's message?"
    assert condense_offline("Did anyone meet her?", history) == "Did anyone meet Qaani?"


def test_a_new_question_with_the_is_not_a_follow_up_and_acronyms_stay_whole() -> None:
    # A new user's "What did the Pentagon say?" after questions about Qaani was asked as
    # "... (context: Qaani, Iraq, Israeli)"; "U.S." became the names "U" and "S"; and in
    # "what did he urge him to do?" both pronouns became Hegseth.
    history = [Turn("Who did Qaani meet in Baghdad?", QAANI_ANSWER)]
    assert not is_follow_up("What did the Pentagon say?")
    assert condense_offline("What did the Pentagon say?", history) == "What did the Pentagon say?"
    assert named_entities("What did the U.S. Army say?") == ["U.S. Army"]
    army = [Turn("What did the U.S. Army say?", "The U.S. Army said troops would move.")]
    assert condense_offline("What did he say?", army) == "What did U.S. Army say?"
    call = [Turn("Who did Hegseth call?", HEGSETH_ANSWER)]
    rewritten = condense_offline("And what did he urge him to do?", call)
    assert rewritten.startswith("And what did Hegseth urge him to do?")


def test_names_already_in_the_question_are_not_the_referent() -> None:
    history = [Turn("Who is Pete Hegseth?", HEGSETH_ANSWER)]
    rewritten = condense_offline("What did he urge al-Sudani to do?", history)
    assert rewritten == "What did Pete Hegseth urge al-Sudani to do?"


def test_a_who_question_takes_its_subject_from_the_answer() -> None:
    history = [Turn("Who leads the Quds Force?", "Esmail Qaani leads the Quds Force.")]
    assert condense_offline("What did he do?", history) == "What did Esmail Qaani do?"


def test_vague_references_get_the_previous_names_appended() -> None:
    history = [Turn("Who did Qaani meet in Baghdad?", QAANI_ANSWER)]
    for question in ("and what did the US say about that?", "What did they agree on?", "Why?"):
        rewritten = condense_offline(question, history)
        assert rewritten.startswith(question + " (context: ")
        assert "Qaani" in rewritten and "Baghdad" in rewritten


def test_a_chain_of_follow_ups_stays_on_topic() -> None:
    turns = replay_history(
        [
            ("Who is Pete Hegseth?", HEGSETH_ANSWER),
            ("What did he urge al-Sudani to do?", "He urged al-Sudani to disarm the factions."),
        ]
    )
    assert "Hegseth" in turns[1].standalone
    assert condense_offline("And what did he threaten?", turns) == (
        "And what did Pete Hegseth threaten?"
    )
    assert "Hegseth" in condense_offline("Why?", turns)


def test_context_terms_are_bounded_and_distinct() -> None:
    turn = Turn("Who did Qaani meet in Baghdad?", QAANI_ANSWER)
    terms = context_terms(turn, "What did he say?", limit=3)
    assert len(terms) == 3
    assert len({t.lower() for t in terms}) == 3


def test_no_history_means_no_rewrite() -> None:
    assert condense_offline("  What did he warn? ", []) == "What did he warn?"


# -- history budget --------------------------------------------------------------------------


def test_trim_history_drops_oldest_turns_first() -> None:
    turns = [Turn(f"Question number {i}?", "word " * 50) for i in range(10)]
    cost = count_tokens(turns[0].question) + count_tokens(turns[0].answer)
    kept = trim_history(turns, budget=cost * 3)
    assert kept == turns[-3:]


def test_trim_history_keeps_the_newest_turn_even_over_budget() -> None:
    turns = [Turn("old?", "short"), Turn("new?", "word " * 500)]
    assert trim_history(turns, budget=10) == turns[-1:]


LONG_ANSWER = ("Qaani met al-Sudani in Baghdad and warned Washington. " * 800)[:40_000]


def bounded(turns: list[Turn]) -> bool:
    return 0 < len(turns) <= MAX_HISTORY_PAIRS and all(
        len(t.question) <= MAX_HISTORY_CHARS and len(t.answer) <= MAX_HISTORY_CHARS
        and len(t.standalone) <= MAX_HISTORY_CHARS for t in turns
    )


def test_every_history_a_session_takes_in_is_clipped(tmp_path: Path) -> None:
    """The offline rewrite costs the square of the previous reply (40 KB: ~3 s), and a
    replay runs it once a turn: a given history, an added turn and a replayed client
    history keep the latest MAX_HISTORY_PAIRS turns, MAX_HISTORY_CHARS of each text."""
    from newsqa.app.api import NewsQA

    long_turns = [Turn(f"Who did Qaani meet? ({i})", LONG_ANSWER, "Q" * 50_000)
                  for i in range(3 * MAX_HISTORY_PAIRS)]
    qa = NewsQA(db=tmp_path / "none", llm="extractive")  # nothing is opened
    for session in (ChatSession(qa, history=long_turns, history_tokens=10**9),
                    qa.chat(history=long_turns, history_tokens=10**9)):
        assert bounded(session.history) and session.history[-1].question.endswith("(47)")
        session.add_turn("Who did Qaani meet?", LONG_ANSWER)
        assert bounded(session.history)
        assert session.condense("What did he warn?")[0] == "What did Qaani warn?"
    replayed = replay_history([("Who did Qaani meet? " * 1000, LONG_ANSWER)] * 100)
    assert bounded(replayed)


# -- reply text ------------------------------------------------------------------------------


def _citation(quote: str, start: int = 0) -> Citation:
    return Citation(
        article_id="a1",
        title="Qaani in Baghdad",
        source="Shafaq News",
        published_at=dt.date(2025, 3, 19),
        quote=quote,
        start=start,
        end=start + len(quote),
    )


def _answer(text: str, quotes: list[str]) -> Answer:
    return Answer(
        question="q",
        answer=text,
        answerable=bool(quotes),
        reason=None if quotes else "nothing in the archive says",
        citations=[_citation(q) for q in quotes],
        mode="extractive",
    )


def test_format_reply_numbers_citations_and_lists_sources() -> None:
    reply = format_reply(_answer("Qaani met leaders.", ["Qaani met with leaders"]))
    head, sources = reply.split("\n\nSources:\n")
    assert head == "Qaani met leaders. [1]"
    assert sources == '[1] Qaani in Baghdad, Shafaq News, 2025-03-19: "Qaani met with leaders"'


def test_format_reply_keeps_the_engines_own_markers() -> None:
    reply = format_reply(_answer("Qaani met leaders [1].", ["Qaani met with leaders"]))
    assert reply.startswith("Qaani met leaders [1].\n\nSources:")


def test_unanswerable_reply_says_why_and_lists_nothing() -> None:
    reply = format_reply(_answer("", []))
    assert reply == "nothing in the archive says"


def test_strip_reply_recovers_the_answer_from_a_formatted_reply() -> None:
    reply = format_reply(_answer("Qaani met leaders.", ["Qaani met with leaders"]))
    assert strip_reply(reply) == "Qaani met leaders."


def test_reply_remainder_completes_streamed_text() -> None:
    answer = _answer("Qaani met leaders.", ["Qaani met with leaders"])
    assert "Qaani met" + reply_remainder(answer, "Qaani met") == format_reply(answer)
    # Streamed text that the final answer does not start with is not repeated.
    rest = reply_remainder(answer, "something else")
    assert rest.startswith(" [1]\n\nSources:")


# -- sessions over the seed articles (offline engine) -----------------------------------------


@pytest.fixture(scope="module")
def seeded_qa(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from newsqa.app.api import NewsQA

    qa = NewsQA(db=tmp_path_factory.mktemp("chat-db"), llm="extractive")
    report = qa.ingest(SEEDS)
    assert report.added == 2
    return qa


def test_session_rewrites_a_pronoun_follow_up_and_answers_it(seeded_qa) -> None:  # type: ignore[no-untyped-def]
    session = seeded_qa.chat()
    first = session.ask("Who did Qaani meet in Baghdad?")
    assert first.answerable
    assert first.rewritten_question == "Who did Qaani meet in Baghdad?"
    second = session.ask("What did he warn?")
    assert second.question == "What did he warn?"
    assert second.rewritten_question is not None
    assert "Qaani" in second.rewritten_question
    assert second.answerable
    assert any("Iran would not remain silent" in c.quote for c in second.citations)
    assert [t.question for t in session.history] == [
        "Who did Qaani meet in Baghdad?",
        "What did he warn?",
    ]


def test_session_follow_up_about_hegseth(seeded_qa) -> None:  # type: ignore[no-untyped-def]
    session = seeded_qa.chat()
    session.ask("Who is Pete Hegseth?")
    answer = session.ask("What did he urge al-Sudani to do?")
    assert "Hegseth" in (answer.rewritten_question or "")
    assert answer.answerable
    assert any("disarm" in c.quote for c in answer.citations)


def test_without_history_the_follow_up_is_not_rewritten(seeded_qa) -> None:  # type: ignore[no-untyped-def]
    session = seeded_qa.chat()
    session.ask("Who did Qaani meet in Baghdad?")
    session.reset()
    assert session.history == []
    answer = session.ask("What did he warn?")
    assert answer.rewritten_question == "What did he warn?"


def test_session_stream_yields_text_then_the_final_answer(seeded_qa) -> None:  # type: ignore[no-untyped-def]
    session = seeded_qa.chat()
    session.ask("Who did Qaani meet in Baghdad?")
    items = list(session.stream("What did he warn?"))
    final = items[-1]
    assert isinstance(final, Answer)
    assert all(isinstance(i, str) for i in items[:-1])
    assert "Qaani" in (final.rewritten_question or "")
    assert len(session.history) == 2


def test_session_async_ask_and_stream(seeded_qa) -> None:  # type: ignore[no-untyped-def]
    async def run() -> tuple[Answer, list[object]]:
        session = seeded_qa.chat()
        first = await session.aask("Who is Pete Hegseth?")
        assert first.answerable
        items = [item async for item in session.astream("What did he urge al-Sudani to do?")]
        return first, items

    _, items = asyncio.run(run())
    final = items[-1]
    assert isinstance(final, Answer)
    assert "Hegseth" in (final.rewritten_question or "")


def test_session_history_is_bounded_by_its_token_budget(seeded_qa) -> None:  # type: ignore[no-untyped-def]
    session = seeded_qa.chat(history_tokens=60)
    for question in ("Who did Qaani meet in Baghdad?", "Who is Pete Hegseth?",
                     "How many soldiers were sent to Kuwait?"):
        session.ask(question)
    total = sum(count_tokens(t.question) + count_tokens(t.answer) for t in session.history)
    assert len(session.history) < 3
    assert session.history[-1].question == "How many soldiers were sent to Kuwait?"
    assert total <= 60 or len(session.history) == 1


def test_empty_question_is_rejected(seeded_qa) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="question"):
        seeded_qa.chat().ask("   ")


# -- the LLM rewrite, against the scripted OpenAI wire server ----------------------------------


def _llm_qa(tmp_path: Path, url: str):  # type: ignore[no-untyped-def]
    from newsqa.app.api import NewsQA
    from newsqa.engines.llm import LLM

    return NewsQA(db=tmp_path / "db", llm=LLM("test-model", base_url=url, api_key="k"))


QAANI_TURN = Turn("Who did Qaani meet in Baghdad?", QAANI_ANSWER)


def test_llm_rewrites_the_follow_up(tmp_path: Path, openai_server: FakeOpenAIServer) -> None:
    openai_server.queue(Reply.json({"standalone_question": "What did Esmail Qaani warn?"},
                                   usage=(50, 9)))
    session = ChatSession(_llm_qa(tmp_path, openai_server.url), history=[QAANI_TURN])
    rewritten, usage = session.condense("What did he warn?")
    assert rewritten == "What did Esmail Qaani warn?"
    assert (usage.prompt_tokens, usage.completion_tokens) == (50, 9)
    sent = openai_server.chat_requests[0].messages
    assert sent[0]["role"] == "system"
    assert "<conversation>\nUser: Who did Qaani meet in Baghdad?" in sent[1]["content"]
    assert sent[1]["content"].endswith("Last question: What did he warn?")


def test_llm_is_not_asked_without_history(
    tmp_path: Path, openai_server: FakeOpenAIServer
) -> None:
    session = ChatSession(_llm_qa(tmp_path, openai_server.url))
    assert session.condense("What did Qaani warn?")[0] == "What did Qaani warn?"
    assert openai_server.chat_requests == []


@pytest.mark.parametrize(
    "reply",
    [
        Reply.chat("I think he is Qaani."),  # not JSON, nor after the repair try
        Reply.json({"standalone_question": "x" * 5000}),  # not a plausible question
        Reply.json({"standalone_question": "   "}),
    ],
    ids=["not-json", "too-long", "blank"],
)
def test_an_unusable_llm_rewrite_falls_back_to_the_offline_one(
    tmp_path: Path, openai_server: FakeOpenAIServer, reply: Reply
) -> None:
    openai_server.default = reply
    session = ChatSession(_llm_qa(tmp_path, openai_server.url), history=[QAANI_TURN])
    assert session.condense("What did he warn?")[0] == "What did Qaani warn?"
    assert openai_server.chat_requests


def test_async_llm_rewrite(tmp_path: Path, openai_server: FakeOpenAIServer) -> None:
    openai_server.queue(Reply.json({"standalone_question": "What did Esmail Qaani warn?"}))
    session = ChatSession(_llm_qa(tmp_path, openai_server.url), history=[QAANI_TURN])
    assert asyncio.run(session.acondense("What did he warn?"))[0] == "What did Esmail Qaani warn?"


# -- `newsqa chat` ----------------------------------------------------------------------------


def test_cli_chat_answers_follow_ups_and_exits(seeded_qa) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from newsqa.app.cli import cli

    db = str(seeded_qa.settings.db)
    result = CliRunner().invoke(
        cli, ["chat", "--db", db, "--llm", "extractive"],
        input="Who did Qaani meet in Baghdad?\nWhat did he warn?\nexit\nnever asked\n",
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("Sources:") == 2
    assert "asked as: What did Qaani warn?" in result.output
    assert "Iran would not remain silent" in result.output
    assert "never asked" not in result.output


def test_cli_chat_shows_help_for_a_command_it_does_not_know(  # type: ignore[no-untyped-def]
    seeded_qa,
) -> None:
    from click.testing import CliRunner

    from newsqa.app.cli import cli

    result = CliRunner().invoke(
        cli, ["chat", "--db", str(seeded_qa.settings.db), "--llm", "extractive"],
        input="/help\nexit\n",
    )
    assert result.exit_code == 0, result.output
    assert "Sources:" not in result.output  # "/help" is no question for the archive
    assert result.output.count("/reset forgets the conversation") == 2


def test_cli_chat_ends_on_eof(seeded_qa) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from newsqa.app.cli import cli

    result = CliRunner().invoke(
        cli, ["chat", "--db", str(seeded_qa.settings.db), "--llm", "extractive"],
        input="Who is Pete Hegseth?\n",
    )
    assert result.exit_code == 0, result.output
    assert "Hegseth" in result.output
