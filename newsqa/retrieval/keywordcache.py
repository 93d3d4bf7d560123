"""The keyword indexes on disk, so a new process does not rebuild them.

Building BM25 over chunks, sentences and word pairs for the 609-article
MultiHop-RAG corpus takes seconds to tens of seconds on 2 cores; every
`newsqa ask` would pay that before its first answer. The built index is saved
beside the store, keyed by what it was built from (the store's committed
articles and revision, see `Index.content_key`) and by everything that shapes
the build, and loaded when the key matches.

Nothing in the file can run code when read, because anyone who can drop a file
in the index folder must not get to run code as every later `ask`/`serve`
(earlier versions saved a pickle, which is exactly that). The file is an
uncompressed `.npz`: numeric 1-D arrays in numpy's .npy format, read with
`allow_pickle=False` after their headers are checked. Strings are UTF-8 bytes in
uint8 arrays (with end offsets, or one term a line for vocabularies: decoding one
blob is ~5x faster than JSON strings); the rest (chunk metadata, BM25 parameters,
counts) is a JSON document in one more uint8 member. `_pack`/`_unpack` spell out
the mapping to and from a `KeywordIndex`, and everything read is checked
(members, dtypes, lengths, value ranges, JSON types) before it is used: any
mismatch logs one warning and the index is rebuilt, never half-trusted. Old
`*.pkl` files are never opened, and deleted when a new file is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..config import Settings
from ..store.embedding import cache_dir
from ..store.index import ChunkTable
from .keywords import KeywordIndex, SentenceIndex, SentenceTerms

CACHE_VERSION = 2  # with the source hash below, any change to how it is built
FORMAT = 2  # the layout `_pack` writes
SUFFIX = ".npz"
log = logging.getLogger("newsqa.keywordcache")  # the name its warnings have always had

_I8 = (np.dtype(np.int64).str,)
_INTS = (np.dtype(np.int32).str, np.dtype(np.int64).str)
_FLOATS = (np.dtype(np.float32).str, np.dtype(np.float64).str)
_F8 = (np.dtype(np.float64).str,)
_U1 = (np.dtype(np.uint8).str,)
_MEMBER = re.compile(r"[a-z_]+(\.[a-z0-9_]+)*\.npy")
_BM25_METHODS = ("robertson", "lucene", "atire")  # BM25L/BM25+ keep more state: not saved
_INT_META = ("start", "end", "chunk_index", "text_offset", "published_date", "published_ts",
             "n_tokens")
_STR_META = ("article_id", "title", "source", "url", "published_iso", "text")


class Unusable(ValueError):
    """A cache file that is not exactly what `_pack` writes: ignored and rebuilt."""


def cache_folder(settings: Settings) -> Path:
    """Beside an embedded index; per server URL and collection in the user cache otherwise."""
    if not settings.chroma_url:
        return Path(settings.db) / "newsqa-cache"
    where = f"{settings.chroma_url}|{settings.collection}".encode()
    return cache_dir() / "keyword" / hashlib.sha256(where).hexdigest()[:16]


def cache_key(content: str, revision: str, shape: str) -> str:
    """Changes with the committed articles, the revision, the build settings and the code.

    `content` (Index.content_key) changes with every commit even when the writer
    dies before bumping the revision; the revision covers writes that keep the
    committed pairs (same content rewritten with other search texts).
    """
    raw = f"{CACHE_VERSION}|{_code_hash()}|{content}|{revision}|{shape}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


@lru_cache(maxsize=1)
def _code_hash() -> str:
    # A changed tokenizer or index layout must never meet an old file: hash the source.
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in (here.parent / "text" / "lexical.py", here / "query.py", here / "keywords.py",
                 here / "keywordcache.py"):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load(folder: Path, key: str) -> KeywordIndex | None:
    """The saved index for `key`, or None (missing, or unusable: then with a warning)."""
    path = folder / f"keyword-{key}{SUFFIX}"
    try:
        if not _plain_folder(folder):
            return None
        doc, arrays = _read(path)
        return _unpack(doc, arrays, key)
    except FileNotFoundError:
        return None
    except Exception as exc:  # anything wrong with the file: rebuild, say so in one line
        log.warning("ignoring unusable keyword cache %s (%s: %s); rebuilding it",
                    path, type(exc).__name__, exc)
        return None


def save(folder: Path, key: str, keyword: KeywordIndex) -> None:
    """Save for the next process (best effort: a read-only folder still answers, slower)."""
    if not len(keyword.table):
        return  # an empty store builds in no time
    path = folder / f"keyword-{key}{SUFFIX}"
    try:
        doc, arrays = _pack(keyword, key)
        folder.mkdir(parents=True, exist_ok=True)
        if _plain_folder(folder):
            _write(folder, path, doc, arrays)
            _drop_others(folder, path)
    except Exception as exc:  # never fail the search that built it
        log.warning("cannot write keyword cache %s (%s: %s)", path, type(exc).__name__, exc)


def _plain_folder(folder: Path) -> bool:
    """Refuse a symlinked cache folder: saving deletes the other keyword-* files in it."""
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(mode):
        return True
    log.warning("ignoring keyword cache folder %s: not a plain folder (a symlink?)", folder)
    return False


# -- the file: an uncompressed .npz of 1-D numeric arrays, one of them JSON bytes ----------


def _write(folder: Path, path: Path, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    raw = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    members = {"doc": np.frombuffer(raw, dtype=np.uint8), **arrays}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".keyword-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **members)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _drop_others(folder: Path, keep: Path) -> None:
    """Earlier keys are dead weight; pickles of earlier versions are never to be read."""
    for old in [*folder.glob("keyword-*.pkl"), *folder.glob(f"keyword-*{SUFFIX}")]:
        if old != keep:
            old.unlink(missing_ok=True)


def _read(path: Path) -> tuple[Any, dict[str, np.ndarray]]:
    """The JSON document and the arrays, each .npy header checked before its data is read."""
    with zipfile.ZipFile(io.BytesIO(_read_regular(path))) as archive:
        arrays: dict[str, np.ndarray] = {}
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not _MEMBER.fullmatch(info.filename):
                raise Unusable(f"unexpected member {info.filename!r}")
            name = info.filename[: -len(".npy")]
            if name in arrays:
                raise Unusable(f"member {name!r} twice")
            with archive.open(info) as member:
                arrays[name] = _read_array(member, info.file_size, name)
    doc = arrays.pop("doc", None)
    if doc is None or doc.dtype.str not in _U1:
        raise Unusable("no JSON document")
    return json.loads(doc.tobytes().decode("utf-8")), arrays


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file at `path` itself (no symlink, no FIFO to hang on)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unusable("not a regular file")
        return f.read()


def _read_array(member: IO[bytes], size: int, name: str) -> np.ndarray:
    """A 1-D numeric array whose header promises exactly the bytes the member holds."""
    fmt = np.lib.format
    version = fmt.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(member)
    else:
        raise Unusable(f"{name}: .npy version {version}")
    if dtype.hasobject or dtype.kind not in "iuf" or len(shape) != 1 or fortran:
        raise Unusable(f"{name}: not a 1-D numeric array ({dtype}, shape {shape})")
    if member.tell() + shape[0] * dtype.itemsize != size:
        raise Unusable(f"{name}: header does not match the data")
    member.seek(0)
    array: np.ndarray = fmt.read_array(member, allow_pickle=False)
    return array


# -- KeywordIndex <-> JSON + arrays --------------------------------------------------------


def _pack(keyword: KeywordIndex, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Everything a loaded index needs that is not cheap to derive from the table."""
    table = keyword.table
    arrays: dict[str, np.ndarray] = {}
    bm25 = {"chunks": _pack_bm25(keyword.bm25, "chunks", arrays)}
    if keyword._sentences is not None:
        bm25["sentences"] = _pack_bm25(keyword._sentences.bm25, "sentences", arrays)
        arrays["sentences.owner"] = keyword._sentences.owner.astype(np.int64)
    if keyword._bigrams is not None:
        bm25["bigrams"] = _pack_bm25(keyword._bigrams, "bigrams", arrays)
    if keyword._titles is not None:
        bm25["titles"] = _pack_bm25(keyword._titles[0], "titles", arrays)
        arrays["titles.owner"] = keyword._titles[1].astype(np.int64)
    _put_texts(arrays, "table.ids", table.ids)
    _put_texts(arrays, "table.texts", table.texts)
    doc: dict[str, Any] = {
        "format": FORMAT, "key": key, "bm25": bm25,
        "table": {"size": len(table), "metadatas": table.metadatas,
                  "revision": table.revision, "content_key": table.content_key},
        "doc_freq": None, "sentence_terms": None,
        "article_rows": keyword._article_rows is not None,
    }
    if keyword._doc_freq is not None:
        doc["doc_freq"] = _put_lines(arrays, "doc_freq.terms", list(keyword._doc_freq))
        arrays["doc_freq.counts"] = np.fromiter(keyword._doc_freq.values(), dtype=np.int64)
    if keyword._sentence_ids is not None:
        vocab = _in_id_order(keyword._sentence_ids.vocab)
        doc["sentence_terms"] = _put_lines(arrays, "sentence_terms.vocab", vocab)
        arrays["sentence_terms.ids"] = keyword._sentence_ids.ids.astype(np.int64)
        arrays["sentence_terms.offsets"] = keyword._sentence_ids.offsets.astype(np.int64)
    if keyword._term_idf is not None:
        arrays["term_idf"] = keyword._term_idf.astype(np.float64)
    return doc, arrays


def _pack_bm25(model: Any, name: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """A bm25s model as its parameters, vocabulary (in id order) and CSC score arrays."""
    if model.method not in _BM25_METHODS or getattr(model, "nonoccurrence_array", None) is not None:
        raise ValueError(f"BM25 method {model.method!r} is not saved")
    params = {"k1": model.k1, "b": model.b, "delta": model.delta, "method": model.method,
              "idf_method": model.idf_method, "dtype": model.dtype,
              "int_dtype": model.int_dtype}
    scores = getattr(model, "scores", None)
    if scores is None:  # never indexed (nothing to index)
        return {"params": params, "vocab": None, "num_docs": 0}
    for part in ("data", "indices", "indptr"):
        arrays[f"{name}.{part}"] = np.asarray(scores[part])
    size = _put_lines(arrays, f"{name}.vocab", _in_id_order(model.vocab_dict))
    return {"params": params, "vocab": size, "num_docs": int(scores["num_docs"])}


def _put_texts(arrays: dict[str, np.ndarray], name: str, texts: list[str]) -> None:
    """Any strings: their UTF-8 concatenation and where each ends (in characters)."""
    arrays[f"{name}.utf8"] = np.frombuffer("".join(texts).encode("utf-8"), dtype=np.uint8)
    arrays[f"{name}.ends"] = np.cumsum([len(t) for t in texts], dtype=np.int64)


def _put_lines(arrays: dict[str, np.ndarray], name: str, terms: list[str]) -> int:
    """Terms (never a line break in one) as UTF-8 lines; returns how many."""
    joined = "\n".join(terms)
    if joined.count("\n") != max(len(terms) - 1, 0):
        raise ValueError(f"{name}: a term holds a line break")
    arrays[f"{name}.utf8"] = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
    return len(terms)


def _in_id_order(vocab: Mapping[str, int]) -> list[str]:
    """The terms by id; ids must be 0..n-1 so that a plain list restores them."""
    ordered = sorted(vocab, key=vocab.__getitem__)
    if not np.array_equal(np.fromiter((vocab[t] for t in ordered), dtype=np.int64,
                                      count=len(ordered)), np.arange(len(ordered))):
        raise ValueError("vocabulary ids are not 0..n-1")
    return ordered


def _unpack(doc: Any, arrays: dict[str, np.ndarray], key: str) -> KeywordIndex:
    """The index `_pack` described, every part checked; Unusable (or ValueError) if not."""
    doc = _dict(doc, "document")
    if doc.get("format") != FORMAT or doc.get("key") != key:
        raise Unusable("written for another format or key")
    members = _Members(arrays)
    table = _table(_dict(doc.get("table"), "table"), members, ChunkTable)
    n = len(table)
    bm25 = _dict(doc.get("bm25"), "bm25")
    chunks = _bm25(bm25.get("chunks"), "chunks", members, n)
    parts: dict[str, Any] = {}
    if "sentences" in bm25:
        parts["_sentences"] = _sentences(bm25["sentences"], members, n)
    if "bigrams" in bm25:
        parts["_bigrams"] = _bm25(bm25["bigrams"], "bigrams", members, n)
    if "titles" in bm25:
        titles = _bm25(bm25["titles"], "titles", members, None, required=n > 0)
        owner = members.take("titles.owner", _I8, n)
        _in_range(owner, "titles.owner", _docs(titles))
        parts["_titles"] = (titles, owner)
    parts.update(_term_tables(doc, members, n, parts.get("_sentences")))
    members.finish()
    keyword = KeywordIndex.assemble(table, chunks, **parts)
    if len(keyword.rows) != n:
        raise Unusable("chunk ids repeat")
    if doc.get("article_rows") is True:
        keyword.article_rows("")  # derived from the table, as the build did before saving
    return keyword


def _table(doc: dict[str, Any], members: _Members, make: Callable[..., Any]) -> Any:
    size = _count(doc.get("size"), "table size")
    ids = _take_texts(members, "table.ids", size)
    texts = _take_texts(members, "table.texts", size)
    metas = doc.get("metadatas")
    if not isinstance(metas, list) or len(metas) != size:
        raise Unusable("table metadatas")
    for meta in metas:
        _check_metadata(meta)
    revision, content = doc.get("revision"), doc.get("content_key")
    if not isinstance(revision, str) or not isinstance(content, str):
        raise Unusable("table revision")
    return make(ids=ids, texts=texts, metadatas=metas, revision=revision, content_key=content)


def _check_metadata(meta: Any) -> None:
    """What `passage_from` and the filters read, of the types they read it as."""
    if not isinstance(meta, dict) or not isinstance(meta.get("article_id"), str):
        raise Unusable("chunk metadata without an article id")
    if "start" not in meta or "end" not in meta:
        raise Unusable("chunk metadata without a span")
    for name in _INT_META:
        if name in meta and type(meta[name]) is not int:
            raise Unusable(f"chunk metadata {name!r} is not an integer")
    for name in _STR_META:
        if name in meta and not isinstance(meta[name], str):
            raise Unusable(f"chunk metadata {name!r} is not a string")


def _bm25(
    spec: Any, name: str, members: _Members, docs: int | None, required: bool = False
) -> Any:
    """A bm25s model rebuilt as bm25s.BM25.load does, from checked parameters and arrays.

    `docs` is the number of documents it must index (None: any); `required` says it
    must have been indexed even so (searches read its vocabulary unconditionally).
    """
    import bm25s  # deferred (it loads scipy): only when a saved index is read

    spec = _dict(spec, f"{name} BM25")
    model = bm25s.BM25(**_bm25_params(spec.get("params"), name))
    if spec.get("vocab") is None:  # saved before any index() call: only right for no documents
        if docs or required:
            raise Unusable(f"{name}: no postings for {docs} chunks")
        return model
    vocab = _take_lines(members, f"{name}.vocab", _count(spec["vocab"], f"{name} vocabulary"))
    num_docs = _count(spec.get("num_docs"), f"{name} documents")
    if docs is not None and num_docs != docs:
        raise Unusable(f"{name}: {num_docs} documents for {docs} chunks")
    data = members.take(f"{name}.data", _FLOATS)
    indices = members.take(f"{name}.indices", _INTS, len(data))
    indptr = members.take(f"{name}.indptr", _INTS)
    if not 1 <= len(indptr) <= len(vocab) + 1 or indptr[0] != 0 or indptr[-1] != len(data):
        raise Unusable(f"{name}: postings layout")
    if np.any(np.diff(indptr) < 0):
        raise Unusable(f"{name}: postings layout")
    _in_range(indices, f"{name}.indices", num_docs)
    model.vocab_dict = _ids_by_term(vocab, f"{name} vocabulary")
    model.unique_token_ids_set = set(range(len(vocab)))
    model.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": num_docs}
    model.nonoccurrence_array = None
    return model


def _docs(model: Any) -> int:
    scores = getattr(model, "scores", None)
    return int(scores["num_docs"]) if scores is not None else 0


def _bm25_params(params: Any, name: str) -> dict[str, Any]:
    params = _dict(params, f"{name} BM25 parameters")
    numbers = {k: params.get(k) for k in ("k1", "b", "delta")}
    if not all(type(v) in (int, float) and math.isfinite(v) for v in numbers.values()):
        raise Unusable(f"{name}: BM25 parameters")
    methods = (params.get("method"), params.get("idf_method"))
    if not all(m in _BM25_METHODS for m in methods):
        raise Unusable(f"{name}: BM25 method")
    if params.get("dtype") not in ("float32", "float64") or params.get("int_dtype") not in (
        "int32", "int64"
    ):
        raise Unusable(f"{name}: BM25 dtypes")
    return {**numbers, "method": methods[0], "idf_method": methods[1],
            "dtype": params["dtype"], "int_dtype": params["int_dtype"], "backend": "numpy"}


def _sentences(spec: Any, members: _Members, n: int) -> Any:
    model = _bm25(spec, "sentences", members, None)
    owner = members.take("sentences.owner", _I8)
    if len(owner) != _docs(model):
        raise Unusable("sentences: one owner per sentence")
    _in_range(owner, "sentences.owner", n)
    if np.any(np.diff(owner) < 0):
        raise Unusable("sentences.owner: not ascending")
    rows, starts = np.unique(owner, return_index=True)
    return SentenceIndex(bm25=model, owner=owner, starts=starts, chunk_rows=rows, size=n)


def _term_tables(
    doc: dict[str, Any], members: _Members, n: int, sentences: Any
) -> dict[str, Any]:
    """The reranker's tables: chunk document frequencies, sentence term ids, their IDFs."""
    parts: dict[str, Any] = {}
    if doc.get("doc_freq") is not None:
        terms = _take_lines(members, "doc_freq.terms", _count(doc["doc_freq"], "doc_freq"))
        counts = members.take("doc_freq.counts", _I8, len(terms))
        _in_range(counts, "doc_freq", n + 1)
        parts["_doc_freq"] = dict(zip(terms, counts.tolist(), strict=True))
        if len(parts["_doc_freq"]) != len(terms):
            raise Unusable("document frequencies: a term repeats")
    if doc.get("sentence_terms") is not None:
        size = _count(doc["sentence_terms"], "sentence terms")
        vocab = _ids_by_term(_take_lines(members, "sentence_terms.vocab", size), "sentence terms")
        ids = members.take("sentence_terms.ids", _I8)
        offsets = members.take("sentence_terms.offsets", _I8)
        _in_range(ids, "sentence_terms.ids", len(vocab))
        if not len(offsets) or offsets[0] != 0 or offsets[-1] != len(ids) or np.any(
            np.diff(offsets) < 0
        ):
            raise Unusable("sentence_terms.offsets")
        if sentences is not None and len(offsets) - 1 != len(sentences.owner):
            raise Unusable("sentence terms and sentences disagree")
        parts["_sentence_ids"] = SentenceTerms(vocab, ids, offsets)
        if "term_idf" in members:
            parts["_term_idf"] = members.take("term_idf", _F8, len(vocab))
    return parts


class _Members:
    """The archive's arrays, taken one by one with their checks; leftovers are an error."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self._left = dict(arrays)

    def __contains__(self, name: str) -> bool:
        return name in self._left

    def take(self, name: str, dtypes: Sequence[str], length: int | None = None) -> np.ndarray:
        array = self._left.pop(name, None)
        if array is None:
            raise Unusable(f"no member {name!r}")
        if array.dtype.str not in dtypes:
            raise Unusable(f"{name}: dtype {array.dtype} (expected {' or '.join(dtypes)})")
        if length is not None and len(array) != length:
            raise Unusable(f"{name}: length {len(array)}, expected {length}")
        return array

    def finish(self) -> None:
        if self._left:
            raise Unusable(f"unexpected members {sorted(self._left)}")


def _in_range(values: np.ndarray, name: str, stop: int) -> None:
    if len(values) and (int(values.min()) < 0 or int(values.max()) >= stop):
        raise Unusable(f"{name}: values outside 0..{stop - 1}")


def _ids_by_term(terms: list[str], what: str) -> dict[str, int]:
    found = dict(zip(terms, range(len(terms)), strict=True))
    if len(found) != len(terms):
        raise Unusable(f"{what}: a term repeats")
    return found


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Unusable(f"{what}: not an object")
    return value


def _count(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise Unusable(f"{what}: not a count")
    return value


def _utf8(members: _Members, name: str) -> str:
    return members.take(name, _U1).tobytes().decode("utf-8")


def _take_texts(members: _Members, name: str, count: int) -> list[str]:
    """`count` strings from `_put_texts`' blob and end offsets (each checked)."""
    joined = _utf8(members, f"{name}.utf8")
    ends = members.take(f"{name}.ends", _I8, count)
    if (ends[-1] if count else 0) != len(joined) or (count and (
            ends[0] < 0 or np.any(np.diff(ends) < 0))):
        raise Unusable(f"{name}: offsets do not match the text")
    bounds = ends.tolist()
    return [joined[a:b] for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]


def _take_lines(members: _Members, name: str, count: int) -> list[str]:
    joined = _utf8(members, f"{name}.utf8")
    lines = joined.split("\n") if count else []
    if len(lines) != count or (not count and joined):
        raise Unusable(f"{name}: {len(lines)} terms, expected {count}")
    return lines
