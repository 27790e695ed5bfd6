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
    # Sayable names no dictionary lists are let through; unsayable capitals are not.
    invented, _ = made_up_words("A table at Nobu in Oslo for Eriksen, Gfqmprfpzfjh", set())
    assert invented == ["gfqmprfpzfjh"]
    invented, _ = made_up_words("Sr. A: fwd-vxgfccc erdzbabmjh", set())
    assert invented == ["vxgfccc", "erdzbabmjh"]  # "sr", "a" and "fwd" are too short to judge


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


@pytest.mark.anyio
async def test_a_request_of_invented_words_fails_the_request_gate() -> None:
    salad = (
        "What will the weather be like in Lisbon the next three days, vxgfccc? In °C, erdzbabmjh."
    )
    assert await stopped_by(episode(request=salad)) == ("request", ["made_up_request"])
    # The persona's unsayable name is the plan's, not the writer's.
    named = "Xqzvrt Kwrtzpl here: the weather in Lisbon for the next three days? In °C please."
    planned = episode(request=named)
    assert await stopped_by(planned) == ("request", ["made_up_request"])
    planned.metadata["persona"] = "Xqzvrt Kwrtzpl, a sailor"
    assert await stopped_by(planned) == (None, [])


def test_the_user_simulator_retries_a_request_of_invented_words() -> None:
    from tooldojo.agents.user import RequestCheck

    check = RequestCheck(required=["Lisbon"], forbidden=[], tool_names=[])
    text = "Please check the forecast for Lisbon, tzkfjbzeadwiinh and ssspcrjhny today."
    assert any(p.startswith("made-up words") for p in check.problems(text))
    check.vocabulary = allowed_words("tzkfjbzeadwiinh ssspcrjhny")
    assert not any(p.startswith("made-up words") for p in check.problems(text))
