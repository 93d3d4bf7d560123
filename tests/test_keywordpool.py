"""The first stage over a pool from the persistent keyword index (NEWSQA_RETRIEVAL_POOL=1).

Real model, real Chroma, real tantivy. The pool path must find what the
whole-collection path finds, honour the caller's filters inside the engine, and
see a new article without building the whole-collection keyword index.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from newsqa import NewsQA
from newsqa.store.articles import Loaded, read_paths
from newsqa.store.keywordstore import KeywordStore

WriteStories = Callable[..., list[Path]]


@pytest.fixture
def stories(tmp_path: Path, write_stories: WriteStories) -> list[Path]:
    return write_stories(tmp_path / "news", range(12))


@pytest.fixture
def db(tmp_path: Path, stories: list[Path]) -> Path:
    """An index holding the stories."""
    folder = tmp_path / "db"
    with NewsQA(db=folder, llm="extractive") as qa:
        qa.ingest(stories)
    return folder


def pool_qa(db: Path, monkeypatch: pytest.MonkeyPatch, on: bool) -> NewsQA:
    monkeypatch.setenv("NEWSQA_RETRIEVAL_POOL", "1" if on else "0")
    return NewsQA(db=db, llm="extractive")


def keyword_store(qa: NewsQA) -> tuple[KeywordStore, list[str]]:
    """The reader's keyword index and the chunk ids it holds."""
    store = qa.index.keywords
    assert store is not None
    return store, store.chunk_ids()


def first_sentence(path: Path) -> tuple[str, str]:
    """A question made of a story's first sentence, and the story's id."""
    [loaded] = list(read_paths([path]))
    assert isinstance(loaded, Loaded)
    return loaded.article.text.split(" before ")[0], loaded.article.id


def test_the_pool_finds_what_the_whole_collection_finds(
    db: Path, stories: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    questions = [first_sentence(p) for p in stories[:6]]
    with pool_qa(db, monkeypatch, on=False) as whole:
        expected = [whole.search(q, top_k=3)[0].article_id for q, _ in questions]
    with pool_qa(db, monkeypatch, on=True) as pool:
        got = [pool.search(q, top_k=3)[0].article_id for q, _ in questions]
        assert pool.retriever._keyword is None  # no whole-collection keyword index built
    assert got == expected == [aid for _, aid in questions]


def test_the_pool_keeps_the_callers_filters(
    db: Path, stories: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    question, _ = first_sentence(stories[0])
    with pool_qa(db, monkeypatch, on=True) as pool:
        by_source = pool.search(question, top_k=8, sources=["Harbour Post"])
        assert by_source and {p.source for p in by_source} == {"Harbour Post"}
        since = pool.search(question, top_k=8, since="2024-06-01")
        assert since and all(p.published_at and p.published_at.isoformat() >= "2024-06-01"
                             for p in since)
        assert pool.search(question, top_k=8, sources=["No Such Paper"]) == []


def test_a_live_pool_reader_sees_a_new_article_without_a_rebuild(
    tmp_path: Path, db: Path, stories: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    new = tmp_path / "new" / "story.json"
    new.parent.mkdir()
    new.write_text(json.dumps({
        "title": "Velmora river authority orders floating barriers", "source": "Quarn Herald",
        "published_at": "2025-02-11T08:00:00+00:00",
        "text": "The Velmora river authority ordered 417 floating barriers for the Quarn "
                "estuary. The barriers hold back debris after the spring floods.",
    }), encoding="utf-8")
    question = "How many floating barriers did the Velmora river authority order?"
    with pool_qa(db, monkeypatch, on=True) as reader, NewsQA(db=db, llm="extractive") as writer:
        assert "Quarn Herald" not in {p.source for p in reader.search(question, top_k=3)}
        assert writer.ingest([new]).added == 1
        hits = reader.search(question, top_k=3)
        assert hits[0].source == "Quarn Herald" and "417" in hits[0].text
        assert reader.retriever._keyword is None


def test_a_warm_pool_reader_sees_an_article_edited_under_its_url(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader's record cache holds the first version's chunks; the edit's must win."""
    story = tmp_path / "edit" / "story.json"
    story.parent.mkdir()

    def write(count: int) -> None:
        story.write_text(json.dumps({
            "title": "Velmora river authority orders floating barriers", "source": "Quarn Herald",
            "url": "https://quarn.example/barriers", "published_at": "2025-02-11T08:00:00+00:00",
            "text": f"The Velmora river authority ordered {count} floating barriers for the "
                    "Quarn estuary. The barriers hold back debris after the spring floods.",
        }), encoding="utf-8")

    question = "How many floating barriers did the Velmora river authority order?"
    write(417)
    with pool_qa(db, monkeypatch, on=True) as reader, NewsQA(db=db, llm="extractive") as writer:
        assert writer.ingest([story]).added == 1
        assert "417" in reader.search(question, top_k=3)[0].text  # the cache now holds it
        write(512)
        assert writer.ingest([story]).updated == 1
        hits = reader.search(question, top_k=3)
        assert "512" in hits[0].text and not any("417" in p.text for p in hits)


def test_the_record_cache_reads_the_index_once_and_stays_bounded(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsqa.retrieval.keywordpool import RecordCache

    with pool_qa(db, monkeypatch, on=True) as qa:
        store, held = keyword_store(qa)
        ids = held[:6]
        reads: list[int] = []
        real = store.records

        def counted(chunk_ids: list[str]) -> list:  # type: ignore[type-arg]
            reads.append(len(chunk_ids))
            return real(chunk_ids)

        monkeypatch.setattr(store, "records", counted)
        cache = RecordCache(max_chunks=4)
        docs, _, _ = cache.read(store, ids[:3])
        assert sorted(docs) == sorted(ids[:3]) and len(reads) == 1
        again, _, _ = cache.read(store, ids[:3])
        assert len(reads) == 1 and again.keys() == docs.keys()  # served from memory
        cache.read(store, ids[3:6])
        assert len(cache._docs) <= 4  # the oldest went


def test_the_manifest_names_an_article_versions_chunks_as_the_keyword_index_holds_them(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool takes its leading articles whole by these ids, without reading them first."""
    with pool_qa(db, monkeypatch, on=True) as qa:
        _, held = keyword_store(qa)
        committed = qa.index.committed()
        for article_id in {c.rsplit(":", 2)[0] for c in held}:
            ids = committed.chunk_ids(article_id)
            assert ids and sorted(ids) == sorted(c for c in held if c.startswith(article_id + ":"))
            assert [int(c.rsplit(":", 1)[1]) for c in ids] == list(range(len(ids)))
        assert committed.chunk_ids("no-such-article") == []


def test_the_record_cache_vocabulary_starts_afresh_past_its_bound(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The term numbering only grows; a server reading a growing archive must not keep
    every term it ever saw. Past `max_terms` the cache starts again, and what a search
    was handed still decodes with the vocabulary it was handed."""
    from newsqa.retrieval.keywordpool import RecordCache

    with pool_qa(db, monkeypatch, on=True) as qa:
        store, held = keyword_store(qa)
        ids = held[:6]
        cache = RecordCache(max_chunks=100, max_terms=10)
        first, vocab, terms = cache.read(store, ids[:3])
        assert len(terms) > 10 and vocab is cache.vocab
        decoded = {cid: [terms[i] for i in doc.chunk] for cid, doc in first.items()}
        second, fresh, _ = cache.read(store, ids[3:])
        assert fresh is not vocab and set(second) == set(ids[3:]) and len(cache._docs) == 3
        assert decoded == {cid: [terms[i] for i in doc.chunk] for cid, doc in first.items()}
        again, _, now = cache.read(store, ids[:1])
        assert [now[i] for i in again[ids[0]].chunk] == decoded[ids[0]]


def test_the_pools_term_idf_table_is_the_collections_idf_of_each_term(
    db: Path, stories: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranker's IDF table is gathered by vocabulary id, kept across questions: it must
    be exactly what the per-term lookup gives, for a first and a repeated question."""
    from newsqa.retrieval import Filters

    with pool_qa(db, monkeypatch, on=True) as qa:
        store = qa.index.keywords
        assert store is not None
        for question in [first_sentence(p)[0] for p in stories[:2]] * 2:
            with store.snapshot():
                keyword = qa.retriever.pool_keyword(store, question, Filters(), [])
            vocab = keyword.sentence_terms().vocab
            table = keyword.term_idf()
            assert len(vocab) > 10 and len(table) == len(vocab)
            assert all(table[i] == keyword.idf(term) for term, i in vocab.items())


def test_a_question_ranks_the_same_whatever_was_asked_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record cache numbers terms in the order a reader meets them; the ranker's
    sums must not depend on that order, or a `serve` process would rank one question
    differently depending on the questions it answered before."""
    import random
    import re

    seeds = sorted((Path(__file__).resolve().parents[1] / "seeds").iterdir())
    sentences = [s.strip() for p in seeds for s in re.split(r"(?<=[.!?])\s+", p.read_text(
        encoding="utf-8")) if len(s) > 40]
    rng = random.Random(7)
    folder, news = tmp_path / "mixed", tmp_path / "mixed-news"
    news.mkdir()
    for n in range(40):  # real sentences shuffled into stories: many shared rare words
        (news / f"{n}.json").write_text(json.dumps({
            "title": f"Story {n}",
            "source": ("Daily Wire", "Harbour Post", "Evening Ledger")[n % 3],
            "published_at": f"2024-03-{1 + n % 27:02d}T09:30:00+00:00",
            "text": " ".join(rng.sample(sentences, 8)),
        }), encoding="utf-8")
    with NewsQA(db=folder, llm="extractive") as qa:
        qa.ingest([news])
    questions = rng.sample(sentences, 16)
    with pool_qa(folder, monkeypatch, on=True) as forward, \
            pool_qa(folder, monkeypatch, on=True) as back:
        ahead = {q: forward.search(q, top_k=8) for q in questions}
        behind = {q: back.search(q, top_k=8) for q in reversed(questions)}
    for q in questions:
        assert [(p.chunk_id, p.scores) for p in ahead[q]] == [
            (p.chunk_id, p.scores) for p in behind[q]], q
