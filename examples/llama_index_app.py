"""newsqa inside a LlamaIndex app: a reader, a retriever, a query engine and a chat
engine over the two sample articles, offline (local embeddings, extractive answers).

    python examples/llama_index_app.py

Every source node printed under an answer is a verified citation: its text is the
article's exact characters at its offsets, which the script checks at the end.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from llama_index.core.base.response.schema import Response
from llama_index.core.schema import NodeWithScore

from newsqa import NewsQA
from newsqa.app.llama_index import NewsQAChatEngine, NewsQAQueryEngine, NewsQARetriever, NewsReader

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def show_sources(nodes: list[NodeWithScore]) -> None:
    for n, node in enumerate(nodes, 1):
        meta = node.node.metadata
        where = f"{meta.get('source') or 'unknown source'}, {meta.get('published_at', 'undated')}"
        print(f"  [{n}] {meta['title'][:60]} ({where}) chars {meta['start']}-{meta['end']}")
        print(f"      \"{node.node.get_content()}\"")


def check(qa: NewsQA, nodes: list[NodeWithScore]) -> None:
    """Trust, but verify: a citation is the article's text at its offsets."""
    for node in nodes:
        meta = node.node.metadata
        assert qa.get_article(meta["article_id"]).text[meta["start"]:meta["end"]] == (
            node.node.get_content())


def main() -> None:
    documents = NewsReader().load_data(SEEDS)  # newsqa's loaders, as LlamaIndex Documents
    for doc in documents:
        print(f"document {doc.doc_id}: {doc.metadata['title'][:60]!r}, "
              f"{doc.metadata.get('source') or 'unknown source'}")

    with tempfile.TemporaryDirectory() as db, NewsQA(db=db, llm="extractive") as qa:
        qa.ingest([SEEDS])

        retriever = NewsQARetriever(qa, top_k=2)  # usable wherever LlamaIndex takes one
        for hit in retriever.retrieve("US pressure on Baghdad"):
            print(f"retrieved {hit.node.node_id} score={hit.score:.3f}")

        query_engine = NewsQAQueryEngine(qa=qa)
        response = query_engine.query("How many troops were sent to Kuwait?")
        assert isinstance(response, Response)
        print(f"\nQ: How many troops were sent to Kuwait?\nA: {response}")
        show_sources(response.source_nodes)
        check(qa, response.source_nodes)

        chat_engine = NewsQAChatEngine(qa)
        for message in ("Who did Qaani meet in Baghdad?", "What did he warn?"):
            reply = chat_engine.chat(message)
            asked = reply.sources[0].raw_output.rewritten_question
            print(f"\nyou: {message}   (asked as: {asked})\nnewsqa: {reply}")
            show_sources(reply.source_nodes)
            check(qa, reply.source_nodes)


if __name__ == "__main__":
    main()
