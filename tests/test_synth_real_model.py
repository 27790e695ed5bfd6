"""End to end on the REAL embedded model (llama.cpp SmolLM2-135M), offline: plan with
constrained value drafting, role-play through our MCP server with the simulated executor,
and check the output parses, carries schema-valid labels and schema-valid (or flagged) calls."""

from __future__ import annotations

from pathlib import Path

import anyio
import jsonschema
import pytest

from tooldojo.jsonl import read_jsonl
from tooldojo.model import Trajectory
from tooldojo.synth.labels import is_reference
from tooldojo.synth.pipeline import SynthRequest, prepare_run, run_prepared
from tooldojo.verify.pipeline import VerifyOptions, verify_trajectory

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
roles:
  user: {backend: llamacpp, sampling: {temperature: 0.8, max_tokens: 80}}
  assistant: {backend: llamacpp, sampling: {temperature: 0.0, max_tokens: 80}}
  server: {backend: llamacpp, sampling: {temperature: 0.0, max_tokens: 120}}
"""


@pytest.mark.slow
def test_embedded_model_synthesizes_parseable_labelled_trajectories(tmp_path: Path):
    config = tmp_path / "tooldojo.yaml"
    config.write_text(CONFIG)
    request = SynthRequest(
        specs=[str(ROOT / "examples/specs/weather_finance.openai.json")],
        n=3,
        out=tmp_path / "out",
        categories=["single", "clarify", "irrelevance"],
        concurrency=1,
        config=config,
        min_per_tool=0,
        max_steps=2,
        # What is checked here is the assistant's constrained calls: a user turn the 135M
        # model cannot write is templated (and marked so) rather than dropping the scenario.
        template_cap=1.0,
    )

    async def run():
        prepared = await prepare_run(request)
        return prepared, await run_prepared(prepared)

    prepared, summary = anyio.run(run)
    assert summary.total("failed") == 0 and summary.aborted is None
    trajectories = list(read_jsonl(tmp_path / "out" / "trajectories.jsonl", Trajectory))
    assert len(trajectories) + summary.total("dropped") == 3
    tools = {tool.name: tool for tool in prepared.tools}
    call_steps = 0
    for trajectory in trajectories:
        assert trajectory.metadata["models"]["assistant"] == "SmolLM2-135M-Instruct"
        assert trajectory.labels and len(trajectory.labels) == len(trajectory.assistant_turns())
        for label in trajectory.labels:
            for call in label.calls:
                values = {k: v[0] for k, v in call.arguments.items() if v[0] != ""}
                assert not any(is_reference(v) for v in values.values())
                jsonschema.validate(values, tools[call.name].parameters)
        checked = anyio.run(
            verify_trajectory, trajectory, VerifyOptions(gates=["format", "schema"])
        )
        verdicts = {verdict.gate: verdict for verdict in checked.verdicts}
        # Calls are constrained to the schemas: every parsed call is schema-valid (checked
        # here directly, not only through the gate), and anything else is flagged by the
        # format gate with a reason.
        turns = trajectory.assistant_turns()
        for message, label in zip(turns, trajectory.labels, strict=True):
            for call in message.tool_calls or []:
                jsonschema.validate(call.arguments, tools[call.name].parameters)
            if label.kind == "call":  # decoded under the calls-only constraint (guidance kind)
                call_steps += 1
                assert message.tool_calls or not verdicts["format"].passed, (message, verdicts)
        if verdicts["format"].passed:
            assert verdicts["schema"].passed, verdicts
        else:
            assert verdicts["format"].reason, verdicts
    assert call_steps >= 1, "no call step was played: the schema claim was never exercised"
