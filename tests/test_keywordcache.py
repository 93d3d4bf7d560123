"""The keyword indexes are saved beside the store and reused by the next process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from newsqa import Article, NewsQA
from newsqa.retrieval import KeywordIndex, keywordcache
from newsqa.store.index import Index

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
QUESTION = "How many troops were sent to Kuwait?"


@pytest.fixture(autouse=True)
def _whole_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the saved whole-collection keyword index: the pool (the
    default since issue 16) never builds it."""
    monkeypatch.setenv("NEWSQA_RETRIEVAL_POOL", "0")


def _cached(db: Path) -> list[Path]:
    return sorted((db / "newsqa-cache").glob("keyword-*.npz"))


def _ids(qa: NewsQA) -> list[str]:
    return [p.chunk_id for p in qa.search(QUESTION, top_k=5)]


def _searched_seeds(db: Path) -> list[str]:
    """A store of the seeds, searched once (so its keyword index is saved)."""
    with NewsQA(db=db) as qa:
        qa.ingest([SEEDS])
        return _ids(qa)


def _forbid_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_rebuild(self: Index) -> None:
        raise AssertionError("the keyword index was rebuilt although a saved one matched")

    monkeypatch.setattr(Index, "all_chunks", no_rebuild)


def test_a_new_process_loads_the_saved_index_instead_of_rebuilding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db"
    first = _searched_seeds(db)
    assert len(_cached(db)) == 1
    _forbid_rebuild(monkeypatch)
    with NewsQA(db=db) as qa:
        assert _ids(qa) == first


def test_a_write_makes_a_new_index_and_drops_the_old_file(tmp_path: Path) -> None:
    db = tmp_path / "db"
    with NewsQA(db=db) as qa:
        qa.ingest([SEEDS])
        _ids(qa)
        before = _cached(db)
        qa.ingest([Article(title="Troops", source="Wire", text="Kuwait received 90 troops.")])
        assert any("Kuwait received" in p.text for p in qa.search(QUESTION, top_k=8))
    after = _cached(db)
    assert len(after) == 1 and after != before


def test_a_damaged_file_is_ignored_and_replaced(tmp_path: Path) -> None:
    db = tmp_path / "db"
    with NewsQA(db=db) as qa:
        qa.ingest([SEEDS])
        first = _ids(qa)
    (path,) = _cached(db)
    path.write_bytes(b"not a pickle")
    with NewsQA(db=db) as qa:
        assert _ids(qa) == first
    assert path.read_bytes() != b"not a pickle"


def test_weights_that_change_no_stored_array_share_the_saved_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db"
    _searched_seeds(db)
    _forbid_rebuild(monkeypatch)
    monkeypatch.setenv("NEWSQA_RETRIEVAL_DENSE", "0.3")
    monkeypatch.setenv("NEWSQA_RETRIEVAL_RERANK_POOL", "20")
    with NewsQA(db=db) as qa:
        assert _ids(qa)
    monkeypatch.setenv("NEWSQA_RETRIEVAL_BM25_K1", "1.5")  # this one changes every score
    with NewsQA(db=db) as qa, pytest.raises(AssertionError, match="rebuilt"):
        _ids(qa)


def _bm25_parts(model: Any) -> tuple[object, ...]:
    scores = model.scores
    return (model.k1, model.b, model.delta, model.method, model.idf_method, model.dtype,
            model.int_dtype, model.vocab_dict, model.unique_token_ids_set, scores["num_docs"],
            *(scores[k].dtype for k in ("data", "indices", "indptr")),
            *(scores[k].tolist() for k in ("data", "indices", "indptr")))


def _parts(keyword: KeywordIndex) -> dict[str, object]:
    """Everything a search reads from the index, in comparable form."""
    sentences, terms = keyword.sentences(), keyword.sentence_terms()
    return {
        "table": keyword.table, "bm25": _bm25_parts(keyword.bm25),
        "sources": keyword.sources.tolist(), "dates": keyword.dates.tolist(),
        "source_names": keyword.source_names, "rows": keyword.rows,
        "sentences": (_bm25_parts(sentences.bm25), sentences.owner.tolist(),
                      sentences.starts.tolist(), sentences.chunk_rows.tolist(), sentences.size),
        "bigrams": _bm25_parts(keyword._bigrams), "doc_freq": keyword._doc_freq,
        "sentence_terms": (terms.vocab, terms.ids.tolist(), terms.offsets.tolist()),
        "term_idf": keyword.term_idf().tolist(), "article_rows": keyword._article_rows,
    }


def test_the_saved_file_restores_exactly_what_was_built(tmp_path: Path) -> None:
    db = tmp_path / "db"
    with NewsQA(db=db) as qa:
        qa.ingest([SEEDS])
        built = qa.retriever.keyword_index()
    (path,) = _cached(db)
    loaded = keywordcache.load(path.parent, path.stem.removeprefix("keyword-"))
    assert loaded is not None and loaded is not built
    assert loaded._split is None  # tokens are not saved: nothing a search needs
    assert _parts(loaded) == _parts(built)
    renamed = path.with_name("keyword-another.npz")  # a file under a key it was not saved for
    renamed.write_bytes(path.read_bytes())
    assert keywordcache.load(path.parent, "another") is None
