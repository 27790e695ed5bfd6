"""The synth manifest's engine record: what the local engines computed while episodes ran."""

from __future__ import annotations

from tooldojo.llm.llamacpp_engine import EngineStats
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.synth.pipeline import engine_counters, engine_work


class _Local:
    """A stand-in for the llama.cpp backend: only its ``stats`` counters matter here."""

    def __init__(self) -> None:
        self.stats = EngineStats()


def test_engine_work_is_the_difference_over_the_episodes_keyed_by_roles():
    shared, scripted = _Local(), ScriptedChatModel(["hi"])
    models = {"user": shared, "assistant": shared, "server": scripted}
    shared.stats = EngineStats(prompt_tokens=500, reused_tokens=100, generated_tokens=50)
    before = engine_counters(models)
    # A model without engine counters (a scripted or remote one) is left out, not zeroed.
    assert list(before) == ["user+assistant"]
    shared.stats = EngineStats(
        prompt_tokens=2_500, reused_tokens=1_100, generated_tokens=650, loop_stops=3
    )
    work = engine_work(before, engine_counters(models), seconds=10.0)["user+assistant"]
    # Planning's tokens (before the snapshot) are not counted: 1,000 prompt tokens computed
    # (2,000 read, 1,000 of them reused) and 600 generated during the episodes.
    assert work["computed_tokens"] == 1_600
    assert work["computed_tokens_per_s"] == 160.0
    assert work["generated_tokens_per_s"] == 60.0
    assert work["loop_stops"] == 3
    assert engine_work({}, {}, seconds=10.0) == {}
