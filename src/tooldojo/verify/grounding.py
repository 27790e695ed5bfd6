"""Whether a value is stated in, or derivable from, a piece of text.

Written for verification independently of the user simulator's own check (which only looks
for the literal value): a request is *grounded* when a reader could derive every argument the
label expects from it. Derivable spellings: case and separators (``in_progress`` ↔ "in
progress"), numbers (``5000`` ↔ "5,000", "5k", "5 thousand"; ``0.15`` ↔ "15%"; small numbers
in words), dates (``2024-03-05`` ↔ "March 5, 2024", "5 Mar 2024", "03/05/2024"), times
("14:30" ↔ "2:30 pm") and common enum synonyms (``celsius`` ↔ "°C", ``desc`` ↔ "descending",
``EUR`` ↔ "euros", language and currency codes). Booleans are not checked: a person states
them in too many ways ("skip the NaNs", "without NaNs") for a word test to be fair either way.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]

SYNONYMS: dict[str, tuple[str, ...]] = {
    "celsius": ("°c", "centigrade", "metric"),
    "fahrenheit": ("°f", "imperial"),
    "kelvin": ("°k",),
    "metric": ("celsius", "kilometers", "kilometres", "°c"),
    "imperial": ("fahrenheit", "miles", "°f"),
    "asc": ("ascending", "oldest first", "lowest first", "smallest first"),
    "desc": ("descending", "newest first", "highest first", "largest first", "latest first"),
    "usd": ("dollar", "us$", "$"),
    "eur": ("euro", "€"),
    "gbp": ("pound", "£", "sterling"),
    "jpy": ("yen", "¥"),
    "chf": ("swiss franc",),
    "cad": ("canadian dollar",),
    "aud": ("australian dollar",),
    "inr": ("rupee",),
    "cny": ("yuan", "renminbi"),
    "km": ("kilometer", "kilometre"),
    "mi": ("mile",),
    "m": ("meter", "metre"),
    "kg": ("kilogram", "kilo"),
    "lb": ("pound",),
    "en": ("english",),
    "fr": ("french",),
    "de": ("german",),
    "es": ("spanish",),
    "it": ("italian",),
    "pt": ("portuguese",),
    "ja": ("japanese",),
    "zh": ("chinese", "mandarin"),
    "nl": ("dutch",),
    "true": ("yes",),
    "false": ("no",),
}

_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]


def normalize(text: str) -> str:
    """Lower case, separators as spaces, single spaces."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)
    text = text.lower().replace("_", " ").replace("-", " ")
    return re.sub(r"\s+", " ", text).strip()


def _number_spellings(value: float) -> set[str]:
    out = set()
    if float(value).is_integer():
        whole = int(value)
        out |= {str(whole), f"{whole:,}"}
        if 0 <= whole < len(NUMBER_WORDS):
            out.add(NUMBER_WORDS[whole])
        for size, words in ((1000, ("k", " thousand")), (1_000_000, ("m", " million"))):
            if whole and whole % size == 0:
                out |= {f"{whole // size}{word}" for word in words}
        if whole and whole % 100_000 == 0:
            out |= {f"{whole / 1_000_000:g}m", f"{whole / 1_000_000:g} million"}
    else:
        out |= {repr(float(value)), f"{value:,}", f"{value:g}"}
        if 0 < abs(value) < 1:
            out.add(f"{value * 100:g}%")
            out.add(f"{value * 100:g} percent")
        if re.fullmatch(r"-?\d+\.\d0*", repr(float(value))):
            out.add(f"{value:.2f}")
    return out


DECIMAL = re.compile(r"(?<![\d.,])-?\d[\d,]*\.\d+(?![\d]|[.,]\d)")


def _significant(token: str) -> int:
    """Significant digits of a decimal token ("0.0123" has 3, "2.30" has 3)."""
    return len(token.replace("-", "").replace(",", "").replace(".", "").lstrip("0"))


def rounded_in(text: str, value: float) -> bool:
    """Whether ``text`` states ``value`` rounded, as people quote a computed result: a
    decimal with at least 3 significant digits that equals ``value`` rounded to its places
    ("2.33" or "2.333" for 2.3333333333333335; not "2.3", nor "2.34")."""
    for token in DECIMAL.findall(text):
        places = len(token.split(".")[1])
        if _significant(token) >= 3 and float(token.replace(",", "")) == round(value, places):
            return True
    return False


def number_in(text: str, value: float, *, rounded: bool = False) -> bool:
    """Whether ``text`` states ``value``; ``rounded`` also accepts it rounded (for answers
    quoting a computed result, never for requests: a label needs the exact value)."""
    lowered = text.lower()
    if rounded and not float(value).is_integer() and rounded_in(lowered, float(value)):
        return True
    for spelling in _number_spellings(value):
        if spelling.isalpha():
            if re.search(rf"\b{re.escape(spelling)}\b", lowered):
                return True
        elif re.search(rf"(?<![\d.,]){re.escape(spelling)}(?![\d]|[.,]\d)", lowered):
            return True
    return False


def _date_spellings(day: date) -> list[tuple[str, ...]]:
    """Each tuple: spellings of which one must appear (month-day, and the year)."""
    month = _MONTHS[day.month - 1]
    short = month[:3]
    d = day.day
    suffix = "th" if 11 <= d <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    month_day = (
        f"{month} {d}",
        f"{short} {d}",
        f"{d} {month}",
        f"{d} {short}",
        f"{d}{suffix} {month}",
        f"{d}{suffix} of {month}",
        f"{month} {d}{suffix}",
        f"{day.month:02d}/{d:02d}",
        f"{day.month}/{d}",
        f"{d:02d}/{day.month:02d}",
        f"{d}/{day.month}",
        f"{d:02d}.{day.month:02d}",
        day.isoformat(),
    )
    return [month_day, (str(day.year),)]


def date_in(text: str, value: str) -> bool:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    lowered = re.sub(r"\s+", " ", text.lower().replace(",", " ").replace("  ", " "))
    day = moment.date()
    if not all(any(s in lowered for s in group) for group in _date_spellings(day)):
        return False
    if "T" in value or " " in value.strip():
        hour, minute = moment.hour, moment.minute
        twelve = hour % 12 or 12
        half = "am" if hour < 12 else "pm"
        clock = {
            f"{hour:02d}:{minute:02d}",
            f"{hour}:{minute:02d}",
            f"{twelve}:{minute:02d} {half}",
            f"{twelve}:{minute:02d}{half}",
        }
        if minute == 0:
            clock |= {
                f"{twelve} {half}",
                f"{twelve}{half}",
                f"{hour}h",
                "noon" if hour == 12 else "",
            }
        clock.discard("")
        return any(c in lowered for c in clock)
    return True


def _looks_like_date(value: str) -> bool:
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?", value))


def string_in(text: str, value: str, *, rounded: bool = False) -> bool:
    if not value.strip():
        return True
    if _looks_like_date(value) and date_in(text, value):
        return True
    plain = normalize(text)
    target = normalize(value)
    literal = len(value.strip()) > 3 and value.lower() in text.lower()
    if literal or (target and _word_in(plain, target)):
        return True
    for synonym in SYNONYMS.get(value.lower(), ()):
        if synonym in text.lower():
            return True
    if re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        return number_in(text, float(value), rounded=rounded)
    return False


def _word_in(plain: str, target: str) -> bool:
    if len(target) <= 3:  # short codes must stand as words ("m" is in every sentence)
        # a unit may follow its number ("2.5cm"), but a code is not part of another word
        return re.search(rf"(?<![a-z]){re.escape(target)}(?![a-z0-9])", plain) is not None
    return target in plain


def value_in(text: str, value: Any, *, rounded: bool = False) -> bool | None:
    """Whether ``value`` is derivable from ``text``; ``None`` when it is not checked.

    ``rounded``: a non-integer number also counts when stated rounded to at least 3
    significant digits (an answer quoting a result); requests are checked exactly."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return number_in(text, value, rounded=rounded)
    if isinstance(value, str):
        return string_in(text, value, rounded=rounded)
    if isinstance(value, list):
        checked = [value_in(text, item, rounded=rounded) for item in value]
        known = [c for c in checked if c is not None]
        return all(known) if known else None
    if isinstance(value, dict):
        return value_in(text, list(value.values()), rounded=rounded)
    return None
