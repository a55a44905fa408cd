"""Highlights: a deterministic extractive summary of a transcript, one sentence per story.

The steps, each a small function so a test can look at it:

1. `words.sentences`: paragraphs -> sentences, each with its paragraph index.
2. `segment`: paragraphs -> stories. A news-roundup transcript moves from story to story; a new
   story starts where a paragraph opens with a topic-change cue ("And finally", "Now over to",
   "In another…"), or where its words share little with the story so far (lexical cohesion, as in
   Hearst's TextTiling, 1997). A paragraph that opens by pointing back ("The unit…", "Despite…",
   "Maude's…" when Maude was just named) never starts a story.
3. `clean`: one sentence -> a sentence that stands alone, or None. Leading connectives and the
   show's framing ("Most recently we've learnt that…") are trimmed when the rest stands; a
   sentence that still points back (an opening pronoun, a dangling "also", "this proposal") is
   dropped, and so is anything in the show's own voice (I, we, you: the welcome, the sign-off,
   self-promotion, plugs) or about the episode's own event.
4. `pick`: the best sentence of each story (its lead counts most: news is written lead first,
   then how central its words are to the story), then the stories to show: those the title or
   intro names first, then the biggest. Shown in transcript order.

No network, no model: the same transcript always gives the same highlights.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from .words import SENTENCE_BREAK, Sentence, content_words, entities, known_names, sentences, stem

HIGHLIGHT_MAX_CHARS = 320
MIN_WORDS = 8
MAX_WORDS = 60

# The show speaking as itself: the welcome, the sign-off, self-promotion and plugs. Case matters:
# "US" is a country, "us" a pronoun.
_SHOW_VOICE = re.compile(
    r"\b(?:I|I'm|I've|I'd|I'll|me|my|we|We|we're|We're|we've|We've|we'll|We'll|we'd|our|Our|ours|us|"
    r"you|You|your|Your|you're|You're|you've|you'll|You'll|yours)\b"
)
_PROMO = re.compile(
    r"\b(?:welcome to|the show|plug|sponsor(?:ed|s)?|brought to you by|subscribe|podcast|episode|show notes|"
    r"that's a wrap|that’s a wrap|until next time|thanks for listening|see you next|"
    r"tickets?|sign up|register now|discount code|promo code|use (?:the )?code|patreon)\b",
    re.I,
)

# Words that, opening a sentence, point back at something the reader of the email has not seen.
_BACK_OPENERS = frozenset(
    """
it its it's this these those that they them their theirs he him his she her hers such both either
neither another other others latter former also too additionally furthermore moreover however but
and or so yet still then thus hence therefore meanwhile likewise similarly instead nonetheless
nevertheless besides here there despite which whose whom where while whilst although though
otherwise accordingly consequently again further
""".split()
)
_DEMONSTRATIVE = re.compile(
    r"\b(?:this|these|those|such)\s+(?!(?:month|week|year|morning|evening|"
    r"afternoon|summer|winter|spring|autumn|time|is|was|will|has)\b)[a-z]",
    re.I,
)
_DANGLING_ALSO = re.compile(r"\b(?<!but )(?<!but\s)also\b|\bas well\b|\btoo\.$", re.I)

# Leading material that can go when what follows stands on its own.
_LEADS = [
    re.compile(p, re.I)
    for p in (
        r"^(?:and\s+)?finally,?\s+",
        r"^now,?\s+over\s+to\s+[\w\s-]{1,40}?(?:,\s*|\s+and\s+)",
        r"^(?:and\s+)?now,\s+",
        r"^(?:meanwhile|however|also|additionally|furthermore|moreover|elsewhere|similarly|likewise|"
        r"in addition|in other news|at the same time|on top of that|separately|next up|next),?\s+(?:and\s+)?",
        r"^speaking of\s+[^,]{1,40},\s+",
        r"^speaking of\s+\w+\s+",
        r"^from\s+[^,]{1,40}?\s+to\s+[^,]{1,40},\s+",
        r"^in\s+(?:another|a\s+further|a\s+similar)\s+[^,]{1,80},\s+",
        r"^turning\s+to\s+[^,]{1,60},\s+",
        r"^(?:most\s+)?recently,?\s+",
        r"^(?:we|I)(?:'ve|’ve| have)?\s+(?:learnt|learned|heard|seen|read|noticed|been told)\s+that\s+",
        r"^(?:we're|we’re|we are)\s+told\s+that\s+",
    )
]

# Opening cues of a new story in a roundup.
_NEW_STORY = re.compile(
    r"^(?:and\s+)?finally\b|^now,?\s+over\s+to\b|^over\s+to\b|^turning\s+to\b|^in\s+other\s+news\b|"
    r"^elsewhere\b|^over\s+in\b|^closer\s+to\s+home\b|^in\s+another\b|^next\s+up\b|^moving\s+on\b|^meanwhile,?\s+(?:in|over|at)\b|"
    r"^from\s+[^,]{1,40}?\s+to\s+[^,]{1,40},|^speaking\s+of\b|^last\s+(?:week|month)\b|"
    r"^(?:most\s+)?recently\b|^earlier\s+this\b|^this\s+(?:week|month)\b|^now,",
    re.I,
)


@dataclass(frozen=True)
class Story:
    """The paragraphs (indexes) that tell one story, and their sentences in order."""

    paragraphs: tuple[int, ...]
    sentences: tuple[Sentence, ...]


def _points_back(first_sentence: str, previous: Counter) -> bool:
    words = first_sentence.replace("’", "'").split()
    if not words:
        return False
    head = words[0].lower().strip('"“‘(,')
    if head in _BACK_OPENERS or head.split("'")[0] in _BACK_OPENERS:
        return True
    # "The unit…", "The shift…": a definite subject most likely means the story being told;
    # "Maude's solution…": a possessive of someone just named.
    if head == "the" and len(words) > 1:
        return words[1][:1].islower() or stem(words[1]) in previous
    if head.endswith("'s"):
        return stem(head) in previous
    return False


def _is_aside(paragraph: str, edge: bool = False) -> bool:
    """The show talking about itself (a welcome, a sponsor read, a plug, a sign-off): most of its
    sentences are in the show's voice or promote something; for the first or last paragraph
    (`edge`, where the welcome and the sign-off are), any one of them."""
    sents = [x for x in SENTENCE_BREAK.split(paragraph) if x.strip()]
    own = sum(1 for x in sents if _SHOW_VOICE.search(x) or _PROMO.search(x))
    return bool(sents) and (own * 2 > len(sents) or (edge and own > 0))


def _opens_new_story(first: str, seen: set[str], names: set[str]) -> bool:
    """A news lead: the paragraph's first sentence brings in names and shares none with the
    story so far (`seen`: its names), or brings in many more than it shares."""
    ents = entities(first, names)
    seen_words = {w for name in seen for w in name.split(" ")}
    # "CCDO's Digital Assessment Framework" is the framework named before, typo and all
    new = {e for e in ents if e not in seen and sum(w in seen_words for w in e.split(" ")) * 2 <= len(e.split(" "))}
    shared = ents - new
    return bool(new) and (not shared or len(new) >= 3 * len(shared))


def segment(paragraphs: tuple[str, ...]) -> list[tuple[int, ...]]:
    """Paragraph indexes grouped into stories, in order. Deterministic.

    A paragraph starts a story when it opens with a topic-change cue ("Finally", "Over in…",
    "In another…"), or when it does not point back ("The unit…", "Despite…", "Maude's…") and
    its first sentence is a news lead: new names, few shared with the story so far (lexical
    cohesion of names, after TextTiling, Hearst 1997). Otherwise it continues the story: short
    paragraphs share few words, so without such evidence merging is the safer guess. An aside
    (the show talking about itself) is a segment of its own and does not interrupt the story
    around it.
    """
    names = known_names(paragraphs)
    segments: list[list[int]] = []
    story: list[int] | None = None  # the story being read, asides left out
    story_names: set[str] = set()
    for i, para in enumerate(paragraphs):
        if _is_aside(para, edge=i in (0, len(paragraphs) - 1)):
            segments.append([i])
            continue
        first = next(iter(SENTENCE_BREAK.split(para.strip())), "")
        window = Counter(content_words(" ".join(paragraphs[j] for j in (story or [])[-2:])))
        if (
            story is None
            or _NEW_STORY.search(first)
            or (not _points_back(first, window) and _opens_new_story(first, story_names, names))
        ):
            story = [i]
            story_names = set()
            segments.append(story)
        else:
            story.append(i)
        story_names |= entities(para, names)
    return [tuple(seg) for seg in segments]


def clean(sentence: str, *, avoid: frozenset[str] = frozenset()) -> str | None:
    """The sentence made to stand alone, or None when it cannot.

    `avoid`: lower-cased phrases (the event's title and speakers) a highlight must not mention.
    """
    s = " ".join(sentence.split())
    for _ in range(3):  # leads can stack: "Now, at the same time and in another…"
        before = s
        for lead in _LEADS:
            s = lead.sub("", s, count=1)
        if s == before:
            break
    if not s or not s[0].isalpha() and s[0] not in '"“‘(£$€0123456789':
        return None
    s = s[0].upper() + s[1:]
    words = s.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or len(s) > HIGHLIGHT_MAX_CHARS:
        return None
    if words[0].lower().strip('"“‘(,') in _BACK_OPENERS:
        return None
    if _SHOW_VOICE.search(s) or _PROMO.search(s) or _DANGLING_ALSO.search(s) or _DEMONSTRATIVE.search(s):
        return None
    if s[-1] not in '.!?…"”’)':
        return None
    if s.count("(") != s.count(")") or s.count('"') % 2 or s.count("“") != s.count("”"):
        return None
    low = s.lower()
    if any(phrase in low for phrase in avoid):
        return None
    return s


@dataclass(frozen=True)
class _Choice:
    story: int
    text: str
    score: float


def _best_in_story(si: int, story: Story, avoid: frozenset[str], df: Counter, n_stories: int) -> _Choice | None:
    """The story's most representative sentence that stands alone, or None.

    News is written lead first, so position counts most (1, 1/2, 1/3…; a later "The discussion…"
    most likely means the one just told, so less); then centrality: how much of the story's
    vocabulary the sentence carries, each word weighted by how particular it is to this story,
    relative to the story's most central sentence.
    """
    story_words = Counter(w for s in story.sentences for w in content_words(s.text))
    scored: list[tuple[float, float, str]] = []  # (centrality, position weight, text)
    for rank, sent in enumerate(story.sentences):
        text = clean(sent.text, avoid=avoid)
        words = set(content_words(sent.text))
        if text is None or len(words) < 4:
            continue
        central = sum(story_words[w] * math.log(1 + n_stories / df[w]) for w in words) / len(words) ** 0.5
        position = 1.0 / (1 + rank) - (0.5 if rank and re.match(r"The [a-z]", text) else 0.0)
        scored.append((central, position, text))
    if not scored:
        return None
    top = max(c for c, _, _ in scored) or 1.0
    best = max(scored, key=lambda t: t[0] / top + t[1])  # max() keeps the first of equals
    return _Choice(si, best[2], best[0] / top + best[1])


def pick(
    paragraphs: tuple[str, ...], *, title: str = "", intro: str = "", avoid: frozenset[str] = frozenset(), k: int = 5
) -> tuple[str, ...]:
    """Up to `k` highlights, one per story, in transcript order; () for an empty transcript.

    The story the episode's `title` names, else the one its `intro` names, is always shown: the
    one using most often the particular words of it (words found in at most two stories). The
    others are the biggest stories (by length, then by how well their best sentence scored).
    `avoid`: lower-case phrases (the event's title, its speakers) no highlight may mention: the
    banner already carries the event.
    """
    by_para: dict[int, list[Sentence]] = {}
    for sent in sentences(paragraphs):
        by_para.setdefault(sent.paragraph, []).append(sent)
    stories = [Story(seg, tuple(s for i in seg for s in by_para.get(i, ()))) for seg in segment(paragraphs)]
    vocab = [Counter(w for s in st.sentences for w in content_words(s.text)) for st in stories]
    df: Counter = Counter(w for v in vocab for w in v)
    choices = [c for si, st in enumerate(stories) if (c := _best_in_story(si, st, avoid, df, len(stories)))]
    title_words, intro_words = set(content_words(title)), set(content_words(intro))

    def mention(c: _Choice) -> tuple[float, float]:
        def score(words: set[str]) -> float:
            # how often the story uses each word the title uses, weighted by how particular it is
            return sum(
                vocab[c.story][w] * math.log(1 + len(stories) / df[w])
                for w in words
                if df[w] <= 2 and w in vocab[c.story]
            )

        return score(title_words), score(intro_words)

    def size(c: _Choice) -> float:
        return sum(len(s.text) for s in stories[c.story].sentences) * (1 + c.score)

    named_first = sorted(
        (c for c in choices if any(mention(c))), key=lambda c: (-mention(c)[0], -mention(c)[1], c.story)
    )[:1]
    others = sorted((c for c in choices if c not in named_first), key=lambda c: (-size(c), c.story))
    chosen = sorted(named_first + others[: max(0, k - len(named_first))], key=lambda c: c.story)
    return tuple(c.text for c in chosen)
