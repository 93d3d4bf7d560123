"""Settings from arguments and the environment (NEWSQA_*, OPENAI_*).

Explicit arguments win over the environment, the environment over defaults.
Reading only: newsqa never writes `os.environ`, which belongs to the host process
(threads are set where newsqa owns the work: threads.py, embedding.py; tiktoken's
offline files are read directly: chunking.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_DB = ".newsqa"
DEFAULT_COLLECTION = "newsqa"
DEFAULT_EMBEDDING = "minilm"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Settings:
    """Everything that decides where data lives and which models run."""

    db: Path = field(default_factory=lambda: Path(DEFAULT_DB))
    chroma_url: str | None = None
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
    context_window: int | None = None  # tokens; None: known per model, else 8192

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
            collection=env.get("NEWSQA_COLLECTION") or DEFAULT_COLLECTION,
            embedding=env.get("NEWSQA_EMBEDDING") or DEFAULT_EMBEDDING,
            chunk_tokens=_env_int(env, "NEWSQA_CHUNK_TOKENS", cls.chunk_tokens),
            chunk_overlap=_env_int(env, "NEWSQA_CHUNK_OVERLAP", cls.chunk_overlap),
            llm=llm,
            openai_api_key=api_key,
            openai_base_url=base_url,
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "db" in clean:
            clean["db"] = Path(clean["db"])
        if clean.get("llm") in ("extractive", "none", "offline"):
            clean["llm"] = None
            overrides_llm_none = True
        else:
            overrides_llm_none = False
        settings = replace(settings, **clean)
        if overrides_llm_none:
            settings = replace(settings, llm=None)
        settings.validate()
        return settings

    def validate(self) -> None:
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
    raw = env.get(name) or ""
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
