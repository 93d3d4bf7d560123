"""newsqa: answers and summaries over news articles that a reader can check.

    from newsqa import NewsQA
    qa = NewsQA(db=".newsqa")
    qa.ingest(["seeds/"])
    print(qa.ask("Who did Qaani meet in Baghdad?").answer)

Heavy libraries (chromadb, onnxruntime, openai) load on first use, so
`import newsqa` and `newsqa --help` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Settings
from .errors import NewsQAError
from .models import (
    Answer,
    Article,
    Chunk,
    Citation,
    IngestReport,
    Passage,
    RejectedCitation,
    Summary,
    Timeline,
    TimelineEvent,
    Usage,
)

if TYPE_CHECKING:
    from .app.api import NewsQA

__all__ = [
    "Answer",
    "Article",
    "Chunk",
    "Citation",
    "IngestReport",
    "NewsQA",
    "NewsQAError",
    "Passage",
    "RejectedCitation",
    "Settings",
    "Summary",
    "Timeline",
    "TimelineEvent",
    "Usage",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "NewsQA":
        # Deferred for start-up time: `import newsqa` stays light (models, config, errors);
        # the store, retrieval and engines load on first use of NewsQA.
        from .app.api import NewsQA

        return NewsQA
    raise AttributeError(f"module 'newsqa' has no attribute {name!r}")
