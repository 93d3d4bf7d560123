"""Every exception newsqa raises, in one hierarchy.

Callers catch `NewsQAError` to handle anything of ours; the CLI turns each into
a one-line message and a non-zero exit status instead of a traceback.
"""

from __future__ import annotations


def quote(name: object) -> str:
    """A path or id as an error message shows it: repr-style, so a newline, quote or
    terminal escape in a file name can neither split the one line the CLI prints nor
    fake another."""
    return repr(str(name))


def shown(name: object) -> str:
    """`name` bare when it is plain (printable, no spaces or quotes), else `quote`d:
    "WHERE: reason" stays as readable as ever for ordinary paths and unambiguous for
    odd ones, the way `ls` and shells show names."""
    text = str(name)
    plain = text.isprintable() and not any(c.isspace() or c in "'\"" for c in text)
    return text if text and plain else quote(text)


class NewsQAError(Exception):
    """Base class: anything newsqa raises on purpose."""


class ConfigError(NewsQAError):
    """Settings that cannot work together (bad URL, missing key, unknown model)."""


class InputError(NewsQAError):
    """An input file or record newsqa cannot read. The message names where."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{shown(where)}: {reason}")


class ArticleNotFound(NewsQAError):
    def __init__(self, article_id: str) -> None:
        self.article_id = article_id
        super().__init__(f"no article with id {quote(article_id)} in the index")


class StoreError(NewsQAError):
    """The Chroma store is unreachable or in a state newsqa cannot use."""


class IndexMissing(StoreError):
    """Reading found no index where one was named. Only ingest creates an index, so a
    typo in --db is an error rather than a new, empty archive that answers nothing."""


class IndexInUse(StoreError):
    """Another process holds the embedded index folder past NEWSQA_LOCK_TIMEOUT."""


class ModelMismatch(StoreError):
    """The index was built with another embedding model or chunking; mixing them is garbage."""


class EmbeddingError(NewsQAError):
    """The embedding model could not be loaded or verified (e.g. sha256 mismatch)."""


class SetupError(NewsQAError):
    """A part built on first use (embedding model, store, language model) failed for a
    reason newsqa has no check of its own for, e.g. a dependency that will not import.
    The message names the step; the original exception is chained as the cause."""

    def __init__(self, step: str, cause: BaseException) -> None:
        self.step = step
        super().__init__(f"{step} failed: {type(cause).__name__}: {cause}")


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
