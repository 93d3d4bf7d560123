"""newsqa inside LlamaIndex apps: a retriever, a query engine, a chat engine, a reader,
and any LlamaIndex LLM as newsqa's model.

Why adapters and not LlamaIndex's own synthesizers: what newsqa adds is that every
citation is a verified, character-exact span of a named article. A LlamaIndex
synthesizer would hand a model's prose back unchecked, so these classes leave the
answering to newsqa and only speak LlamaIndex's types:

- `NewsQARetriever`: hybrid search and the learned second stage, publisher and date
  filters; each node is a chunk with its article's facts and character offsets.
- `NewsQAQueryEngine`: the verified answer; `source_nodes` are its citations (a node's
  text is the exact quote), `metadata["answer"]` the whole `Answer`.
- `NewsQAChatEngine`: condense-plus-context over a newsqa chat session, so follow-ups
  are rewritten by newsqa's rewriting and answered with verified citations.
- `NewsReader`: newsqa's loaders (text with datelines, JSON/JSONL, HTML, folders) as
  `Document`s with news metadata.
- `LlamaIndexLLM`: a LlamaIndex `LLM` as newsqa's model; `NewsQA(llm=...)` wraps one.

This is the one module of newsqa that imports llama_index: `import newsqa` never does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.callbacks import CallbackManager
from llama_index.core.chat_engine.types import (
    AgentChatResponse,
    BaseChatEngine,
    StreamingAgentChatResponse,
)
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.readers.base import BaseReader
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import (
    Document,
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.tools import ToolOutput

# LlamaIndexLLM and as_newsqa_llm are re-exported: one import for apps.
from ..engines.llama_index_llm import LlamaIndexLLM, as_newsqa_llm
from ..errors import InputError
from ..models import Answer, Article, Citation, DateLike, Passage
from ..store.articles import read_paths
from .api import NewsQA
from .chat import ChatSession, exchanges, replay_history

log = logging.getLogger("newsqa.llama_index")  # the name its warnings have always had

# Ids, links and offsets: for programs, noise to an embedding model or an LLM prompt.
HIDDEN_FROM_MODELS = ("article_id", "url", "start", "end", "origin")

__all__ = [
    "LlamaIndexLLM",
    "NewsQAChatEngine",
    "NewsQAQueryEngine",
    "NewsQARetriever",
    "NewsReader",
    "answer_response",
    "article_document",
    "as_newsqa_llm",
    "citation_node",
    "passage_node",
]


# -- nodes and documents ------------------------------------------------------------------


def news_metadata(
    article_id: str, title: str, source: str, published_at: Any, url: str | None, **more: Any
) -> dict[str, Any]:
    """The news facts every node and document carries, dates as ISO strings.

    Missing values are left out rather than set to None: vector stores (Chroma among
    them) refuse None in metadata, and documents are often written to one.
    """
    values = {
        "article_id": article_id,
        "title": title,
        "source": source,
        "published_at": published_at.isoformat() if published_at is not None else None,
        "url": url,
        **more,
    }
    return {key: value for key, value in values.items() if value is not None}


def _span_node(node_id: str, text: str, span: Passage | Citation) -> TextNode:
    """A node for `text` == article[start:end]; its SOURCE is the article (ref_doc_id)."""
    return TextNode(
        id_=node_id,
        text=text,
        metadata=news_metadata(span.article_id, span.title, span.source, span.published_at,
                               span.url, start=span.start, end=span.end),
        start_char_idx=span.start,
        end_char_idx=span.end,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=span.article_id)},
        excluded_embed_metadata_keys=list(HIDDEN_FROM_MODELS),
        excluded_llm_metadata_keys=list(HIDDEN_FROM_MODELS),
    )


def passage_node(passage: Passage, cap: float | None = None) -> NodeWithScore:
    """A retrieved chunk, scored as newsqa ranked it (higher is better): its first-stage
    score, at most `cap` (the score of the node ranked above it).

    The second stage and the turns for named publishers reorder what the first-stage
    scores rank, and LlamaIndex's postprocessors sort and cut by score: capped, the
    scores never contradict newsqa's order.
    """
    score = passage.score if cap is None else min(passage.score, cap)
    return NodeWithScore(node=_span_node(passage.chunk_id, passage.text, passage), score=score)


def citation_node(citation: Citation) -> NodeWithScore:
    """A verified citation: the node's text is the exact quote at its offsets."""
    node_id = f"{citation.article_id}:{citation.start}-{citation.end}"
    return NodeWithScore(node=_span_node(node_id, citation.quote, citation))


def citation_nodes(answer: Answer) -> list[NodeWithScore]:
    return [citation_node(c) for c in answer.citations]


def answer_metadata(answer: Answer) -> dict[str, Any]:
    """JSON-ready, so `Answer.model_validate(metadata["answer"])` gives the answer back."""
    return {"answer": answer.model_dump(mode="json")}


def answer_response(answer: Answer) -> Response:
    """A newsqa `Answer` as LlamaIndex's `Response`: text, citations as nodes, the whole."""
    return Response(response=answer.answer, source_nodes=citation_nodes(answer),
                    metadata=answer_metadata(answer))


def article_document(
    article: Article, *, origin: str | None = None, extra_info: dict[str, Any] | None = None
) -> Document:
    """An article as a `Document` whose id is the article's, so re-loading it dedupes."""
    facts = news_metadata(article.id, article.title, article.source, article.published_at,
                          article.url, origin=origin)
    return Document(
        id_=article.id,
        text=article.text,
        metadata={**(extra_info or {}), **article.metadata, **facts},
        excluded_embed_metadata_keys=list(HIDDEN_FROM_MODELS),
        excluded_llm_metadata_keys=list(HIDDEN_FROM_MODELS),
    )


def _search_options(
    sources: Sequence[str] | None, since: DateLike, until: DateLike, top_k: int | None
) -> dict[str, Any]:
    return {"sources": sources, "since": since, "until": until, "top_k": top_k}


# -- retriever ----------------------------------------------------------------------------


class NewsQARetriever(BaseRetriever):
    """newsqa's retrieval (BM25 + dense, fused, then the learned second stage) as a
    LlamaIndex retriever, so postprocessors, routers and synthesizers can use it.

    The filters apply to every query as `NewsQA.search` takes them: `sources`
    (publisher names), `since`/`until` (dates, inclusive); `top_k` defaults to the
    settings' value.
    """

    def __init__(
        self,
        qa: NewsQA,
        *,
        sources: Sequence[str] | None = None,
        since: DateLike = None,
        until: DateLike = None,
        top_k: int | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        self.qa = qa
        self.options = _search_options(sources, since, until, top_k)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        nodes: list[NodeWithScore] = []
        for passage in self.qa.search(query_bundle.query_str, **self.options):
            nodes.append(passage_node(passage, nodes[-1].score if nodes else None))
        return nodes

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Retrieval is CPU-bound (ONNX, BM25) and thread-safe: keep the event loop free.
        return await asyncio.to_thread(self._retrieve, query_bundle)


# -- query engine -------------------------------------------------------------------------


def _texts(
    items: Iterable[str | Answer], nodes: list[NodeWithScore], metadata: dict[str, Any]
) -> Generator[str, None, None]:
    """newsqa's stream text; the final `Answer` fills `nodes` and `metadata` in place,
    because a streaming response is handed out before its citations are known."""
    for item in items:
        if isinstance(item, Answer):
            nodes.extend(citation_nodes(item))
            metadata.update(answer_metadata(item))
        else:
            yield item


async def _atexts(
    items: AsyncIterator[str | Answer], nodes: list[NodeWithScore], metadata: dict[str, Any]
) -> AsyncGenerator[str, None]:
    async for item in items:
        for text in _texts([item], nodes, metadata):
            yield text


class NewsQAQueryEngine(CustomQueryEngine):
    """Questions answered by newsqa: `Response.response` is the verified answer text,
    `source_nodes` its citations (one node each, the exact quote), `metadata["answer"]`
    the whole `Answer`.

    With `streaming=True`, `query` returns a `StreamingResponse` (`aquery` an
    `AsyncStreamingResponse`) whose generator yields the text newsqa has verified as it
    goes; its `source_nodes` and `metadata` are filled in once the generator is done.
    """

    qa: NewsQA
    streaming: bool = False
    sources: list[str] | None = None
    since: DateLike = None
    until: DateLike = None
    top_k: int | None = None

    def custom_query(self, query_str: str) -> Response | StreamingResponse:
        if not self.streaming:
            return answer_response(self.qa.ask(query_str, **self._options()))
        nodes: list[NodeWithScore] = []
        metadata: dict[str, Any] = {}
        items = self.qa.stream(query_str, **self._options())
        return StreamingResponse(_texts(items, nodes, metadata), nodes, metadata)

    async def acustom_query(self, query_str: str) -> Response | AsyncStreamingResponse:
        if not self.streaming:
            return answer_response(await self.qa.aask(query_str, **self._options()))
        nodes: list[NodeWithScore] = []
        metadata: dict[str, Any] = {}
        items = self.qa.astream(query_str, **self._options())
        return AsyncStreamingResponse(_atexts(items, nodes, metadata), nodes, metadata)

    def _options(self) -> dict[str, Any]:
        return _search_options(self.sources, self.since, self.until, self.top_k)


# -- chat engine --------------------------------------------------------------------------


def _turn_output(answer: Answer) -> ToolOutput:
    """The whole `Answer` where LlamaIndex chat responses keep what produced them."""
    return ToolOutput(
        tool_name="newsqa",
        content=answer.answer,
        raw_input={"question": answer.question, "standalone_question": answer.rewritten_question},
        raw_output=answer,
    )


def _chat_response(answer: Answer) -> AgentChatResponse:
    return AgentChatResponse(response=answer.answer, sources=[_turn_output(answer)],
                             source_nodes=citation_nodes(answer), metadata=answer_metadata(answer))


def _kept(items: Iterable[str | Answer], sources: list[ToolOutput]) -> Iterator[str | Answer]:
    """`items` unchanged; the final `Answer` is also recorded in `sources`."""
    for item in items:
        if isinstance(item, Answer):
            sources.append(_turn_output(item))
        yield item


async def _akept(
    items: AsyncIterator[str | Answer], sources: list[ToolOutput]
) -> AsyncIterator[str | Answer]:
    async for item in items:
        for kept in _kept([item], sources):
            yield kept


def _deltas(texts: Iterable[str]) -> Generator[ChatResponse, None, None]:
    """Stream text as LlamaIndex chat deltas: each carries the message so far."""
    so_far = ""
    for text in texts:
        so_far += text
        yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=so_far),
                           delta=text)


async def _adeltas(texts: AsyncIterator[str]) -> AsyncGenerator[ChatResponse, None]:
    so_far = ""
    async for text in texts:
        so_far += text
        yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=so_far),
                           delta=text)


class NewsQAChatEngine(BaseChatEngine):
    """Condense-plus-context chat over a newsqa session (`NewsQA.chat`).

    Each message is condensed into a standalone question by newsqa's follow-up
    rewriting (the LLM when one is configured, else offline), answered from retrieved
    passages, and every citation verified. `source_nodes` are the citations; the whole
    `Answer` is `sources[0].raw_output` (and `metadata["answer"]` when not streaming).
    `session_options` go to `NewsQA.chat` (sources, since, until, top_k, history_tokens).
    """

    def __init__(self, qa: NewsQA, **session_options: Any) -> None:
        self.session: ChatSession = qa.chat(**session_options)

    def reset(self) -> None:
        self.session.reset()

    @property
    def chat_history(self) -> list[ChatMessage]:
        messages = []
        for turn in self.session.history:
            messages.append(ChatMessage(role=MessageRole.USER, content=turn.question))
            messages.append(ChatMessage(role=MessageRole.ASSISTANT, content=turn.answer))
        return messages

    def chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AgentChatResponse:
        self._use_history(chat_history)
        return _chat_response(self.session.ask(message))

    async def achat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AgentChatResponse:
        self._use_history(chat_history)
        return _chat_response(await self.session.aask(message))

    def stream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        """Deltas of verified text; `source_nodes` and `sources` fill in as it ends."""
        self._use_history(chat_history)
        nodes: list[NodeWithScore] = []
        sources: list[ToolOutput] = []
        items = _kept(self.session.stream(message), sources)
        # Not "writing to memory": the session keeps the history, so no thread is needed.
        return StreamingAgentChatResponse(
            chat_stream=_deltas(_texts(items, nodes, {})), sources=sources, source_nodes=nodes,
            is_writing_to_memory=False,
        )

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        self._use_history(chat_history)
        nodes: list[NodeWithScore] = []
        sources: list[ToolOutput] = []
        items = _akept(self.session.astream(message), sources)
        return StreamingAgentChatResponse(
            achat_stream=_adeltas(_atexts(items, nodes, {})), sources=sources,
            source_nodes=nodes, is_writing_to_memory=False,
        )

    def _use_history(self, chat_history: Sequence[ChatMessage] | None) -> None:
        """LlamaIndex's convention: a given history replaces the engine's memory. Its
        follow-ups are re-condensed offline, and it is clipped, as newsqa's server does
        for a client's history (see newsqa.app.chat.MAX_HISTORY_CHARS)."""
        if chat_history is None:
            return
        messages = ((m.role.value, m.content or "") for m in chat_history)
        self.session.use_history(replay_history(exchanges(messages)))


# -- reader -------------------------------------------------------------------------------


class NewsReader(BaseReader):
    """newsqa's loaders as a LlamaIndex reader: files and folders of text (datelines,
    seed headers, front matter), JSON/JSONL and HTML, as `Document`s whose metadata
    holds article_id, title, source, published_at (ISO), url and origin.

    A file or record that cannot be read raises newsqa's `InputError` (naming the file
    and line); with `skip_errors=True` it is logged and the rest still load, as
    `newsqa ingest` does.
    """

    def __init__(self, *, skip_errors: bool = False) -> None:
        self.skip_errors = skip_errors

    def lazy_load_data(
        self,
        paths: str | Path | Iterable[str | Path],
        extra_info: dict[str, Any] | None = None,
    ) -> Iterator[Document]:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        for loaded in read_paths(paths):
            if isinstance(loaded, InputError):
                if not self.skip_errors:
                    raise loaded
                log.warning("skipped: %s", loaded)
                continue
            yield article_document(loaded.article, origin=loaded.origin, extra_info=extra_info)
