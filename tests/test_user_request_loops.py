"""The loop check reads words, not the letters inside an id (a planned value the request must
carry), and still catches every loop it caught before."""

from __future__ import annotations

from tooldojo.verify.requests import loops

IDS = (
    "Please delete cluster key 2382-0003-52A1-0A37-5A11-C15-C74A, checksum 21C4C49C2689D449F?",
    "Could you verify the app #6f4c3b004e5f97babd2c6786da225a3e4412e8b34f2c09 for me?",
    "Show the record a1b2c3-a4a5a6 and the record a7a8a9, please.",
)
LOOPS = (
    "ia ia ia please",
    "Weather in Lisbon for 3 days in °C, x, x, x, x, please?",
    "Team members x1 x1 x1 for user 1567805469?",  # alphanumeric words repeat too
    "no problem - no problem - no problem - no problem - no problem",
    "Lisbon weather: scale, loc, scale, scale, loc, scale, scale for 3 days in °C?",
    "the case of the case of the case of the case of 9?",
    "xtd. xtd. xtd. appId: ,#6f4c3b",
    "Premier e-commerce ia-vu-vu-vu-vu- vu-vu-vu-vu-vu-",
)


def test_letters_inside_an_id_are_not_words_that_loop():
    for text in IDS:
        assert not loops(text), text


def test_loops_are_still_loops():
    for text in LOOPS:
        assert loops(text), text
    assert not loops("What is the log of 2, the log of 5 and the log of 9?")
