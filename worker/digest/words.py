"""Words, sentences and names in a transcript: the text analysis the highlights are built on.

Deterministic and dependency-free: a stop-word list, a crude stemmer (plural and possessive
endings), a sentence splitter that knows titles and initials, and names found as runs of
capitalised words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STOPWORDS = frozenset(
    """
a about above after again against all also am an and any are aren't as at be because been before
being below between both but by can could did do does doing down during each even few for from
further had has have having he her here hers herself him himself his how i i'm i'd i'll i've if in
into is it it's its itself just let's like many may me might more most much must my myself new no
nor not now of off on once one only or other ought our ours ourselves out over own per quite rather
really said same say says she should so some such than that that's the their theirs them themselves
then there there's these they they're this those though through thus to too two under until up upon
us very via was we we're we've we'll well were what when where which while who whom why will with
within without would yet you your yours yourself still across around another every get got going
know lot lots make made next part put see seen take think time way ways week weeks month months
year years today episode podcast welcome hello thanks thank wrap last recent recently latest
including include includes according emphasis emphasised emphasized highlighted various
""".split()
)

SENTENCE_BREAK = re.compile(r"(?<=[.!?…])[\"”’)\]]*\s+(?=[\"“‘(\[]?[A-Z0-9£$€])")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")
_ACRONYM = re.compile(r"^[A-Z]{2}$")  # AI, UK, EU: short but they name the story
_ABBREV = re.compile(r"(?:\b(?:Dr|Mr|Mrs|Ms|Prof|Sir|St|No|vs|etc|e\.g|i\.e|Inc|Ltd|Co)|\b[A-Z])\.$")  # "Dr.", "U.S."


@dataclass(frozen=True)
class Sentence:
    """One sentence of the transcript and where it is (paragraph and sentence index, from 0)."""

    paragraph: int
    index: int  # within the paragraph
    text: str


def stem(word: str) -> str:
    """A crude, deterministic stem: lower case, plural and possessive endings off."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.strip("'-")
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("es", ""), ("s", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not w.endswith(("ss", "us", "is")):
            return w[: -len(suffix)] + keep
    return w


def content_words(text: str) -> list[str]:
    """Stems of the words that carry meaning (no stop words, at least three letters)."""
    out = []
    for w in _WORD.findall(text):
        low = w.lower().replace("’", "'")
        if _ACRONYM.match(w):
            out.append(low)
            continue
        if low in _STOPWORDS or len(low) < 3:
            continue
        out.extend(stem(part) for part in low.split("-") if len(part) >= 3 and part not in _STOPWORDS)
    return out


def sentences(paragraphs: tuple[str, ...]) -> list[Sentence]:
    """Paragraphs split into sentences; a title or an initial ("Dr.", "U.S.") ends none."""
    out = []
    for pi, para in enumerate(paragraphs):
        pieces: list[str] = []
        for piece in SENTENCE_BREAK.split(para):
            if pieces and _ABBREV.search(pieces[-1]):
                pieces[-1] += " " + piece  # "Dr. Paul Campbell" is one sentence
            else:
                pieces.append(piece)
        for si, s in enumerate(p.strip() for p in pieces):
            if s:
                out.append(Sentence(pi, si, s))
    return out


_CAPITALISED = re.compile(r"[A-Z][\w'’-]*")
_NOT_NAMES = frozenset(
    """monday tuesday wednesday thursday friday saturday sunday january february march
april may june july august september october november december i""".split()
)


def _name_runs(sentence: str) -> list[tuple[int, str]]:
    """(position, name) for each run of capitalised words: "Greater Manchester", "MHRA"."""
    runs: list[tuple[int, str]] = []
    words = sentence.split()
    pos = 0
    run: list[str] = []
    for i, raw in enumerate(words + [""]):
        word = raw.strip("\"“”‘’'(),.:;!?")
        if word and _CAPITALISED.fullmatch(word) and stem(word) not in _NOT_NAMES:
            if not run:
                pos = i
            run.append(stem(word))
        else:
            if run:
                runs.append((pos, " ".join(run)))
            run = []
        if raw.endswith((",", ";", ":", ")")) and run:  # a comma ends a name: "London, Zedify"
            runs.append((pos, " ".join(run)))
            run = []
    return runs


def known_names(paragraphs: tuple[str, ...]) -> set[str]:
    """Names written capitalised somewhere other than at the start of a sentence."""
    names: set[str] = set()
    for para in paragraphs:
        for sent in SENTENCE_BREAK.split(para):
            names.update(name for pos, name in _name_runs(sent.strip()) if pos > 0)
    return names


def entities(text: str, names: set[str] | None = None) -> set[str]:
    """Names and acronyms in `text` (stemmed, lower case). A capitalised word opening a sentence
    counts only when `names` has it (it is also written capitalised mid-sentence)."""
    out = set()
    for sent in SENTENCE_BREAK.split(text):
        for pos, name in _name_runs(sent.strip()):
            if pos > 0:
                out.add(name)
            elif names is not None:
                # "Paris has…" is a name, "Bus drivers in Greater Manchester…" starts with none
                parts = name.split(" ")
                for cut in range(len(parts)):
                    if " ".join(parts[cut:]) in names:
                        out.add(" ".join(parts[cut:]))
                        break
    return out
