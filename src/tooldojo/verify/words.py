"""Made-up words: words in no English word list and nowhere in the conversation.

The 135M model's prose is full of them ("erdzbabmjh is the same as you are trying to do",
"can'tedititnow", "TZKFJBZEADWIINH"): in the scale run of 28 Nov, 1,397 of 2,292 final answers
that passed every other check held at least one (5.5 % of their words). The turns checks read
filler, code, loops, grounding and function words, so such an answer passed whenever it also
quoted a value of the result; trained on, it teaches the model to write them.

The word lists are ``english-words``' web2 (Webster's Second, 1934) and GCIDE (1913), because
they ship as data in a small MIT-licensed wheel and need no download. Being old, they lack the
words of software ("app", "json", "download"), which :data:`MODERN` adds; a word of the
conversation itself (a tool's name or description, a value, the user's words) is never made
up. A crude stemmer (suffixes, a doubled final consonant) stands in for a morphological
dictionary, which no offline package provides without a large model.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

_MODERN = """
    anymore api apis app apps async auth backend backup blog blogs bookmark bookmarks
    browser checkbox checkout chatbot config cookie cookies csv cyber dashboard dashboards
    database databases dataset datasets debug desktop download downloads dropdown ecommerce
    email emails endpoint endpoints faq filename filenames firmware frontend gif gps hashtag
    hashtags homepage hostname html http https info inbox internet ip ipv iphone javascript
    jpeg jpg json laptop login logins logout malware metadata microservice mobile multimedia
    netflix offline ok okay online parameter parameters password passwords pdf playlist
    playlists png podcast podcasts pixel pixels python redirect repo repos runtime screenshot
    sdk server smartphone smartphones software spreadsheet spreadsheets sql startup subdomain
    sync tablet timestamp timestamps timezone toolbar uber uri url urls usb username usernames
    utc uuid vpn webhook webhooks webpage webpages website websites wifi workflow workflows
    xml yaml youtube zip
"""
MODERN = frozenset(_MODERN.split())
"""Everyday words of software and the web that the 1913 and 1934 dictionaries predate."""

_SUFFIXES = ("'s", "n't", "'m", "'re", "'ll", "'ve", "'d", "s", "es", "ed", "d", "ing", "ly", "er")

WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
"""A word of letters (with inner apostrophes and hyphens); a token with a digit is a value."""

VOWELS = set("aeiouy")

MIN_LENGTH = 4
"""Shorter tokens are abbreviations and initials ("Sr.", "loc", "qty", "pls"), not words to
look up; the made-up strings that matter are longer ("vxgfccc", "erdzbabmjh")."""


@functools.cache
def english_words() -> frozenset[str]:
    """web2 and GCIDE, lower-cased, letters only, with :data:`MODERN` (about 263k words)."""
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["web2", "gcide"], lower=True, alpha=True)) | MODERN


_PREFIXES = ("non", "un", "re", "pre", "sub", "co", "de", "dis", "mis", "over", "under", "multi")


def known(word: str) -> bool:
    """Whether ``word`` (lower case) is English, allowing for common inflections and prefixes
    ("noncompliant", which neither list holds)."""
    words = english_words()
    if word in words:
        return True
    for prefix in _PREFIXES:
        rest = word.removeprefix(prefix)
        if rest != word and len(rest) >= MIN_LENGTH and _inflected(rest, words):
            return True
    return _inflected(word, words)


def _inflected(word: str, words: frozenset[str]) -> bool:
    if word in words:
        return True
    for suffix in _SUFFIXES:
        stem = word.removesuffix(suffix)
        if stem == word:
            continue
        if stem in words or stem + "e" in words:
            return True
        if len(stem) > 2 and stem[-1] == stem[-2] and stem[:-1] in words:  # "referring"
            return True
    return word.endswith("ies") and word[:-3] + "y" in words


def text_words(text: str) -> list[str]:
    """The words of ``text`` as written, hyphenated words split, quotes stripped."""
    found = (w.strip("'-") for w in WORD.findall(text))
    return [part for word in found for part in word.split("-") if len(part) > 1]


def looks_like_a_name(word: str) -> bool:
    """Whether ``word`` is written as a name ("Oslo", "Okafor", "Jira": a capital, then lower
    case) and can be said (a vowel in four letters, no four consonants running), so that a
    place, a person or a brand that no dictionary lists is not made up, while "Gfqmprfpzfjh"
    and "TZKFJBZEADWIINH" still are. Why not a list of names: none ships offline, and the
    model's salad is rarely sayable."""
    if not (word[0].isupper() and word[1:].islower()):
        return False
    lower = word.lower()
    runs = re.findall(r"[^aeiouy]+", lower)
    vowels = sum(c in VOWELS for c in lower)
    return 4 * vowels >= len(lower) and all(len(run) < 4 for run in runs)


def allowed_words(text: str) -> set[str]:
    """Every word a conversation may use without being English: the letter runs of ``text``,
    and identifiers joined as the model writes them ("updateContactFb" for
    ``update_contact_fb``)."""
    lower = text.lower()
    words = set(re.findall(r"[a-z]+", lower))
    for identifier in re.findall(r"[a-z][a-z0-9]*(?:[_.-][a-z0-9]+)+", lower):
        words.add(re.sub(r"[^a-z]", "", identifier))
    return words


def made_up_words(text: str, allowed: set[str]) -> tuple[list[str], int]:
    """(the distinct made-up words of ``text`` in order, lower case; its word count). Distinct,
    and a possessive counted as its noun: a word missing from the lists ("Rijksmuseum", "the
    Rijksmuseum's") is one however often it is written; a sayable name is none
    (:func:`looks_like_a_name`)."""
    words = text_words(text)
    invented: list[str] = []
    for written in words:
        written = written.removesuffix("'s")
        word = written.lower()
        if len(word) < MIN_LENGTH or word in allowed or word in invented or known(word):
            continue
        if not looks_like_a_name(written):
            invented.append(word)
    return invented, len(words)


MADE_UP_LIMIT = 2
"""A message fails with this many distinct made-up words, if they are also a tenth of its
words or more. One stray word (a misspelt name, a gap in an old dictionary) is let through;
of the thirty passed samples of the scale run (docs/samples), the five messages at or over
the line are all word salad ("vxgfccc, erdzbabmjh", "ssspcrjhny", "ikinzikimzikim")."""


def _over_the_line(invented: list[str], count: int) -> bool:
    return len(invented) >= MADE_UP_LIMIT and 10 * len(invented) >= count


def too_many_made_up(text: str, allowed: set[str] | Callable[[], set[str]]) -> list[str] | None:
    """The made-up words of ``text`` when they reach :data:`MADE_UP_LIMIT` and a tenth of its
    words, else ``None``: the one rule the turns and request gates and the agents' retries use.

    ``allowed`` may be a function building the set: the conversation's words (every tool's
    schema, every message) are then gathered only when the word lists alone leave the text over
    the line, which is rare, since allowing more words can only take it back under."""
    invented, count = made_up_words(text, set())
    if not _over_the_line(invented, count):
        return None
    words = allowed() if callable(allowed) else allowed
    invented = [word for word in invented if word not in words]
    return invented if _over_the_line(invented, count) else None


def shown(invented: list[str]) -> str:
    """Up to four of ``invented`` for a problem line."""
    return ", ".join(invented[:4]) + (", ..." if len(invented) > 4 else "")
