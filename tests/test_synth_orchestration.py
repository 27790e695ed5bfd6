"""Synthesis orchestration with scripted models over a REAL tool server (python executor on
examples/tools/office.py, in-memory MCP): labels, verification, resume, concurrency, failures.

The assistant here is an oracle that answers with the label the runner is about to record, so
every trajectory must pass the format, schema and label gates; anything else is a bug in the
planner, the labels or the runner.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import jsonschema
import pytest

from tooldojo.agents.user import words
from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import iter_jsonl_dicts, read_jsonl
from tooldojo.llm.base import Completion
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.mcp.executors.python import PythonExecutor
from tooldojo.model import CATEGORIES, Message, Scenario, Tool, ToolCall, Trajectory
from tooldojo.synth.episode import CURRENT_EPISODE
from tooldojo.synth.labels import is_reference
from tooldojo.synth.pipeline import SynthRequest, prepare_run, run_prepared
from tooldojo.synth.planner import PlanOptions, plan_scenarios
from tooldojo.synth.runner import Failed, run_shard
from tooldojo.verify.label import resolve_pointer
from tooldojo.verify.pipeline import VerifyOptions, verify_file

ROOT = Path(__file__).resolve().parents[1]
OFFICE = f"python:{ROOT / 'examples/tools/office.py'}:Office"


def office_tools() -> list[Tool]:
    return PythonExecutor.from_target(OFFICE.removeprefix("python:")).tools


def copying_user(messages: list[Message], tools: list[Tool] | None) -> str:
    """A user model that writes the planned details into its message (passes the checks)."""
    prompt = messages[-1].content or ""
    goal = re.search(r"^Goal: (.*)$", prompt, re.MULTILINE)
    chunks = re.findall(r"(?:^Details(?: \(\d+\))?: |these details: )(.*)$", prompt, re.M)
    values = [
        re.sub(r" \([^()]*\)$", "", part)
        for chunk in chunks
        for part in chunk.split("; ")
        if part != "(none)"
    ]
    return f"Please {goal.group(1) if goal else 'help'}, with " + "; ".join(values)


def _first_value(possible: list) -> object:
    value = next(v for v in possible if v != "")
    if isinstance(value, dict) and not is_reference(value):
        return {k: _first_value(v) for k, v in value.items() if "" not in v or len(v) > 1}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [{k: _first_value(v) for k, v in item.items() if v != [""]} for item in value]
    return value


def _resolve(value: object, messages: list[Message]) -> object:
    if not is_reference(value):
        return value
    ref = value["$result"]  # type: ignore[index]
    assistants = [i for i, m in enumerate(messages) if m.role == "assistant"]
    call = messages[assistants[ref["step"]]].tool_calls[ref["call"]]
    result = next(m for m in messages if m.role == "tool" and m.tool_call_id == call.id)
    return resolve_pointer(json.loads(result.content or ""), ref["pointer"])


def oracle(messages: list[Message], tools: list[Tool] | None) -> Completion:
    """The assistant that follows the labels exactly (reads the pending label)."""
    state = CURRENT_EPISODE.get()
    assert state is not None and state.pending is not None
    label = state.pending
    if label.kind != "call":
        # The conversation as recorded: a final answer's prompt shows it in another form
        # (``assistant.answer_view``), which a model reads and this oracle need not.
        return Completion(text=_oracle_text(label, state.messages or messages), model="oracle")
    calls = []
    for number, expected in enumerate(label.calls):
        arguments = {}
        for name, possible in expected.arguments.items():
            if possible == [""] or (possible and possible[0] == ""):
                continue
            arguments[name] = _resolve(_first_value(possible), messages)
        calls.append(
            ToolCall(id=f"c{len(messages)}_{number}", name=expected.name, arguments=arguments)
        )
    return Completion(tool_calls=calls, finish_reason="tool_calls", model="oracle")


def _oracle_text(label, messages: list[Message]) -> str:
    """A text answer that passes the turn checks: asks for what is missing, says why it
    refuses, or quotes the values the last results hold."""
    if label.kind == "clarify":
        return f"Could you tell me the {' and '.join(words(m) for m in label.missing)}?"
    if label.kind == "refuse":
        return "Sorry, I can't do that: none of my tools covers this request."
    results = []
    for message in reversed(messages):
        if message.role == "user":
            break
        if message.role == "tool":
            results.append(message.content or "")
    leaves = [str(v) for r in results for v in _leaves(_json_or_text(r))][:4]
    request = next((m.content for m in reversed(messages) if m.role == "user"), "") or ""
    # A few of the request's words, not the request: an answer that mostly repeats it fails
    # the turns gate (echoes_request).
    topic = " ".join(request.split()[:6])
    if not leaves:
        return f"About your request ({topic}): I found nothing that matches."
    # No fixed tail: a later answer that mostly repeats an earlier one fails the turns gate
    # (repeated_answer), and a long boilerplate tail made every second answer such a repeat.
    return f"About your request ({topic}): the result shows {', '.join(leaves)}."


def _json_or_text(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _leaves(value: object) -> list:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [] if isinstance(value, bool) or value is None else [value]


def scripted_models(assistant=oracle) -> dict:
    return {
        "user": ScriptedChatModel(copying_user, name="scripted-user"),
        "assistant": ScriptedChatModel(assistant, name="oracle"),
    }


def request(tmp_path: Path, **overrides) -> SynthRequest:
    options = dict(
        specs=[],
        n=24,
        out=tmp_path / "out",
        executor=OFFICE,
        values="schema",
        concurrency=4,
        models=scripted_models(),
        config=None,
    )
    options.update(overrides)
    return SynthRequest(**options)


# --- planning -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_plan_is_deterministic_covers_tools_and_categories_with_valid_labels():
    tools = office_tools()
    assert len(tools) >= 15
    options = PlanOptions(n=24, seed=3, min_per_tool=2)
    first = await plan_scenarios(tools, options)
    second = await plan_scenarios(tools, options)
    assert [s.model_dump() for s in first.scenarios] == [s.model_dump() for s in second.scenarios]
    assert Counter(s.category for s in first.scenarios).keys() == set(CATEGORIES)
    appearances = Counter(name for s in first.scenarios for name in s.tools)
    appearances.update(
        s.metadata["asks"][0][0]["tool"] for s in first.scenarios if s.category == "irrelevance"
    )
    assert min(appearances[t.name] for t in tools) >= 2
    by_name = {t.name: t for t in tools}
    for scenario in first.scenarios:
        for turn in scenario.turns:
            for step in turn.steps:
                for call in step.calls:
                    arguments = {
                        k: _first_value(v)
                        for k, v in call.arguments.items()
                        if v and v[0] != "" and not is_reference(v[0])
                    }
                    required = set(by_name[call.name].required)
                    refs = {k for k, v in call.arguments.items() if v and is_reference(v[0])}
                    assert required <= set(arguments) | refs
                    schema = dict(by_name[call.name].parameters, required=sorted(required - refs))
                    jsonschema.validate(arguments, schema)
        if scenario.category == "irrelevance":
            target = scenario.metadata["asks"][0][0]["tool"]
            assert target not in scenario.tools
        if scenario.category == "clarify":
            (name,) = scenario.turns[0].withheld
            assert scenario.turns[0].steps[0].missing == [name]


@pytest.mark.anyio
async def test_weights_steer_the_plan():
    tools = office_tools()
    plan = await plan_scenarios(
        tools,
        PlanOptions(
            n=40,
            seed=1,
            min_per_tool=0,
            mix={"single": 1.0, "parallel": 1.0},
            category_weights={"parallel": 3.0},
            tool_weights={"send_email": 50.0},
        ),
    )
    counts = Counter(s.category for s in plan.scenarios)
    assert counts == {"parallel": 30, "single": 10}
    targets = Counter(s.turns[0].steps[0].calls[0].name for s in plan.scenarios)
    assert targets.most_common(1)[0][0] == "send_email"


@pytest.mark.anyio
async def test_impossible_category_and_empty_registry_are_clear_errors():
    one = [Tool(name="ping", parameters={"type": "object", "properties": {}})]
    with pytest.raises(ToolDojoError, match="parallel_multiple needs at least 2 tools"):
        await plan_scenarios(one, PlanOptions(n=3, mix={"parallel_multiple": 1.0}))
    with pytest.raises(ToolDojoError, match="empty"):
        await plan_scenarios([], PlanOptions(n=3))
    with pytest.raises(ToolDojoError, match="unknown category"):
        await plan_scenarios(one, PlanOptions(n=3, mix={"bogus": 1.0}))


# --- running ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_oracle_trajectories_pass_verification_and_change_real_state(tmp_path: Path):
    prepared = await prepare_run(request(tmp_path))
    summary = await run_prepared(prepared)
    assert summary.total("failed") == 0 and summary.aborted is None
    out = tmp_path / "out"
    trajectories = list(read_jsonl(out / "trajectories.jsonl", Trajectory))
    dropped = [r for _, r in iter_jsonl_dicts(out / "dropped.jsonl")]
    assert len(trajectories) + len(dropped) == len(prepared.scenarios)
    assert len(trajectories) >= 18 and len(dropped) <= 6
    assert {t.category for t in trajectories} == set(CATEGORIES)

    # Labels are exactly the planned steps, in order, with references made absolute and bound.
    scenarios = {s.id: s for s in prepared.scenarios}
    for trajectory in trajectories:
        planned = [step for turn in scenarios[trajectory.scenario_id].turns for step in turn.steps]
        assert [label.kind for label in trajectory.labels] == [s.kind for s in planned]
        assert len(trajectory.assistant_turns()) == len(trajectory.labels)
        assert trajectory.metadata["models"] == {"user": "scripted-user", "assistant": "oracle"}
        assert trajectory.metadata["unbound_references"] == 0
        assert "model" in trajectory.metadata["user_sources"]

    # Multi-step: the second call used an id the first call created in the live environment.
    chains = [t for t in trajectories if t.category == "multi_step"]
    assert chains
    for chain in chains:
        _first, second = (m for m in chain.messages if m.role == "assistant" and m.tool_calls)
        ref = chain.labels[1].calls[0].arguments
        (param,) = [k for k, v in ref.items() if is_reference(v[0])]
        produced = json.loads(next(m for m in chain.messages if m.role == "tool").content)
        pointer = ref[param][0]["$result"]["pointer"]
        assert second.tool_calls[0].arguments[param] == resolve_pointer(produced, pointer)

    # Clarify: the user answered the question with the withheld value.
    for trajectory in (t for t in trajectories if t.category == "clarify"):
        users = [m.content for m in trajectory.messages if m.role == "user"]
        (value,) = scenarios[trajectory.scenario_id].turns[0].withheld.values()
        assert str(value) not in users[0] and str(value) in users[1]

    run = await verify_file(
        out / "trajectories.jsonl",
        out / "verified.jsonl",
        VerifyOptions(),  # every default gate: grounded requests and answers included
    )
    failures = [t for t in read_jsonl(out / "verified.jsonl", Trajectory) if not t.passed]
    assert not failures, [(t.id, t.verdicts[-1].reason) for t in failures]
    assert run.passed == len(trajectories)


def test_tooldojo_verify_cli_passes_synthesized_output(tmp_path: Path):
    from typer.testing import CliRunner

    from tooldojo.cli import app

    async def synthesize() -> None:
        await run_prepared(await prepare_run(request(tmp_path, n=10, seed=5)))

    anyio.run(synthesize)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["verify", str(out / "trajectories.jsonl"), "--out", str(out / "v.jsonl")]
    )
    assert result.exit_code == 0, result.output
    verified = list(read_jsonl(out / "v.jsonl", Trajectory))
    assert verified and all(t.passed for t in verified)


@pytest.mark.anyio
async def test_resume_after_interruption_loses_and_duplicates_nothing(tmp_path: Path):
    prepared = await prepare_run(request(tmp_path, n=16, concurrency=3))
    seen = await _play_until(prepared, 5)
    path = tmp_path / "out" / "trajectories.jsonl"
    dropped_path = tmp_path / "out" / "dropped.jsonl"
    done = [r["id"] for _, r in iter_jsonl_dicts(path)]
    done += [r["id"] for _, r in iter_jsonl_dicts(dropped_path)]
    assert 5 <= len(done) == len(seen) < 16  # what was reported finished is on disk
    with path.open("a", encoding="utf-8") as handle:  # a write cut short by a kill
        handle.write('{"id": "half a rec')

    again = await prepare_run(request(tmp_path, n=16, concurrency=3))
    assert again.reused_plan and again.pending_count() == 16 - len(done)
    summary = await run_prepared(again)
    assert summary.total("skipped") == len(done)
    ids = [r["id"] for _, r in iter_jsonl_dicts(path)]
    dropped = [r["id"] for _, r in iter_jsonl_dicts(dropped_path)]
    assert len(ids) == len(set(ids))
    assert sorted(ids + dropped) == sorted(s.id for s in prepared.scenarios)

    with pytest.raises(ToolDojoError, match="other options"):
        await prepare_run(request(tmp_path, n=17))


@pytest.mark.anyio
async def test_episodes_left_in_a_worker_folder_count_as_done_and_are_merged(tmp_path: Path):
    """What a killed worker process left, or episodes played on another machine and put in a
    worker folder, is done: the pending count (the progress bar's total) leaves it out, and
    the resumed run merges it once instead of playing it again."""
    prepared = await prepare_run(request(tmp_path, n=12, concurrency=3))
    seen = await _play_until(prepared, 4)
    out = tmp_path / "out"
    elsewhere = out / "workers" / "99"
    elsewhere.mkdir(parents=True)
    for name in ("trajectories.jsonl", "dropped.jsonl"):
        if (out / name).exists():
            (out / name).rename(elsewhere / name)
    done = [
        _key(r)
        for name in ("trajectories.jsonl", "dropped.jsonl")
        for _, r in iter_jsonl_dicts(elsewhere / name)
    ]
    assert len(done) == len(seen)

    again = await prepare_run(request(tmp_path, n=12, concurrency=3))
    assert again.pending_count() == 12 - len(done)
    summary = await run_prepared(again)
    assert summary.total("skipped") == len(done)
    assert not (out / "workers").exists()
    finished = [
        _key(r)
        for name in ("trajectories.jsonl", "dropped.jsonl")
        for _, r in iter_jsonl_dicts(out / name)
    ]
    assert sorted(finished) == sorted(s.id for s in prepared.scenarios)  # each once


async def _play_until(prepared, count: int) -> list:  # type: ignore[no-untyped-def]
    """Play until ``count`` episodes are reported finished, then cancel (a kill mid-run)."""
    seen = []

    def stop_at_count(outcome) -> None:
        seen.append(outcome)
        if len(seen) == count:
            scope.cancel()

    with anyio.CancelScope() as scope:
        await run_prepared(prepared, stop_at_count)
    return seen


def _key(record: dict) -> str:
    return str(record.get("scenario_id") or record.get("id"))


@pytest.mark.anyio
async def test_concurrency_bound_is_reached_and_never_exceeded(tmp_path: Path):
    prepared = await prepare_run(request(tmp_path, n=12, concurrency=3))
    active = 0
    peak = 0
    inner = ScriptedChatModel(oracle, name="oracle")

    class SlowOracle:
        name = "slow-oracle"

        async def complete(self, messages, tools=None, *, sampling=None, constraint=None):
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            try:
                await anyio.sleep(0.01)
                return await inner.complete(messages, tools, sampling=sampling)
            finally:
                active -= 1

    prepared.env.assistant.model = SlowOracle()
    prepared.env.accept_request = None
    outcomes = await run_shard(prepared.scenarios, prepared.env, concurrency=3)
    assert len(outcomes) == 12 and not any(isinstance(o, Failed) for o in outcomes)
    assert [o.id for o in outcomes] == [s.id for s in prepared.scenarios]
    assert peak == 3


def down_for(which: Callable[[int], bool]):  # type: ignore[no-untyped-def]
    """The oracle, except that the model calls ``which`` picks (by number) fail as a backend
    that is down would."""
    calls = 0

    def answer(messages, tools):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if which(calls):
            return Completion(finish_reason="error", error="connection refused", model="down")
        return oracle(messages, tools)

    return answer


@pytest.mark.anyio
async def test_failing_backend_stops_the_run_with_what_finished_saved(tmp_path: Path):
    models = scripted_models(down_for(lambda call: call > 4))
    prepared = await prepare_run(request(tmp_path, n=12, concurrency=1, models=models))
    prepared.request.max_failures = 3
    summary = await run_prepared(prepared)
    assert summary.aborted and "connection refused" in summary.aborted
    assert summary.total("failed") == 3
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stages"]["synth"]["status"] == "failed"
    finished = list(iter_jsonl_dicts(tmp_path / "out" / "trajectories.jsonl"))
    assert 1 <= len(finished) <= 4


@pytest.mark.anyio
async def test_failed_episodes_are_named_in_the_manifest(tmp_path: Path):
    models = scripted_models(down_for(lambda call: call in (5, 6)))
    prepared = await prepare_run(request(tmp_path, n=6, concurrency=1, models=models, retries=0))
    summary = await run_prepared(prepared)
    assert not summary.aborted and 1 <= summary.total("failed") <= 2
    stage = json.loads((tmp_path / "out" / "manifest.json").read_text())["stages"]["synth"]
    assert stage["status"] == "failed" and "episode(s) failed" in stage["error"]
    assert "connection refused" in stage["error"]


def test_cli_refuses_empty_registry_and_bfcl_inputs(tmp_path: Path):
    import subprocess
    import sys

    empty = tmp_path / "empty.openai.json"
    empty.write_text("[]")
    command = [sys.executable, "-m", "tooldojo.cli", "synth", "--specs", str(empty)]
    result = subprocess.run(
        [*command, "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "empty" in result.stderr

    from tooldojo.synth.environment import bfcl_data_root, refuse_bfcl_inputs

    with pytest.raises(ToolDojoError, match="evaluation only"):
        refuse_bfcl_inputs([], "bfcl")
    root = bfcl_data_root()
    if root is not None:
        with pytest.raises(ToolDojoError, match="test set"):
            refuse_bfcl_inputs([str(root / "data" / "BFCL_v4_simple_python.json")], "simulated")


def test_scenarios_file_round_trips(tmp_path: Path):
    seen: list[str] = []

    async def plan() -> list[Scenario]:
        prepared = await prepare_run(request(tmp_path, n=8), lambda s: seen.append(s.id))
        return list(prepared.scenarios)

    scenarios = anyio.run(plan)
    again = list(read_jsonl(tmp_path / "out" / "scenarios.jsonl", Scenario))
    assert [s.model_dump() for s in again] == [s.model_dump() for s in scenarios]
    assert seen == [s.id for s in scenarios] and len(seen) >= 8  # progress saw each one
    assert not (tmp_path / "out" / "scenarios.jsonl.partial").exists()  # renamed into place
    assert not (tmp_path / "out" / "plan.partial.json").exists()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["plan"]["executor"] == OFFICE


class _Killed(Exception):
    """Stands in for a kill in the middle of planning."""


def _plan_until_killed(tmp_path: Path, after: int, **options) -> list[str]:
    seen: list[str] = []

    def kill_after(scenario: Scenario) -> None:
        seen.append(scenario.id)
        if len(seen) == after:
            raise _Killed

    with pytest.raises(_Killed):
        anyio.run(lambda: prepare_run(request(tmp_path, **options), kill_after))
    return seen


def _plan(tmp_path: Path, **options) -> tuple[list[Scenario], list[str]]:
    seen: list[str] = []

    async def plan() -> list[Scenario]:
        prepared = await prepare_run(request(tmp_path, **options), lambda s: seen.append(s.id))
        return list(prepared.scenarios)

    return anyio.run(plan), seen


def test_a_plan_killed_midway_resumes_with_only_the_rest(tmp_path: Path) -> None:
    # Drafting values with a model is most of a plan's time (hours for a few thousand
    # scenarios): a kill must not throw the planned ones away.
    options = dict(n=20, concurrency=3, min_per_tool=0)
    whole, _ = _plan(tmp_path / "whole", **options)
    first = _plan_until_killed(tmp_path / "cut", after=7, **options)
    out = tmp_path / "cut" / "out"
    assert not (out / "scenarios.jsonl").exists()  # nothing looks whole
    partial = out / "scenarios.jsonl.partial"
    assert [r["id"] for _, r in iter_jsonl_dicts(partial)] == first
    kept = partial.read_bytes()
    with partial.open("a", encoding="utf-8") as handle:  # a line cut short by the kill
        handle.write('{"id": "s0-000')

    resumed, seen = _plan(tmp_path / "cut", **options)
    assert set(seen).isdisjoint(first) and len(seen) == len(whole) - len(first)
    assert (out / "scenarios.jsonl").read_bytes().startswith(kept)
    assert [s.model_dump() for s in resumed] == [s.model_dump() for s in whole]

    # Another plan's leftovers are refused, named, and left as they are.
    _plan_until_killed(tmp_path / "other", after=4, **options)
    with pytest.raises(ToolDojoError, match=r"scenarios\.jsonl\.partial .*other options"):
        anyio.run(lambda: prepare_run(request(tmp_path / "other", n=21, concurrency=3)))
    assert len(list(iter_jsonl_dicts(tmp_path / "other" / "out" / "scenarios.jsonl.partial"))) == 4


def test_a_resumed_plan_still_covers_every_tool_once(tmp_path: Path) -> None:
    first = _plan_until_killed(tmp_path, after=5, n=6, concurrency=2)
    resumed, _ = _plan(tmp_path, n=6, concurrency=2)
    ids = [s.id for s in resumed]
    assert len(ids) == len(set(ids)) and set(first) <= set(ids)
    offered = {name for s in resumed for name in s.tools}
    tools = {t.name for t in anyio.run(lambda: prepare_run(request(tmp_path / "x", n=1))).tools}
    asked = {a["tool"] for s in resumed for turn in s.metadata["asks"] for a in turn}
    assert tools <= offered | asked
