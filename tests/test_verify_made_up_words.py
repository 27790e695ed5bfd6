"""The turns gate's made-up-words check: invented words fail a text turn, real ones do not."""

from __future__ import annotations

import pytest

from test_verify_content import episode, stopped_by
from tooldojo.verify.words import allowed_words, known, made_up_words


def test_english_inflected_and_modern_words_are_known() -> None:
    for word in ("forecast", "forecasts", "referring", "cities", "downloaded", "app", "json"):
        assert known(word), word
    for word in ("erdzbabmjh", "vxgfccc", "tzkfjbzeadwiinh", "hasntecementedl"):
        assert not known(word), word


def test_words_of_the_conversation_are_never_made_up() -> None:
    allowed = allowed_words('update_contact_fb {"city": "Rijksmuseum"} Honga')
    invented, count = made_up_words("UpdateContactFb at the Rijksmuseum for Honga", allowed)
    assert invented == [] and count == 6
    invented, _ = made_up_words("Sr. A: fwd-vxgfccc erdzbabmjh", set())
    assert invented == ["fwd", "vxgfccc", "erdzbabmjh"]  # "sr" and "a" are too short to judge


@pytest.mark.anyio
async def test_an_answer_of_invented_words_fails_the_turns_gate() -> None:
    """From the passed samples of the scale run (docs/samples, 28 Nov), values made to fit."""
    salad = (
        "Lisbon reaches 21 on Monday: erdzbabmjh is the same as you are trying to do, "
        "vxgfccc and tzkfjbzeadwiinh too."
    )
    assert await stopped_by(episode(answer=salad)) == ("turns", ["made_up_words"])
    one = "Lisbon reaches 21 on Monday, a dry and mild week, says the forecast ikk."
    assert await stopped_by(episode(answer=one)) == (None, [])  # one stray word is let through
    modern = "Lisbon reaches 21 on Monday; download the forecast app for the rest of the week."
    assert await stopped_by(episode(answer=modern)) == (None, [])
