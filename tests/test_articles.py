"""Loaders: the seeds, JSON/JSONL, HTML, folders, and a clear error for every bad input."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from newsqa.errors import ConfigError, InputError
from newsqa.store.articles import Loaded, read_file, read_paths

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
MULTIHOP = ROOT.parent / "shared" / "eval" / "multihop" / "corpus.jsonl"


def load(*paths: str | Path) -> list[Loaded | InputError]:
    return list(read_paths(paths))


def articles(*paths: str | Path) -> list[Loaded]:
    results = load(*paths)
    errors = [r for r in results if isinstance(r, InputError)]
    assert not errors, errors
    return [r for r in results if isinstance(r, Loaded)]


def only_error(*paths: str | Path) -> InputError:
    results = load(*paths)
    assert len(results) == 1 and isinstance(results[0], InputError), results
    return results[0]


# ----------------------------------------------------------------------------- seeds


def test_seed_with_dateline_gets_date_source_and_clean_text() -> None:
    [loaded] = articles(SEEDS / "000_77993525a4a13c9e.txt")
    article = loaded.article
    assert loaded.origin == str(SEEDS / "000_77993525a4a13c9e.txt")
    assert article.published_at == dt.date(2025, 3, 19)
    assert article.source == "Shafaq News"
    assert article.text.startswith("Iran’s Quds Force Commander Esmail Qaani made")
    assert article.text.endswith("against US military operations.")
    assert article.title.startswith("Iran’s Quds Force Commander Esmail Qaani")
    assert len(article.title) <= 121


def test_seed_with_headline_gets_title_and_loses_read_more_lines() -> None:
    [loaded] = articles(SEEDS / "003_3cf3c08bc50ad036.txt")
    article = loaded.article
    assert article.title == "US targets Iraq’s pro-Iran fighters after killing Iranian general"
    assert article.text.startswith("Early Saturday, a fresh air strike")
    assert "Read More" not in article.text
    assert "UK government warns Trump" not in article.text
    assert "\nThis came hours ahead of a scheduled mourning march" in article.text
    assert article.published_at is None and article.source == ""


def test_seed_folder_loads_both_in_sorted_order() -> None:
    loaded = articles(SEEDS)
    assert [Path(r.origin).name for r in loaded] == sorted(p.name for p in SEEDS.glob("*.txt"))
    assert len({r.article.id for r in loaded}) == 2


@pytest.mark.skipif(not MULTIHOP.exists(), reason="../shared/eval is absent")
def test_multihop_corpus_loads_all_609_records() -> None:
    loaded = articles(MULTIHOP)
    assert len(loaded) == 609
    assert loaded[0].origin == f"{MULTIHOP}:1"
    first = loaded[0].article
    assert isinstance(first.published_at, dt.datetime) and first.published_at.tzinfo is not None
    assert first.metadata["record_id"] == "mh-doc-0000"
    assert "category" in first.metadata and first.url and first.source
    assert len({r.article.id for r in loaded}) == 609


# ------------------------------------------------------------------ text and Markdown


def test_markdown_front_matter_and_heading(tmp_path: Path) -> None:
    path = tmp_path / "story.md"
    path.write_text(
        "---\ntitle: \"Bridge approved\"\nsource: Example Times\ndate: 2024-05-02\n"
        "url: https://example.com/bridge\nauthor: A. Writer\n---\n# Ignored heading\n\n"
        "The council voted on Tuesday.\r\nRead more: other story\r\nIt will open in 2026.\r\n",
        encoding="utf-8",
    )
    [loaded] = articles(path)
    article = loaded.article
    assert (article.title, article.source, article.url) == (
        "Bridge approved", "Example Times", "https://example.com/bridge")
    assert article.published_at == dt.date(2024, 5, 2)
    assert article.metadata == {"author": "A. Writer"}
    assert article.text == "The council voted on Tuesday.\nIt will open in 2026."


def test_markdown_heading_is_the_title_and_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "note.markdown"
    path.write_bytes("\ufeff# Floods in the north\n\nRivers rose overnight.".encode())
    [loaded] = articles(path)
    assert loaded.article.title == "Floods in the north"
    assert loaded.article.text == "Rivers rose overnight."


def test_short_first_paragraph_stays_when_a_title_is_known(tmp_path: Path) -> None:
    path = tmp_path / "kicker.md"
    path.write_text("# The title\n\nA short kicker\n\nThe body goes on.", encoding="utf-8")
    [loaded] = articles(path)
    assert loaded.article.title == "The title"
    assert loaded.article.text == "A short kicker\n\nThe body goes on."


def test_file_without_extension_is_text(tmp_path: Path) -> None:
    path = tmp_path / "README"
    path.write_text("Plain words. More words.", encoding="utf-8")
    [loaded] = articles(path)
    assert loaded.article.title == "Plain words."


def test_bad_front_matter_date_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.md"
    path.write_text("---\ntitle: x\ndate: next tuesday\n---\nBody.", encoding="utf-8")
    error = only_error(path)
    assert f"{path}:3" in str(error) and "'date'" in str(error)


# ----------------------------------------------------------------------- JSON, JSONL


def test_json_object_and_list(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps({
        "id": 7, "title": "T", "source": "S", "date": "2024-01-02", "content": "Body one.",
        "tags": ["a", "b", None], "rating": 3.5, "flag": True, "missing": None,
        "extra": {"k": 1},
    }), encoding="utf-8")
    many = tmp_path / "many.json"
    many.write_text(json.dumps(
        [{"text": "First."}, {"body": "Second.", "published": "2024-01-02T10:00:00Z"}]))
    first, second, third = articles(one, many)
    assert first.article.published_at == dt.date(2024, 1, 2)
    assert first.article.metadata == {
        "record_id": 7, "tags": "a, b", "rating": 3.5, "flag": True, "extra": '{"k": 1}'}
    assert (second.origin, third.origin) == (f"{many}[0]", f"{many}[1]")
    assert third.article.published_at == dt.datetime(2024, 1, 2, 10, tzinfo=dt.timezone.utc)


def test_jsonl_records_with_errors_in_place(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    lines = [
        json.dumps({"body": "Good record.", "published_at": "2023-11-27T08:45:59+00:00"}),
        "",
        '{"title": "truncated", "body": "no end',
        json.dumps(["not", "an", "object"]),
        json.dumps({"title": "no text"}),
        json.dumps({"body": "x", "published_at": "27/11/2023"}),
        json.dumps({"body": "Also good.", "id": "r6"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = load(path)
    assert [type(r).__name__ for r in results] == [
        "Loaded", "InputError", "InputError", "InputError", "InputError", "Loaded"]
    assert results[0].origin == f"{path}:1"  # type: ignore[union-attr]
    published = results[0].article.published_at  # type: ignore[union-attr]
    assert published == dt.datetime(2023, 11, 27, 8, 45, 59, tzinfo=dt.timezone.utc)
    messages = [str(r) for r in results if isinstance(r, InputError)]
    assert messages[0].startswith(f"{path}:3: invalid JSON at column")
    assert messages[1].startswith(f"{path}:4: record is a list")
    assert messages[2].startswith(f"{path}:5: record has no text")
    assert messages[3].startswith(f"{path}:6: field 'published_at' is not a date")
    assert results[5].origin == f"{path}:7"  # type: ignore[union-attr]


def test_jsonl_line_over_the_limit_is_an_error_for_that_line_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSQA_MAX_FILE_MB", "0.001")  # ~1 KB
    path = tmp_path / "big.jsonl"
    path.write_text(
        json.dumps({"body": "x" * 5000}) + "\n" + json.dumps({"body": "Small."}) + "\n",
        encoding="utf-8",
    )
    error, loaded = load(path)
    assert isinstance(error, InputError) and str(error).startswith(f"{path}:1: line is over")
    assert isinstance(loaded, Loaded) and loaded.origin == f"{path}:2"


def test_json_lone_surrogate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"body": "bad \\ud800 escape"}', encoding="utf-8")
    assert "surrogate" in str(only_error(path))


# ---------------------------------------------------------------------------- HTML

PAGE = """<html><head><title>Bridge approved - Example Times</title>
<meta property="og:site_name" content="Example Times">
<meta property="article:published_time" content="2024-05-02">
<link rel="canonical" href="https://example.com/bridge"></head>
<body><nav>Home | World | Sport | Contact us</nav>
<article><h1>Bridge approved</h1>
<p>The council voted on Tuesday to approve the new bridge, which will cost twelve million
euros and open in 2026 after three years of work.</p>
<p>Opponents said the money would be better spent on schools, and they promised to keep
campaigning against the project until the first stone is laid.</p></article>
<footer>Copyright 2024 Example Times. All rights reserved. Subscribe to our newsletter.</footer>
</body></html>"""


def test_html_main_text_title_and_date(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(PAGE, encoding="utf-8")
    [loaded] = articles(path)
    article = loaded.article
    assert article.title == "Bridge approved"
    assert article.source == "Example Times"
    assert article.url == "https://example.com/bridge"
    assert article.published_at == dt.date(2024, 5, 2)
    assert article.text.startswith("The council voted on Tuesday")
    assert "campaigning against the project" in article.text
    assert "Copyright" not in article.text and "Contact us" not in article.text


def test_html_without_text_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.htm"
    path.write_text("<html><head><title>T</title></head><body><script>x()</script></body></html>",
                    encoding="utf-8")
    error = only_error(path)
    assert str(error).startswith(str(path)) and "no article text" in str(error)


# ------------------------------------------------------------------------- folders


def test_folder_recursion_skips_hidden_and_unknown(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "b" / "z.txt").write_text("Zed story.", encoding="utf-8")
    (tmp_path / "a.md").write_text("Alpha story.", encoding="utf-8")
    (tmp_path / ".secret.txt").write_text("Hidden.", encoding="utf-8")
    (tmp_path / ".hidden" / "x.txt").write_text("Hidden.", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\x00\x00")
    loaded = articles(tmp_path)
    assert [Path(r.origin).relative_to(tmp_path).as_posix() for r in loaded] == ["a.md", "b/z.txt"]


def test_unknown_extension_named_explicitly_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG")
    error = only_error(path)
    assert str(error).startswith(str(path)) and "unsupported file type '.png'" in str(error)


def test_empty_folder_is_reported(tmp_path: Path) -> None:
    assert "no .txt" in str(only_error(tmp_path))


# ---------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.txt", b"", "empty file"),
        ("blank.md", b"  \n\n\t", "empty file"),
        ("nul.txt", b"some text\x00more", "binary file (NUL byte at offset 9)"),
        ("latin1.txt", "caf\u00e9 ok".encode("latin-1"), "not valid UTF-8 at byte offset 3"),
        ("bom_latin1.txt", b"\xef\xbb\xbfcaf\xe9", "not valid UTF-8 at byte offset 6"),
        ("trunc.json", b'{"title": "x", "body": "abc', "invalid JSON at line 1 column"),
        ("scalar.json", b"42", "expected a JSON object or a list of objects, got a number"),
        ("notext.json", b'{"title": "x", "body": "  "}', "record has no text"),
        ("badtype.json", b'{"body": ["a"]}', "field 'body' must be a string, got a list"),
        ("baddate.json", b'{"body": "a", "date": "soon"}', "field 'date' is not a date"),
        ("numdate.json", b'{"body": "a", "date": 20240101}', "must be an ISO date string"),
        ("emptylist.json", b"[]", "JSON list holds no records"),
        ("empty.jsonl", b"\n\n", "empty file"),
        ("binary.jsonl", b'{"body": "a\x00"}\n', "binary line (NUL byte at offset 11)"),
        ("latin1.jsonl", b'{"body": "ok"}\n{"body": "caf\xe9"}\n',
         "not valid UTF-8 at byte offset 28"),
        ("headonly.txt", b"# Title only\n", "no article text"),
    ],
)
def test_bad_input_gives_one_clear_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    errors = [r for r in load(path) if isinstance(r, InputError)]
    assert len(errors) == 1
    message = str(errors[0])
    assert message.startswith(str(path)), message
    assert expected in message, message
    assert "\n" not in message


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"body": "ok"}\n{"body": "caf\xe9"}\n')
    error = next(r for r in load(path) if isinstance(r, InputError))
    assert error.where == f"{path}:2"


def test_missing_path_is_an_error_and_the_rest_still_load(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("Still loads.", encoding="utf-8")
    missing, loaded = load(tmp_path / "nope.txt", good)
    assert str(missing) == f"{tmp_path / 'nope.txt'}: no such file or directory"
    assert isinstance(loaded, Loaded)


def test_huge_single_article_file_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSQA_MAX_FILE_MB", "1")
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:  # sparse: 2 GB on disk costs nothing, reading it would
        handle.seek(2 * 1024**3)
        handle.write(b"x")
    error = only_error(path)
    assert str(error).startswith(f"{path}: file is 2048.0 MB, over the 1 MB limit")


def test_bad_size_limit_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSQA_MAX_FILE_MB", "lots")
    with pytest.raises(ConfigError, match="NEWSQA_MAX_FILE_MB"):
        load(SEEDS)


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "x.txt"
    folder.mkdir()  # read_file on a directory: an OSError, reported, not raised
    [error] = list(read_file(folder))
    assert isinstance(error, InputError) and str(error).startswith(str(folder))


def test_stored_text_has_one_unicode_form_and_no_soft_hyphens_or_control_characters() -> None:
    # A new user's feeds: "Montre\u0301al" and "Bundes\u00adliga" split their words, and
    # escape sequences in a source retitled the terminal that printed an answer.
    from newsqa.models import Article
    from newsqa.text.lexical import name_terms, terms

    article = Article(text="The trans\u00adfer to the Bundes\u00adliga was con\u00adfirmed in "
                           "Montre\u0301al.\r\nThe mayor announced a \x1b[2J new bridge.",
                      source="Esc\x1b]0;pwned\x07News", title="Lefe\u0300vre signs")
    assert article.text == ("The transfer to the Bundesliga was confirmed in Montréal.\n"
                            "The mayor announced a [2J new bridge.")
    assert (article.source, article.title) == ("Esc]0;pwnedNews", "Lefèvre signs")
    assert {"bundesliga", "transfer", "confirm"} <= set(terms(article.text))
    assert name_terms("Who is Lefe\u0300vre of Montre\u0301al?") == ["lefevr", "montreal"]


def test_words_of_other_scripts_are_words() -> None:
    # A new user's Chinese and Japanese articles were not found by a word of them (a clause
    # was one term), "عمّان" was "عم" and "ان", and "भारत" was "भ" and "रत".
    from newsqa.text.lexical import terms
    from newsqa.text.sentences import sentence_spans

    assert terms("大熊猫") == ["大熊", "熊猫"]
    assert {"大熊", "熊猫"} <= set(terms("成都大熊猫繁育研究基地的大熊猫萌兰产下了两只幼崽"))
    assert "気象" in terms("京都市の気象台は金曜日")
    assert terms("عمّان") == terms("عمان") == ["عمان"]
    assert terms("भारत की राजधानी") == ["भारत", "की", "राजधानी"]
    assert terms("Qaani’s Sūdani café — snake_case") == ["qaani", "sudani", "cafe", "snake",
                                                         "case"]
    text = "大熊猫萌兰产下了两只幼崽。工作人员表示，幼崽身体健康！基地今年已有五只幼崽出生。"
    assert len(sentence_spans(text)) == 3


def test_an_article_in_chinese_or_arabic_is_found_by_a_word_of_it(tmp_path: Path) -> None:
    from newsqa import NewsQA
    from newsqa.models import Article

    qa = NewsQA(db=tmp_path / "db", llm="extractive")
    qa.ingest([
        Article(title="成都大熊猫基地迎来双胞胎", source="新华社", url="u:panda",
                text="成都大熊猫繁育研究基地的大熊猫萌兰产下了两只幼崽。工作人员表示，两只幼崽身体健康。"),
        Article(title="افتتاح متحف جديد", source="وكالة", url="u:museum",
                text="افتتح في عمّان يوم الاثنين متحف جديد للتاريخ. وقال مدير المتحف إن المتحف "
                     "يضم ثلاثة آلاف قطعة أثرية."),
        SEEDS,
    ])
    panda = qa.ask("萌兰产下了几只幼崽？")
    assert panda.answerable and panda.citations[0].quote.startswith("成都大熊猫")
    museum = qa.ask("متحف عمان")
    assert museum.answerable and "عمّان" in museum.citations[0].quote


def test_a_fifo_or_a_broken_link_is_an_error_not_a_hang(tmp_path: Path) -> None:
    # A new user's `newsqa ingest folder/fifo.txt` waited forever for a writer; inside a
    # folder, FIFOs and broken links were skipped without a word.
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "pipe.txt")
    (folder / "gone.md").symlink_to(tmp_path / "missing.md")
    (folder / "ok.txt").write_text("A real article about the harbour strike.\n")
    [error] = list(read_paths([folder / "pipe.txt"]))
    assert isinstance(error, InputError) and "not a regular file" in str(error)
    results = list(read_paths([folder]))
    failed = sorted(Path(e.where).name for e in results if isinstance(e, InputError))
    assert failed == ["gone.md", "pipe.txt"]
    assert [Path(r.origin).name for r in results if isinstance(r, Loaded)] == ["ok.txt"]


# ------------------------------------------------------------------- deep and odd paths


def _nest(top: Path, depth: int, name: str) -> Path:
    """`depth` folders inside one another under `top`, made relative to each parent (dir_fd),
    so a path past the system's PATH_MAX can exist; returns the deepest, as a (long) path."""
    import os

    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as out:
            out.write("A story kept at the bottom of a very deep folder.\n")
    finally:
        os.close(fd)
    return top.joinpath(*[name] * depth)


def _unnest(folder: Path) -> None:
    """Remove a tree too deep for shutil.rmtree (and so for pytest's clean-up), which
    recurses once per level: each folder is moved up beside `folder` before it is read."""
    import os
    import uuid

    queue = [folder]
    while queue:
        current = queue.pop()
        with os.scandir(current) as entries:
            for entry in list(entries):
                if entry.is_dir(follow_symlinks=False):
                    lifted = folder.parent / f".lifted-{uuid.uuid4().hex}"
                    os.rename(entry.path, lifted)
                    queue.append(lifted)
                else:
                    os.unlink(entry.path)
        os.rmdir(current)


def test_a_folder_nested_1100_deep_loads_without_recursion_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A story at the top.", encoding="utf-8")
    deepest = _nest(tmp_path, 1100, "d")
    (tmp_path / "z.txt").write_text("A story after the deep folder.", encoding="utf-8")
    try:
        origins = [r.origin for r in articles(tmp_path)]
    finally:
        _unnest(tmp_path / "d")
    assert origins == [str(tmp_path / "a.txt"), str(deepest / "deep.txt"), str(tmp_path / "z.txt")]


def test_a_folder_that_cannot_be_listed_is_one_error_and_the_rest_still_load(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.txt").write_text("A story at the top.", encoding="utf-8")
    _nest(tmp_path, 400, "a-long-folder-name")  # about 7,600 characters: past PATH_MAX
    (tmp_path / "z.txt").write_text("A story after the deep folder.", encoding="utf-8")
    try:
        results = load(tmp_path)
    finally:
        _unnest(tmp_path / "a-long-folder-name")
    errors = [r for r in results if isinstance(r, InputError)]
    loaded = [r.origin for r in results if isinstance(r, Loaded)]
    assert loaded == [str(tmp_path / "a.txt"), str(tmp_path / "z.txt")]
    [error] = errors
    assert error.where.startswith(str(tmp_path / "a-long-folder-name"))
    assert "cannot read folder" in error.reason and "\n" not in str(error)


def test_a_newline_in_a_name_is_quoted_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines.txt"
    path.write_bytes(b"")
    error = only_error(path)
    assert error.where == str(path)  # the report keeps the real name
    assert str(error) == f"{str(path)!r}: empty file"  # the message escapes it
    assert "\n" not in str(error)
