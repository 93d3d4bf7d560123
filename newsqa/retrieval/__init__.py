"""Retrieval: which passages of the collection answer a question.

The modules import only downward:

    search.py        Retriever: the first stage (BM25 + dense, filters, fusion, a turn
                     per named publisher/day, diversity) and the call to the second
       |  |  |
       |  |  rerank.py       the learned second stage: per-candidate features, the
       |  |                  shipped LightGBM model (rankers/), scoring
       |  keywordpool.py     the first stage's pool from the persistent keyword index
       keywordcache.py       the in-memory keyword index saved and loaded (no pickle)
           |
    keywords.py      Filters, KeywordIndex, SentenceIndex and the shared helpers

training.py fits the ranker (benchmarks/train_ranker.py); nothing at run time imports
it. The levers are `Settings.retrieval` (newsqa.config.RetrievalSettings, also known
as FusionWeights), handed to the Retriever with the settings.
"""

from ..config import FusionWeights, RetrievalSettings
from .keywords import (
    Filters,
    KeywordIndex,
    SentenceIndex,
    SentenceTerms,
    SplitUnits,
    _split_units,
    bigrams,
    bm25_scores,
    date_key,
    idf_weight,
    parse_date,
    passage_text,
    query_terms,
    ranges,
    top_rows,
)
from .rerank import MODEL_FILE, FirstStage, MentionRanking, Ranker, build_features, load_ranker
from .search import (
    Ranked,
    Retriever,
    _convex,
    _rrf,
    diversify,
    interleave,
    mention_masks,
    whole_articles,
)

__all__ = [
    "MODEL_FILE",
    "Filters",
    "FirstStage",
    "FusionWeights",
    "KeywordIndex",
    "MentionRanking",
    "Ranked",
    "Ranker",
    "RetrievalSettings",
    "Retriever",
    "SentenceIndex",
    "SentenceTerms",
    "SplitUnits",
    "_convex",
    "_rrf",
    "_split_units",
    "bigrams",
    "bm25_scores",
    "build_features",
    "date_key",
    "diversify",
    "idf_weight",
    "interleave",
    "load_ranker",
    "mention_masks",
    "parse_date",
    "passage_text",
    "query_terms",
    "ranges",
    "top_rows",
    "whole_articles",
]
