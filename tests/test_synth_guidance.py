"""Goal-conditioned guidance of the synthesis assistant (none / kind / label)."""

from __future__ import annotations

import anyio
import pytest

from test_synth_orchestration import copying_user, request
from tooldojo.jsonl import read_jsonl
from tooldojo.llm.base import Completion
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.model import Trajectory
from tooldojo.synth.pipeline import prepare_run, run_prepared
from tooldojo.verify.pipeline import VerifyOptions, verify_file


class ProseOnly:
    """An assistant that never calls a tool (like the embedded model at first); records the
    constraint of each request."""

    name = "prose-only"

    def __init__(self) -> None:
        self.constraints = []

    async def complete(self, messages, tools=None, *, sampling=None, constraint=None):
        self.constraints.append(constraint)
        return Completion(text="Sure, I would be happy to help with that.", model=self.name)


async def synthesize(tmp_path, guidance):
    assistant = ProseOnly()
    models = {"user": ScriptedChatModel(copying_user, name="user"), "assistant": assistant}
    prepared = await prepare_run(
        request(
            tmp_path,
            n=12,
            models=models,
            guidance=guidance,
            categories=["single", "multi_step", "clarify", "irrelevance"],
        )
    )
    await run_prepared(prepared)
    out = tmp_path / "out"
    await verify_file(
        out / "trajectories.jsonl",
        out / "verified.jsonl",
        VerifyOptions(),
    )
    verified = list(read_jsonl(out / "verified.jsonl", Trajectory))
    return assistant, prepared.env.assistant.stats.as_dict(), verified


@pytest.mark.anyio
async def test_label_guidance_forces_calls_but_never_writes_text_for_the_model(tmp_path):
    assistant, stats, verified = await synthesize(tmp_path, "label")
    assert verified and stats["forced"] > 0 and "own" not in stats
    forced = [m for t in verified for m in t.messages if getattr(m, "origin", None) == "forced"]
    assert len(forced) == stats["forced"] and all(m.tool_calls for m in forced)
    assert any(c is not None and c.allow_text is False for c in assistant.constraints)
    # Text steps stay the model's own words, tried a few times and then kept as they are:
    # no filler stands in for them, and the turns gate drops what the model could not write.
    assert stats["failed_text"] > 0
    texts = {m.content for t in verified for m in t.assistant_turns() if not m.tool_calls}
    assert texts == {"Sure, I would be happy to help with that."}
    stopped = {t.verdicts[-1].gate for t in verified}
    assert not any(t.passed for t in verified) and stopped == {"turns"}, [
        v.reason for t in verified for v in t.verdicts if not v.passed
    ]


@pytest.mark.anyio
async def test_kind_guidance_constrains_call_steps_only(tmp_path):
    assistant, stats, verified = await synthesize(tmp_path, "kind")
    assert "forced" not in stats and "own" not in stats  # nothing replaced; text steps tried
    kinds = [
        c.allow_text for c in assistant.constraints if c is not None and c.kind == "tool_calls"
    ]
    assert kinds and not any(kinds)  # call steps: calls only; text steps: no constraint
    assert None in assistant.constraints
    assert not all(t.passed for t in verified)  # the prose-only model fails its call steps


def test_unknown_guidance_is_refused(tmp_path):
    from tooldojo.errors import ToolDojoError

    with pytest.raises(ToolDojoError, match="--guidance"):
        anyio.run(prepare_run, request(tmp_path, guidance="oracle"))


def test_prose_that_imitates_the_tool_protocol_is_not_an_answer():
    from tooldojo.agents.guidance import matches_label
    from tooldojo.model import Label

    label = Label(kind="text")
    echo = Completion(text='<tool_response>\n{"temp": 21}\n</tool_response>')
    assert not matches_label(echo, label, [], [])
    assert matches_label(Completion(text="It is 21 degrees."), label, [], [])
