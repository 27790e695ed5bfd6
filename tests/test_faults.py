"""Injected backend faults: synthesis survives them, retries, counts them, and writes no junk
that passes verification (scripted models over the real in-memory MCP server)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import anyio
import pytest

from test_synth_orchestration import copying_user, oracle, request
from tooldojo.jsonl import iter_jsonl_dicts, read_jsonl
from tooldojo.llm.config import BackendConfig, load_config, load_model
from tooldojo.llm.faults import FaultConfig, FaultyChatModel, InjectedFault, with_faults
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.model import Message, Trajectory
from tooldojo.synth.pipeline import prepare_run, run_prepared
from tooldojo.verify.pipeline import VerifyOptions, verify_file


def _answer(text: str):  # type: ignore[no-untyped-def]
    return ScriptedChatModel(lambda messages, tools: text, name="inner")


def _outcomes(model: FaultyChatModel, n: int) -> list[str]:
    async def go() -> list[str]:
        seen = []
        for _ in range(n):
            try:
                completion = await model.complete([Message(role="user", content="hi")])
            except InjectedFault:
                seen.append("exception")
            except TimeoutError:
                seen.append("timeout")
            else:
                if not completion.ok:
                    seen.append("error")
                else:
                    seen.append("ok" if completion.text == "fine" else "garbage")
        return seen

    return anyio.run(go)


def test_faults_hit_a_seeded_share_of_calls_in_every_kind() -> None:
    config = FaultConfig(rate=0.1, seed=0, timeout_s=0.0)
    first = _outcomes(FaultyChatModel(_answer("fine"), config), 1000)
    again = _outcomes(FaultyChatModel(_answer("fine"), config), 1000)
    assert first == again  # seeded: the same calls fail the same way
    counts = Counter(first)
    assert 70 <= 1000 - counts["ok"] <= 130, counts
    assert set(counts) == {"ok", "error", "exception", "timeout", "garbage"}
    other_seed = _outcomes(
        FaultyChatModel(_answer("fine"), config.model_copy(update={"seed": 1})), 1000
    )
    assert other_seed != first
    assert Counter(_outcomes(FaultyChatModel(_answer("fine"), FaultConfig(rate=0.0)), 50)) == {
        "ok": 50
    }


def test_faults_are_configured_per_backend(tmp_path: Path) -> None:
    plain = _answer("fine")
    assert with_faults(plain, None) is plain and with_faults(plain, FaultConfig(rate=0)) is plain
    path = tmp_path / "tooldojo.yaml"
    path.write_text(
        "backends:\n"
        "  remote: {kind: openai, model: m, base_urls: ['http://127.0.0.1:9/v1'],"
        " faults: {rate: 0.25, seed: 3}}\n"
        "roles:\n  user: remote\n"
    )
    config = load_config(path)
    model = load_model(config.backend("remote"))
    assert isinstance(model, FaultyChatModel) and model.config.rate == 0.25
    assert not isinstance(
        load_model(BackendConfig(kind="openai", model="m", base_urls=["http://127.0.0.1:9/v1"])),
        FaultyChatModel,
    )
    path.write_text("backends:\n  b: {kind: openai, model: m, base_urls: [u], faults: {rate: 2}}\n")
    with pytest.raises(Exception, match="rate"):
        load_config(path)


@pytest.mark.anyio
async def test_synthesis_survives_injected_faults(tmp_path: Path) -> None:
    config = FaultConfig(rate=0.1, seed=0, timeout_s=0.01)
    user = FaultyChatModel(ScriptedChatModel(copying_user, name="scripted-user"), config)
    assistant = FaultyChatModel(
        ScriptedChatModel(oracle, name="oracle"), config.model_copy(update={"seed": 4})
    )
    n = 40
    prepared = await prepare_run(
        request(tmp_path, n=n, concurrency=1, models={"user": user, "assistant": assistant})
    )
    summary = await run_prepared(prepared)
    out = tmp_path / "out"

    assert summary.aborted is None
    injected = sum(user.injected.values()) + sum(assistant.injected.values())
    assert injected >= 5, (user.injected, assistant.injected)
    # Every planned episode is accounted for; failures were retried, and are counted.
    counts = [summary.total(name) for name in ("finished", "dropped", "failed")]
    assert sum(counts) == n
    assert summary.total("retried") >= 1
    stage = json.loads((out / "manifest.json").read_text())["stages"]["synth"]
    assert stage["counts"]["retried"] == summary.total("retried")
    assert stage["counts"]["finished"] == summary.total("finished")
    assert stage["faults"]["assistant"]["calls"] == assistant.calls
    assert sum(v for k, v in stage["faults"]["user"].items() if k != "calls") == sum(
        user.injected.values()
    )

    # Nothing half-written or doubled; no fault message was recorded as a conversation turn.
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    ids = [json.loads(line)["scenario_id"] for line in lines]  # every line parses whole
    assert len(ids) == len(set(ids)) == summary.total("finished")
    for _, record in iter_jsonl_dicts(out / "trajectories.jsonl"):
        assert "injected fault" not in json.dumps(record["messages"])

    # Junk the assistant "answered" never passes verification: no failure dressed as success.
    await verify_file(out / "trajectories.jsonl", out / "verified.jsonl", VerifyOptions())
    verified = list(read_jsonl(out / "verified.jsonl", Trajectory))
    junk_turns = [
        (t, label.kind)
        for t in verified
        for message, label in zip(
            [m for m in t.messages if m.role == "assistant"], t.labels, strict=True
        )
        if (message.content or "") in assistant.garbage
    ]
    assert junk_turns, "seed 4 puts the assistant's junk in the output"
    assert all(not t.passed for t, kind in junk_turns if kind != "text")
    user_junk = [
        t
        for t in verified
        if any(m.role == "user" and (m.content or "") in user.garbage for m in t.messages)
    ]
    assert all(not t.passed for t in user_junk), [t.id for t in user_junk]
    assert any(t.passed for t in verified)  # the run still produced good data


@pytest.mark.anyio
async def test_junk_final_answers_fail_verification() -> None:
    """Whatever garbage a faulty backend writes as the final answer, verification drops it.

    Tested on the answer slot directly: in a synthesis run the episode's own retries mostly
    replace a junk answer before it is written, so a run would seldom exercise the gate."""
    from test_verify_content import episode, stopped_by

    faulty = FaultyChatModel(
        ScriptedChatModel(oracle, name="oracle"), FaultConfig(rate=1.0, seed=4, kinds=["garbage"])
    )
    for _ in range(40):
        await faulty.complete([Message(role="user", content="hi")], None)
    assert len(faulty.garbage) == 40
    assert await stopped_by(episode()) == (None, [])  # the sound answer passes...
    for junk in faulty.garbage:  # ...and no junk answer in its place does
        gate, _ = await stopped_by(episode(answer=junk))
        assert gate is not None, junk
