"""The short answer a question asks for: a name, a place, a number or a date, from cited text.

The offline engine answers with whole source sentences; a reader asked "Who ...?"
wants the person. `direct_answer` reads the kind of answer from the question's
words (`question_kind`) and picks it out of the cited quotes: a number or a date
from the best quote that holds one, a name by how many quotes and articles name
it and how near it stands to the question's words, a person named as the cited
articles write him in full, a place as a name the sources write after "in" or
"at". The LLM engine shows it too, when every claim of the
model's fails and the offline answer on the same passages stands in its place.
Nothing here invents text: each answer is a span of the sources.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..text.dates import MONTH_NAMES, MONTH_PATTERN, WEEKDAY_NAMES, WEEKDAY_PATTERN
from ..text.lexical import terms, terms_many, words

# Kinds whose direct answer opens the answer text (measured on dev: benchmarks/RESULTS.md).
LEAD_WITH: frozenset[str] = frozenset()

_AUXILIARY = re.compile(
    r"^\W*(?:is|are|was|were|do|does|did|has|have|had|can|could|will|would|should|shall|may|"
    r"might|must)\b", re.IGNORECASE)
_WH = re.compile(r"\b(how (?:many|much|old|long|far|tall|high|big|large|deep|wide|heavy)"
                 r"|when|who|whom|whose|what|which|where|why|how)\b",
                 re.IGNORECASE)
_NUMBER_NOUNS = frozenset("number amount percentage percent total cost price sum count".split())
_DATE_NOUNS = frozenset("year date day month".split())
_ENTITY_NOUNS = frozenset(
    """company companies firm firms organization organisation organizations organisations
    individual individuals person people entity player players team teams celebrity artist
    executive ceo founder institution agency brand startup group name club athlete""".split()
)
_FILLER = frozenset("is was are were the a an of".split())
# Nouns that ask for a person, whose full name a reader wants ("Sam Bankman-Fried"), where
# a company's longer spellings are not its name ("Epic Games v. Google", "Alphabet's Google").
_PERSON_NOUNS = frozenset(
    """individual individuals person people celebrity artist executive ceo founder athlete player
    professor official spokesman spokeswoman spokesperson leader lawyer attorney judge coach
    actor actress singer author writer journalist reporter scientist researcher economist
    analyst politician president minister senator governor director manager investor""".split())

# Titles written before a person's name ("Governor Greg Abbott", "Chicago Mayor Brandon
# Johnson"): not part of the name, and the one the question asks about tells who is meant.
_TITLES = _PERSON_NOUNS | frozenset(
    """chancellor mayor premier chairman chairwoman chair chief secretary commissioner
    prosecutor sheriff captain ambassador general spokesperson""".split())
# Titles that are part of how a person is named ("King Charles"): tell who is meant only.
_ROYAL = frozenset("king queen prince princess pope emperor empress".split())


# Nouns that ask where: "In which region ...?" is answered as "Where ...?" is.
_PLACE_NOUNS = frozenset(
    """city cities country countries state states town towns village region province place
    location county capital nation continent island district area neighborhood""".split())


_KNOWN_NOUNS = _NUMBER_NOUNS | _DATE_NOUNS | _ENTITY_NOUNS | _PERSON_NOUNS | _PLACE_NOUNS
# Past describing words, only nouns that are no verbs: "what bettors can place ...", "what
# analysts state ..." ask for neither.
_LOOKED_PAST = _PERSON_NOUNS | (_PLACE_NOUNS - {"place", "state", "states"})


def asks_for_person(question: str) -> bool:
    """"Who ...?" or "Which individual ...?": a person, named in full."""
    head, noun = _asked(question)
    return head in ("who", "whom", "whose") or (head in ("what", "which")
                                                and noun in _PERSON_NOUNS)


def _asked(question: str) -> tuple[str, str]:
    """The first question word, lower-cased ("" if none), and the noun after a
    "what"/"which" ("which company" -> "company"; "" otherwise)."""
    match = _WH.search(question)
    if match is None:
        return "", ""
    head = match.group(1).lower()
    if head not in ("what", "which"):
        return head, ""
    after = [w for w in words(question[match.end():])[:5] if w not in _FILLER]
    if not after:
        return head, ""
    # "Which geological sciences professor ...": a person (or "which African country": a
    # place), past the words describing it. Only those: "which football club" looked past
    # "football" asked for "Everton" where the gold is "Everton Football Club" (dev: 1 of
    # 12 such answers exact), and "which two individuals" asks for two.
    if after[0] not in _KNOWN_NOUNS and not _NUMBER.fullmatch(after[0]):
        return head, next((w for w in after[1:3] if w in _LOOKED_PAST), after[0])
    return head, after[0]


def _measured(head: str) -> str | None:
    """ "measure" when the question (its first question word, `_asked`) asks how long, far,
    tall ... (a number with its unit), "amount" for how much (with its unit when it has
    one: "32 ounces", "$19 million")."""
    if head == "how much":
        return "amount"
    if head == "how old":
        return "age"
    return "measure" if head.startswith("how ") and head != "how many" else None


def question_kind(question: str) -> str:
    """What the question asks for: "number", "date", "person" (or organisation), "place"
    or "other".

    The first question word decides ("Who ...", "... , which company ..."); a
    question opening with an auxiliary ("Did ...", "Is ...") asks yes or no,
    whatever "when" or "who" its clauses hold.
    """
    if _AUXILIARY.match(question):
        return "other"
    head, noun = _asked(question)
    if head.startswith("how "):
        return "number"
    if head == "when":
        return "date"
    if head == "where":
        return "place"
    if head in ("who", "whom", "whose"):
        return "person"
    for kind, nouns in (("number", _NUMBER_NOUNS), ("date", _DATE_NOUNS),
                        ("person", _ENTITY_NOUNS | _PERSON_NOUNS), ("place", _PLACE_NOUNS)):
        if noun in nouns:
            return kind
    return "other"


_CAPITALISED = r"[A-Z][\w'’.&-]*"
_NAME = re.compile(_CAPITALISED + r"(?:[^\S\n]+(?:(?:of|de|da|van|von|der|del|al|bin|la|le)"
                   r"[^\S\n]+)?"
                   + _CAPITALISED + r")*")
_POSSESSIVE = re.compile(r"[’']s\b")
_TOKEN = re.compile(r"\S+")
_NOT_NAMES = frozenset([
    *"""the a an he she it they we i his her its their this that these those there here however
    meanwhile but and or so yet after before when while although though if as at in on by for
    from with without according despite during since until last next earlier later today
    yesterday tomorrow mr mrs ms dr also still then now what who which where why how yes
    no me my mine you your yours us our ours him them every each any some many more
    most another none""".split(), *MONTH_NAMES, *WEEKDAY_NAMES,
])
_SCALE = r"(?:\s?(?:%|percent|per cent|million|billion|trillion|thousand|hundred))?"
# "$1.2 billion", "$US93.96", "US$5", "67¢" ("3," is 3).
_FIGURE = r"(?:US\$|\$US|[ACNH]\$|[$€£¥])?\d(?:[\d,]*\d)?(?:\.\d+)?¢?" + _SCALE
# "one" is left out: "one of them", "One ton" are rarely the count asked for.
_SPELLED = (r"(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
            r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|"
            r"sixty|seventy|eighty|ninety|hundreds|thousands|dozens?)" + _SCALE)
_NUMBER = re.compile(r"(?<![\w.])(?:" + _FIGURE + r"(?:\s(?:to|and|-)\s" + _FIGURE + r")?|"
                     + _SPELLED + r")(?![\w-])", re.IGNORECASE)
_YEAR = re.compile(r"(?:19|20)\d\d")
# "How long ...?", "How far ...?": a number with its unit ("two years", "5 feet, 10 inches").
_UNIT = (r"(?:second|minute|hour|day|week|month|year|decade|inch(?:es)?|foot|feet|yard|mile|"
         r"met(?:er|re)|kilomet(?:er|re)|pound|ounce|ton(?:ne)?|kilogram|gram|acre|hectare|"
         r"gallon|lit(?:er|re)|quart|barrel)s?(?![\w-])")
_AMOUNT = _NUMBER.pattern + r"\s+" + _UNIT
_MEASURE = re.compile(_AMOUNT + r"(?:\s?,?\s(?:and\s)?" + _AMOUNT + r")*", re.IGNORECASE)
_AGE = re.compile(r"(?<![\w.])(\d{1,3})[- ]years?[- ]old\b|\baged? (\d{1,3})\b", re.IGNORECASE)
_MONTH = MONTH_PATTERN + r"\.?"
_WEEKDAY = f"(?:{WEEKDAY_PATTERN})"
_DATE = re.compile(
    r"\b(?:" + _MONTH + r"\s\d{1,2}(?:st|nd|rd|th)?(?:,?\s\d{4})?"
    r"|\d{1,2}(?:st|nd|rd|th)?\s" + _MONTH + r"(?:,?\s\d{4})?"
    r"|" + _MONTH + r"\s\d{4}"
    r"|(?:last|this|next)\s(?:week|month|year|" + _WEEKDAY + r")"
    r"|" + _WEEKDAY + r"|yesterday|today|(?:19|20)\d\d"
    # "in February", "the end of August" (a month alone only after a word that dates it:
    # "May" is also a verb), "two years ago".
    r"|(?:(?<=\bin\s)|(?<=\bof\s)|(?<=\bsince\s)|(?<=\buntil\s)|(?<=\bearly\s)"
    r"|(?<=\blate\s))" + _MONTH
    + r"|(?:a|an|one|several|\d+|" + _SPELLED + r")\s(?:hour|day|week|month|year|decade)s?\sago"
    r")\b"
)
# Where a sentence starts: the text's start, or after a full stop, with quote marks between.
# A sentence's end, its closing quote marks, a space; or a line break ("Advertisement\n\n").
_FULL_STOP = r"(?:[.!?][\"”’')\]]*\s|\n)"
_OPENING = r"[\s\"“‘'(\[]*$"  # then only spaces and opening quote marks before the word
_SENTENCE_START = re.compile(f"(?:^|{_FULL_STOP}){_OPENING}")
_AFTER_SENTENCE = re.compile(_FULL_STOP + _OPENING)  # not at the text's start
# A wire dateline ("NEW DELHI, India (CNN) -- ") names where, not who.
_DATELINE = re.compile(r"^[^()\n]{0,60}\((?:CNN|AP|AFP|Reuters|UPI)\)\s*(?:--|—|–)\s*")
_MID_SENTENCE_CAPITAL = re.compile(r"[\w,;:][^\S\n]+([A-Z][\w-]*)")  # not a new line's


def direct_answer(
    question: str, quotes: Sequence[str], context: Sequence[str] = (),
    articles: Sequence[str] = (),
) -> str | None:
    """The name, number or date the question asks for: a span of a quote, not of the question.

    `quotes` are the cited sentences, best first; `context` is the retrieved text;
    `articles` the cited articles' whole texts, where a person the passages name by
    surname only is named in full (news names a person in full in its first lines).
    Numbers and dates come from the best sentence that holds one. A name is the
    one most quotes and retrieved passages mention (a multi-hop answer is what
    its articles share), "Altman" counting for "Sam Altman"; the context also
    tells names from capitalised sentence openers. None for every other
    question, yes/no included (no rule was tried that tells yes from no).
    """
    kind = question_kind(question)
    if kind == "other":
        return None
    asked = set(terms(question))
    named = kind in ("person", "place")
    seen = _Seen.of([*quotes, *context]) if named else _Seen(frozenset(), frozenset())
    person = asks_for_person(question)
    found: dict[str, _Mention] = {}
    head = _asked(question)[0]
    spans = _measured(head) or kind
    for rank, quote in enumerate(quotes):
        if kind == "number" and _DENIED.search(quote):
            continue  # "Reports that 300 miners were injured are false": no figure to give
        near = _Nearness.of(quote, asked)
        for start, span in _spans(spans, quote, seen, person=person):
            key = " ".join(terms(span)) or span.lower()
            if span in question or (kind != "number" and set(key.split()) <= asked):
                continue
            if person and _kin(span, question):
                continue
            mention = found.setdefault(key, _Mention(span, (rank, start)))
            mention.count += mention.last != rank
            mention.last = rank
            mention.distance = min(mention.distance, near.distance(start, start + len(span)))
            mention.titled = mention.titled or (person and _titled(quote, span, start, asked))
    if not found:
        return None
    if kind == "place":
        places = _Names.of([*quotes, *context], seen).places_in(found)
        return _best_place(places, context, where=head == "where")
    if kind != "person":  # the best quote's, nearest the question's words
        if head == "how many":
            _mark_counted(found, quotes, question)
        return _nearest_in_best(found.values(), longest=kind == "date").text
    if not person:
        return _best_name(found, [set(terms(text)) for text in context])
    names = _Names.of([*quotes, *context], seen, articles)
    best = _best_person(found, context, names)
    # A place, or its people ("Iraqi"), is no answer to "who".
    return None if names.rank(best) == 0 or names.demonym(best) else best


# A sentence that says a figure is wrong, or that none: "... are false", "no miners were".
_DENIED = re.compile(r"\b(?:(?:is|are|was|were) (?:false|untrue|wrong|inaccurate|incorrect)"
                     r"|denied|not true|no \w+ (?:was|were|had|have) )", re.IGNORECASE)
_VAGUE = frozenset("hundreds thousands dozens dozen".split())


def _mark_counted(found: dict[str, _Mention], quotes: Sequence[str], question: str) -> None:
    """Mark the figures that count what "How many <noun>" asks for ("19 victims" for
    "How many victims ...?"), so they come before others of their quote; a vague one
    ("Hundreds of militants") comes after every figure."""
    after = re.search(r"\bhow many\s+((?:[\w'’-]+\s+){0,2}[\w'’-]+)", question, re.IGNORECASE)
    counted = set(terms(after.group(1))) if after else set()
    for mention in found.values():
        quote = quotes[mention.first[0]]
        following = quote[mention.first[1] + len(mention.text):][:40]
        mention.counted = bool(counted & set(terms(" ".join(following.split()[:3]))))
        mention.vague = mention.text.lower() in _VAGUE


def _kin(name: str, question: str) -> bool:
    """Whether a name shares its surname with a person the question names, not asking for
    a relative: "Jason Kelce" is no answer to "Who is Travis Kelce dating?" (but is to "Who
    is Kelce's brother?")."""
    surname = name.split()[-1]
    return len(name.split()) > 1 and re.search(
        rf"(?<!\w){re.escape(surname)}(?![\w'’])", question) is not None


_BEFORE = re.compile(r"(\w+)\W{0,3}$")
_AFTER = re.compile(r"^,\s+((?:[\w'’-]+\s+){0,3}[\w'’-]+)")


def _titled(quote: str, name: str, start: int, asked: set[str]) -> bool:
    """Whether the quote gives the name the title the question asks about: "signed by
    Governor Greg Abbott" or "Greg Abbott, the state's governor" for "Who is the governor
    of Texas?", where "In Texas, House Bill 20" only shares a word with it."""
    at = quote.find(name, start)
    if at < 0:
        return False
    before = _BEFORE.search(quote, max(0, at - 40), at)
    after = _AFTER.match(quote[at + len(name):])
    near = [before.group(1)] if before else []
    near += after.group(1).split() if after else []
    return any(w.lower() in _TITLES | _ROYAL and set(terms(w)) <= asked for w in near)


@dataclass
class _Mention:
    text: str
    first: tuple[int, int]  # (quote rank, offset): where it was seen first
    count: int = 0
    last: int = -1  # the last quote that mentioned it: each quote counts once
    distance: int = 1_000  # fewest words between it and a question term in one quote
    titled: bool = False  # a quote gives it the title the question asks about
    counted: bool = False  # followed by what "how many" counts (`_mark_counted`)
    vague: bool = False  # "hundreds"


@dataclass(frozen=True)
class _Nearness:
    """Where a quote holds the question's terms, to tell how near a name stands to them.

    "Who says the government acted worse than apartheid?" over "...led the Dalai Lama
    to cancel a trip, Archbishop Desmond Tutu lashed out at his government, saying it
    had acted worse than apartheid regimes": both are named as often; the one the
    question's words surround is the one it asks about.
    """

    starts: list[int]  # each word's offset in the quote
    asked: list[int]  # indexes of the words that are question terms

    @classmethod
    def of(cls, quote: str, asked: set[str]) -> _Nearness:
        found = list(re.finditer(r"\w+", quote))
        stems = terms_many(m.group() for m in found)
        return cls([m.start() for m in found],
                   [i for i, t in enumerate(stems) if t and t[0] in asked])

    def distance(self, start: int, end: int) -> int:
        first, last = bisect_left(self.starts, start), bisect_left(self.starts, end) - 1
        return min((first - i if i < first else i - last for i in self.asked
                    if not first <= i <= last), default=1_000)


def _nearest_in_best(found: Iterable[_Mention], *, longest: bool = False) -> _Mention:
    """The best quote's mention nearest the question's words (then, with `longest`, the
    most precise: "September 20" over "August" as near; then the first)."""
    return min(found, key=lambda m: (m.first[0], not m.counted, m.vague, m.distance,
                                     -len(m.text) if longest else 0, m.first[1]))


def _best_place(places: dict[str, _Mention], context: Sequence[str], *, where: bool) -> str | None:
    """Of the names that are places, the one asked for; None when none is (a person is no
    answer to "where").

    "Where did she die?" asks where one event happened: the best quote's place nearest
    the question's words. "Which country ...?" asks, like "which company", for the one
    the quotes and passages share (MultiHop-RAG dev: "Israel", not the "Gaza" beside
    the question's "blockade").
    """
    if not places:
        return None
    if where:
        return _nearest_in_best(places.values()).text
    return _best_name(places, [set(terms(text)) for text in context])


def _best_name(found: dict[str, _Mention], context: Sequence[set[str]]) -> str:
    """The name in most quotes and passages (`context`: each one's terms); a surname
    counts for the full name it ends. Ties go to the name nearest the question's words,
    then to the best quote's first. A person asked for: `_best_person`."""
    counts = {k: m.count + sum(set(k.split()) <= c for c in context) for k, m in found.items()}
    for key in found:
        size = len(key.split())
        longer = [o for o in found if len(o.split()) > size and o.split()[-size:] == key.split()]
        if longer:
            target = max(longer, key=lambda o: counts[o])
            counts[target] += counts[key]
            counts[key] = 0
    best = max(found, key=lambda k: (counts[k], -found[k].distance, -found[k].first[0],
                                     -found[k].first[1]))
    return found[best].text


def _best_person(found: dict[str, _Mention], context: Sequence[str], names: _Names) -> str:
    """The person most quotes and passages (`context`, one text an article) name, in full.

    The names that name one person ("Sam", "Altman", "Sam Altman") count together:
    the quotes naming each, and the passages naming any by surname as written
    ("Tutu" for "Archbishop Desmond Tutu", "Areas" not "areas"); a
    place ("in northern India") comes after every other name. (Preferring names
    written in full somewhere over one-word ones was tried: "Caroline Ellison" then
    beat a "Bankman-Fried" whose passages never write him in full.)
    """
    groups: dict[str, list[str]] = {}
    for key, mention in found.items():
        groups.setdefault(names.person(mention.text), []).append(key)
    passages = {k: {i for i, text in enumerate(context) if _writes(text, m.text.split()[-1])}
                for k, m in found.items()}

    def score(name: str) -> tuple[int, int, bool, int, tuple[int, int]]:
        keys = groups[name]
        first = min(found[k].first for k in keys)
        count = sum(found[k].count for k in keys) + len(set().union(*(passages[k] for k in keys)))
        return (min(names.rank(found[k].text) for k in keys), count,
                any(found[k].titled for k in keys), -min(found[k].distance for k in keys),
                (-first[0], -first[1]))

    return max(groups, key=score)


def _writes(text: str, word: str) -> bool:
    """Whether `text` holds `word` as a word of its own, as written."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) is not None


_SENTENCE_END = re.compile(r"\w\w[.!?]$")  # "Prize." ends a sentence; "J." is an initial
# Chosen on MultiHop-RAG dev questions for a person (5%, 10%, 20%, 50%, any mention: 141,
# 139, 138, 138, 141 of 174 "who" exact, 172 of 194 "which" but 170 for any; RESULTS.md):
# "Alameda" is written after "at" in 1 of its 7 mentions.
PLACE_SHARE = 0.05
_LOCATIVE = re.compile(
    r"\b(?:in|at|near|across|throughout|northern|southern|eastern|western|central)\s+"
    r"(?:the\s+)?(" + _CAPITALISED + r"(?:\s+" + _CAPITALISED + r")*)")


@dataclass(frozen=True)
class _Names:
    """The names of persons the quotes and passages write, to name one in full."""

    runs: list[_Run]  # each capitalised run, as a person's name would be read from it
    places: Counter[str]  # how often a name (its terms) is written after "in", "at" ...
    articles: list[list[_Run]]  # runs of each cited article: where a person is written in full

    @property
    def cited(self) -> list[_Run]:
        return [run for article in self.articles for run in article]

    @classmethod
    def of(cls, texts: Sequence[str], seen: _Seen, articles: Sequence[str] = ()) -> _Names:
        def runs_of(texts: Sequence[str]) -> list[_Run]:
            return _Run.many([span.split() for text in texts
                              for _, span in _spans("person", text, seen, person=True)])

        places = Counter(" ".join(terms(m.group(1))) for text in texts
                         for m in _LOCATIVE.finditer(text) if not _POSSESSIVE.search(m.group(1)))
        return cls(runs_of(texts), places, [runs_of([text]) for text in articles])

    def rank(self, name: str) -> int:
        """0 for a place, 1 for any other name.

        A place (or a workplace: "at OpenAI") is a name written after "in", "at",
        "near" ... ("in northern India") in at least `PLACE_SHARE` of its mentions. A
        person is too, now and then ("looked at Swift": 1 of Swift's 31 mentions).
        """
        key = tuple(terms(name))
        if not key:
            return 1
        joined = " ".join(key)
        after = sum(n for p, n in self.places.items() if p == joined or p.endswith(" " + joined))
        written = sum(1 for run in self.runs if run.endings[0][-len(key):] == key)
        return 0 if after and after >= PLACE_SHARE * written else 1

    def demonym(self, name: str) -> bool:
        """Whether a one-word name is a place's people or adjective: "Iraqi" where the
        texts write "in Iraq", "Sudanese" for "Sudan"."""
        key = terms(name)
        return len(key) == 1 and any(
            key[0].startswith(place) and 0 < len(key[0]) - len(place) <= 3
            for place in self.places if " " not in place and len(place) >= 3)

    def places_in(self, found: dict[str, _Mention]) -> dict[str, _Mention]:
        """The mentions that name a place (`rank` 0)."""
        return {k: m for k, m in found.items() if self.rank(m.text) == 0}

    def person(self, name: str) -> str:
        """The person a name names, in full: "Sam Altman" for "Altman", "CEO Sam Altman"
        and, when no longer name ends with it, for the first name "Sam" alone. A name
        with its given name keeps it: "Jason Kelce" is not the "Travis Kelce" the
        articles name first."""
        tokens = name.split()
        if not terms(tokens[-1]):  # "Barber Shop Near Me": no surname to name anyone by
            return name
        given = terms(tokens[-2]) if len(tokens) > 1 else []
        full = self.full(tokens[-1], given[-1] if given else None)
        if " " not in full:  # "Sam" is "Sam Altman" if "Altman" is also a name of its own
            runs = [run.tokens for run in (*self.runs, *self.cited)]
            alone = {run[0] for run in runs if len(run) == 1}
            begun = Counter(" ".join(run[:2]) for run in runs
                            if len(run) > 1 and run[0] == full and run[1] in alone)
            if begun:
                return begun.most_common(1)[0][0]
        return full

    def full(self, name: str, given: str | None = None) -> str:
        """The name as the articles write it in full: "Sam Bankman-Fried" for "Bankman-Fried".

        News names a person in full once and by surname after, so the best-cited
        sentence often holds only the surname; a reader asked "who" wants the person.
        Every longer name in the quotes, passages and cited articles that ends with
        this one counts for each of its endings ("FTX CEO Sam Bankman-Fried" for "Sam
        Bankman-Fried" too); the longest ending that every such mention shares wins,
        so a title written once does not become part of the name. Unchanged when none
        is longer. Of two persons sharing the surname, the one the cited articles name in
        full first: a relative is named in full each time ("Gabe Bankman-Fried" four times
        in an article that writes "Sam Bankman-Fried" twice, then "Bankman-Fried" 88 times).
        `given` (a term) names the person when the mention wrote it.
        """
        key = tuple(terms(name))
        if not key:
            return name
        counts: dict[tuple[str, ...], int] = {}
        spelled: dict[tuple[str, ...], str] = {}
        for run in (*self.runs, *self.cited):
            for i, ending in run.longer(key):
                counts[ending] = counts.get(ending, 0) + 1
                spelled.setdefault(ending, " ".join(run.tokens[i:]))
        first = given or self._named_first(key, len(name.split()))
        if first is not None:
            counts = {w: n for w, n in counts.items() if w[-len(key) - 1] == first} or counts
        if not counts:
            return name
        most = max(counts.values())
        return spelled[max((w for w, n in counts.items() if n == most), key=len)]

    def _named_first(self, key: tuple[str, ...], size: int) -> str | None:
        """The given name in each cited article's first longer name ending with `key`
        (`size` tokens): "sam" of "Sam Bankman-Fried", the one most articles give (then the
        first's). A word that is no given name ("The Kelce brothers", "CEO") is passed by."""
        votes: Counter[str] = Counter()
        for article in self.articles:
            for run in article:
                if len(run.tokens) <= size or next(run.longer(key), None) is None:
                    continue
                before = run.tokens[-size - 1]
                given = terms(before)
                if (given and before.lower() not in _NOT_NAMES and not _ACRONYM.fullmatch(before)
                        and not _SENTENCE_END.search(before)):
                    votes[given[-1]] += 1
                    break
        return votes.most_common(1)[0][0] if votes else None


@dataclass(frozen=True)
class _Run:
    """A capitalised run's tokens and the terms of each of its endings, found once: a
    question's names are looked up in hundreds of runs (the cited articles' too)."""

    tokens: list[str]
    endings: list[tuple[str, ...]]  # endings[i]: the terms of tokens[i:]

    def longer(self, key: tuple[str, ...]) -> Iterator[tuple[int, tuple[str, ...]]]:
        """(start, terms) of each ending of this run longer than `key` that ends with it,
        shortest first; none across a full stop ("Nobel Peace Prize. Tutu")."""
        for i in range(len(self.tokens) - 1, -1, -1):
            if i < len(self.tokens) - 1 and _SENTENCE_END.search(self.tokens[i]):
                return
            ending = self.endings[i]
            if len(ending) > len(key) and ending[-len(key):] == key:
                yield i, ending

    @classmethod
    def many(cls, runs: list[list[str]]) -> list[_Run]:
        stems = iter(terms_many(t for run in runs for t in run))
        out = []
        for tokens in runs:
            each = [tuple(next(stems)) for _ in tokens]
            endings = [tuple(t for part in each[i:] for t in part) for i in range(len(each))]
            out.append(cls(tokens, endings))
        return out


def _spans(kind: str, quote: str, seen: _Seen, *, person: bool = False) -> list[tuple[int, str]]:
    """(offset, text) of what could answer a question of this kind within one quote
    (`person`: the question asks for a person, see `_as_person`)."""
    if kind == "age":  # "the 62-year-old", "aged 86"; else any figure ("died at 86")
        ages = [(m.start(1), m.group(1)) for m in _AGE.finditer(quote)]
        return ages or _spans("number", quote, seen)
    if kind in ("measure", "amount"):
        measures = [(m.start(), m.group()) for m in _MEASURE.finditer(quote)]
        if kind == "measure":
            return measures
        ends = [(start, start + len(text)) for start, text in measures]
        return sorted(measures + [n for n in _spans("number", quote, seen)
                                  if not any(a <= n[0] < b for a, b in ends)])
    if kind == "number":
        return [(start, text) for m in _NUMBER.finditer(quote)
                for start, text in _range_or_two(m) if not _YEAR.fullmatch(text)]
    if kind == "date":
        return [(m.start(), m.group()) for m in _DATE.finditer(quote)]
    out = []
    dateline = _DATELINE.match(quote)
    begin = dateline.end() if dateline else 0
    for match in _runs(quote, begin):
        span = _name_in(quote, match, seen, begin)
        named = None if span is None else _as_named(span[1], seen, person)
        if span is not None and named:
            out.append((span[0], named))
    return out


_RANGE = re.compile(r"\s(?:to|and|-)\s")
_CURRENCY = re.compile(r"^\D*|¢")


def _range_or_two(match: re.Match[str]) -> list[tuple[int, str]]:
    """A figure, or a range of two in one currency ("3,000 to 3,500", "$10 to $20"); "added
    67¢ to $US93.96" is two figures, not a range."""
    text = match.group()
    parts = _RANGE.split(text, maxsplit=1)
    if len(parts) == 1 or ({m.group() for m in _CURRENCY.finditer(parts[0])}
                           == {m.group() for m in _CURRENCY.finditer(parts[1])}):
        return [(match.start(), text)]
    second = match.start() + text.index(parts[1], len(parts[0]))
    return [(match.start(), parts[0]), (second, parts[1])]


_ACRONYM = re.compile(r"[A-Z][A-Z.&]*[A-Z]\.?")  # "CEO", "FTX", "U.K.": no lower case


def _as_named(span: str, seen: _Seen, person: bool) -> str | None:
    """What a capitalised run names, or None when it names no one the question asks for.

    "CEO of Flexport" names Flexport. Asked for a person, a run loses what is not a
    person's name: its titles ("CEO Sam Altman", "Spokesman Dan Watt", words the text
    also writes in lower case), an affiliation ("Brittany Kasko of Fox News"), and a
    run of acronyms only ("FTX", "SEC") is no one.
    """
    head, of, tail = span.partition(" of ")
    if of and all(_ACRONYM.fullmatch(t) for t in head.split()):
        head, of, tail = tail, "", ""
    if not person:
        return head + of + tail
    tokens = head.split()
    # "Chiefs TE Travis Kelce": a title written as an acronym ends what comes before the name
    # (with two tokens at least after it).
    cut = max((i for i, t in enumerate(tokens[:-2]) if _ACRONYM.fullmatch(t)), default=-1)
    # So does a title ("Chicago Mayor Brandon Johnson", "Governor Greg Abbott").
    cut = max([cut, *(i for i, t in enumerate(tokens[:-1]) if t.lower() in _TITLES)])
    tokens = tokens[cut + 1:]
    while len(tokens) > 1 and (_ACRONYM.fullmatch(tokens[0]) or tokens[0].lower() in seen.lower):
        tokens = tokens[1:]
    if all(_ACRONYM.fullmatch(t) for t in tokens):
        return None
    return " ".join(tokens)


def _runs(quote: str, begin: int) -> Iterator[re.Match[str]]:
    """Capitalised runs, and the name after each possessive inside one: "UNHCR's Jorge
    Holly" names the UNHCR and Jorge Holly."""
    for match in _NAME.finditer(quote, begin):
        yield match
        for possessive in _POSSESSIVE.finditer(quote, match.start(), match.end()):
            after = _NAME.match(quote, possessive.end() + 1, match.end())
            if after is not None:
                yield after


def _name_in(
    quote: str, match: re.Match[str], seen: _Seen, begin: int = 0
) -> tuple[int, str] | None:
    """The name inside a capitalised run, without "The", a sentence opener or "'s ..."."""
    end = match.end()
    possessive = _POSSESSIVE.search(quote, match.start(), end)
    if possessive is not None:
        end = possessive.start()
    tokens = list(_TOKEN.finditer(quote, match.start(), end))  # not from the text's start
    if tokens and match.start() and (quote[match.start() - 1].isalnum()
                                     or quote[match.start() - 1] in "-_/"):
        tokens = tokens[1:]  # "-LRB-": the run starts inside a word, which is no name
    # The last few characters tell (searching all before it was quadratic on an article).
    window = max(begin, match.start() - 32)
    pattern = _SENTENCE_START if window == begin else _AFTER_SENTENCE
    at_start = pattern.search(quote[window : match.start()]) is not None
    while tokens and (tokens[0].group().lower() in _NOT_NAMES
                      or (at_start and seen.opener(tokens[0].group(), alone=len(tokens) == 1))):
        at_start = False
        tokens = tokens[1:]
    if not tokens:
        return None
    text = quote[tokens[0].start() : end].rstrip(".-'’")
    if not text or all(t.lower() in _NOT_NAMES for t in text.split()):
        return None
    return tokens[0].start(), text


@dataclass(frozen=True)
class _Seen:
    """How the retrieved text writes its words: tells "Using" (an opener) from "Tomas"."""

    capitalised: frozenset[str]  # seen capitalised mid-sentence: names
    lower: frozenset[str]  # seen in lower case: ordinary words

    @classmethod
    def of(cls, texts: Iterable[str]) -> _Seen:
        joined = "\n".join(texts)
        return cls(frozenset(m.group(1) for m in _MID_SENTENCE_CAPITAL.finditer(joined)),
                   frozenset(re.findall(r"\b[a-z][a-z'-]*", joined)))

    def opener(self, word: str, *, alone: bool) -> bool:
        """Whether a capitalised word opening a sentence is an ordinary word, not a name.

        Alone ("Following ...") it must be seen capitalised mid-sentence to count
        as a name; before another capitalised word ("Using Caroline", "Tomas Berg")
        it is an ordinary word only if the text also writes it in lower case.
        """
        return word not in self.capitalised if alone else word.lower() in self.lower


def kind_bonus(kind: str, sentence: str) -> float:
    """A small nudge toward sentences that carry the kind of fact asked for."""
    if kind == "number" and _NUMBER.search(sentence):
        return 0.15
    if kind == "date" and _DATE.search(sentence):
        return 0.15
    if kind == "person" and _NAME.search(sentence[1:]):
        return 0.05
    if kind == "place" and _LOCATIVE.search(sentence):
        return 0.05
    return 0.0
