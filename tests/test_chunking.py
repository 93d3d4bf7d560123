"""Chunking: exact offsets, the token bound, coverage and determinism, on any text."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsqa.models import Article
from newsqa.store.chunking import (
    chunk_article,
    chunk_text,
    count_tokens,
    search_text,
)
from newsqa.text.sentences import sentence_spans

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def check_invariants(text: str, chunks: list, max_tokens: int) -> None:
    covered = bytearray(len(text))
    for number, chunk in enumerate(chunks):
        assert chunk.index == number
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text and not chunk.text[0].isspace() and not chunk.text[-1].isspace()
        assert chunk.n_tokens == count_tokens(chunk.text) <= max_tokens
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, f"characters not in any chunk at {missing[:5]}"
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


# Words, sentence punctuation and whitespace runs, mixed with arbitrary unicode:
# emoji, CJK, combining marks, long runs without spaces.
_pieces = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(
        [" ", "  ", "\n", "\n\n", "\t", ". ", "? ", "! ", "U.S. ", "Mr. ", "“Yes.” ", "\r\n",
         "\x00", "😀", "👩‍👩‍👧", "新闻报道", "é",
         "e\u0301", "\u00a0", "   \n  \n", "1234567", "<|endoftext|>"]
    ),
    st.text(alphabet="abcdefghijklmnop", min_size=30, max_size=400),
    st.text(alphabet="日本語中文한국어", min_size=20, max_size=300),
    st.text(alphabet="😀🎉🇺🇸é\u0301", min_size=10, max_size=120),
)
texts = st.lists(_pieces, max_size=60).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, max_tokens=st.integers(min_value=8, max_value=80),
       overlap=st.integers(min_value=0, max_value=7))
def test_invariants_hold_on_any_text(text: str, max_tokens: int, overlap: int) -> None:
    chunks = chunk_text(text, article_id="a", max_tokens=max_tokens, overlap=overlap)
    check_invariants(text, chunks, max_tokens)
    assert chunks == chunk_text(text, article_id="a", max_tokens=max_tokens, overlap=overlap)
    assert bool(chunks) == bool(text.strip())


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=300), max_tokens=st.integers(min_value=8, max_value=40))
def test_invariants_hold_on_plain_hypothesis_text(text: str, max_tokens: int) -> None:
    check_invariants(text, chunk_text(text, article_id="a", max_tokens=max_tokens, overlap=3),
                     max_tokens)


@settings(max_examples=60, deadline=None)
@given(text=texts)
def test_sentences_are_trimmed_ordered_and_cover_the_text(text: str) -> None:
    spans = sentence_spans(text)
    position = 0
    for start, end in spans:
        assert position <= start < end
        assert not text[start].isspace() and not text[end - 1].isspace()
        assert not text[position:start].strip()
        position = end
    assert not text[position:].strip()


def test_multibyte_characters_are_never_cut() -> None:
    text = "😀" * 300 + "新闻" * 200  # each emoji is 4 bytes, more than one token
    chunks = chunk_text(text, article_id="a", max_tokens=16, overlap=0)
    check_invariants(text, chunks, 16)
    assert len(chunks) > 10
    assert "".join(c.text for c in chunks) == text


def test_long_sentence_splits_at_spaces_when_it_can() -> None:
    text = " ".join(f"word{i}" for i in range(600))  # one "sentence" of ~1,200 tokens
    chunks = chunk_text(text, article_id="a", max_tokens=50, overlap=0)
    check_invariants(text, chunks, 50)
    for first, second in itertools.pairwise(chunks):
        assert text[first.end] == " " and second.start == first.end + 1


def test_whole_sentences_are_packed_and_overlap_repeats_the_last_one() -> None:
    sentences = [f"Sentence number {i} says the council met on day {i}." for i in range(40)]
    text = " ".join(sentences)
    chunks = chunk_text(text, article_id="a", max_tokens=60, overlap=20)
    check_invariants(text, chunks, 60)
    for chunk in chunks:
        assert chunk.text.startswith("Sentence") and chunk.text.endswith(".")
    for first, second in itertools.pairwise(chunks):
        last_sentence = first.text[first.text.rfind("Sentence") :]
        assert second.text.startswith(last_sentence)  # each sentence is ~13 tokens
    no_overlap = chunk_text(text, article_id="a", max_tokens=60, overlap=0)
    assert all(a.end < b.start for a, b in itertools.pairwise(no_overlap))


def test_sentence_splitter_knows_abbreviations_and_quotes() -> None:
    text = ("Mr. Smith met U.S. officials at 5 p.m. on Friday. “We agreed,” he said. "
            "Was it enough? Nobody knows!\nA new line starts here\nand wraps here.")
    got = [text[s:e] for s, e in sentence_spans(text)]
    assert got == [
        "Mr. Smith met U.S. officials at 5 p.m. on Friday.",
        "“We agreed,” he said.",
        "Was it enough?",
        "Nobody knows!",
        "A new line starts here\nand wraps here.",
    ]


def test_seed_articles_chunk_with_offsets() -> None:
    for path in sorted(SEEDS.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        article = Article(text=text, title="t")
        chunks = chunk_article(article, max_tokens=64, overlap=20)
        check_invariants(text, chunks, 64)
        assert all(c.article_id == article.id for c in chunks)
        assert len(chunks) >= 4


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("x", article_id="a", max_tokens=4)
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", article_id="a", max_tokens=16, overlap=16)
    assert chunk_text(" \n\t ", article_id="a") == []


def test_count_tokens_treats_special_tokens_as_text() -> None:
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    assert count_tokens("<|endoftext|>") > 1


def test_search_text_has_a_short_header() -> None:
    article = Article(
        title="Council approves bridge", source="Example Times",
        published_at=dt.datetime(2024, 5, 2, 13, 30, tzinfo=dt.timezone.utc),
        text="The council voted on Tuesday.",
    )
    chunk = chunk_article(article)[0]
    assert search_text(article, chunk) == (
        "Council approves bridge | Example Times | 2024-05-02\nThe council voted on Tuesday."
    )
    bare = Article(text="Just text.")
    assert search_text(bare, chunk_article(bare)[0]) == "Just text."
    long_title = Article(title="word " * 100, text="Body.")
    header = search_text(long_title, chunk_article(long_title)[0]).split("\n")[0]
    assert len(header) <= 170


def test_tokeniser_works_without_network(tmp_path: Path) -> None:
    """A fresh process with proxies pointing nowhere still counts tokens (cache is local)."""
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": "", "HOME": str(tmp_path)}
    env.pop("TIKTOKEN_CACHE_DIR", None)
    code = ("import newsqa; from newsqa.store.chunking import count_tokens; "
            "print(count_tokens('a b c'))")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
