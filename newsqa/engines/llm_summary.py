"""Summaries and timelines written by an LLM, every bullet and event grounded.

Passages are grouped by article; when the groups do not fit the model's window they
are summarised in batches (map) and the partial summaries, with the quotes they
verified, are combined (reduce), so no article is silently dropped. Every bullet goes
through `grounding.Grounder`, as an answer's claims do: what fails lands in
`rejected_citations`, never in a bullet. The extractive side is summarize.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from ..grounding import (
    DraftBullet,
    DraftCitation,
    DraftClaim,
    DraftEvent,
    DraftSummary,
    DraftTimeline,
    Grounder,
    check_support,
    format_sources,
)
from ..models import (
    Article,
    Bullet,
    Passage,
    RejectedCitation,
    Summary,
    Timeline,
    TimelineEvent,
    Usage,
)
from ..store.chunking import chunk_article, count_tokens
from .prompts import available, render
from .summarize import SummarySources, clean_text, event_order, published_date, trim_words

if TYPE_CHECKING:
    from .llm import LLM


def summary_with_llm(
    llm: LLM, sources: SummarySources, window: int, *, query: str | None, bullets: int,
    max_words: int | None, focus: str | None, template: str = "summarize",
) -> Summary:
    """The LLM engine's summary; `window` is the tokens the model reads."""
    article = sources.article
    if article is not None:
        budget = source_budget(window, template, llm.max_output_tokens,
                               **_controls_text(bullets, max_words, focus))
        groups = {article.id: _article_passages(article, max(budget - 40, 32))}
        return llm_summary(llm, groups, sources.articles, bullets=bullets, max_words=max_words,
                           focus=focus, query=None, window=window, template=template)
    if not sources.groups:
        return Summary(headline=f"Nothing found about {query!r}", mode="llm", model=llm.model)
    return llm_summary(llm, sources.groups, sources.articles, bullets=bullets,
                       max_words=max_words, focus=focus, query=query, window=window,
                       template=template)


def timeline_with_llm(
    llm: LLM, sources: SummarySources, window: int, query: str, *, max_events: int
) -> Timeline:
    """The LLM engine's timeline; `window` is the tokens the model reads."""
    if not sources.groups:
        return Timeline(query=query, mode="llm", model=llm.model)
    return llm_timeline(llm, query, sources.groups, sources.articles, max_events=max_events,
                        window=window)


def _article_passages(article: Article, max_tokens: int) -> list[Passage]:
    """The whole article as one source when it fits, else its chunks, so a long article goes
    through map-reduce instead of overflowing the window."""
    if count_tokens(article.text) <= max_tokens:
        spans = [(0, len(article.text))]
    else:
        spans = [(c.start, c.end) for c in chunk_article(article, max_tokens=max_tokens)]
    return [
        Passage(chunk_id=f"{article.id}:{start}", article_id=article.id, title=article.title,
                source=article.source, published_at=article.published_at, url=article.url,
                text=article.text[start:end], start=start, end=end, score=1.0)
        for start, end in spans
    ]


# Room kept for the model's reply when packing sources into the window.
REPLY_TOKENS = 1200


def source_budget(window: int, template: str, reply: int = REPLY_TOKENS, **values: str) -> int:
    """Tokens left for sources once the template's own words and the reply are counted."""
    messages = render(template, **{"sources": "", "partials": "", "topic": "", **values})
    framing = sum(count_tokens(m["content"]) + 4 for m in messages) + 3
    return max(window - framing - reply, 64)


def pack_groups(
    groups: Mapping[str, Sequence[Passage]],
    budget: int,
    count: Callable[[str], int],
) -> list[dict[str, list[Passage]]]:
    """Batches of whole article groups that fit `budget`; a group too big alone is split by
    passage, and a passage too big alone still gets its own batch (never dropped)."""
    batches: list[dict[str, list[Passage]]] = []
    current: dict[str, list[Passage]] = {}
    used = 0
    for article_id, passages in groups.items():
        for passage in passages:
            cost = count(passage.text) + 40  # the source header
            if current and used + cost > budget:
                batches.append(current)
                current, used = {}, 0
            current.setdefault(article_id, []).append(passage)
            used += cost
    if current:
        batches.append(current)
    return batches


def _token_count() -> Callable[[str], int]:
    return count_tokens


def _controls_text(bullets: int, max_words: int | None, focus: str | None) -> dict[str, str]:
    return {
        "bullets": str(bullets),
        "max_words": f"at most {max_words} words in all" if max_words else "no word limit",
        "focus": focus.strip() if focus and focus.strip() else "none",
    }


def llm_summary(
    llm: LLM,
    groups: Mapping[str, Sequence[Passage]],
    articles: Mapping[str, Article],
    *,
    bullets: int,
    max_words: int | None,
    focus: str | None,
    query: str | None,
    window: int,
    template: str = "summarize",
) -> Summary:
    """One call when the sources fit; else map over batches and reduce the partials.

    `template` is the map step's prompt; the reduce uses `<template>_reduce` where the
    template ships one, else the general `summarize_reduce`.
    """
    count = _token_count()
    controls = _controls_text(bullets, max_words, focus)
    topic = query or "the article"
    reply = llm.max_output_tokens
    batches = pack_groups(groups, source_budget(window, template, reply, **controls), count)
    usage = Usage()
    rejected: list[RejectedCitation] = []
    partials: list[Summary] = []
    for batch in batches:
        passages = [p for group in batch.values() for p in group]
        messages = render(template, topic=topic, sources=format_sources(passages), **controls)
        draft, used = llm.structured(messages, DraftSummary)
        usage += used
        partial, bad = _verified_summary(draft, passages, articles)
        rejected += bad
        partials.append(partial)
    if len(partials) == 1:
        final = partials[0]
    else:
        reduce = f"{template}_reduce" if f"{template}_reduce" in available() else (
            "summarize_reduce")
        final, used, bad = _reduce(llm, topic, partials, articles, controls, window, count,
                                   reduce)
        usage += used
        rejected += bad
    bullets_out = _limit_words(final.bullets[:bullets], max_words)
    return Summary(
        headline=final.headline,
        bullets=bullets_out,
        article_ids=list(groups),
        disagreements=final.disagreements,
        rejected_citations=rejected,
        mode="llm",
        model=llm.model,
        usage=usage,
    )


def _reduce(
    llm: LLM,
    topic: str,
    partials: list[Summary],
    articles: Mapping[str, Article],
    controls: dict[str, str],
    window: int,
    count: Callable[[str], int],
    template: str = "summarize_reduce",
) -> tuple[Summary, Usage, list[RejectedCitation]]:
    """Combine partial summaries; their verified quotes are the sources the reduce may cite.
    Partials that do not fit one window are reduced in rounds."""
    usage = Usage()
    rejected: list[RejectedCitation] = []
    budget = source_budget(window, template, llm.max_output_tokens, **controls)
    while len(partials) > 1:
        rounds = _pack_partials(partials, budget, count)
        if len(rounds) == len(partials) and len(partials) > 1:
            rounds = [partials]  # each partial alone fills a window: combine anyway, not drop
        merged: list[Summary] = []
        for group in rounds:
            text, passages = _partials_as_sources(group)
            messages = render(template, topic=topic, partials=text, **controls)
            draft, used = llm.structured(messages, DraftSummary)
            usage += used
            summary, bad = _verified_summary(draft, passages, articles)
            rejected += bad
            merged.append(summary)
        partials = merged
    return partials[0], usage, rejected


def _pack_partials(
    partials: list[Summary], budget: int, count: Callable[[str], int]
) -> list[list[Summary]]:
    rounds: list[list[Summary]] = [[]]
    used = 0
    for partial in partials:
        cost = count(_partials_as_sources([partial])[0])
        if rounds[-1] and used + cost > budget:
            rounds.append([])
            used = 0
        rounds[-1].append(partial)
        used += cost
    return rounds


def _partials_as_sources(partials: Sequence[Summary]) -> tuple[str, list[Passage]]:
    """Partial bullets, each with the quotes it verified, labelled by the quote's article:
    the reduce step can only cite what the map step verified."""
    passages: list[Passage] = []
    for part in partials:
        for bullet in [*part.bullets, *part.disagreements]:
            for citation in bullet.citations:
                passages.append(Passage(
                    chunk_id=f"{citation.article_id}:{citation.start}",
                    article_id=citation.article_id, title=citation.title,
                    source=citation.source, published_at=citation.published_at,
                    url=citation.url, text=citation.quote, start=citation.start,
                    end=citation.end, score=1.0,
                ))
    lines = []
    for n, part in enumerate(partials, 1):
        lines.append(f"Partial summary {n}: {part.headline}")
        lines += [f"- {b.text}" for b in part.bullets]
        lines += [f"- (disagreement) {b.text}" for b in part.disagreements]
    return "\n".join(lines) + "\n\nQuotes they rest on:\n" + format_sources(passages), passages


def _verified_summary(
    draft: DraftSummary, passages: Sequence[Passage], articles: Mapping[str, Article]
) -> tuple[Summary, list[RejectedCitation]]:
    grounder = Grounder("", passages, articles)
    bullets = [b for b in (_verified_bullet(item, grounder) for item in draft.bullets) if b]
    disagreements: list[Bullet] = []
    for item in draft.disagreements:
        bullet = _verified_bullet(item, grounder)
        # A disagreement needs both sides: one verified quote is only a claim.
        if bullet is not None and len({c.article_id for c in bullet.citations}) >= 2:
            disagreements.append(bullet)
    summary = Summary(headline=_checked_headline(clean_text(draft.headline), bullets, articles),
                      bullets=bullets, disagreements=disagreements, mode="llm")
    return summary, grounder.rejected


NO_BULLETS = "No verified summary: every bullet the model wrote was left out"


def _checked_headline(
    headline: str, bullets: Sequence[Bullet], articles: Mapping[str, Article]
) -> str:
    """The model's headline when the kept bullets' quotes support it, else the title of the
    first kept bullet's article (the publisher's words): a headline is a claim too, and one
    about a war the articles never mention ("US President Donald Trump has vowed to end the
    war in Iraq ...") was shown over a summary whose every bullet had been left out."""
    if not bullets:
        return NO_BULLETS
    cited = {c.article_id for b in bullets for c in b.citations}
    about = [f"{a.title} {a.source}" for i, a in articles.items() if i in cited]
    quotes = [c.quote for b in bullets for c in b.citations]
    if headline and check_support(headline, quotes, about=about).supported:
        return headline
    first = articles.get(bullets[0].citations[0].article_id) if bullets[0].citations else None
    return first.title if first is not None and first.title else trim_words(bullets[0].text, 20)


def _verified_bullet(item: DraftBullet | DraftEvent, grounder: Grounder) -> Bullet | None:
    """A bullet survives only with verified quotes that support it (grounding.Grounder):
    an uncited or unsupported bullet is a claim the reader cannot check."""
    claim = DraftClaim(
        text=item.text,
        citations=[DraftCitation(source_id=q.source, quote=q.quote) for q in item.quotes],
    )
    text, citations = grounder.supported(claim)
    return Bullet(text=clean_text(text), citations=citations) if citations else None


def _limit_words(bullets: list[Bullet], max_words: int | None) -> list[Bullet]:
    if max_words is None:
        return bullets
    out: list[Bullet] = []
    left = max_words
    for bullet in bullets:
        words = bullet.text.split()
        if left < 4:
            break
        text = trim_words(bullet.text, left)
        left -= min(len(words), left)
        out.append(Bullet(text=text, citations=bullet.citations))
    return out


def llm_timeline(
    llm: LLM,
    query: str,
    groups: Mapping[str, Sequence[Passage]],
    articles: Mapping[str, Article],
    *,
    max_events: int,
    window: int,
) -> Timeline:
    """Events per batch of sources (map), then merged by date: a timeline needs no reduce call."""
    usage = Usage()
    rejected: list[RejectedCitation] = []
    events: list[TimelineEvent] = []
    budget = source_budget(window, "timeline", llm.max_output_tokens, max_events=str(max_events))
    for batch in pack_groups(groups, budget, _token_count()):
        passages = [p for group in batch.values() for p in group]
        messages = render("timeline", topic=query, max_events=str(max_events),
                          sources=format_sources(passages))
        draft, used = llm.structured(messages, DraftTimeline)
        usage += used
        grounder = Grounder("", passages, articles)  # a topic, not a question to answer
        for item in draft.events:
            event = _verified_event(item, grounder)
            if event is not None:
                events.append(event)
        rejected += grounder.rejected
    events = _dedupe_events(sorted(events, key=event_order))[:max_events]
    return Timeline(
        query=query, events=events,
        article_ids=list(dict.fromkeys(c.article_id for e in events for c in e.citations)),
        rejected_citations=rejected, mode="llm", model=llm.model, usage=usage,
    )


def _verified_event(item: DraftEvent, grounder: Grounder) -> TimelineEvent | None:
    """The model's date is untrusted: an unparseable one falls back to publication."""
    bullet = _verified_bullet(item, grounder)
    if bullet is None:
        return None
    cited = grounder.articles[bullet.citations[0].article_id]
    published = published_date(cited)
    try:
        date = dt.date.fromisoformat(item.date.strip()[:10])
        source: Literal["text", "published_at"] = item.date_source
    except ValueError:
        if published is None:
            grounder.rejected.append(RejectedCitation(article_id=cited.id, quote=item.text,
                                                      reason=f"unusable date {item.date!r}"))
            return None
        date, source = published, "published_at"
    return TimelineEvent(date=date, date_source=source, text=bullet.text,
                         citations=bullet.citations)


def _dedupe_events(events: list[TimelineEvent]) -> list[TimelineEvent]:
    seen: set[tuple[dt.date, str]] = set()
    out = []
    for event in events:
        key = (event.date, event.citations[0].quote if event.citations else event.text)
        if key not in seen:
            seen.add(key)
            out.append(event)
    return out
