"""Every exception newsqa raises, in one hierarchy.

Callers catch `NewsQAError` to handle anything of ours; the CLI turns each into
a one-line message and a non-zero exit status instead of a traceback.
"""

from __future__ import annotations


class NewsQAError(Exception):
    """Base class: anything newsqa raises on purpose."""


class ConfigError(NewsQAError):
    """Settings that cannot work together (bad URL, missing key, unknown model)."""


class InputError(NewsQAError):
    """An input file or record newsqa cannot read. The message names where."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


class ArticleNotFound(NewsQAError):
    def __init__(self, article_id: str) -> None:
        self.article_id = article_id
        super().__init__(f"no article with id {article_id!r} in the index")


class StoreError(NewsQAError):
    """The Chroma store is unreachable or in a state newsqa cannot use."""


class ModelMismatch(StoreError):
    """The index was built with another embedding model or chunking; mixing them is garbage."""


class EmbeddingError(NewsQAError):
    """The embedding model could not be loaded or verified (e.g. sha256 mismatch)."""


class LLMError(NewsQAError):
    """The language model could not give a usable reply."""


class LLMConnectionError(LLMError):
    """Timeouts and refused connections, after retries."""


class LLMRateLimited(LLMError):
    """HTTP 429 after retries."""


class LLMServerError(LLMError):
    """HTTP 5xx (or another non-success status) after retries."""


class LLMOutputError(LLMError):
    """The model's reply did not validate against the schema, even after one repair try."""


class CitationError(NewsQAError):
    """A citation could not be verified against its article."""
