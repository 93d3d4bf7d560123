"""Index mechanics on real Chroma (embedded and server) with random unit vectors.

The vectors are random so these tests check storage, commit and filtering
without depending on the embedding model; test_ingest.py runs the real model.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from newsqa.config import Settings
from newsqa.errors import ArticleNotFound, ModelMismatch, StoreError
from newsqa.models import Article, Chunk
from newsqa.store.index import Index, _manifest_metadata, chunk_id, in_flight

DIM = 8


@dataclass
class Space:
    """Which vectors an index holds; random ones stand in for a model here."""

    name: str = "random-test"
    dimension: int = DIM


def unit_vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, DIM)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def char_chunks(article: Article, size: int = 40) -> list[Chunk]:
    """Fixed-width chunks: index tests must not depend on the chunker."""
    text = article.text
    return [
        Chunk(
            article_id=article.id,
            index=i,
            text=text[s : s + size],
            start=s,
            end=min(len(text), s + size),
            n_tokens=10,
        )
        for i, s in enumerate(range(0, len(text), size))
    ]


def write(index: Index, article: Article, seed: int = 0) -> tuple[list[Chunk], np.ndarray]:
    chunks = char_chunks(article)
    vectors = unit_vectors(len(chunks), seed)
    index.write_article(article, chunks, vectors, [f"{article.title}\n{c.text}" for c in chunks])
    return chunks, vectors


def make_article(n: int, *, source: str = "Wire", text: str | None = None, **kw: object) -> Article:
    body = text or (f"Story {n} begins here.\r\nIt has ünïcode — and “quotes”.\n\n" * 3)
    return Article(
        title=f"Title {n}", source=source, url=f"https://example.com/{n}", text=body, **kw
    )  # type: ignore[arg-type]


def test_round_trip_keeps_text_and_facts_exact(store_settings: Settings) -> None:
    index = Index(store_settings, Space())
    article = make_article(
        1,
        published_at=dt.datetime(2023, 11, 27, 8, 45, tzinfo=dt.timezone.utc),
        metadata={"category": "tech", "score": 3},
    )
    chunks, _ = write(index, article)

    back = index.get_article(article.id)
    assert back.text == article.text
    assert back == article
    assert back.content_hash == article.content_hash
    [info] = index.articles()
    assert (info.id, info.title, info.source, info.chunks) == (
        article.id,
        "Title 1",
        "Wire",
        len(chunks),
    )
    assert info.published_at == article.published_at
    [hit] = index.dense_search(unit_vectors(1, 3)[0], k=1, where={"meta_category": "tech"})
    assert hit.article_id == article.id
    assert index.chunk_count() == len(chunks) == index.stored_chunk_count()


def test_dense_search_returns_exact_spans_and_cosine_scores(store_settings: Settings) -> None:
    index = Index(store_settings, Space())
    article = make_article(2, published_at=dt.date(2024, 1, 5))
    chunks, vectors = write(index, article)

    hits = index.dense_search(vectors[2], k=3, where=None)
    assert hits[0].chunk_id == chunk_id(article.id, article.content_hash, 2)
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    expected = [float(vectors[2] @ vectors[i]) for i in range(len(chunks))]
    for hit in hits:
        assert hit.text == article.text[hit.start : hit.end]
        i = int(hit.chunk_id.rsplit(":", 1)[1])
        assert hit.score == pytest.approx(expected[i], abs=1e-4)
        assert hit.published_at == dt.date(2024, 1, 5)
        assert hit.url == "https://example.com/2"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_where_filters_on_source_and_date(store_settings: Settings) -> None:
    index = Index(store_settings, Space())
    old = make_article(3, source="Alpha", published_at=dt.date(2023, 1, 1))
    new = make_article(
        4, source="Beta", published_at=dt.datetime(2024, 6, 1, 23, 30, tzinfo=dt.timezone.utc)
    )
    undated = make_article(5, source="Beta")
    for n, a in enumerate((old, new, undated)):
        write(index, a, seed=n)
    query = unit_vectors(1, 99)[0]

    beta = index.dense_search(query, k=50, where={"source": "Beta"})
    assert {h.article_id for h in beta} == {new.id, undated.id}
    since = index.dense_search(query, k=50, where={"published_date": {"$gte": 20240101}})
    assert {h.article_id for h in since} == {new.id}


def test_changed_article_replaces_its_chunks_without_orphans(store_settings: Settings) -> None:
    index = Index(store_settings, Space())
    first = make_article(6)
    write(index, first)
    changed = first.model_copy(update={"text": first.text + " A correction was added."})
    assert changed.id == first.id and changed.content_hash != first.content_hash
    chunks, vectors = write(index, changed, seed=1)

    assert index.article_hash(first.id) == changed.content_hash
    assert index.get_article(first.id).text == changed.text
    assert index.stored_chunk_count() == index.chunk_count() == len(chunks)
    hits = index.dense_search(vectors[0], k=100, where=None)
    assert {h.chunk_id.split(":")[1] for h in hits} == {changed.content_hash}


def test_dense_ids_match_dense_search(store_settings: Settings) -> None:
    """The id-only query the retriever uses ranks and scores exactly like the full one."""
    index = Index(store_settings, Space())
    write(index, make_article(9))
    write(index, make_article(10), seed=3)
    query = unit_vectors(1, 11)[0]
    full = index.dense_search(query, k=5, where=None)
    ids = index.dense_ids(query, 5, None, set(index.all_chunks().ids))
    assert [cid for cid, _ in ids] == [h.chunk_id for h in full]
    assert [s for _, s in ids] == pytest.approx([h.score for h in full])
    assert index.dense_ids(query, 5, None, set()) == []


def test_uncommitted_chunks_are_invisible_and_swept(store_settings: Settings) -> None:
    """What a crash between writing chunks and the manifest leaves behind."""
    index = Index(store_settings, Space())
    committed = make_article(7)
    write(index, committed)
    ghost = make_article(8)
    ghost_chunks = char_chunks(ghost)
    vectors = unit_vectors(len(ghost_chunks), 5)
    index._chunks.upsert(  # exactly what write_article does before its commit
        ids=[chunk_id(ghost.id, ghost.content_hash, c.index) for c in ghost_chunks],
        embeddings=vectors,
        documents=[c.text for c in ghost_chunks],
        metadatas=[
            {
                "article_id": ghost.id,
                "content_hash": ghost.content_hash,
                "start": c.start,
                "end": c.end,
                "text_offset": 0,
            }
            for c in ghost_chunks
        ],
    )

    hits = index.dense_search(vectors[0], k=2, where=None)
    assert len(hits) == 2 and all(h.article_id == committed.id for h in hits)
    # The retriever's id-only query: the ghost's own vector ranks its chunks first,
    # so k committed ids are only found by asking past them.
    known = set(index.all_chunks().ids)
    ids = index.dense_ids(vectors[0], 2, None, known)
    assert len(ids) == 2 and {cid for cid, _ in ids} <= known
    assert ghost.id not in {i.id for i in index.articles()}
    assert set(index.all_chunks().ids) == {
        chunk_id(committed.id, committed.content_hash, c.index) for c in char_chunks(committed)
    }
    assert index.sweep() == len(ghost_chunks)
    assert index.stored_chunk_count() == index.chunk_count()


def test_remove_deletes_article_and_chunks(store_settings: Settings) -> None:
    index = Index(store_settings, Space())
    keep, gone = make_article(9), make_article(10)
    write(index, keep)
    write(index, gone, seed=1)
    index.remove(gone.id)

    with pytest.raises(ArticleNotFound):
        index.get_article(gone.id)
    with pytest.raises(ArticleNotFound):
        index.remove(gone.id)
    assert [i.id for i in index.articles()] == [keep.id]
    assert index.stored_chunk_count() == len(char_chunks(keep))


def test_outlets_are_the_publishers_of_committed_articles(store_settings: Settings) -> None:
    """What the grounder leaves out of a question's subjects (grounding/support.py)."""
    index = Index(store_settings, Space())
    write(index, make_article(11, source="Shafaq News"))
    gone = make_article(12, source="Harbour Gazette")
    write(index, gone, seed=1)
    assert index.outlets() == ["Harbour Gazette", "Shafaq News"]
    index.remove(gone.id)
    assert index.outlets() == ["Shafaq News"]


def test_revision_changes_on_writes_seen_by_another_handle(store_settings: Settings) -> None:
    reader = Index(store_settings, Space())
    writer = Index(store_settings, Space())
    start = reader.revision
    assert reader.articles() == []
    article = make_article(11)
    write(writer, article)
    after_write = reader.revision
    assert after_write != start
    assert [i.id for i in reader.articles()] == [article.id]  # cache refreshed by revision
    writer.remove(article.id)
    assert reader.revision not in (start, after_write)
    assert reader.articles() == []


def test_all_chunks_is_parallel_lists_of_search_texts(store_settings: Settings) -> None:
    index = Index(store_settings, Space())
    article = make_article(12)
    chunks, _ = write(index, article)
    table = index.all_chunks()
    assert len(table) == len(table.texts) == len(table.metadatas) == len(chunks)
    assert table.revision == index.revision
    for i, cid in enumerate(table.ids):
        meta = table.metadatas[i]
        assert cid == chunk_id(article.id, article.content_hash, int(meta["chunk_index"]))
        assert table.texts[i].startswith("Title 12\n")
        passage = table.passage(i, 0.5)
        assert passage.text == article.text[passage.start : passage.end]
        assert all(v is not None and not isinstance(v, list) for v in meta.values())


def test_writes_larger_than_chroma_batch_limit(store_settings: Settings) -> None:
    index = Index(store_settings, Space())
    index._max_batch = 3  # the server's real limit is thousands; exercise the split
    article = make_article(13, text="word " * 200)
    chunks, _ = write(index, article)
    assert len(chunks) > 3 * 3
    assert index.stored_chunk_count() == len(chunks)


def test_other_model_or_chunking_is_refused_with_both_named(store_settings: Settings) -> None:
    write(Index(store_settings, Space()), make_article(14))
    with pytest.raises(ModelMismatch) as err:
        Index(store_settings, Space(name="other-model", dimension=16))
    message = str(err.value)
    assert "random-test" in message and "other-model" in message and "--db" in message
    with pytest.raises(ModelMismatch, match="overlap 10"):
        Index(Settings(**{**store_settings.__dict__, "chunk_overlap": 10}), Space())


def test_empty_index_adopts_a_new_model(store_settings: Settings) -> None:
    Index(store_settings, Space())
    index = Index(store_settings, Space(name="other", dimension=4))
    assert index.model == "other" and index.chunk_count() == 0


def test_bad_vectors_are_refused_before_anything_is_written(store_settings: Settings) -> None:
    index = Index(store_settings, Space())
    article = make_article(15)
    chunks = char_chunks(article)
    with pytest.raises(StoreError, match="shape"):
        index.write_article(article, chunks, unit_vectors(len(chunks) - 1, 0))
    assert index.stored_chunk_count() == 0 and index.articles() == []


def test_unreachable_server_is_a_clear_store_error(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(StoreError, match=f"cannot reach Chroma server at {url}"):
        Index(Settings(chroma_url=url), Space())


def test_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_text("not a folder")
    with pytest.raises(StoreError, match="not a folder"):
        Index(Settings(db=path), Space())


def never_bumped(index: Index, *args: object, **kwargs: object) -> object:
    """Index._bump_revision as a writer killed before each bump leaves it: not written."""
    return index._mark()


def test_content_key_follows_commits_even_without_a_revision_bump(
    store_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a writer killed between its manifest write and its revision bumps leaves."""
    index = Index(store_settings, Space())
    write(index, make_article(16))
    before, revision = index.content_key(), index.revision
    assert index.all_chunks().content_key == before
    with monkeypatch.context() as patch:
        patch.setattr(Index, "_bump_revision", never_bumped)  # the bumps never happen
        write(index, make_article(17), seed=2)
    reader = Index(store_settings, Space())
    assert reader.revision == revision
    committed = reader.content_key()
    assert committed != before and reader.all_chunks().content_key == committed
    with monkeypatch.context() as patch:
        patch.setattr(Index, "_bump_revision", never_bumped)
        index.remove(make_article(17).id)
    assert Index(store_settings, Space()).content_key() == before
    write(index, make_article(18, source="Other"), seed=3)
    assert index.content_key() not in (before, committed)
    assert index.revision != revision


def test_a_reader_at_an_in_flight_revision_sees_commits_behind_it(
    store_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer killed before its last bump leaves the revision it began with: a reader
    that read the manifest at that revision must still see what was committed after."""
    reader, writer = Index(store_settings, Space()), Index(store_settings, Space())
    first, second = make_article(23), make_article(24)
    write(writer, first)
    begin = Index._begin_write
    seen: list[str] = []

    def begin_then_read(self: Index) -> str:
        began = begin(self)
        assert [i.id for i in reader.articles()] == [first.id]  # read at the new revision
        seen.append(reader.content_key())
        return began

    with monkeypatch.context() as patch:
        patch.setattr(Index, "_begin_write", begin_then_read)
        patch.setattr(Index, "_end_write", lambda self, began: None)  # killed before it
        write(writer, second, seed=1)
    assert seen and in_flight(reader.revision)
    assert {i.id for i in reader.articles()} == {first.id, second.id}
    assert reader.content_key() != seen[0]
    assert reader.all_chunks().content_key == reader.content_key()
    assert {i.id for i in writer.articles()} == {first.id, second.id}


def test_a_write_ends_on_a_clean_revision_only_if_no_other_began_meanwhile(
    store_settings: Settings,
) -> None:
    """Another write's bump since this one began means that one may still be in flight
    (or killed): the revision stays in flight until a write ends alone or a sweep runs."""
    a, b = Index(store_settings, Space()), Index(store_settings, Space())
    assert not in_flight(a.revision)
    began_a = a._begin_write()
    assert in_flight(b.revision)
    began_b = b._begin_write()
    a._end_write(began_a)
    assert in_flight(b.revision)  # b is still writing
    b._end_write(began_b)
    assert in_flight(b.revision)  # a's last bump came after b began
    write(a, make_article(25))
    assert not in_flight(b.revision)  # a write that ends alone settles it
    b._begin_write()  # and is killed: never ends
    assert in_flight(a.revision)
    assert a.sweep() == 0 and not in_flight(b.revision)


def full_reads(patch: pytest.MonkeyPatch) -> list[str]:
    """Count the reads of the whole manifest (every record: ~4 s at 1M chunks)."""
    load = Index._load_entries
    calls: list[str] = []

    def counted(self: Index, mark: object) -> object:
        calls.append(str(getattr(mark, "revision", mark)))
        return load(self, mark)  # type: ignore[arg-type]

    patch.setattr(Index, "_load_entries", counted)
    return calls


def test_a_reader_catches_up_with_another_handles_writes_without_reading_whole(
    store_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write, an update and a second write by another process reach a reader through the
    records stamped after what it holds, not by reading every record again."""
    reader, writer = Index(store_settings, Space()), Index(store_settings, Space())
    first, second = make_article(30), make_article(31)
    write(writer, first)
    assert [i.id for i in reader.articles()] == [first.id]
    reads = full_reads(monkeypatch)
    write(writer, second, seed=1)
    assert {i.id for i in reader.articles()} == {first.id, second.id}
    updated = make_article(30, text="The first story, corrected and a little longer. " * 3)
    write(writer, updated, seed=2)
    assert reader.article_hash(first.id) == updated.content_hash
    assert reader.content_key() == Index(store_settings, Space()).content_key()
    assert reads == []
    writer.remove(second.id)  # a removal leaves no record to find: read whole
    assert [i.id for i in reader.articles()] == [first.id] and len(reads) == 1


def test_an_index_written_before_the_stamps_is_read_whole_once_then_caught_up(
    store_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index an older newsqa wrote has no write stamps: its readers read the manifest
    whole at the first stamped write (nothing is missed), and by stamps after that."""
    writer, old = Index(store_settings, Space()), make_article(41)
    write(writer, old)
    old_record = _manifest_metadata(old, len(char_chunks(old)))
    del old_record["write_seq"]
    writer._manifest.upsert(ids=[old.id], embeddings=np.ones((1, 1), dtype=np.float32),
                            documents=[old.text], metadatas=[old_record])
    writer._manifest.modify(metadata={"newsqa_schema": 1, "revision": "an-old-revision"})
    reader = Index(store_settings, Space())
    assert len(reader.articles()) == 1
    reads = full_reads(monkeypatch)
    write(writer, make_article(42), seed=1)
    assert len(reader.articles()) == 2 and len(reads) == 1
    write(writer, make_article(43), seed=2)
    assert len(reader.articles()) == 3 and len(reads) == 1


def test_a_committed_view_stays_as_it_was_read_while_the_index_changes(
    store_settings: Settings,
) -> None:
    """A search holds one `Committed` from start to end: a write or a removal by the same
    handle meanwhile must not change what it says (it shares the manifest cache)."""
    index = Index(store_settings, Space())
    first, second = make_article(39), make_article(40)
    write(index, first)
    view = index.committed()
    write(index, second, seed=1)
    index.remove(first.id)
    assert view.chunk_ids(second.id) == []
    assert view.chunk_ids(first.id) == [chunk_id(first.id, first.content_hash, i)
                                        for i in range(len(char_chunks(first)))]
    now = index.committed()
    assert now.chunk_ids(first.id) == [] and len(now.chunk_ids(second.id)) > 0


def test_a_write_that_overlapped_another_is_found_by_a_reader_that_looked_between(
    store_settings: Settings,
) -> None:
    """A began before B; B ended alone (a clean revision) and the reader caught up there;
    A committed an update after that with an older stamp, then C ended alone. The reader
    must see A's update although it never looked while the revision was in flight."""
    reader, a, b = (Index(store_settings, Space()) for _ in range(3))
    write(b, make_article(32))
    assert len(reader.articles()) == 1
    began_a = a._begin_write()
    write(b, make_article(33), seed=1)
    assert not in_flight(reader.revision) and len(reader.articles()) == 2
    late = make_article(32, text="Story 32, updated while another write ran. " * 3)
    a._manifest.upsert(ids=[late.id], embeddings=np.ones((1, 1), dtype=np.float32),
                       documents=[late.text],
                       metadatas=[_manifest_metadata(late, 1, began_a.seq)])
    a._end_write(began_a)
    write(b, make_article(35), seed=2)
    assert not in_flight(reader.revision)
    assert reader.article_hash(late.id) == late.content_hash
    assert len(reader.articles()) == 3


def test_a_record_the_stamps_miss_is_caught_by_the_count(store_settings: Settings) -> None:
    """The stamps live in a read-modify-write of the collection's metadata, which two
    writers can interleave: a record committed without a newer stamp is still found."""
    reader, writer = Index(store_settings, Space()), Index(store_settings, Space())
    write(writer, make_article(36))
    assert len(reader.articles()) == 1
    stray = make_article(37)
    writer._manifest.upsert(ids=[stray.id], embeddings=np.ones((1, 1), dtype=np.float32),
                            documents=[stray.text], metadatas=[_manifest_metadata(stray, 0)])
    write(writer, make_article(38), seed=1)
    assert {i.id for i in reader.articles()} == {make_article(n).id for n in (36, 37, 38)}


def test_content_key_reads_the_manifest_when_an_article_has_two_contents_on_disk(
    store_settings: Settings,
) -> None:
    """A killed update leaves both contents' chunks; only the manifest says which counts."""
    from newsqa.store.index import ArticleWrite

    index = Index(store_settings, Space())
    old = make_article(19)
    write(index, old)
    before = Index(store_settings, Space()).content_key()
    new = make_article(19, text="A corrected story, longer than the first one was. " * 4)
    assert new.id == old.id and new.content_hash != old.content_hash
    chunks = char_chunks(new)
    records = index._records(ArticleWrite(new, chunks, unit_vectors(len(chunks), 4)))
    index._chunks.upsert(ids=records.ids, embeddings=records.vectors,
                         documents=records.documents, metadatas=records.metadatas)
    assert Index(store_settings, Space()).content_key() == before  # written, not committed
    index._manifest.upsert(ids=[new.id], embeddings=np.ones((1, 1), dtype=np.float32),
                           documents=[new.text], metadatas=[_manifest_metadata(new, len(chunks))])
    reader = Index(store_settings, Space())  # committed; the old chunks and revision remain
    after = reader.content_key()
    assert after != before and reader.all_chunks().content_key == after
    assert reader.sweep() == len(char_chunks(old))
    assert Index(store_settings, Space()).content_key() == after
