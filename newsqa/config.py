"""Settings from arguments and the environment (NEWSQA_*, OPENAI_*): one tree.

`Settings` holds where data lives and which models run; `Settings.retrieval` the
retrieval levers (`RetrievalSettings`, NEWSQA_RETRIEVAL_<FIELD>). Both are frozen
pydantic dataclasses: values are checked (and "5" read as 5) when built, and
`dataclasses.replace` still works on them, as the benchmarks and tests use it.
The environment is read once, by `Settings.from_env`; the parts (retriever,
extractive engine) are handed the tree and never read `os.environ` themselves.

Explicit arguments win over the environment, the environment over defaults.
Reading only: newsqa never writes `os.environ`, which belongs to the host process
(threads are set where newsqa owns the work: threads.py, embedding.py; tiktoken's
offline files are read directly: chunking.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic.dataclasses import dataclass

from .errors import ConfigError

N = TypeVar("N", int, float)

DEFAULT_DB = ".newsqa"
DEFAULT_COLLECTION = "newsqa"
DEFAULT_EMBEDDING = "minilm"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"

_ENV_PREFIX = "NEWSQA_RETRIEVAL_"


@dataclass(frozen=True)
class RetrievalSettings:
    """The retrieval levers, each measured on MultiHop-RAG (benchmarks/retrieval_levers.py).

    `Settings.retrieval`; every field can be set from the environment as
    NEWSQA_RETRIEVAL_<FIELD> (e.g. NEWSQA_RETRIEVAL_HINTS=0 turns off reading
    publishers and dates out of the question). Also known as `FusionWeights`.
    """

    keyword: float = 1.0
    dense: float = 0.1
    rrf_k: int = 60
    candidates: int = 50  # per retriever, before fusion
    max_per_article: int = 5  # first pass of diversity; later slots fill in rank order
    fusion: str = "convex"  # "rrf" (weighted ranks) | "convex" (weighted normalised scores)
    dense_candidates: int = 100  # one dense query; named-source slots reuse its hits
    hints: bool = True  # publishers and days named in the question get their own slots
    mention_slots: int = 5  # passages per named publisher/day before the global ranking
    mention_min_chunks: int = 1  # a derived filter keeping fewer chunks is dropped
    clause_weight: float = 1.0  # extra BM25 weight of the words about that publisher
    drop_question_words: bool = False  # "report", "article", "suggest"... out of BM25 queries
    sentence_weight: float = 0.5  # weight of a chunk's best sentence (BM25) beside the chunk's
    bigram_weight: float = 0.5  # weight of BM25 over adjacent term pairs
    title_weight: float = 0.0  # weight of the article title's BM25 (an article prior)
    dense_in_mentions: bool = True  # dense hits also count inside per-publisher sub-rankings
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    rerank: bool = True  # the learned second stage (retrieval/rerank.py) reorders the pool
    rerank_pool: int = 70  # first-stage passages the second stage sees
    rerank_articles: int = 20  # the articles of the pool's first N passages join it whole
    rerank_max: int = 150  # ... until the pool holds this many (long articles at scale)
    ranker: str = ""  # a LightGBM model file for the second stage ("" = the shipped one)
    # For a one-part question naming no publisher or day (retrieval/search.py,
    # `single_story`: unlike what the ranker learned from), the second stage's weight in
    # a blend of its rank with the first stage's: 0 keeps the first stage's order, 1 the
    # ranker's.
    rerank_single: float = 0.0
    # The first stage over a pool from the persistent keyword index (retrieval/keywordpool.py),
    # not over every chunk: no rebuild after a write. Measured to hold the whole-collection
    # path's quality (benchmarks/RESULTS.md, issue 16); 0 searches the whole collection.
    pool: bool = True
    pool_candidates: int = 150  # keyword hits under the caller's filters
    pool_mention_candidates: int = 30  # keyword hits per named publisher/day filter
    pool_cache_chunks: int = 10_000  # parsed records a searcher keeps (~7.5 KB each)

    def keyword_build(self) -> str:
        """What the saved keyword index depends on: other fields change no stored array."""
        sides = (bool(self.sentence_weight), bool(self.bigram_weight), bool(self.title_weight))
        return repr((self.bm25_k1, self.bm25_b, sides, self.rerank))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetrievalSettings:
        """Defaults overridden by NEWSQA_RETRIEVAL_* variables; a bad value names its variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(_ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse_field(f.name, type(f.default).__name__, raw)
        weights = cls(**values)
        if weights.fusion not in ("rrf", "convex"):
            raise ConfigError(f"{_ENV_PREFIX}FUSION must be rrf or convex, got {weights.fusion!r}")
        return weights


def _parse_field(name: str, kind: str, raw: str) -> Any:
    try:
        if kind == "bool":
            return _flag(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{_ENV_PREFIX}{name.upper()}: not a valid {kind}: {raw!r}") from None


FusionWeights = RetrievalSettings  # the name the retrieval code and benchmarks grew up with


@dataclass(frozen=True)
class Settings:
    """Everything that decides where data lives, which models run and how retrieval ranks."""

    db: Path = field(default_factory=lambda: Path(DEFAULT_DB))
    chroma_url: str | None = None
    # With chroma_url: the folder of the persistent keyword index every process shares
    # (one ingest worker writes, query servers read; shared storage across machines).
    # Embedded folders keep theirs inside `db`. None with a server: no persistent index.
    keyword_dir: Path | None = None
    collection: str = DEFAULT_COLLECTION
    embedding: str = DEFAULT_EMBEDDING
    chunk_tokens: int = 256
    chunk_overlap: int = 20
    top_k: int = 8
    llm: str | None = None  # None: extractive; else a model name served over the OpenAI API
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    llm_timeout: float = 60.0
    llm_max_retries: int = 3
    # One re-ask for the claims that failed grounding (instructor's re-ask on a validation
    # error). Off (NEWSQA_LLM_REASK=0) for a slow local model: with a 1.5B model it cost
    # ~20-30 s a question and won back 1 claim in 15 (benchmarks/RESULTS.md, issue 15).
    llm_reask: bool = True
    context_window: int | None = None  # tokens; None: known per model, else 8192
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read the environment, then apply explicit (non-None) overrides."""
        env = os.environ
        api_key = env.get("OPENAI_API_KEY") or None
        base_url = env.get("OPENAI_BASE_URL") or env.get("OPENAI_API_BASE") or None
        llm = env.get("NEWSQA_LLM") or None
        if llm is None and (api_key or base_url):
            llm = env.get("NEWSQA_MODEL") or DEFAULT_OPENAI_MODEL
        if llm in ("extractive", "none", "offline"):
            llm = None
        settings = cls(
            db=Path(env.get("NEWSQA_DB") or DEFAULT_DB),
            chroma_url=env.get("NEWSQA_CHROMA_URL") or None,
            keyword_dir=Path(env["NEWSQA_KEYWORD_DIR"]) if env.get("NEWSQA_KEYWORD_DIR") else None,
            collection=env.get("NEWSQA_COLLECTION") or DEFAULT_COLLECTION,
            embedding=env.get("NEWSQA_EMBEDDING") or DEFAULT_EMBEDDING,
            chunk_tokens=_env_int(env, "NEWSQA_CHUNK_TOKENS", cls.chunk_tokens),
            chunk_overlap=_env_int(env, "NEWSQA_CHUNK_OVERLAP", cls.chunk_overlap),
            llm=llm,
            openai_api_key=api_key,
            openai_base_url=base_url,
            llm_timeout=_env_number(env, "NEWSQA_LLM_TIMEOUT", cls.llm_timeout, float),
            llm_max_retries=_env_number(env, "NEWSQA_LLM_MAX_RETRIES", cls.llm_max_retries, int),
            llm_reask=_env_flag(env, "NEWSQA_LLM_REASK", cls.llm_reask),
            retrieval=RetrievalSettings.from_env(env),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        llm_none = clean.get("llm") in ("extractive", "none", "offline")
        if llm_none:
            clean["llm"] = None
        try:
            settings = replace(settings, **clean)
        except ValidationError as exc:
            raise ConfigError(f"invalid setting: {exc}") from None
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.llm_timeout > 0 or self.llm_max_retries < 0:
            raise ConfigError("NEWSQA_LLM_TIMEOUT must be positive and NEWSQA_LLM_MAX_RETRIES at "
                              f"least 0, got {self.llm_timeout} and {self.llm_max_retries}")
        if self.chunk_tokens < 16:
            raise ConfigError(f"chunk_tokens must be at least 16, got {self.chunk_tokens}")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise ConfigError(
                f"chunk_overlap must be in [0, chunk_tokens/2), got {self.chunk_overlap}"
            )
        if self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k}")
        if self.chroma_url and not self.chroma_url.startswith(("http://", "https://")):
            raise ConfigError(f"chroma URL must start with http:// or https://: {self.chroma_url}")


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    return _env_number(env, name, default, int)


def _env_number(env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
    raw = env.get(name) or ""
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None


def _env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    try:
        return _flag(raw)
    except ValueError:
        raise ConfigError(f"{name} must be 1 or 0 (true or false), got {raw!r}") from None


def _flag(raw: str) -> bool:
    """An on/off value as the environment writes it; ValueError for anything else."""
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
