"""newsqa inside LlamaIndex apps, with the real llama-index-core: retriever, query engine,
chat engine, reader, and a LlamaIndex LLM as newsqa's model (driven over HTTP against
the scripted OpenAI-compatible server)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.schema import Document, MetadataMode, NodeWithScore, TextNode
from pydantic import BaseModel

from newsqa.app.api import NewsQA
from newsqa.app.llama_index import (
    LlamaIndexLLM,
    NewsQAChatEngine,
    NewsQAQueryEngine,
    NewsQARetriever,
    NewsReader,
    as_newsqa_llm,
)
from newsqa.engines.llm import LLM, StreamStats
from newsqa.errors import InputError, LLMConnectionError, LLMOutputError, LLMServerError
from newsqa.models import Answer
from tests.openai_server import FakeOpenAIServer, Reply
from tests.openai_server import openai_server as openai_server  # the fixture

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
KUWAIT = "How many troops were sent to Kuwait?"
KUWAIT_QUOTE = (
    "the Pentagon said that 3,000 to 3,500 soldiers from the Global Response Force of the "
    "82nd Airborne Division would be sent to Kuwait"
)
NEWS_KEYS = {"article_id", "title", "source", "start", "end"}


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("llama-index-db")
    with NewsQA(db=db, llm="extractive") as qa:
        assert qa.ingest(SEEDS).added == 2
    return db


@pytest.fixture
def qa(seeded_db: Path) -> NewsQA:
    """The seeded archive with the offline engine (Index objects in one process share it)."""
    return NewsQA(db=seeded_db, llm="extractive")


def assert_exact_span(qa: NewsQA, node: NodeWithScore) -> None:
    """A node's text is the article's characters at its offsets, wherever they are kept."""
    meta = node.node.metadata
    assert isinstance(node.node, TextNode)
    assert (node.node.start_char_idx, node.node.end_char_idx) == (meta["start"], meta["end"])
    assert node.node.ref_doc_id == meta["article_id"]
    text = qa.get_article(meta["article_id"]).text
    assert text[meta["start"]:meta["end"]] == node.node.get_content()


def test_import_newsqa_leaves_llama_index_unloaded() -> None:
    code = (
        "import sys, newsqa, newsqa.app.api, newsqa.engines.llm; newsqa.NewsQA(llm='extractive'); "
        "sys.exit(int('llama_index' in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# -- retriever --------------------------------------------------------------------------------


def test_retriever_returns_news_nodes_with_exact_offsets(qa: NewsQA) -> None:
    nodes = NewsQARetriever(qa, top_k=3).retrieve(KUWAIT)
    assert 1 <= len(nodes) <= 3
    scores = [n.score or 0.0 for n in nodes]
    assert scores == sorted(scores, reverse=True)
    passages = qa.search(KUWAIT, top_k=3)
    assert [n.node.node_id for n in nodes] == [p.chunk_id for p in passages]
    for node in nodes:
        assert node.node.metadata.keys() >= NEWS_KEYS
        assert_exact_span(qa, node)
    assert "Kuwait" in " ".join(n.node.get_content() for n in nodes)


def test_retriever_filters_by_source_and_date(qa: NewsQA) -> None:
    shafaq = NewsQARetriever(qa, sources=["Shafaq News"]).retrieve(KUWAIT)
    assert shafaq and {n.node.metadata["source"] for n in shafaq} == {"Shafaq News"}
    dated = NewsQARetriever(qa, since="2025-01-01").retrieve("Qaani Baghdad")
    assert dated and all(n.node.metadata["published_at"] >= "2025-01-01" for n in dated)
    assert NewsQARetriever(qa, until=dt.date(2024, 12, 31)).retrieve("Qaani Baghdad") == []


def test_retriever_async_matches_sync(qa: NewsQA) -> None:
    retriever = NewsQARetriever(qa, sources=["Shafaq News"], top_k=2)
    found = asyncio.run(retriever.aretrieve("What did Hegseth warn al-Sudani about?"))
    assert [n.node.node_id for n in found] == [
        n.node.node_id for n in retriever.retrieve("What did Hegseth warn al-Sudani about?")
    ]
    assert found[0].node.metadata["published_at"] == "2025-03-19"


# -- query engine -----------------------------------------------------------------------------


def assert_cited_response(qa: NewsQA, answer_text: str, nodes: list[NodeWithScore],
                          metadata: dict[str, Any] | None) -> Answer:
    """The response holds the verified answer: citations as exact-quote nodes, the whole."""
    assert metadata is not None
    answer = Answer.model_validate(metadata["answer"])
    assert answer.answerable and answer_text.startswith(answer.answer)
    assert [n.node.get_content() for n in nodes] == [c.quote for c in answer.citations]
    for node in nodes:
        assert_exact_span(qa, node)
    return answer


def test_query_engine_answers_with_citation_nodes(qa: NewsQA) -> None:
    response = NewsQAQueryEngine(qa=qa).query(KUWAIT)
    assert isinstance(response, Response)
    assert "3,000 to 3,500" in str(response)
    answer = assert_cited_response(qa, str(response), response.source_nodes, response.metadata)
    assert str(response) == answer.answer and answer.mode == "extractive"


def test_query_engine_async_with_a_source_filter(qa: NewsQA) -> None:
    engine = NewsQAQueryEngine(qa=qa, sources=["Shafaq News"])
    response = asyncio.run(engine.aquery("Who did Qaani meet in Baghdad?"))
    assert isinstance(response, Response)
    assert_cited_response(qa, str(response), response.source_nodes, response.metadata)
    assert {n.node.metadata["source"] for n in response.source_nodes} == {"Shafaq News"}


def test_query_engine_streams_then_fills_in_the_citations(qa: NewsQA) -> None:
    response = NewsQAQueryEngine(qa=qa, streaming=True).query(KUWAIT)
    assert isinstance(response, StreamingResponse)
    assert response.source_nodes == []  # known only when the stream ends
    text = "".join(response.response_gen)
    assert "3,000 to 3,500" in text
    assert response.source_nodes
    assert_cited_response(qa, text, response.source_nodes, response.metadata)


def test_query_engine_streams_async(qa: NewsQA) -> None:
    async def run() -> tuple[str, AsyncStreamingResponse]:
        response = await NewsQAQueryEngine(qa=qa, streaming=True).aquery(KUWAIT)
        assert isinstance(response, AsyncStreamingResponse)
        return "".join([t async for t in response.async_response_gen()]), response

    text, response = asyncio.run(run())
    assert_cited_response(qa, text, response.source_nodes, response.metadata)


# -- chat engine ------------------------------------------------------------------------------


def test_chat_engine_rewrites_follow_ups_and_cites(qa: NewsQA) -> None:
    engine = NewsQAChatEngine(qa)
    first = engine.chat("Who did Qaani meet in Baghdad?")
    assert "Coordination Framework" in first.response and first.source_nodes
    second = engine.chat("What did he warn?")
    answer = second.sources[0].raw_output
    assert isinstance(answer, Answer) and answer.rewritten_question == "What did Qaani warn?"
    assert any("Iran would not remain silent" in n.node.get_content() for n in second.source_nodes)
    assert second.metadata is not None and second.metadata["answer"]["question"] == (
        "What did he warn?")
    assert [m.role for m in engine.chat_history] == [MessageRole.USER, MessageRole.ASSISTANT] * 2
    engine.reset()
    assert engine.chat_history == []


def test_chat_engine_streams_and_remembers(qa: NewsQA) -> None:
    engine = NewsQAChatEngine(qa)
    engine.chat("Who is Pete Hegseth?")
    stream = engine.stream_chat("What did he urge al-Sudani to do?")
    text = "".join(stream.response_gen)
    assert text.strip() == stream.response and "disarm" in text
    assert any("disarm" in n.node.get_content() for n in stream.source_nodes)
    assert "Hegseth" in (stream.sources[0].raw_output.rewritten_question or "")
    assert len(engine.chat_history) == 4


def test_chat_engine_async_and_a_given_history(qa: NewsQA) -> None:
    history = [
        ChatMessage(role=MessageRole.USER, content="Who did Qaani meet in Baghdad?"),
        ChatMessage(role=MessageRole.ASSISTANT, content="Qaani met armed factions. [1]"),
    ]

    async def run() -> tuple[Any, Any]:
        engine = NewsQAChatEngine(qa)
        answer = await engine.achat("What did he warn?", chat_history=history)
        stream = await engine.astream_chat("What did he warn?", chat_history=history)
        return answer, (stream, "".join([t async for t in stream.async_response_gen()]))

    answer, (stream, text) = asyncio.run(run())
    assert answer.sources[0].raw_output.rewritten_question == "What did Qaani warn?"
    assert "Iran would not remain silent" in text
    assert stream.sources[0].raw_output.rewritten_question == "What did Qaani warn?"


def test_a_given_history_is_bounded_like_the_servers(tmp_path: Path) -> None:
    """The offline rewrite of a follow-up costs the square of the previous reply (40 KB:
    ~3 s) and replaying a history runs it once a turn: the engine clips what it is given
    as newsqa's server does (newsqa.chat.MAX_HISTORY_CHARS, MAX_HISTORY_PAIRS).
    The bound is asserted on what is kept, not timed (a timing failed on a loaded CI box).
    """
    from newsqa.app.chat import MAX_HISTORY_CHARS, MAX_HISTORY_PAIRS

    engine = NewsQAChatEngine(NewsQA(db=tmp_path / "none", llm="extractive"))
    long = ("Qaani met al-Sudani in Baghdad and warned Washington. " * 800)[:40_000]
    history = [ChatMessage(role=MessageRole.USER, content="Who did Qaani meet?"),
               ChatMessage(role=MessageRole.ASSISTANT, content=long),
               ChatMessage(role=MessageRole.USER, content="What did he warn?"),
               ChatMessage(role=MessageRole.ASSISTANT, content="x")] * 50
    engine._use_history(history)
    turns = engine.session.history
    assert 0 < len(turns) <= MAX_HISTORY_PAIRS
    assert all(len(t.answer) <= MAX_HISTORY_CHARS for t in turns)
    assert turns[-1].rewritten_question == "What did Qaani warn?"


# -- reader -----------------------------------------------------------------------------------


def test_reader_loads_text_with_datelines_as_news_documents() -> None:
    documents = NewsReader().load_data(SEEDS)
    assert len(documents) == 2 and all(isinstance(d, Document) for d in documents)
    shafaq = next(d for d in documents if d.metadata.get("source") == "Shafaq News")
    assert shafaq.metadata["published_at"] == "2025-03-19"
    assert shafaq.doc_id == shafaq.metadata["article_id"]
    assert shafaq.text.startswith("Iran’s Quds Force Commander Esmail Qaani")
    assert "article_id" not in shafaq.get_content(metadata_mode=MetadataMode.LLM)


def test_the_readers_documents_go_into_newsqa_as_the_same_articles(tmp_path: Path) -> None:
    # A new user's qa.ingest(NewsReader().load_data(...)) raised a TypeError.
    from newsqa.errors import InputError

    documents = NewsReader().load_data(SEEDS)
    with NewsQA(db=tmp_path / "db", llm="extractive") as qa:
        report = qa.ingest(documents)
        assert report.added == 2 and not report.failed
        assert {i.id for i in qa.articles()} == {d.doc_id for d in documents}
        assert qa.ingest([SEEDS]).unchanged == 2  # the very same articles
        record = {"title": "Port strike ends", "source": "Coastal Courier", "section": "business",
                  "published_at": "2024-03-08T09:30:00+00:00", "text": "Dock workers returned."}
        (tmp_path / "port.json").write_text(json.dumps(record), encoding="utf-8")
        assert qa.ingest(NewsReader().load_data(tmp_path / "port.json")).added == 1
        assert qa.ingest([tmp_path / "port.json"]).unchanged == 1
        with pytest.raises(InputError, match="got int"):
            qa.ingest([42])  # type: ignore[list-item]


def test_reader_loads_json_records_with_their_metadata(tmp_path: Path) -> None:
    record = {"title": "Port strike ends", "source": "Coastal Courier",
              "published_at": "2024-03-08T09:30:00+00:00", "url": "https://news.example/port",
              "text": "Dock workers returned to work on Friday.", "section": "business"}
    (tmp_path / "one.json").write_text(json.dumps(record), encoding="utf-8")
    (tmp_path / "two.jsonl").write_text(
        json.dumps({**record, "url": "https://news.example/2", "title": "Second"}) + "\n",
        encoding="utf-8")
    documents = NewsReader().load_data(tmp_path, extra_info={"collection": "test"})
    by_title = {d.metadata["title"]: d for d in documents}
    first = by_title["Port strike ends"]
    assert first.metadata["published_at"] == "2024-03-08T09:30:00+00:00"
    assert first.metadata["url"] == "https://news.example/port"
    assert (first.metadata["section"], first.metadata["collection"]) == ("business", "test")
    assert by_title["Second"].metadata["origin"].endswith("two.jsonl:1")


def test_reader_loads_html(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        """<html><head><title>Bridge approved - Example Times</title>
<meta property="og:site_name" content="Example Times">
<meta property="article:published_time" content="2024-05-02">
<link rel="canonical" href="https://example.com/bridge"></head><body>
<article><h1>Bridge approved</h1><p>The council voted on Tuesday to approve the new
bridge, which will cost twelve million euros and open in 2026 after three years of
work.</p></article></body></html>""", encoding="utf-8")
    [document] = NewsReader().load_data(path)
    assert document.text.startswith("The council voted on Tuesday")
    assert {k: document.metadata[k] for k in ("title", "source", "published_at", "url")} == {
        "title": "Bridge approved", "source": "Example Times",
        "published_at": "2024-05-02", "url": "https://example.com/bridge"}


def test_reader_raises_or_skips_what_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "good.txt").write_text("Headline\n\nA sentence of news.", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.json"):
        NewsReader().load_data(tmp_path)
    [document] = NewsReader(skip_errors=True).load_data(tmp_path)
    assert document.text == "A sentence of news."


# -- a LlamaIndex LLM as newsqa's model -------------------------------------------------------


class WireLLM(CustomLLM):
    """A minimal LlamaIndex LLM that sends its prompt to an OpenAI-compatible server through
    the real openai client, without retries (so a test can count requests)."""

    base_url: str
    model: str = "wire-model"
    context_window: int = 6000
    num_output: int = 700
    _client: Any = PrivateAttr(default=None)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model, context_window=self.context_window,
                           num_output=self.num_output)

    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(base_url=self.base_url, api_key="k", max_retries=0,
                                         timeout=10)
        return self._client

    def _request(self, prompt: str, **options: Any) -> Any:
        return self.client().chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": prompt}], **options)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        reply = self._request(prompt)
        return CompletionResponse(text=reply.choices[0].message.content or "", raw=reply)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        chunks = self._request(prompt, stream=True, stream_options={"include_usage": True})

        def gen() -> CompletionResponseGen:
            text = ""
            for chunk in chunks:
                delta = (chunk.choices[0].delta.content if chunk.choices else None) or ""
                text += delta
                yield CompletionResponse(text=text, delta=delta, raw=chunk)

        return gen()


class BrokenLLM(WireLLM):
    """A LlamaIndex LLM whose backend fails with an error of its own."""

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise RuntimeError("backend exploded")


class Verdict(BaseModel):
    answer: str
    confidence: float


def wire_llm(server: FakeOpenAIServer, kind: str = "custom") -> Any:
    """The LlamaIndex LLM under test: ours, or OpenAILike when that package is installed."""
    if kind == "custom":
        return WireLLM(base_url=server.url)
    openai_like = pytest.importorskip("llama_index.llms.openai_like")
    return openai_like.OpenAILike(model="wire-model", api_base=server.url, api_key="k",
                                  is_chat_model=True, context_window=6000, max_tokens=700,
                                  max_retries=0, timeout=10)


@pytest.fixture(params=["custom", "openai_like"])
def llama_llm(request: pytest.FixtureRequest, openai_server: FakeOpenAIServer) -> Any:
    return wire_llm(openai_server, request.param)


def test_newsqa_takes_a_llama_index_llm(openai_server: FakeOpenAIServer, tmp_path: Path) -> None:
    qa = NewsQA(db=tmp_path / "db", llm=WireLLM(base_url=openai_server.url))
    llm = qa.llm
    assert isinstance(llm, LlamaIndexLLM) and isinstance(llm, LLM)
    assert (llm.model, llm.context_window, llm.max_output_tokens) == ("wire-model", 6000, 700)
    assert llm.count_tokens("Qaani met the leaders of the factions.") > 0
    assert as_newsqa_llm(llm) is llm and as_newsqa_llm("x") == "x"


def test_structured_output_is_parsed_and_validated_by_newsqa(
    openai_server: FakeOpenAIServer, llama_llm: Any
) -> None:
    openai_server.queue(Reply.chat('Sure: ```json\n{"answer": "yes", "confidence": 0.9}\n```',
                                   usage=(40, 12)))
    verdict, usage = LlamaIndexLLM(llama_llm).structured(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is it?"}],
        Verdict)
    assert verdict == Verdict(answer="yes", confidence=0.9)
    assert (usage.prompt_tokens, usage.completion_tokens) == (40, 12)
    [sent] = openai_server.chat_requests
    assert sent.response_format == "text"  # the plain-text rung: the schema is in the prompt
    prompt = "\n".join(m["content"] for m in sent.messages)
    assert "Be brief." in prompt and "Is it?" in prompt and '"confidence"' in prompt


def test_junk_is_repaired_once(openai_server: FakeOpenAIServer, llama_llm: Any) -> None:
    openai_server.queue(Reply.chat("I cannot say."),
                        Reply.json({"answer": "no", "confidence": 0.2}))
    verdict, _ = LlamaIndexLLM(llama_llm).structured([{"role": "user", "content": "?"}], Verdict)
    assert verdict.answer == "no"
    repair = "\n".join(m["content"] for m in openai_server.chat_requests[1].messages)
    assert "I cannot say." in repair and "could not be used" in repair


def test_junk_twice_is_an_llm_output_error(
    openai_server: FakeOpenAIServer, llama_llm: Any
) -> None:
    openai_server.default = Reply.chat('{"answer": 3}')
    with pytest.raises(LLMOutputError, match="even after one repair"):
        LlamaIndexLLM(llama_llm).structured([{"role": "user", "content": "?"}], Verdict)
    assert len(openai_server.chat_requests) == 2


def test_a_server_error_behind_llama_index_is_a_typed_error(
    openai_server: FakeOpenAIServer, llama_llm: Any
) -> None:
    openai_server.default = Reply.error(500, "the model crashed")
    with pytest.raises(LLMServerError, match="the model crashed"):
        LlamaIndexLLM(llama_llm).structured([{"role": "user", "content": "?"}], Verdict)
    with pytest.raises(LLMServerError, match="the model crashed"):
        "".join(LlamaIndexLLM(llama_llm).stream([{"role": "user", "content": "?"}]))


def test_an_unreachable_server_is_a_connection_error(closed_port: int) -> None:
    llm = LlamaIndexLLM(WireLLM(base_url=f"http://127.0.0.1:{closed_port}/v1"))
    with pytest.raises(LLMConnectionError):
        llm.structured([{"role": "user", "content": "?"}], Verdict)


def test_a_llama_index_exception_is_never_an_answer(
    openai_server: FakeOpenAIServer, seeded_db: Path
) -> None:
    qa = NewsQA(db=seeded_db, llm=BrokenLLM(base_url=openai_server.url))
    with pytest.raises(LLMServerError, match="backend exploded") as raised:
        qa.ask(KUWAIT)
    assert isinstance(raised.value.__cause__, RuntimeError)
    with pytest.raises(LLMServerError, match="backend exploded"):
        asyncio.run(qa.aask(KUWAIT))


def kuwait_draft() -> Reply:
    claim = {"text": "The Pentagon said 3,000 to 3,500 soldiers would be sent to Kuwait.",
             "citations": [{"source_id": "S1", "quote": KUWAIT_QUOTE}]}
    return Reply.json({"answerable": True, "answer": "3,000 to 3,500", "claims": [claim]},
                      chunk_size=5)


def test_ask_through_a_llama_index_llm_verifies_the_citations(
    openai_server: FakeOpenAIServer, seeded_db: Path
) -> None:
    openai_server.queue(kuwait_draft())
    qa = NewsQA(db=seeded_db, llm=WireLLM(base_url=openai_server.url))
    response = NewsQAQueryEngine(qa=qa, top_k=3).query(KUWAIT)
    answer = assert_cited_response(qa, str(response), response.source_nodes, response.metadata)
    assert (answer.mode, answer.model) == ("llm", "wire-model")
    assert KUWAIT_QUOTE in response.source_nodes[0].node.get_content()


def test_streaming_through_a_llama_index_llm(
    openai_server: FakeOpenAIServer, seeded_db: Path
) -> None:
    openai_server.queue(kuwait_draft(), kuwait_draft())
    qa = NewsQA(db=seeded_db, llm=WireLLM(base_url=openai_server.url))
    engine = NewsQAQueryEngine(qa=qa, top_k=3, streaming=True)
    response = engine.query(KUWAIT)
    assert isinstance(response, StreamingResponse)
    text = "".join(response.response_gen)
    assert_cited_response(qa, text, response.source_nodes, response.metadata)

    async def run() -> tuple[str, AsyncStreamingResponse]:
        streamed = await engine.aquery(KUWAIT)
        assert isinstance(streamed, AsyncStreamingResponse)
        return "".join([t async for t in streamed.async_response_gen()]), streamed

    text, streamed = asyncio.run(run())
    assert_cited_response(qa, text, streamed.source_nodes, streamed.metadata)
    assert all(r.body.get("stream") for r in openai_server.chat_requests)


def test_async_calls_run_the_same_chat_and_stream_chat_in_a_thread(
    openai_server: FakeOpenAIServer, llama_llm: Any
) -> None:
    openai_server.queue(Reply.json({"answer": "yes", "confidence": 1.0}),
                        Reply.chat("Hello there, reader.", usage=(30, 5)),
                        Reply.chat(""), Reply.chat("still nothing"))
    llm = LlamaIndexLLM(llama_llm)
    ask = [{"role": "user", "content": "?"}]

    async def run() -> tuple[Verdict, str, StreamStats]:
        verdict, _ = await llm.astructured(ask, Verdict)
        stats = StreamStats()
        text = "".join([d async for d in llm.astream(ask, stats=stats)])
        with pytest.raises(LLMOutputError, match="empty"):
            await llm.astructured(ask, Verdict)
        return verdict, text, stats

    verdict, text, stats = asyncio.run(run())
    assert verdict.answer == "yes" and text == "Hello there, reader."
    assert stats.content == text and stats.usage.completion_tokens == 5
    assert len(openai_server.chat_requests) == 4
