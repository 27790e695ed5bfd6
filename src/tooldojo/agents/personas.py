"""Who the simulated user is and how they write, drawn per scenario for diversity.

A persona is a short description handed to the user model; a style is both an instruction for
the model and a deterministic rewrite for the template fallback, so requests differ in tone
even when the model cannot write them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PERSONAS: tuple[str, ...] = (
    "a busy project manager juggling several deadlines",
    "a retired teacher who is careful and polite",
    "a university student on a tight budget",
    "a small-business owner who values speed",
    "a software engineer who likes precise answers",
    "a travel blogger planning the next trip",
    "a nurse working night shifts",
    "a parent organising a family's week",
    "a freelance designer working with clients abroad",
    "a data analyst preparing a report",
)


@dataclass(frozen=True)
class Style:
    name: str
    instruction: str
    opener: tuple[str, ...]
    closer: tuple[str, ...]


STYLES: dict[str, Style] = {
    style.name: style
    for style in (
        Style("terse", "Be very short: one line, no greeting, no pleasantries.", ("",), ("",)),
        Style(
            "chatty",
            "Be friendly and talkative: add a short personal remark before the request.",
            ("Hi there! Hope your day is going well.", "Hello! Quick favour to ask."),
            ("Thanks so much!", "You're a lifesaver, thank you!"),
        ),
        Style(
            "non-native",
            "Write like a non-native English speaker: simple words, slightly unusual grammar.",
            ("Hello, please I need help.", "Hi, I want ask something."),
            ("Thank you very much.", "Thanks for help."),
        ),
        Style(
            "expert",
            "Write like a domain expert: precise, technical wording, no explanations.",
            ("",),
            ("",),
        ),
        Style(
            "polite",
            "Write politely and formally.",
            ("Good day.", "Hello,"),
            ("Thank you in advance.", "Many thanks."),
        ),
    )
}


def draw_persona(rng: random.Random) -> tuple[str, str]:
    """A (persona, style name) pair for one scenario."""
    return rng.choice(PERSONAS), rng.choice(sorted(STYLES))


def style_of(name: str) -> Style:
    return STYLES.get(name, STYLES["polite"])
