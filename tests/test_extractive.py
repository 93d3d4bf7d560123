"""The offline engine: what a reader would ask, what it cannot know, and the short answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsqa import NewsQA
from newsqa.engines.direct import LEAD_WITH, direct_answer, question_kind
from newsqa.engines.extractive import (
    DENSE,
    FULL,
    LEXICAL,
    MIN_TERMS,
    Signals,
    assess,
    null_model,
    rank_sentences,
)
from newsqa.models import Answer, Article, Passage

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> NewsQA:
    qa = NewsQA(db=tmp_path_factory.mktemp("extractive-db"), llm="extractive")
    qa.ingest([SEEDS])
    return qa


ANSWERABLE = [
    ("Who did Qaani meet in Baghdad?", ["Coordination Framework"]),
    ("What did Qaani warn?", ["would not remain silent"]),
    ("How many troops were sent to Kuwait?", ["3,000 to 3,500"]),
    ("How many US troops are deployed in Iraq?", ["5,200"]),
    ("Who was named to succeed Soleimani?", ["Esmail Qaani"]),
    ("What did Khamenei vow?", ["severe revenge"]),
    ("Who did Hegseth call?", ["al-Sudani"]),
    # The warning's content is the next sentence ("He cautioned ..."), in the next chunk.
    ("What did Hegseth warn al-Sudani about?", ["American military response"]),
]

UNANSWERABLE = [
    "Who won the 2022 World Cup?",
    "What is the capital of France?",
    "How much did the new iPhone cost at launch?",
    "What did the European Central Bank decide about interest rates?",
]


@pytest.mark.parametrize(("question", "facts"), ANSWERABLE)
def test_answers_seed_questions_with_the_fact(qa: NewsQA, question: str, facts: list[str]) -> None:
    answer = qa.ask(question)
    assert answer.answerable, answer.reason
    assert answer.mode == "extractive"
    for fact in facts:
        assert fact in answer.answer
    for c in answer.citations:
        assert qa.get_article(c.article_id).text[c.start : c.end] == c.quote
        assert c.quote in answer.answer  # the answer is made of the cited sentences


@pytest.mark.parametrize("question", UNANSWERABLE)
def test_abstains_when_the_archive_cannot_answer(qa: NewsQA, question: str) -> None:
    answer = qa.ask(question)
    assert not answer.answerable
    assert answer.citations == []
    assert answer.reason and "abstains" in answer.reason
    assert answer.passages  # what was looked at is still reported


def test_markers_number_the_citations_in_order(qa: NewsQA) -> None:
    answer = qa.ask("How many troops were sent to Kuwait?")
    for i, c in enumerate(answer.citations, 1):
        assert f"{c.quote} [{i}]" in answer.answer


@pytest.mark.parametrize(("question", "short"), [
    # The README's question: "750" came from the sentence after the one naming Kuwait,
    # which the question's words reached only through the sentence before it.
    ("How many troops were sent to Kuwait?", "3,000 to 3,500"),
    ("How many US troops are deployed in Iraq?", "5,200"),
    ("Who was named to succeed Soleimani?", "Esmail Qaani"),
])
def test_the_short_answer_comes_from_the_quote_holding_the_question(
    qa: NewsQA, question: str, short: str
) -> None:
    assert qa.ask(question).direct_answer == short


def test_filters_that_exclude_everything_make_it_abstain(qa: NewsQA) -> None:
    answer = qa.ask("What did Qaani warn?", sources=["Nobody"])
    assert not answer.answerable and answer.passages == []


def test_filters_that_match_no_article_say_so(qa: NewsQA) -> None:
    # A new user's "--source Reuterz" got "no retrieved passage matches the question".
    for options, said in (({"sources": ["Reuterz"]}, "from 'Reuterz'"),
                          ({"since": "2030-01-01"}, "since 2030-01-01")):
        answer = qa.ask("How many troops were sent to Kuwait?", **options)
        assert not answer.answerable
        assert answer.reason == f"no stored article matches the filters: {said}"
        streamed = list(qa.stream("How many troops were sent to Kuwait?", **options))
        assert isinstance(streamed[-1], Answer) and streamed[-1].reason == answer.reason


def test_context_sentence_counts_for_pronouns() -> None:
    text = "Qaani met the leaders. However, he warned of strikes."
    passage = Passage(chunk_id="a:0", article_id="a", text=text, start=0, end=len(text),
                      score=1.0)
    best = rank_sentences("What did Qaani warn?", [passage])[0]
    assert best.text == "However, he warned of strikes."
    assert best.support > 0.5  # the name one sentence back counts at half weight
    assert not assess("What did Qaani warn?", [passage]).abstains


def _passage(article_id: str, title: str, text: str) -> Passage:
    return Passage(chunk_id=f"{article_id}:0", article_id=article_id, title=title, text=text,
                   start=0, end=len(text), score=1.0)


def test_a_short_question_is_answered_from_the_articles_writing_its_names() -> None:
    # A new user's "How many troops were sent to Greenland?" got Kuwait's "3,000 to 3,500",
    # and "Who replaced Soleimani?" a name from an NFL article's "replaced".
    kuwait = _passage("k", "Troops head to the Gulf",
                      "The Pentagon said 3,000 troops would be sent to Kuwait this week.")
    lights = _passage("g", "Northern lights dazzle",
                      "The lights were seen over Greenland on Tuesday night.")
    found = assess("How many troops were sent to Greenland?", [kuwait, lights])
    assert {c.passage.article_id for c in found.chosen} <= {"g"}
    assert not found.unnamed
    nowhere = assess("How many troops were sent to Qatar?", [kuwait, lights])
    assert nowhere.unnamed == ["qatar"] and nowhere.abstains
    # Months and weekdays are dates, not names: an article need not write them.
    dated = assess("How many troops were sent to Kuwait in January?", [kuwait, lights])
    assert not dated.unnamed and dated.chosen[0].passage.article_id == "k"


def test_a_short_questions_answer_takes_no_sentence_sharing_one_word_from_another_story(
) -> None:
    # A new user's "How heavy was the gryphon statue?" cited an NFL sentence's "heavy
    # pressure" beside the statue's weight.
    statue = _passage("s", "Gryphon statue stolen",
                      "The bronze gryphon statue weighed 1,200 kilograms. It was stolen from "
                      "Pemberton Square on Saturday.")
    nfl = _passage("n", "Lions beat Bears", "Goff came under heavy pressure on third down.")
    found = assess("How heavy was the gryphon statue?", [statue, nfl])
    assert [c.passage.article_id for c in found.chosen] == ["s"] * len(found.chosen)
    both = _passage("b", "Statue moved", "A second gryphon statue, just as heavy, was moved.")
    joined = assess("How heavy was the gryphon statue?", [statue, both])
    assert "b" in {c.passage.article_id for c in joined.chosen}  # two of its words: it joins


def test_a_short_question_naming_what_no_article_writes_abstains_saying_so(
    qa: NewsQA,
) -> None:
    answer = qa.ask("How many troops were sent to Greenland?")
    assert not answer.answerable and answer.direct_answer is None
    assert answer.reason and "'Greenland'" in answer.reason and "abstains" in answer.reason


# -- made-up articles: one fact of each kind a direct answer can give ------------------------

MADE_UP = [
    Article(
        title="Harbor City approves a bridge over the Alder River",
        source="Harbor Herald",
        url="https://example.org/harbor-bridge",
        text=(
            "The Harbor City council voted to build a new bridge across the Alder River. "
            "The bridge will cost $42 million, officials said. "
            "Construction is expected to begin on March 3, 2025, and to last two years. "
            "Residents have asked for a crossing since the old ferry stopped running."
        ),
    ),
    Article(
        title="Northwind Airlines adds routes",
        source="Travel Wire",
        url="https://example.org/northwind-routes",
        text=(
            "Northwind Airlines will add new routes to its network next year. "
            "Chief executive Tomas Berg announced the expansion at a press event in Oslo. "
            "The airline plans 12 new routes, most of them to southern Europe. "
            "Its planes carried 4.5 million passengers in 2023."
        ),
    ),
]


@pytest.fixture(scope="module")
def made_up(tmp_path_factory: pytest.TempPathFactory) -> NewsQA:
    qa = NewsQA(db=tmp_path_factory.mktemp("made-up-db"), llm="extractive")
    qa.ingest(MADE_UP)
    return qa


DIRECT = [
    ("How much will the bridge across the Alder River cost?", "number", "$42 million"),
    ("How many new routes does Northwind Airlines plan?", "number", "12"),
    ("When is construction of the Alder River bridge expected to begin?", "date",
     "March 3, 2025"),
    ("Who announced the Northwind Airlines route expansion?", "person", "Tomas Berg"),
]


@pytest.mark.parametrize(("question", "kind", "expected"), DIRECT)
def test_direct_answer_is_a_span_of_a_cited_quote(
    made_up: NewsQA, question: str, kind: str, expected: str
) -> None:
    assert question_kind(question) == kind
    answer = made_up.ask(question)
    assert answer.answerable, answer.reason
    assert answer.direct_answer == expected
    assert any(expected in c.quote for c in answer.citations)
    assert expected not in question
    # The text leads with it only for the kinds measured well enough (RESULTS.md).
    assert answer.answer.startswith(f"{expected}. ") == (kind in LEAD_WITH)


@pytest.mark.parametrize("question", [
    "Did the Harbor City council vote to build a bridge across the Alder River?",
    "What will the new bridge cross?",
])
def test_no_direct_answer_for_yes_no_and_open_questions(made_up: NewsQA, question: str) -> None:
    answer = made_up.ask(question)
    assert answer.answerable, answer.reason
    assert question_kind(question) == "other"
    assert answer.direct_answer is None


def test_abstains_on_a_question_about_someone_the_archive_never_mentions(made_up: NewsQA) -> None:
    answer = made_up.ask("What did Zorblat Quenwick say about the Alder River bridge budget?")
    assert not answer.answerable
    assert answer.direct_answer is None and answer.citations == []
    assert answer.reason and "abstains" in answer.reason and "names" in answer.reason


def test_an_unanswerable_answer_cannot_carry_a_direct_answer() -> None:
    with pytest.raises(ValueError, match="direct answer"):
        Answer(question="q", answer="a", answerable=False, reason="r", direct_answer="12",
               mode="extractive")


@pytest.mark.parametrize(("question", "kind"), [
    ("Who is the individual that founded FTX?", "person"),
    ("Which company, according to TechCrunch, ranks local search results?", "person"),
    ("What year did the war end?", "date"),
    ("What was the amount of money raised?", "number"),
    ("Does the article say when the bridge opens?", "other"),
    ("Is the report from Reuters consistent with the one who wrote in The Verge?", "other"),
    ("Why did the talks fail?", "other"),
])
def test_question_kind_follows_the_question_word(question: str, kind: str) -> None:
    assert question_kind(question) == kind


def test_direct_answer_never_repeats_the_question() -> None:
    quotes = ["Tomas Berg said Northwind Airlines would grow."]
    assert direct_answer("Who said Northwind Airlines would grow?", quotes) == "Tomas Berg"
    assert direct_answer("Who is Tomas Berg?", quotes) != "Tomas Berg"
    assert direct_answer("How many routes did Tomas Berg announce?", quotes) is None


def test_a_surname_counts_for_the_full_name() -> None:
    quotes = ["Sam Altman left the board.", "Altman returned days later.", "Microsoft hired him."]
    assert direct_answer("Who returned to lead the company?", quotes) == "Sam Altman"


def test_a_person_is_named_in_full_as_the_passages_write_it() -> None:
    # The best quote has the surname only; the passages name him in full once, and once
    # with a title that must not become part of the name.
    quotes = ["Later, Bankman-Fried was found guilty on seven counts."]
    context = ["FTX founder Sam Bankman-Fried went on trial in New York.",
               "Prosecutors said Sam Bankman-Fried lied. Nobel Peace Prize. Winner spoke."]
    asked = "Who was found guilty according to TechCrunch and The Verge?"
    assert direct_answer(asked, quotes, context) == "Sam Bankman-Fried"
    # A company keeps its own name: "Epic Games v. Google" is not Google's full name.
    quotes = ["Google lost the case, the jury found."]
    context = ["In Epic Games v. Google the jury sided with Epic, and Google will appeal."]
    assert direct_answer("Which company lost the case according to The Verge?", quotes,
                         context) == "Google"


def test_a_person_asked_for_is_a_name_not_a_title_an_acronym_or_an_opener() -> None:
    # Each was a direct answer to a MultiHop-RAG dev "who" question whose gold is the person.
    asked = "Who is the individual accused of misusing customer funds?"
    cases = [
        ["Lawyers for CEO Sam Altman declined to comment, and Altman was silent."],
        ["Ellison told the court that the CEO of FTX, Sam Bankman-Fried, told her to do it.",
         "FTX collapsed. Sam Bankman-Fried denied it."],
        ["It grew fast. Because FTX had grown so much, Bankman-Fried hired Sam Bankman-Fried's "
         "friends; Sam Bankman-Fried said so."],
    ]
    assert direct_answer(asked, cases[0]) == "Sam Altman"
    assert direct_answer(asked, cases[1]) == "Sam Bankman-Fried"
    assert direct_answer(asked, cases[2]) == "Sam Bankman-Fried"
    # An affiliation is not part of the name; "CEO of Flexport" names a company.
    assert direct_answer("Who wrote the report?", [
        "The report was written by Brittany Kasko of Fox News Digital."]) == "Brittany Kasko"
    assert direct_answer("Which company cut jobs?", [
        "The CEO of Flexport cut 20% of jobs on Monday."]) == "Flexport"


def test_the_name_after_a_possessive_is_a_name_of_its_own() -> None:
    quotes = ['"They are tired of being attacked," said UNHCR\'s Jorge Holly.',
              "She kept the last name -- Arthur ."]
    context = ["The UNHCR said Jorge Holly spoke for the agency.", "Bea Arthur died at 86."]
    assert direct_answer("Who spoke for the UNHCR about the refugees?", quotes,
                         context) == "Jorge Holly"


@pytest.mark.parametrize(("question", "kind"), [
    ("How old was Bea Arthur?", "number"),
    ("Which geological sciences professor spoke about water on the moon?", "person"),
    ("Which football club was docked ten points?", "other"),  # only a person is looked past
    ("Which two individuals were linked by the rumours?", "other"),
    ("Where did the actress die?", "place"),
    ("How long did the trial last?", "number"),
    ("How far did the refugees walk?", "number"),
    ("In which African country did the refugees arrive?", "place"),
    ("Which state passed the law?", "place"),
    # "place" and "state" past describing words are verbs, not what is asked for.
    ("Has the account of what bettors can place bets on stayed the same?", "other"),
    ("What analysts state that the deal will close?", "other"),
])
def test_a_question_asks_for_what_its_noun_names(question: str, kind: str) -> None:
    assert question_kind(question) == kind


def test_a_person_named_by_surname_only_is_named_as_the_cited_article_writes_him() -> None:
    quotes = ["Bankman-Fried was found guilty on seven counts."]
    context = ["Prosecutors said Bankman-Fried lied to investors."]
    article = ("FTX founder Sam Bankman-Fried went on trial in New York. His brother Gabe "
               "Bankman-Fried sat behind him. " + context[0] + " " + quotes[0])
    asked = "Who was found guilty according to TechCrunch?"
    assert direct_answer(asked, quotes, context) == "Bankman-Fried"
    assert direct_answer(asked, quotes, context, [article]) == "Sam Bankman-Fried"


def test_of_two_names_as_often_mentioned_the_one_the_question_words_surround_wins() -> None:
    # NewsQA dev: "Who says the government is acting worse than apartheid regime?"
    quotes = ["Johannesburg (CNN) -- Miffed by a visa delay that led the Dalai Lama to cancel a "
              "trip, Archbishop Desmond Tutu lashed out at his government Tuesday, saying it had "
              "acted worse than apartheid regimes."]
    context = ["The Dalai Lama will not visit. Tutu said he would pray.",
               "Tutu spoke again. The Dalai Lama is not welcome, officials said."]
    asked = "Who says the government is acting worse than apartheid regime?"
    assert direct_answer(asked, quotes, context) == "Archbishop Desmond Tutu"
    # "What was the name of the agency?": the name beside the question's word.
    quotes = ["A Pakistan soldier patrolled the border of the Mohmand agency district."]
    assert direct_answer("What was the name of the agency?", quotes,
                         ["Pakistan said militants crossed into Mohmand."]) == "Mohmand"


def test_a_relative_named_in_full_more_often_is_not_the_person_the_articles_are_about() -> None:
    # MultiHop-RAG dev: seven "who" answers were "Gabe Bankman-Fried".
    quotes = ["Bankman-Fried told a trader that withdrawals were fine."]
    article = ("FTX founder Sam Bankman-Fried took the stand. " + quotes[0] + " His brother "
               "Gabe Bankman-Fried ran a charity. Gabe Bankman-Fried lobbied, and Gabe "
               "Bankman-Fried hired staff. Bankman-Fried denied fraud.")
    context = ["Prosecutors said Bankman-Fried lied to investors."]
    assert direct_answer("Who told a trader that withdrawals were fine?", quotes, context,
                         [article]) == "Sam Bankman-Fried"


def test_a_title_written_as_an_acronym_is_not_part_of_the_name() -> None:
    quotes = ["Kelce caught two passes, and the crowd cheered Chiefs TE Travis Kelce."]
    assert direct_answer("Who caught two passes?", quotes,
                         ["The Chiefs won. Kelce waved."]) == "Travis Kelce"
    assert direct_answer("Who ran the company?",
                         ["The company was run by FTX CEO Sam Bankman-Fried."],
                         ["Bankman-Fried spoke."]) == "Sam Bankman-Fried"


def test_the_person_given_the_title_asked_about_is_the_answer() -> None:
    # "Who is the governor of Texas?" over MultiHop-RAG articles answered "House Bill", the
    # name beside "Texas"; the governor is the one the quote titles so.
    texas = ["In Texas, House Bill 20 made it through the state legislature and was signed "
             "by Governor Greg Abbott in September 2021."]
    assert direct_answer("Who is the governor of Texas?", texas, texas) == "Greg Abbott"
    chicago = ["Chicago Mayor Brandon Johnson met Governor Jay Pritzker on Monday."]
    assert direct_answer("Who is the mayor of Chicago?", chicago, chicago) == "Brandon Johnson"
    assert direct_answer("Who is the governor of Illinois?", chicago, chicago) == "Jay Pritzker"
    after = ["Satya Nadella met Sam Altman, OpenAI's chief executive, on Friday."]
    assert direct_answer("Who is OpenAI's chief executive?", after, after) == "Sam Altman"


def test_names_and_numbers_end_where_the_text_does() -> None:
    # Found by a new user's session over MultiHop-RAG articles.
    article = "The final was tense.\n\nAdvertisement\n\nMoments later, Kolisi lifted the cup."
    quotes = ["Moments later, Kolisi lifted the cup."]
    assert direct_answer("Who lifted the cup?", quotes, [article]) == "Kolisi"
    assert direct_answer("How many subclasses does the Warlock get?",
                         ["The Warlock gets subclasses, 3, at launch."]) == "3"


def test_a_price_in_another_currency_form_is_a_figure_and_no_range() -> None:
    # A new user's "How much did US crude oil cost per barrel?" got "67" (cents of a rise).
    quote = ["Brent crude, the international standard, added 67¢ to $US93.96 per barrel."]
    assert direct_answer("How much did crude oil cost per barrel?", quote) == "$US93.96"
    assert direct_answer("How much do tickets cost?", ["Tickets cost $10 to $20."]) == (
        "$10 to $20")


def test_pronouns_and_determiners_are_no_names() -> None:
    # A new user's "Who was named Person of the Year?" got "Me", and a team question "Every".
    assert direct_answer("Who was named Person of the Year?",
                         ["Barber Shop Near Me opened in 2019."],
                         ["Barber Shop Near Me is a chain."]) == "Barber Shop Near Me"
    assert direct_answer("Which team won the cup?",
                         ["MORE: Every single team to have lifted the cup."],
                         ["Every team tried."]) is None


def test_a_relative_is_not_renamed_as_the_person_the_articles_name_first() -> None:
    quotes = ["Travis Kelce is dating Taylor Swift, his brother Jason Kelce said."]
    article = ("Chiefs star Travis Kelce scored. " + quotes[0] + " Swift cheered. "
               "Taylor Swift sang. Kelce waved.")
    context = ["Fans saw Swift and Kelce. Jason Kelce laughed.", "Kelce scored twice.",
               "Jason Kelce retired.", "Kelce signed a deal."]
    assert direct_answer("Who is Travis Kelce dating?", quotes, context, [article]) == (
        "Taylor Swift")
    assert direct_answer("Who is Kelce's brother?", quotes, context, [article]) == "Jason Kelce"


def test_a_first_name_and_a_surname_name_one_person() -> None:
    # MultiHop-RAG dev: "Sam" (nearer the question's words) and "Altman" were two names.
    quotes = ["Altman has been telling investors he plans a new venture, said The Information.",
              "Our industry has had few people as generous and caring as Sam."]
    context = ["OpenAI's board removed Sam Altman on Friday; investors stood by Altman."]
    assert direct_answer("Who is the generous and caring figure removed from the board?",
                         quotes, context) == "Sam Altman"


def test_a_number_is_the_one_beside_what_the_question_counts() -> None:
    quote = ["The fighting left 40 militants and six Pakistani soldiers dead, officials said."]
    assert direct_answer("How many Pakistani soldiers died?", quote) == "six"
    assert direct_answer("How many militants died?", quote) == "40"


def test_an_age_is_read_as_written_and_a_vague_count_comes_last() -> None:
    # A new user's "How old was Soleimani?" got "three" (days of mourning).
    quote = ["After three days of mourning, officials said the 62-year-old was buried."]
    assert direct_answer("How old was Soleimani?", quote) == "62"
    assert direct_answer("How old was she?", ["She died at 86 in her home."]) == "86"
    counts = ["Hundreds of militants attacked, and 40 militants were killed."]
    assert direct_answer("How many militants were killed?", counts) == "40"


def test_a_figure_the_quote_denies_is_no_answer() -> None:
    # A new user's "How many miners were injured at Vantor?" got "300" from "Reports that
    # 300 miners were injured are false, and no miners were injured, the company said."
    denied = ["Reports that 300 miners were injured are false, and no miners were injured."]
    assert direct_answer("How many miners were injured?", denied) is None
    plain = ["Officials said 300 miners were injured in the blast."]
    assert direct_answer("How many miners were injured?", plain) == "300"


def test_a_place_or_its_people_is_no_answer_to_who() -> None:
    # "Who was killed with Soleimani?" was answered "Iraqi"; "who was sentenced", "India".
    quotes = ["Iraqi officials said the strike hit a convoy in Iraq on Friday."]
    context = ["The strike in Iraq killed several people.", "Iraqi leaders met in Baghdad."]
    assert direct_answer("Who was killed in the strike?", quotes, context) is None
    india = ["A court in northern India upheld the sentence."]
    assert direct_answer("Whose sentence was upheld?", india, ["He lived in India."]) is None


def test_a_place_is_not_the_person_asked_for_when_a_person_is_named() -> None:
    quotes = ["A high court in northern India acquitted businessman Moninder Pandher on Friday.",
              "The case in India drew wide attention."]
    context = ["Police in India reopened the case. Pandher was freed."]
    assert direct_answer("Who was acquitted?", quotes, context) == "Moninder Pandher"


def test_where_asks_for_the_place_nearest_the_question_words() -> None:
    # Invented text in the shape of the NewsQA dev misses: "Where did Bea Arthur die?" had
    # no short answer at all.
    quotes = ["Spokesman Tom Reed said that Ellen Marsh died on Sunday at her home in Santa "
              "Fe, her family by her side.",
              "Marsh was born in Boston and later moved to Chicago."]
    context = ["Marsh lived in Santa Fe for years. She grew up in Boston."]
    assert direct_answer("Where did Ellen Marsh die?", quotes, context) == "Santa Fe"
    assert direct_answer("Where was Ellen Marsh born?", quotes[::-1], context) == "Boston"
    # A person is no answer to "where": no place named, no short answer.
    assert direct_answer("Where did Ellen Marsh die?", ["Tom Reed announced her death."],
                         ["Tom Reed spoke for the family."]) is None


def test_how_long_and_how_much_are_answered_with_the_unit() -> None:
    quote = ["After 3 weeks of hearings the 12 jurors deliberated for nine hours, and the "
             "judge, 5 feet, 10 inches tall, fined the firm $4 million, then seized 300 tons "
             "of grain."]
    assert direct_answer("How long did the jurors deliberate?", quote) == "nine hours"
    assert direct_answer("How tall is the judge?", quote) == "5 feet, 10 inches"
    assert direct_answer("How much grain was seized?", quote) == "300 tons"
    assert direct_answer("How much money was the firm fined?", quote) == "$4 million"
    assert direct_answer("How many jurors deliberated?", quote) == "12"
    # No number with a unit: "how long" has no short answer, rather than a bare count.
    assert direct_answer("How long did the 12 jurors deliberate?", ["The 12 jurors met."]) is None


def test_a_month_alone_or_a_time_ago_is_a_date() -> None:
    assert direct_answer("When was he sentenced?",
                         ["He was sentenced to death in February by a lower court."]) == "February"
    assert direct_answer("When did they marry?",
                         ["They married two years ago in Ohio."]) == "two years ago"
    assert direct_answer("When may they leave?", ["They may leave soon, May said."]) is None
    # As near the question's words, the more precise date.
    quote = ["The forms were filed at the end of August, and passports were filed on September 20."]
    assert direct_answer("When were the passports filed?", quote) == "September 20"


def test_which_country_is_the_place_the_quotes_share() -> None:
    quotes = ["Officials in Norway and Peru signed the fishing accord on Monday.",
              "Norway will patrol the waters, ministers in Norway said.",
              "The accord was praised in Norway."]
    context = ["Fishing fleets in Norway welcomed the accord."]
    assert direct_answer("Which country will patrol the waters under the accord?", quotes,
                         context) == "Norway"


def _signals(**changes: object) -> Signals:
    base = dict(support=0.8, names_found=1.0, names=2, dense=0.6, rerank=5.0,
                question_terms=MIN_TERMS)
    return Signals(**{**base, **changes})  # type: ignore[arg-type]


def test_the_best_model_whose_signals_are_there_decides() -> None:
    assert null_model(_signals()) is FULL
    assert null_model(_signals(rerank=None)) is DENSE
    assert null_model(_signals(rerank=None, dense=None)) is LEXICAL


def test_scores_count_only_on_questions_as_long_as_those_they_were_fitted_on() -> None:
    text = "Tomas Berg announced twelve new routes for Northwind Airlines in Oslo on Monday."
    passage = Passage(chunk_id="a:0", article_id="a", text=text, start=0, end=len(text),
                      score=1.0, scores={"dense": 0.2, "rerank": -9.0})
    short = assess("Who announced the new routes?", [passage]).signals
    assert short.dense is None and short.rerank is None
    long_question = ("Which executive, speaking at a press event in Oslo on Monday, announced "
                     "twelve new routes for Northwind Airlines to southern Europe next year?")
    found = assess(long_question, [passage])
    assert found.signals.question_terms >= MIN_TERMS
    assert (found.signals.dense, found.signals.rerank) == (0.2, -9.0)
    assert found.model is FULL
    assert assess(long_question, [passage], rerank=False).model is DENSE
    assert assess(long_question, [passage], dense=False).model is LEXICAL  # ranker needs dense


def test_the_models_agree_on_the_clear_cases() -> None:
    clear = _signals()
    missing = _signals(names_found=0.0, support=0.2, dense=0.2, rerank=-8.0)
    for model in (FULL, DENSE, LEXICAL):
        assert model.probability(clear) < model.abstain_at < model.probability(missing)
