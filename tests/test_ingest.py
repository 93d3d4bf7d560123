"""ingest() with the real loaders, chunker, MiniLM model and Chroma."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from newsqa.config import Settings
from newsqa.models import Article
from newsqa.store.articles import read_paths
from newsqa.store.chunking import chunk_article
from newsqa.store.embedding import Embedder
from newsqa.store.index import Index, chunk_id
from newsqa.store.ingest import ingest

WriteStories = Callable[..., list[Path]]


class Counting:
    """The real embedder, recording how many texts each call embeds."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.calls: list[int] = []

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def load(paths: Sequence[Path]) -> list[Article]:
    loaded = list(read_paths(paths))
    assert all(not isinstance(x, Exception) for x in loaded), loaded
    return [x.article for x in loaded]  # type: ignore[union-attr]


def expected_chunk_ids(articles: Sequence[Article], settings: Settings) -> set[str]:
    return {
        chunk_id(a.id, a.content_hash, c.index)
        for a in articles
        for c in chunk_article(a, max_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap)
    }


def stored_chunk_ids(index: Index) -> list[str]:
    return list(index._chunks.get(include=[])["ids"])  # every physical record, committed or not


def test_ingest_then_reingest_costs_nothing(
    store_settings: Settings, embedder: Embedder, write_stories: WriteStories, tmp_path: Path
) -> None:
    paths = write_stories(tmp_path / "news", range(5))
    counting = Counting(embedder)
    index = Index(store_settings, counting)
    articles = load(paths)
    expected = expected_chunk_ids(articles, store_settings)

    first = ingest([tmp_path / "news"], index, counting, store_settings)
    assert (first.added, first.updated, first.unchanged, first.failed) == (5, 0, 0, [])
    assert first.chunks == len(expected)
    assert sorted(stored_chunk_ids(index)) == sorted(expected)
    assert {i.id for i in index.articles()} == {a.id for a in articles}

    calls, revision = len(counting.calls), index.revision
    again = ingest([tmp_path / "news"], index, counting, store_settings)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 5)
    assert again.chunks == first.chunks
    assert len(counting.calls) == calls  # nothing embedded
    assert index.revision == revision  # nothing written


def test_an_ingest_of_one_article_reads_no_other_article(
    store_settings: Settings, embedder: Embedder, write_stories: WriteStories, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A one-article write costs that article's chunks, not a pass over the collection.

    Every ingest used to begin with a sweep that read every stored chunk's metadata
    (14 s of a 17 s one-article ingest at 100k chunks, benchmarks/RESULTS.md), and
    then read the whole manifest to compare hashes; a clean revision says no write
    died, so nothing is swept, and only the inputs' manifest records are read. A
    killed write's in-flight revision still sends the next ingest through the sweep
    (test_index_trust_crash.py).
    """
    ingest(write_stories(tmp_path / "old", range(3)), Index(store_settings, embedder),
           embedder, store_settings)
    index = Index(store_settings, embedder)  # as a new process opens it: nothing cached
    passes: list[str] = []
    whole = Index._iter_records

    def counted(self: Index, collection: object, include: list[str], where: object = None
                ) -> object:
        passes.append(getattr(collection, "name", "?"))
        return whole(self, collection, include, where)  # type: ignore[arg-type]

    monkeypatch.setattr(Index, "_iter_records", counted)
    report = ingest(write_stories(tmp_path / "new", range(2, 4)), index, embedder,
                    store_settings)
    assert (report.added, report.unchanged) == (1, 1)
    assert passes == []
    assert len(stored_chunk_ids(index)) == report.chunks == index.chunk_count()


def test_changed_article_replaces_chunks_leaving_no_orphans(
    embedder: Embedder, write_stories: WriteStories, tmp_path: Path
) -> None:
    settings = Settings(db=tmp_path / "db")
    index = Index(settings, embedder)
    [short, other] = write_stories(tmp_path / "news", [1, 2], sentences=3)
    ingest([short, other], index, embedder, settings)
    write_stories(tmp_path / "news", [1], sentences=14)  # same URL: same article, new text

    report = ingest([short, other], index, embedder, settings)
    assert (report.added, report.updated, report.unchanged) == (0, 1, 1)
    now = load([short, other])
    assert sorted(stored_chunk_ids(index)) == sorted(expected_chunk_ids(now, settings))
    assert index.get_article(now[0].id).text == now[0].text
    assert report.chunks == len(stored_chunk_ids(index)) > 2


def test_an_article_whose_chunks_went_missing_is_written_again_by_the_next_ingest(
    embedder: Embedder, write_stories: WriteStories, tmp_path: Path
) -> None:
    # Two workers writing one article's two texts to a Chroma server at once could each
    # delete the other's chunks as stale: the manifest listed the article, no search found
    # it, and every later ingest called it unchanged (a new user's session).
    settings = Settings(db=tmp_path / "db")
    index = Index(settings, embedder)
    paths = write_stories(tmp_path / "news", [1, 2, 3], sentences=3)
    ingest(paths, index, embedder, settings)
    first, second, _ = load(paths)
    index._chunks.delete(where={"article_id": first.id})  # lost on the Chroma side
    assert index._keywords is not None
    index._keywords.remove([second.id])  # lost in the keyword folder

    report = ingest(paths, index, embedder, settings)
    assert (report.added, report.updated, report.unchanged) == (0, 2, 1)
    assert sorted(stored_chunk_ids(index)) == sorted(expected_chunk_ids(load(paths), settings))
    assert sorted(index._keywords.chunk_ids()) == sorted(stored_chunk_ids(index))
    again = ingest(paths, index, embedder, settings)
    assert (again.updated, again.unchanged) == (0, 3)


def test_identical_files_are_stored_once_and_reported(
    embedder: Embedder, write_stories: WriteStories, tmp_path: Path
) -> None:
    settings = Settings(db=tmp_path / "db")
    [original] = write_stories(tmp_path / "news", [7])
    copy = tmp_path / "news" / "copy-of-7.json"
    copy.write_bytes(original.read_bytes())
    index = Index(settings, embedder)

    report = ingest([tmp_path / "news"], index, embedder, settings)
    assert (report.added, report.duplicates) == (1, 1)
    assert report.duplicate_of == {str(original): str(copy)} or report.duplicate_of == {
        str(copy): str(original)
    }
    assert len(index.articles()) == 1


def test_one_url_with_two_texts_in_one_ingest_is_a_failure_not_a_silent_duplicate(
    embedder: Embedder, write_stories: WriteStories, tmp_path: Path
) -> None:
    # A new user's folder held an article and its update under one URL: the update was
    # counted as a duplicate and dropped without a word.
    import json

    settings = Settings(db=tmp_path / "db")
    [original] = write_stories(tmp_path / "news", [7])
    record = json.loads(original.read_text())
    record["text"] += " Update: the strike ended on Friday."
    update = tmp_path / "news" / "z-update-of-7.json"
    update.write_text(json.dumps(record))
    index = Index(settings, embedder)

    report = ingest([tmp_path / "news"], index, embedder, settings)
    assert (report.added, report.duplicates) == (1, 0)
    [failure] = report.failed
    assert failure.path == str(update)
    assert failure.error.startswith(f"same URL as {original} with other text")
    assert "Update:" not in index.get_article(index.articles()[0].id).text


def test_a_later_line_of_a_feed_with_the_same_url_is_the_correction(
    embedder: Embedder, tmp_path: Path
) -> None:
    # A new user's append-only feed added a corrected record under the same URL: every run
    # failed it as "same URL ... with other text", and the old text stayed.
    import json

    settings = Settings(db=tmp_path / "db")
    feed = tmp_path / "feed.jsonl"
    lines = [{"title": "Harbour", "text": "The harbour reopened on Monday.", "url": "u:h"},
             {"title": "Bridge", "text": "The bridge closed for repairs.", "url": "u:b"},
             {"title": "Harbour", "text": "The harbour reopened on Tuesday, not Monday.",
              "url": "u:h"}]
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    index = Index(settings, embedder)

    report = ingest([feed], index, embedder, settings)
    assert (report.added, report.duplicates, report.failed) == (2, 1, [])
    assert report.duplicate_of == {f"{feed}:1": f"{feed}:3"}
    harbour = next(a for a in index.articles() if a.title == "Harbour")
    assert "Tuesday" in index.get_article(harbour.id).text
    again = ingest([feed], index, embedder, settings)
    assert (again.unchanged, again.duplicates, again.failed) == (2, 1, [])


def test_a_bad_file_is_reported_and_the_rest_go_in(
    embedder: Embedder, write_stories: WriteStories, tmp_path: Path
) -> None:
    settings = Settings(db=tmp_path / "db")
    good = write_stories(tmp_path / "news", [3, 4], sentences=2)
    bad = tmp_path / "news" / "broken.json"
    bad.write_text('{"title": "no closing brace"', encoding="utf-8")
    index = Index(settings, embedder)

    report = ingest([tmp_path / "news", tmp_path / "missing.txt"], index, embedder, settings)
    assert report.added == 2
    assert {f.path for f in report.failed} == {str(bad), str(tmp_path / "missing.txt")}
    assert all(f.error for f in report.failed)
    assert {i.id for i in index.articles()} == {a.id for a in load(good)}


def test_embedding_batches_span_articles_and_progress_counts_to_total(
    embedder: Embedder, write_stories: WriteStories, tmp_path: Path
) -> None:
    settings = Settings(db=tmp_path / "db")
    write_stories(tmp_path / "news", range(20, 44), sentences=2)  # 24 one-chunk articles
    counting = Counting(embedder)
    seen: list[tuple[int, int]] = []

    report = ingest(
        [tmp_path / "news"],
        Index(settings, counting),
        counting,
        settings,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert report.added == 24
    assert sum(counting.calls) == 24 and len(counting.calls) <= 3  # e.g. 8 + 16
    assert seen[0] == (0, 24) and seen[-1] == (24, 24)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


class Instant:
    """An embedder that answers at once, as a fast embeddings server nearly does."""

    name = "test-instant"
    dimension = 8

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return np.full((len(texts), self.dimension), 8**-0.5, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return np.full(self.dimension, 8**-0.5, dtype=np.float32)


def test_batches_grow_while_the_store_and_not_the_embedder_is_the_bottleneck(
    write_stories: WriteStories, tmp_path: Path
) -> None:
    """Each batch pays the store's commits (~0.1 s): an instant embedder must not pay
    them per 8 chunks, so batches double past `batch_chunks` while writes outlast it."""
    settings = Settings(db=tmp_path / "db")
    write_stories(tmp_path / "news", range(200), sentences=2)  # 200 one-chunk articles
    instant = Instant()
    index = Index(settings, instant)  # type: ignore[arg-type]

    report = ingest([tmp_path / "news"], index, instant, settings, batch_chunks=8)  # type: ignore[arg-type]

    assert report.added == 200 and report.chunks == 200
    assert sum(instant.calls) == 200
    assert max(instant.calls) > 8, instant.calls  # 8 each, had they not grown
    assert len(index.articles()) == 200


def test_articles_objects_and_dense_search_with_the_real_model(
    store_settings: Settings, embedder: Embedder
) -> None:
    index = Index(store_settings, embedder)
    facts = {
        "harbour": "The harbour master closed the northern pier after a tanker ran aground.",
        "election": "Voters in the mountain district re-elected the mayor by a wide margin.",
        "science": "Astronomers measured the spin of a distant pulsar with a new radio dish.",
    }
    articles = [Article(title=k, source="Test Wire", text=v) for k, v in facts.items()]
    report = ingest(articles, index, embedder, store_settings)
    assert report.added == 3

    hits = index.dense_search(embedder.embed_query("Which pier was shut down?"), 2, None)
    assert hits[0].title == "harbour"
    assert hits[0].text == facts["harbour"]
    assert 0.3 < hits[0].score <= 1.0 and hits[0].score > hits[1].score


@pytest.mark.parametrize("bad", [b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"caf\xe9 au lait"])
def test_unreadable_files_never_touch_what_is_stored(
    bad: bytes, embedder: Embedder, write_stories: WriteStories, tmp_path: Path
) -> None:
    settings = Settings(db=tmp_path / "db")
    index = Index(settings, embedder)
    seeds = write_stories(tmp_path / "seeds", [50, 51], sentences=3)
    ingest(seeds, index, embedder, settings)
    before = (index.revision, sorted(stored_chunk_ids(index)))
    path = tmp_path / "bad.txt"
    path.write_bytes(bad)

    report = ingest([path], index, embedder, settings)
    assert [f.path for f in report.failed] == [str(path)]
    assert (index.revision, sorted(stored_chunk_ids(index))) == before
    for article in load(seeds):
        assert index.get_article(article.id).text == article.text
