"""From a model's draft claims to what a reader may see: verified, supported, numbered.

A model's claim is kept only when
1. at least one of its quotes is found, character-exact, in the article of a source
   the model was shown (a quote under the wrong label is looked up in the other
   sources of the same prompt and re-attributed, saying so; a claim whose quotes all
   fail may rest on the one shown sentence that holds nearly all of it, marked
   `found_by_newsqa`), and
2. its verified quotes support it (`support.check_support`: names, numbers and
   dates in the claim appear in the quotes or the question, and enough of its
   content is in the quotes), and
3. the answer's quotes, its own and those kept before it, relate to the question.
Everything else goes to the rejected list with its reason, and the claims that
failed are kept aside for one re-ask.

`Grounder` takes claims one at a time, so a stream can show each claim the moment
it is verified; the final `Answer` is built from the same state, so the streamed
text and the final text are the same words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ..models import Article, Citation, Passage, RejectedCitation
from ..text.sentences import sentence_spans
from .citations import ClaimedQuote, citation_for, verify_one
from .drafts import DraftCitation, DraftClaim, is_no_answer, is_yes_no
from .sources import passage_for_label, unescape_quote
from .support import (
    CLAUSE_BOUNDARY,
    RELEVANCE_THRESHOLD,
    check_support,
    content_terms,
    contradiction,
    coverage,
    is_instruction,
    missing_facts,
    off_subject,
    question_subjects,
    relevance,
)

_INLINE_MARKER = re.compile(r"\s*\[(?:S?\d+)(?:\s*,\s*S?\d+)*\]")


# Openings are cut at support.CLAUSE_BOUNDARY, before a clause that adds to what came before.
_MIN_OPENING_TERMS = 4  # content terms an opening must keep, its outlet and "reported" aside
# An opening is the grounder's choice, not the model's: it must be covered better than a
# whole claim (support.SUPPORT_THRESHOLD), so cutting cannot turn a weak claim into a pass.
OPENING_THRESHOLD = 0.6
# A "Yes" states the whole question: its quotes must cover this much of what the question
# asks (support.relevance, over its heaviest terms), not the 15% one relevant quote needs.
YES_RELEVANCE = 0.5
# A claim whose quotes fail may rest on one sentence newsqa finds in the sources the model
# was shown, if that sentence holds nearly all of it: the model copied a sentence and then
# garbled or mislabelled its quote. One sentence, never a combination: a claim assembled
# from the words of several best-matching sentences passed in trials where its meaning
# was the reverse of theirs ("benefits" for "siphons off"; issue 15's regrade).
SEARCH_THRESHOLD = 0.8
_SEARCH_CANDIDATES = 4


@dataclass(frozen=True)
class Failure:
    """A claim that was not kept, with what was wrong: the material of the re-ask."""

    claim: str
    problems: tuple[str, ...]


@dataclass
class Grounder:
    """Claims in, kept sentences (with [n] markers) out; citations numbered by first use."""

    question: str
    used: Sequence[Passage]
    articles: Mapping[str, Article]
    outlets: Sequence[str] = ()  # every publisher the index holds: not a question's subject
    citations: list[Citation] = field(default_factory=list)
    rejected: list[RejectedCitation] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    first: list[Citation] = field(default_factory=list)  # the first kept claim's evidence
    _numbers: dict[tuple[str, int, int], int] = field(default_factory=dict)
    trimmed: int = 0  # claims cut to their supported opening clauses
    searched: int = 0  # claims kept on a sentence newsqa found, their own quotes failing
    _waiting: list[tuple[str, list[Citation]]] = field(default_factory=list)
    _shown: list[Citation] | None = None  # the shown passages' sentences, for _searched
    _said: set[str] = field(default_factory=set)  # the texts of kept and waiting claims

    def add(self, claim: DraftClaim) -> None:
        """Ground one claim; kept ones join `sentences` (with [n] markers) in the order kept.

        Relevance to the question is the answer's, not each claim's ("He also
        cautioned ..." need not repeat the question): a claim whose quotes support
        it but do not yet relate to the question waits, and is kept as soon as the
        answer's quotes so far do; `close` rejects what never did.
        """
        text, found = self.supported(claim)
        if found and text not in self._said:  # a re-ask repeats claims already kept
            self._said.add(text)
            self._waiting.append((text, found))
            self._settle()

    def close(self) -> None:
        """The end of a draft: waiting claims that never related to the question fail."""
        for text, found in self._waiting:
            why = self._unrelated(found) or ""
            self.failures.append(Failure(text, (f"its quotes do not answer the question: {why}",)))
            self.rejected.extend(
                RejectedCitation(article_id=c.article_id, quote=c.quote,
                                 reason=f"does not answer the question: {why}")
                for c in found
            )
        self._waiting.clear()

    def supported(self, claim: DraftClaim) -> tuple[str, list[Citation]]:
        """(what the quotes support of the claim, its verified quotes); ("", []) with the
        reasons recorded when they support none of it.

        The one check answers, summary bullets and timeline events all go through
        (relevance to a question aside, which `add` judges over the whole answer). A
        claim whose first clauses are supported and whose rest is not ("Amazon dominates
        e-readers, and hosts Prime Day") is cut to the supported opening, the model's own
        words, and the cut is counted in `trimmed`: the reader sees only what was checked.
        """
        text = _INLINE_MARKER.sub("", claim.text).strip()
        if not text:
            return "", []
        found, problems = self._verified(claim, text)
        if found:
            quotes, about = [c.quote for c in found], _about(found)
            verdict = check_support(text, quotes, self.question, about=about, min_relevance=0.0)
            kept = text if verdict.supported else self._supported_opening(text, quotes, about)
            if kept:
                self.trimmed += kept != text
                return kept, _needed(kept, found)
            problems.append(f"its quotes do not support it: {verdict.reason}")
            self.rejected.extend(
                RejectedCitation(article_id=c.article_id, quote=c.quote,
                                 reason=f"does not support the claim: {verdict.reason}")
                for c in found
            )
        searched = self._searched(text)
        if searched:
            return text, searched
        self.failures.append(Failure(text, tuple(problems)))
        return "", []

    def _searched(self, text: str) -> list[Citation]:
        """The one sentence of the shown passages that holds nearly all of a claim whose
        own quotes failed ([] if none): checked as a model's quote is, at SEARCH_THRESHOLD."""
        if self._shown is None:  # split once per answer, not once per failed claim
            unique = {(p.article_id, p.start, p.end): p for p in self.used}.values()
            self._shown = [s for p in unique for s in self._passage_sentences(p)]
        candidates = list(self._shown)
        candidates.sort(key=lambda c: coverage(text, [c.quote], self.question), reverse=True)
        for sentence in candidates[:_SEARCH_CANDIDATES]:
            verdict = check_support(text, [sentence.quote], self.question,
                                    about=_about([sentence]), min_relevance=0.0,
                                    threshold=SEARCH_THRESHOLD)
            if verdict.supported:
                return [sentence.model_copy(update={"found_by_newsqa": True})]
        return []

    def _passage_sentences(self, passage: Passage) -> list[Citation]:
        article = self.articles.get(passage.article_id)
        if article is None:
            return []
        shown = article.text[passage.start:passage.end]
        return [citation_for(article, passage.start + a, passage.start + b)
                for a, b in sentence_spans(shown)]

    def _supported_opening(self, text: str, quotes: list[str], about: list[str]) -> str:
        """The longest opening of the claim, cut at a clause boundary, that its quotes
        support well ("" when no opening of `_MIN_OPENING_TERMS` content terms is)."""
        cuts = [m.start() for m in CLAUSE_BOUNDARY.finditer(text)]
        for cut in reversed(cuts):
            opening = text[:cut].rstrip(" ,;:") + "."
            if len(content_terms(opening, about)) < _MIN_OPENING_TERMS:
                break
            if check_support(opening, quotes, self.question, about=about, min_relevance=0.0,
                             threshold=OPENING_THRESHOLD).supported:
                return opening
        return ""

    def _settle(self) -> None:
        """Keep every waiting claim the answer's quotes now make relevant, oldest first.

        A claim that waited is kept after the one that made it relevant, so the answer
        can read in another order than the draft's.
        """
        progress = True
        while progress:
            progress = False
            for item in list(self._waiting):
                if self._unrelated(item[1]) is None:
                    self._waiting.remove(item)
                    self._keep(*item)
                    progress = True

    def _unrelated(self, found: Sequence[Citation]) -> str | None:
        """Why the answer's quotes with these would not relate to the question (None if they
        do): too few of its terms, or weakly related and about another subject."""
        cited = [*self.citations, *found]
        rel = relevance(self.question, [c.quote for c in cited])
        if rel < RELEVANCE_THRESHOLD:
            return (f"its quotes and the answer's cover {rel:.0%} of the question's terms "
                    f"(needs {RELEVANCE_THRESHOLD:.0%})")
        articles = [_article_text(self.articles.get(c.article_id), c.quote) for c in cited]
        return off_subject(self._subjects, articles, rel)

    @cached_property
    def _subjects(self) -> list[str]:
        """The question's names, outlets aside: fixed for the answer, found once."""
        outlets = [*self.outlets, *(p.source for p in self.used if p.source)]
        return question_subjects(self.question, outlets)

    def _keep(self, text: str, found: list[Citation]) -> None:
        if not self.sentences:
            self.first = found
        self.searched += any(c.found_by_newsqa for c in found)
        markers = list(dict.fromkeys(self._number(c) for c in found))
        self.sentences.append(text + " " + "".join(f"[{n}]" for n in markers))

    def direct(self, proposed: str) -> str | None:
        """The draft's short answer, if the kept claims' quotes support it.

        A name, number or date must be in the first kept claim's quotes (a person's
        surname will do where the passages give it to that person only). A bare yes or
        no is the question itself, asserted or denied, so it is tested against the
        question: "No" needs a kept quote or claim that says the opposite of what the
        question asks; "Yes" needs the question's names, numbers and dates in the
        quotes, most of its key terms, and nothing contradicting it. Otherwise the
        claims stand alone, without a yes or no the evidence does not show.
        """
        text = _INLINE_MARKER.sub("", proposed).strip()
        if not self.sentences or is_no_answer(text):
            return None
        if is_yes_no(text):
            return text if self._yes_no_holds(text.strip(" .!").lower() == "yes") else None
        if self._states(text):
            return text
        surname = self._surname(text)  # only asked when the full name is not in the quotes
        return text if surname and self._states(surname) else None

    def _states(self, answer: str) -> bool:
        """Every word of a short answer is in the first kept claim's quotes: a name's first
        word is not a sentence opener to forgive ("Joe Bankman-Fried" on "Bankman-Fried")."""
        return check_support(answer, [c.quote for c in self.first], self.question,
                             about=_about(self.first), threshold=1.0).supported

    def _surname(self, name: str) -> str | None:
        """'Sam Bankman-Fried' -> 'Bankman-Fried' when the shown passages give that surname
        to this one person only: news quotes name a person by surname after the first
        mention, and the model's answer gives the name in full (issue 15's run: the kept
        quote said "at Bankman-Fried's direction"). None when another first name goes
        with the surname in the passages ("Joe Biden", "Hunter Biden"): which one a
        quote means is then not shown."""
        parts = name.split()
        if len(parts) < 2 or not all(p[:1].isupper() for p in parts):
            return None
        before = re.compile(r"([A-Z][\w'’-]*)\.?\s+" + re.escape(parts[-1]) + r"\b")
        firsts = {m.group(1) for p in self.used for m in before.finditer(p.text)}
        firsts -= _TITLES
        return parts[-1] if firsts == {parts[-2]} else None

    def _yes_no_holds(self, yes: bool) -> bool:
        if not _QUESTION_OPENING.match(self.question):
            return False  # "What says Kate?" -> "Yes" (NewsQA run): not a yes/no question
        if _ORDERING.search(self.question):
            return False  # "Did A report X after B?": an order or a change no quote can show
        quotes = [c.quote for c in self.citations if not is_instruction(c.quote)]
        statement = _as_statement(self.question)
        denied = (contradiction(statement, quotes) or contradiction(statement, self.sentences))
        if not yes:
            return denied is not None
        known = [*quotes, *_about(self.citations)]
        return (denied is None and not missing_facts(statement, known)
                and relevance(self.question, quotes) >= YES_RELEVANCE)

    def _verified(self, claim: DraftClaim, text: str) -> tuple[list[Citation], list[str]]:
        found: list[Citation] = []
        problems: list[str] = []
        if not claim.citations:
            self.rejected.append(RejectedCitation(quote=text, reason="claim cites no source"))
            problems.append("it cites no source")
        for cited in claim.citations:
            result = self._check(cited)
            if isinstance(result, RejectedCitation):
                self.rejected.append(result)
                problems.append(f"{result.reason}: {result.quote!r}")
            else:
                found.append(result)
        return found, problems

    def _check(self, cited: DraftCitation) -> Citation | RejectedCitation:
        """The quote under its own label, else under any other source of the prompt."""
        label = cited.source_id.strip()
        quote = unescape_quote(cited.quote)
        named = passage_for_label(label, self.used)
        if named is not None and named.article_id not in self.articles:
            return RejectedCitation(article_id=named.article_id, quote=cited.quote,
                                    reason=f"the article of {label} is not in the index")
        if named is not None:
            result = verify_one(self._claimed(named, quote, label), self.articles)
            if isinstance(result, Citation):
                return result
        elsewhere = self._elsewhere(quote, label, named)
        if elsewhere is not None:
            return elsewhere
        titled = self._titled(quote)
        if titled is not None:
            return RejectedCitation(article_id=titled.article_id, quote=cited.quote,
                                    reason="quote not found: it is a source's title, not its "
                                    "text; quote the text")
        if named is None:
            return RejectedCitation(quote=cited.quote, reason=f"unknown source {label or '(none)'}")
        return RejectedCitation(article_id=named.article_id, quote=cited.quote,
                                reason=f"quote not found in {label}")

    def _titled(self, quote: str) -> Passage | None:
        """The shown passage whose title the quote copies (a small model's common slip)."""
        wanted = _squashed(quote)
        for passage in self.used:
            title = _squashed(passage.title)
            if title and (title in wanted or (len(wanted) >= 20 and wanted in title)):
                return passage
        return None

    def _elsewhere(self, quote: str, label: str, named: Passage | None) -> Citation | None:
        """A quote the model put under the wrong label: found in another shown source."""
        searched = {named.article_id} if named is not None else set()  # searched whole
        for i, passage in enumerate(self.used, 1):
            if passage.article_id in searched or passage.article_id not in self.articles:
                continue
            searched.add(passage.article_id)  # verify_one falls back to the whole article
            result = verify_one(self._claimed(passage, quote, f"S{i}"), self.articles)
            if isinstance(result, Citation):
                return result.model_copy(update={"reattributed_from": label or "(none)"})
        return None

    @staticmethod
    def _claimed(passage: Passage, quote: str, label: str) -> ClaimedQuote:
        return ClaimedQuote(article_id=passage.article_id, quote=quote, label=label,
                            hint=(passage.start, passage.end))

    def _number(self, citation: Citation) -> int:
        key = (citation.article_id, citation.start, citation.end)
        if key not in self._numbers:
            self.citations.append(citation)
            self._numbers[key] = len(self.citations)
        return self._numbers[key]


def _about(citations: Sequence[Citation]) -> list[str]:
    """What a claim may state of its sources without quoting them: outlet and date.

    Not the title: a headline makes claims of its own ("... separated in 2016"), and
    counting it let a claim take its year from the title while quoting a photo caption
    (issue 15's hand-check). Claims rest on the article's text, which is what quotes
    are checked against.
    """
    facts: list[str] = []
    for c in citations:
        facts += [c.source, str(c.published_at or "")]
    return [f for f in dict.fromkeys(facts) if f]


# Words that stand before a surname without being a first name ("President Biden").
_TITLES = frozenset(
    "Mr Mrs Ms Miss Dr Sir Dame Lord Lady Judge Justice President Vice Senator Sen Rep "
    "Representative Gov Governor Mayor Minister Secretary Chancellor King Queen Prince "
    "Princess General Gen Colonel Col Captain Capt Officer Detective Agent Coach CEO "
    "Chairman Chair Director Professor Prof Rev Father Pope Saint St".split()
)


def _squashed(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


# Questions about an order or a change between reports: a yes or no to them rests on
# dates and on comparing whole articles, which no set of quotes shows (issue 15's
# hand-check kept a "Yes" to "Did A report X after B discussed Y?" where the order was
# the reverse).
_ORDERING = re.compile(
    r"\b(?:before|after|earlier|later|prior|subsequent(?:ly)?|following|preced\w*|between|"
    r"since|until|consisten\w*|inconsisten\w*|change[ds]?|shift\w*|remain\w*)\b",
    re.IGNORECASE)

_QUESTION_OPENING = re.compile(
    r"^\s*(?:did|does|do|is|are|was|were|has|have|had|can|could|will|would|should)\s+",
    re.IGNORECASE)


def _as_statement(question: str) -> str:
    """"Did X lose the cup?" -> "X lose the cup": the claim a yes/no question asks about."""
    return _QUESTION_OPENING.sub("", question).rstrip(" ?")


def _needed(claim: str, found: list[Citation]) -> list[Citation]:
    """The fewest of the claim's quotes that cover it as well as all of them do.

    A quote that adds nothing the others do not ("We have confidence in her" beside the
    two that say what the claim says) would count as a citation that supports nothing:
    ALCE-style citation precision. Greedy, best quote first; order kept as cited.
    """
    if len(found) < 2:
        return found
    target = coverage(claim, [c.quote for c in found])
    chosen: list[Citation] = []
    while coverage(claim, [c.quote for c in chosen]) < target:
        best = max((c for c in found if c not in chosen),
                   key=lambda c: coverage(claim, [x.quote for x in [*chosen, c]]))
        chosen.append(best)
    return [c for c in found if c in chosen] or found[:1]


def reask_message(failures: Sequence[Failure]) -> str:
    """The one follow-up a model gets, listing each dropped claim and why (as instructor does)."""
    lines = [
        "These claims of your answer could not be kept, because a reader could not check "
        "them against the sources:"
    ]
    for failure in failures:
        lines.append(f"- {failure.claim!r}: " + "; ".join(failure.problems or ("no quote",)))
    lines.append(
        "Reply with the same JSON form, holding only these claims, corrected: each with "
        "quotes copied exactly, word for word, from the source whose id you give, that say "
        "what the claim says. Leave out any claim the sources do not support. Keep "
        '"answerable" and "answer" as before.'
    )
    return "\n".join(lines)


def _article_text(article: Article | None, quote: str) -> str:
    """What a citation's article says, title included (its quote if the article is gone)."""
    return f"{article.title}\n{article.text}" if article is not None else quote
