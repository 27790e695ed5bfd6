"""Fast unit tests of the loop's parts: error classes, the honest probe, the judge's decision
and re-gated correction, error-driven expansion per class, weights, the forced-share cap,
accounting and resume by inputs. Models are scripted: what is tested is the loop's logic."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import anyio
import pytest

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import append_jsonl, read_jsonl
from tooldojo.llm.base import Completion
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.loop.accounting import admit_by_forced_share
from tooldojo.loop.classify import ERROR_CLASSES, classify_error
from tooldojo.loop.config import JudgeSection, LoopConfig, SelfplaySection
from tooldojo.loop.expand import expansion_spec, run_expand
from tooldojo.loop.judge import (
    JudgedRecord,
    decide,
    judge_case,
    judge_counts,
    run_judge,
)
from tooldojo.loop.probe import ProbeRecord, accuracy_table, run_probe, stratified_sample
from tooldojo.loop.rundir import RunDir, stage_inputs
from tooldojo.loop.weights import next_weights
from tooldojo.model import Label, LabelCall, Message, Scenario, Tool, ToolCall, Trajectory
from tooldojo.synth.labels import ArgumentDrafter
from tooldojo.verify.accounting import accounting, count_origins
from tooldojo.verify.label import shapes_of
from tooldojo.verify.pipeline import DEFAULT_GATES, VerifyOptions


def tool(name: str, description: str, props: dict, required: list[str]) -> Tool:
    return Tool(
        name=name,
        description=description,
        parameters={"type": "object", "properties": props, "required": required},
    )


S = {"type": "string"}
WEATHER = tool(
    "get_weather",
    "Get the current weather in a city.",
    {"city": S, "unit": {"type": "string", "enum": ["c", "f"]}},
    ["city"],
)
FORECAST = tool(
    "get_forecast",
    "Get the weather forecast for a city for some days.",
    {"city": S, "days": {"type": "integer"}},
    ["city", "days"],
)
TIME = tool("get_time", "Get the local time in a time zone.", {"zone": S}, ["zone"])
BOOK = tool(
    "book_table",
    "Book a restaurant table for a date.",
    {
        "restaurant": S,
        "date": {"type": "string", "format": "date"},
        "guests": {"type": "integer"},
        "notes": S,
    },
    ["restaurant", "date", "guests"],
)
MEETING = tool(
    "schedule_meeting",
    "Schedule a meeting on a day.",
    {"title": S, "day": {"type": "string", "format": "date"}},
    ["title", "day"],
)
TOOLS = [WEATHER, FORECAST, TIME, BOOK, MEETING]
SHAPES = shapes_of(TOOLS)


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(id=f"c_{name}", name=name, arguments=arguments)


def label(*calls: LabelCall, kind: str = "call") -> Label:
    return Label(kind=kind, calls=list(calls))  # type: ignore[arg-type]


PARIS = LabelCall(name="get_weather", arguments={"city": ["Paris"], "unit": ["", "c"]})
ROME = LabelCall(name="get_weather", arguments={"city": ["Rome"], "unit": ["", "c"]})
BOOKING = LabelCall(
    name="book_table",
    arguments={"restaurant": ["Luigi"], "date": ["2026-05-01"], "guests": [4], "notes": [""]},
)


# --- error classes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("want", "calls", "text", "parse_error", "expected"),
    [
        (label(PARIS), [call("get_weather", city="Paris")], "", None, None),
        (label(PARIS), [call("get_forecast", city="Paris", days=1)], "", None, "wrong_tool"),
        (
            label(BOOKING),
            [call("book_table", restaurant="Luigi", date="2026-05-01")],
            "",
            None,
            "missing_arg",
        ),
        (label(PARIS), [call("get_weather", city="Paris", mood="sunny")], "", None, "extra_arg"),
        (label(PARIS), [call("get_weather", city="London")], "", None, "wrong_value"),
        (label(PARIS), [call("get_weather", city=3)], "", None, "wrong_value"),
        (label(kind="refuse"), [call("get_time", zone="UTC")], "", None, "called_when_should_not"),
        (
            label(kind="clarify"),
            [call("get_weather", city="Paris")],
            "",
            None,
            "called_when_should_not",
        ),
        (label(PARIS), [call("get_weather", city="Paris")] * 2, "", None, "called_when_should_not"),
        (label(PARIS), [], "It is sunny in Paris.", None, "no_call_when_should"),
        (label(PARIS, ROME), [call("get_weather", city="Paris")], "", None, "missed_parallel"),
        (label(PARIS), [], "<tool_call>{oops", "bad json", "format"),
        (label(kind="refuse"), [], "   ", None, "format"),
        (label(kind="refuse"), [], "No tool here can do that.", None, None),
    ],
)
def test_each_error_class(want, calls, text, parse_error, expected):
    got = classify_error(want, calls, text, SHAPES, parse_error=parse_error)
    assert got == expected
    assert got is None or got in ERROR_CLASSES


def test_parallel_pairs_by_name_and_reports_the_wrong_value():
    made = [call("get_weather", city="Rome"), call("get_weather", city="Oslo")]
    assert classify_error(label(PARIS, ROME), made, "", SHAPES) == "wrong_value"


# --- the honest probe -------------------------------------------------------------------------


def single_trajectory(tid: str, category: str = "single", with_refuse: bool = False) -> Trajectory:
    messages = [
        Message(role="user", content="Weather in Paris please"),
        Message(role="assistant", tool_calls=[call("get_weather", city="Paris")]),
        Message(role="tool", tool_call_id="c_get_weather", content='{"temp": 20}'),
        Message(role="assistant", content="It is 20 degrees."),
    ]
    labels = [label(PARIS), Label(kind="text")]
    if with_refuse:
        messages += [
            Message(role="user", content="Write me a poem"),
            Message(role="assistant", content="I cannot do that with these tools."),
        ]
        labels.append(Label(kind="refuse"))
    return Trajectory(
        id=tid, category=category, tools=[WEATHER, TIME], messages=messages, labels=labels
    )


def probe(model: ScriptedChatModel, pool: list[Trajectory], tmp_path: Path) -> dict:
    out = tmp_path / "probe.jsonl"
    counts = anyio.run(
        lambda: run_probe(model, {"heldout": pool}, out, limit=100, seed=0, max_tokens=16)
    )
    return accuracy_table(read_jsonl(out, ProbeRecord), sample=counts)


def test_a_model_that_never_calls_scores_zero_on_call_turns(tmp_path):
    never_calls = ScriptedChatModel(lambda m, t: "I am happy to help!", name="prose")
    table = probe(
        never_calls, [single_trajectory(f"t{i}", with_refuse=True) for i in range(3)], tmp_path
    )
    assert table["kind"]["heldout/call"] == {"correct": 0, "total": 3, "accuracy": 0.0}
    # the refusals are reported apart, never mixed in, and they are wrong too: no call, but
    # "I am happy to help!" is no refusal (it says no reason)
    assert table["kind"]["heldout/no_call"]["accuracy"] == 0.0
    assert table["error_class"]["heldout/call/no_call_when_should"]["count"] == 3
    assert table["error_class"]["heldout/no_call/poor_answer"]["count"] == 3
    assert table["sample"]["heldout"] == {"pool_turns": 6, "probed": 6, "stratified": False}
    # final text answers after tool results are not probed: "no call" proves nothing there
    records = list(read_jsonl(tmp_path / "probe.jsonl", ProbeRecord))
    assert {r.label.kind for r in records} == {"call", "refuse"}
    assert all(r.kind == ("call" if r.label.kind == "call" else "no_call") for r in records)


def test_probe_progress_learns_its_total_first(tmp_path):
    calls: list[int | None] = []
    model = ScriptedChatModel(lambda m, t: "I am happy to help!", name="prose")
    pool = [single_trajectory(f"t{i}", with_refuse=True) for i in range(2)]
    out = tmp_path / "probe.jsonl"

    def progress(*, total: int | None = None) -> None:
        calls.append(total)

    anyio.run(
        lambda: run_probe(model, {"heldout": pool}, out, limit=100, seed=0, progress=progress)
    )
    assert calls == [4, None, None, None, None]  # the total (4 turns), then one tick per turn
    calls.clear()
    anyio.run(
        lambda: run_probe(model, {"heldout": pool}, out, limit=100, seed=0, progress=progress)
    )
    assert calls == [0]  # a resume has nothing left to probe


def test_a_probe_of_nothing_leaves_an_empty_file(tmp_path):
    """No trajectory passed, so nothing to probe: the loop records the file's hash."""
    model = ScriptedChatModel(lambda m, t: "unused", name="prose")
    out = tmp_path / "base" / "probe.jsonl"
    counts = anyio.run(lambda: run_probe(model, {"heldout": []}, out, limit=100, seed=0))
    assert out.read_text() == "" and counts["heldout_sample"] == 0


def test_an_empty_answer_is_wrong_even_where_no_call_is_right(tmp_path):
    silent = ScriptedChatModel(lambda m, t: "", name="silent")
    table = probe(silent, [single_trajectory("t", with_refuse=True)], tmp_path)
    assert table["kind"]["heldout/no_call"]["accuracy"] == 0.0


def test_a_no_call_decision_counts_only_with_an_answer_that_does_its_job(tmp_path):
    """Making no call is not enough: the refusal says why, the question asks for what is
    missing; filler, code and questions about something else are wrong (``poor_answer``)."""
    clarify = single_trajectory("c")
    clarify.messages[-1:] = [
        Message(role="user", content="What is the weather like?"),
        Message(role="assistant", content="Which city do you mean?"),
    ]
    clarify.labels[-1] = Label(kind="clarify", missing=["city"])
    answers = {
        "I cannot write poems: none of my tools does that.": (True, False),
        "Done. Here is what I found:": (False, False),
        "Sure! print('a poem')": (False, False),
        "In which city?": (False, True),
        "What time is it?": (False, False),
    }
    for number, (text, (refusal_right, clarify_right)) in enumerate(answers.items()):
        model = ScriptedChatModel(lambda m, t, text=text: text, name="prose")
        pools = {"heldout": [single_trajectory("t", with_refuse=True), clarify]}
        out = tmp_path / f"probe-{number}.jsonl"
        anyio.run(partial(run_probe, model, pools, out, limit=100, seed=0))
        got = {r.label.kind: r for r in read_jsonl(out, ProbeRecord) if r.kind == "no_call"}
        assert (got["refuse"].correct, got["clarify"].correct) == (refusal_right, clarify_right)
        assert all(r.correct or r.error_class == "poor_answer" for r in got.values()), text


def test_a_calling_model_is_right_on_call_turns(tmp_path):
    def answers(messages, tools):
        if "poem" in (messages[-1].content or ""):
            return "Sorry, none of my tools writes poems."
        return Completion(
            tool_calls=[call("get_weather", city="Paris")], finish_reason="tool_calls"
        )

    table = probe(ScriptedChatModel(answers), [single_trajectory("t", with_refuse=True)], tmp_path)
    assert table["kind"]["heldout/call"]["accuracy"] == 1.0
    assert table["kind"]["heldout/no_call"]["accuracy"] == 1.0
    assert "error_class" in table and not table["error_class"]


def test_near_miss_refusals_are_also_scored_apart(tmp_path):
    plain = single_trajectory("plain", category="irrelevance", with_refuse=True)
    near = single_trajectory("near", category="irrelevance", with_refuse=True)
    near.metadata["near_miss"] = True

    def answers(messages, tools):
        return Completion(  # calls every time: wrong on both refusals
            tool_calls=[call("get_weather", city="Paris")], finish_reason="tool_calls"
        )

    table = probe(ScriptedChatModel(answers), [plain, near], tmp_path)
    assert table["category"]["heldout/no_call/irrelevance"]["total"] == 2
    assert table["category"]["heldout/no_call/irrelevance (near miss)"] == {
        "correct": 0,
        "total": 1,
        "accuracy": 0.0,
    }
    from tooldojo.report.collect import _probe_rates

    rows = [json.loads(line) for line in (tmp_path / "probe.jsonl").read_text().splitlines()]
    rates = _probe_rates(rows)[0]
    assert rates["heldout / no_call / irrelevance (near miss)"].n == 1


def test_probe_samples_are_stratified_when_the_pool_is_larger():
    from tooldojo.loop.probe import probeable

    pool = [single_trajectory(f"a{i}", "single") for i in range(20)]
    pool += [single_trajectory(f"b{i}", "multiple") for i in range(10)]
    samples = probeable(pool)
    chosen = stratified_sample(samples, 9, seed=1)
    assert len(chosen) == 9
    categories = [s.category for s in chosen]
    assert categories.count("single") == 6 and categories.count("multiple") == 3
    assert stratified_sample(samples, 100, seed=1) == samples  # greedy over the whole pool


def test_a_probe_sample_over_many_one_turn_tools_keeps_each_category_s_share():
    """Thousands of tools with one turn each: every (category, tool) quota ties below one,
    and the sample must still hold each category in proportion (it once went to the
    alphabetically first categories: 327 multi_turn turns of 1,000 and one single)."""
    from tooldojo.loop.probe import probeable

    def one_tool(tid: str, category: str) -> Trajectory:
        trajectory = single_trajectory(tid, category)
        target = LabelCall(name=f"tool_{tid}", arguments={"city": ["Paris"]})
        return trajectory.model_copy(update={"labels": [label(target), Label(kind="text")]})

    pool = [one_tool(f"a{i}", "clarify") for i in range(30)]
    pool += [one_tool(f"z{i}", "single") for i in range(30)]
    samples = probeable(pool)
    chosen = stratified_sample(samples, 20, seed=3)
    categories = [s.category for s in chosen]
    assert categories.count("clarify") == 10 and categories.count("single") == 10
    assert len({s.trajectory_id for s in chosen}) == 20  # no turn twice
    assert chosen == stratified_sample(samples, 20, seed=3)  # the seed decides


# --- the judge ----------------------------------------------------------------------------


def test_decision_needs_a_strict_majority_of_all_votes():
    assert decide(["label_wrong", "label_wrong"]) == "label_wrong"
    assert decide(["model_wrong", "model_wrong", "label_wrong"]) == "model_wrong"
    assert decide(["label_wrong", "model_wrong"]) == "undecided"
    assert decide(["label_wrong", None]) == "undecided"  # a failed vote is not guessed
    assert decide([None, None]) == "undecided"


def verdict(name: str):
    return lambda messages, tools: json.dumps({"verdict": name, "reason": "because"})


def refuse_case() -> tuple[ProbeRecord, Trajectory]:
    """The label says refuse; the model called get_time (which the judges may prefer)."""
    trajectory = Trajectory(
        id="t-r",
        category="irrelevance",
        tools=[WEATHER, TIME],
        messages=[
            Message(role="user", content="What time is it in UTC?"),
            Message(role="assistant", content="I cannot tell the time."),
        ],
        labels=[Label(kind="refuse")],
    )
    record = ProbeRecord(
        id="t-r#0",
        trajectory_id="t-r",
        turn=0,
        split="train",
        category="irrelevance",
        label=Label(kind="refuse"),
        kind="no_call",
        calls=[call("get_time", zone="UTC")],
        correct=False,
        error_class="called_when_should_not",
    )
    return record, trajectory


def test_label_wrong_correction_passes_every_gate_before_it_is_taken():
    record, trajectory = refuse_case()
    judges = [ScriptedChatModel(verdict("label_wrong")), ScriptedChatModel(verdict("label_wrong"))]
    judged = anyio.run(lambda: judge_case(judges, record, trajectory))
    assert judged.decision == "label_wrong" and judged.unanimous
    assert judged.corrected is not None and judged.corrected.passed
    assert [v.gate for v in judged.corrected.verdicts] == list(DEFAULT_GATES)
    new = judged.corrected.labels[-1]
    assert new.kind == "call" and new.calls[0].name == "get_time"
    assert new.corrected_from == Label(kind="refuse")


def test_a_correction_that_fails_a_gate_is_rejected():
    record, trajectory = refuse_case()
    judges = [ScriptedChatModel(verdict("label_wrong"))]
    # The agreement gate: a model sampled three times never makes the corrected call.
    gates = VerifyOptions(
        gates=["format", "schema", "label", "agreement"],
        agreement_model=ScriptedChatModel(lambda m, t: "I would rather not."),
    )
    judged = anyio.run(lambda: judge_case(judges, record, trajectory, samples=2, gates=gates))
    assert judged.decision == "label_wrong"
    assert judged.corrected is None
    assert judged.correction_rejected.startswith("agreement:")


def test_an_answer_that_breaks_the_schema_is_model_wrong_whatever_the_judges_say():
    """The label passed every gate; a call with a wrong type or an unknown tool cannot be
    right, so the gates decide (and never take it as a correction); the judges' own
    majority is kept, and counted as agreeing only when it said model_wrong."""
    record, trajectory = refuse_case()
    judges = [ScriptedChatModel(verdict("label_wrong"))]
    for calls in ([call("get_time", zone=5)], [call("get_date", zone="UTC")]):
        invalid = record.model_copy(update={"calls": calls})
        judged = anyio.run(partial(judge_case, judges, invalid, trajectory, samples=2))
        assert judged.decision == "model_wrong" and judged.decided_by == "gates"
        assert judged.judges_said == "label_wrong" and judged.corrected is None
    agreeing = [ScriptedChatModel(verdict("model_wrong"))]
    by_gates = anyio.run(partial(judge_case, agreeing, invalid, trajectory, samples=2))
    counts = judge_counts([judged, by_gates])
    assert counts["decided_by_gates"] == 2 and counts["judges_agreed_with_gates"] == 1
    assert counts["model_wrong"] == 2
    # a schema-valid answer stays the judges' to decide
    valid = anyio.run(lambda: judge_case(judges, record, trajectory, samples=2))
    assert valid.decided_by == "judges" and valid.decision == "label_wrong"


def test_failed_judgements_and_disagreements_are_counted(tmp_path):
    record, trajectory = refuse_case()
    probe_file = tmp_path / "probe.jsonl"
    other = record.model_copy(update={"id": "t-r#9", "turn": 0})
    append_jsonl(probe_file, [record, other])
    split = [ScriptedChatModel(verdict("label_wrong")), ScriptedChatModel(verdict("model_wrong"))]
    out = tmp_path / "judged.jsonl"
    counts = anyio.run(lambda: run_judge(split, probe_file, [trajectory], out))
    assert counts["undecided"] == 2 and counts["disagreements"] == 2
    assert counts["label_wrong"] == counts["model_wrong"] == 0

    broken = [ScriptedChatModel(verdict("label_wrong")), ScriptedChatModel(lambda m, t: "lol")]
    judged = anyio.run(lambda: judge_case(broken, record, trajectory))
    assert judged.votes == ["label_wrong", "failed"] and judged.decision == "undecided"
    assert judge_counts([judged])["failed_votes"] == 1

    with pytest.raises(ValueError, match="two votes"):
        anyio.run(lambda: run_judge(split[:1], probe_file, [trajectory], out, samples=1))


def test_the_config_refuses_a_single_vote_and_a_rising_forced_share():
    with pytest.raises(ValueError, match="two votes"):
        JudgeSection(judges=["judge"], samples=1)
    with pytest.raises(ValueError, match="rise"):
        SelfplaySection(forced_share=[0.2, 0.5])
    falling = SelfplaySection(forced_share=[0.8, 0.5, 0.2])
    assert [falling.forced_cap(k) for k in range(5)] == [1.0, 0.8, 0.5, 0.2, 0.2]
    decaying = SelfplaySection(forced_share=0.8, forced_decay=0.5)
    assert [decaying.forced_cap(k) for k in range(4)] == [1.0, 0.8, 0.4, 0.2]
    assert LoopConfig().probe.max_samples >= 1000


# --- error-driven expansion ------------------------------------------------------------------


def judged(error_class: str, want: Label, made: list[ToolCall], category="single") -> JudgedRecord:
    return JudgedRecord(
        id=f"src#{error_class}",
        trajectory_id="src",
        turn=0,
        category=category,
        decision="model_wrong",
        error_class=error_class,  # type: ignore[arg-type]
        calls=made,
        label=want,
    )


def source(category: str = "single", offered=(WEATHER, FORECAST, TIME)) -> Trajectory:
    return Trajectory(
        id="src",
        category=category,
        metadata={"style": "terse"},
        tools=list(offered),
        messages=[Message(role="user", content="How warm is it in Paris, in celsius?")],
        labels=[],
    )


REGISTRY = {t.name: t for t in TOOLS}


def test_wrong_tool_keeps_the_confusable_pair():
    record = judged("wrong_tool", label(PARIS), [call("get_forecast", city="Paris", days=1)])
    spec = expansion_spec(record, source("multiple"), REGISTRY)
    assert spec.category == "multiple"
    assert {t.name for t in spec.tools} == {"get_weather", "get_forecast"}
    assert spec.must_offer == ["get_forecast"]
    assert spec.targets == {"get_weather": 1.0, "get_forecast": 0.0}


def test_wrong_value_finds_tools_with_the_same_parameter_type():
    made = [call("book_table", restaurant="Luigi", date="May first", guests=4)]
    spec = expansion_spec(judged("wrong_value", label(BOOKING), made), source(), REGISTRY)
    assert (spec.focus_tool, spec.focus_param, spec.param_type) == (
        "book_table",
        "date",
        "string:date",
    )
    assert [t.name for t in spec.tools] == ["book_table", "schedule_meeting"]


def test_missing_and_extra_arguments_pick_tools_that_tempt_the_same_mistake():
    made = [call("book_table", restaurant="Luigi", date="2026-05-01")]
    spec = expansion_spec(judged("missing_arg", label(BOOKING), made), source(), REGISTRY)
    assert (spec.focus_param, spec.param_type) == ("guests", "integer")
    assert {t.name for t in spec.tools} == {"book_table", "get_forecast"}  # both require an int

    exact = LabelCall(name="get_weather", arguments={"city": ["Paris"]})
    made = [call("get_weather", city="Paris", unit="c")]
    spec = expansion_spec(judged("extra_arg", label(exact), made), source(), REGISTRY)
    assert spec.focus_param == "unit"
    assert all(len(t.properties) > len(t.required) for t in spec.tools)


def test_missed_parallel_plans_parallel_scenarios():
    made = [call("get_weather", city="Paris")]
    spec = expansion_spec(judged("missed_parallel", label(PARIS, ROME), made), source(), REGISTRY)
    assert spec.category == "parallel" and spec.tools[0].name == "get_weather"
    two = LabelCall(name="get_time", arguments={"zone": ["UTC"]})
    spec = expansion_spec(judged("missed_parallel", label(PARIS, two), made), source(), REGISTRY)
    assert spec.category == "parallel_multiple"
    assert {t.name for t in spec.tools} == {"get_weather", "get_time"}


def test_calling_when_it_should_not_plans_irrelevance_or_clarify():
    made = [call("get_time", zone="UTC")]
    spec = expansion_spec(
        judged("called_when_should_not", Label(kind="refuse"), made),
        source("irrelevance"),
        REGISTRY,
    )
    assert spec.category == "irrelevance" and spec.must_offer == ["get_time"]
    assert spec.targets == {"get_time": 0.0}
    clarify = Label(kind="clarify", missing=["city"])
    spec = expansion_spec(
        judged("called_when_should_not", clarify, [call("get_weather")]),
        source("clarify"),
        REGISTRY,
    )
    assert spec.category == "clarify" and spec.focus_param == "city"


def test_no_call_and_format_errors_replay_the_same_capability():
    for error in ("no_call_when_should", "format"):
        spec = expansion_spec(
            judged(error, label(PARIS), [], "multiple"), source("multiple"), REGISTRY
        )
        assert spec.category == "multiple"
        assert spec.targets == {"get_weather": 1.0}


def test_run_expand_plans_conditioned_scenarios(tmp_path):
    pool = [source("multiple", TOOLS)]
    judged_file = tmp_path / "judged.jsonl"
    records = [
        judged(
            "wrong_tool", label(PARIS), [call("get_forecast", city="Paris", days=1)], "multiple"
        ),
        judged("missed_parallel", label(PARIS, ROME), [call("get_weather", city="Paris")]),
        judged("called_when_should_not", Label(kind="refuse"), [call("get_time", zone="UTC")]),
    ]
    append_jsonl(judged_file, records)
    out = tmp_path / "expanded.jsonl"
    counts = anyio.run(
        lambda: run_expand(
            judged_file,
            pool,
            out,
            per_error=2,
            max_total=10,
            iteration=0,
            seed=0,
            drafter=ArgumentDrafter(None),
        )
    )
    scenarios = list(read_jsonl(out, Scenario))
    assert counts["scenarios"] == len(scenarios) == 6
    by_class: dict[str, list[Scenario]] = {}
    for scenario in scenarios:
        edde = scenario.metadata["edde"]
        assert edde["request"] == "How warm is it in Paris, in celsius?"
        assert scenario.style == "terse"  # the failing request's phrasing style
        by_class.setdefault(edde["error_class"], []).append(scenario)
    for scenario in by_class["wrong_tool"]:
        assert scenario.category == "multiple"
        assert {"get_weather", "get_forecast"} <= set(scenario.tools)
        assert scenario.turns[0].steps[0].calls[0].name == "get_weather"
    assert {s.category for s in by_class["missed_parallel"]} == {"parallel"}
    for scenario in by_class["called_when_should_not"]:
        assert scenario.category == "irrelevance" and "get_time" in scenario.tools
    # resumes by parent: a second run plans nothing new
    again = anyio.run(
        lambda: run_expand(judged_file, pool, out, per_error=2, max_total=10, iteration=0, seed=0)
    )
    assert again["scenarios"] == 6


# --- weights ----------------------------------------------------------------------------


def probe_record(
    category: str, tool_name: str, correct: bool, n: int, split: str = "train"
) -> ProbeRecord:
    return ProbeRecord(
        id=f"{category}-{tool_name}-{n}",
        trajectory_id="t",
        turn=0,
        split=split,
        category=category,
        label=label(LabelCall(name=tool_name)),
        correct=correct,
        error_class=None if correct else "wrong_value",
    )


def test_weights_follow_the_error_rate_and_keep_a_floor():
    records = [probe_record("single", "get_weather", False, i) for i in range(4)]
    records += [probe_record("multiple", "get_time", True, i) for i in range(4)]
    records += [probe_record("parallel", "get_time", i < 2, 10 + i) for i in range(4)]
    weights = next_weights(records, floor=0.25)
    cats = weights["categories"]
    assert cats["single"] > cats["parallel"] > cats["multiple"] > 0
    assert cats["single"] / cats["multiple"] == pytest.approx(1.25 / 0.25, rel=1e-3)
    assert sum(cats.values()) / len(cats) == pytest.approx(1.0, abs=1e-3)
    assert weights["tools"]["get_weather"] > weights["tools"]["get_time"]
    same = next_weights(
        [probe_record("single", "x", False, 0), probe_record("multiple", "y", False, 1)], 0.25
    )
    assert set(same["categories"].values()) == {1.0}


def test_held_out_probe_results_do_not_steer_the_weights():
    """Weighting toward held-out failures would train toward the held-out split."""
    records = [probe_record("single", "get_weather", False, i) for i in range(4)]
    records += [probe_record("multiple", "get_time", True, i) for i in range(4)]
    held_out = [probe_record("multiple", "get_time", False, 10 + i, "heldout") for i in range(8)]
    held_out += [probe_record("parallel", "book", False, 20 + i, "heldout") for i in range(4)]
    assert next_weights(records + held_out, floor=0.25) == next_weights(records, floor=0.25)
    assert next_weights(held_out, floor=0.25) == {"categories": {}, "tools": {}}


# --- forced share and accounting -------------------------------------------------------------


def episode(tid: str, forced: int, turns: int) -> Trajectory:
    messages = [Message(role="user", content="hi")]
    for i in range(turns):
        message = Message(role="assistant", content=f"answer {i}")
        message.origin = "forced" if i < forced else "model"
        messages.append(message)
    return Trajectory(id=tid, messages=messages, labels=[Label(kind="text")] * turns)


def test_forced_trajectories_enter_only_under_the_cap():
    pool = [episode("c1", 0, 2), episode("c2", 0, 2), episode("half", 1, 2)]
    pool += [episode("all", 2, 2), episode("quarter", 1, 4)]
    kept, report = admit_by_forced_share(pool, cap=0.2)
    assert [t.id for t in kept] == ["c1", "c2", "half", "quarter"]
    assert report["forced_rejected"] == 1 and report["forced_share"] == pytest.approx(2 / 10)
    kept, _ = admit_by_forced_share(pool, cap=0.0)
    assert [t.id for t in kept] == ["c1", "c2"]  # nothing forced: rejection sampling
    kept, _ = admit_by_forced_share(pool, cap=1.0)
    assert len(kept) == 5


def test_replay_draws_the_last_pool_per_new_trajectory_and_only_where_it_acts(tmp_path):
    from tooldojo.jsonl import write_jsonl_atomic
    from tooldojo.loop._context import LoopContext, LoopRequest
    from tooldojo.loop._plan import iteration_plan
    from tooldojo.loop._stage_pool import pool_stage

    def pool(replay: float) -> list[str]:
        cfg = LoopConfig.model_validate(
            {"selfplay": {"replay": replay}, "synth": {"heldout_fraction": 0}}
        )
        run = tmp_path / f"run{replay}"
        prev, it = run / "iter-000", run / "iter-001"
        prev.mkdir(parents=True), it.mkdir()
        old = [single_trajectory(f"old{i}").model_copy(update={"passed": True}) for i in range(10)]
        write_jsonl_atomic(prev / "train_data.jsonl", old)
        for name in ("judged.jsonl", "heldout.jsonl"):
            (prev / name).write_text("")
        new = [
            single_trajectory(f"new{i}").model_copy(
                update={"scenario_id": f"new{i}", "passed": True}
            )
            for i in range(3)
        ]
        write_jsonl_atomic(it / "verified.jsonl", new)
        context = LoopContext(
            LoopRequest(specs=[], run=run, iterations=2, config=cfg), RunDir(run, config={})
        )
        counts = pool_stage(context, it, prev, 1)
        ids = [t.id for t in read_jsonl(it / "train_data.jsonl", Trajectory)]
        assert counts["replayed"] == sum(i.startswith("old") for i in ids)
        assert json.loads((it / "pool.json").read_text())["replayed"] == counts["replayed"]
        values = {p.name: p.values for p in iteration_plan(context, 1)}
        assert ("replay" in values["pool"]) == bool(replay)  # recorded only where it acts
        return ids

    assert pool(0) == ["new0", "new1", "new2"]
    twice = pool(2)
    assert twice[:3] == ["new0", "new1", "new2"] and len(twice) == 3 + 6
    assert len(set(twice)) == len(twice)  # without replacement
    assert len(pool(5)) == 3 + 10  # all of a smaller last pool


def test_origins_are_counted_per_role_with_fallbacks_for_older_data():
    forced = Message(role="assistant", tool_calls=[call("get_weather", city="Paris")])
    forced.guided = "label"
    trajectory = Trajectory(
        id="t",
        messages=[
            Message(role="system", content="sys"),
            Message(role="user", content="weather?"),
            forced,
            Message(role="tool", tool_call_id="c", content="{}"),
            Message(role="assistant", content="Sunny."),
        ],
        metadata={"user_sources": ["template"]},
    )
    table = count_origins([trajectory])
    assert table["assistant"] == {"model": 1, "forced": 1, "template": 0, "executed": 0}
    assert table["user"]["template"] == 1 and table["tool"]["executed"] == 1
    assert set(table) == {"user", "assistant", "tool"}  # one name for the tool role, everywhere


def old_episode(**metadata) -> Trajectory:
    """A trajectory as synthesis wrote it before ``Message.origin``: no origin on any message."""
    return Trajectory.model_validate(
        {
            "id": "old",
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": "Sunny.", "guided": "label"},
                {"role": "user", "content": "and tomorrow?"},
                {"role": "assistant", "content": "Rain."},
            ],
            "metadata": metadata,
        }
    )


def test_an_old_format_message_is_counted_by_its_older_marks():
    """A run directory written before ``origin`` still counts; a message of data that no
    synthesis episode wrote (no ``user_sources``) and that has no origin is ``unknown``, never
    credited to a model."""
    old = old_episode(user_sources=["template:weather", "model"])
    table = accounting([old])  # what `tooldojo verify` and synthesis report
    assert table["assistant"]["forced"] == 1 and table["assistant"]["model"] == 1
    assert table["user"]["template"] == 1 and table["user"]["model"] == 1
    assert table["templated_trajectories"] == 1
    assert count_origins([old]) == {
        role: {k: v for k, v in table[role].items() if k != "shares"}
        for role in table
        if role in ("user", "assistant", "tool")
    }
    kept, report = admit_by_forced_share([old], cap=0.0)
    assert kept == [] and report["forced_rejected"] == 1  # its guided turn is forced
    foreign = count_origins([old_episode()])
    assert foreign["assistant"] == {
        "model": 0,
        "forced": 0,
        "template": 0,
        "executed": 0,
        "unknown": 2,
    }


def test_an_old_run_directory_reads_with_the_tool_role(tmp_path):
    """Runs written when the loop called the tool role ``server`` read under today's name."""
    from tooldojo.loop.controller import selfplay_record
    from tooldojo.report import collect_run

    it = tmp_path / "iter-000"
    it.mkdir()
    counts = {"model": 0, "forced": 0, "template": 0, "executed": 3}
    (it / "accounting.json").write_text(json.dumps({"server": counts}))
    stats = {
        "iteration": 0,
        "selfplay_roles": [],
        "forced_cap": 1.0,
        "roles": {"server": {"shares": {"executed": 1.0}}},
        "assistant_call_turns": {"synthesized": {"shares": {}}},
        "gate_pass_rate": 1.0,
        "gate_pass_rate_by_role": {"server": {"pass_rate": 0.5}},
        "probe": {},
    }
    (it / "loop_stats.json").write_text(json.dumps(stats))
    assert collect_run(tmp_path).stages[0].accounting == {"tool": counts}
    roles = selfplay_record(tmp_path)["iterations"][0]["roles"]
    assert list(roles) == ["tool"] and roles["tool"]["executed"] == 1.0
    assert roles["tool"]["gate_pass_rate"] == 0.5


def test_selfplay_record_carries_the_n_behind_each_rate(tmp_path):
    from tooldojo.loop.controller import selfplay_record

    it = tmp_path / "iter-000"
    (it / "eval").mkdir(parents=True)
    stats = {
        "iteration": 0,
        "selfplay_roles": [],
        "forced_cap": 1.0,
        "roles": {},
        "assistant_call_turns": {
            "synthesized": {"counts": {"forced": 5, "model": 1}, "shares": {"model": 1 / 6}}
        },
        "gate_pass_rate": 0.5,
        "gate_pass_rate_by_role": {},
        "probe": {"kind": {"heldout/call": {"correct": 1, "total": 4, "accuracy": 0.25}}},
    }
    (it / "loop_stats.json").write_text(json.dumps(stats))
    bfcl = {"fc": {"categories": {"simple_python": {"correct": 7, "total": 20, "accuracy": 0.35}}}}
    (it / "eval" / "bfcl.json").write_text(json.dumps(bfcl))
    row = selfplay_record(tmp_path)["iterations"][0]
    assert row["heldout_call"] == {"correct": 1, "total": 4}
    assert row["heldout_no_call"] == {"correct": 0, "total": 0}  # none probed: n is 0
    assert row["assistant_call_turns"] == {"synthesized": {"forced": 5, "model": 1}}
    assert row["bfcl"] == {"fc": {"simple_python": {"correct": 7, "total": 20}}}


def test_heldout_fixed_compares_every_model_on_the_first_iterations_turns(tmp_path):
    # The held-out split grows each iteration; a rate over a grown split mixes item sets.
    from tooldojo.loop.controller import selfplay_record

    stats = {
        "iteration": 0,
        "selfplay_roles": [],
        "forced_cap": 1.0,
        "roles": {},
        "assistant_call_turns": {"synthesized": {"shares": {}}},
        "gate_pass_rate": 0.5,
        "gate_pass_rate_by_role": {},
        "probe": {},
    }

    def row(rid: str, correct: bool, kind: str = "call", split: str = "heldout") -> str:
        return json.dumps({"id": rid, "split": split, "kind": kind, "correct": correct}) + "\n"

    for name, rows in {
        "iter-000": [row("a", False), row("b", False), row("r", True, "no_call")],
        "iter-001": [
            row("a", True),
            row("b", False),
            row("c", True),
            row("t", True, "call", "train"),
        ],
    }.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "loop_stats.json").write_text(json.dumps(stats))
        (folder / "probe.jsonl").write_text("".join(rows))
    first, second = (it["heldout_fixed"] for it in selfplay_record(tmp_path)["iterations"])
    assert first == {"call": {"correct": 0, "total": 2}, "no_call": {"correct": 1, "total": 1}}
    # "c" joined the split later and "t" is a training turn: neither counts.
    assert second == {"call": {"correct": 1, "total": 2}, "no_call": {"correct": 0, "total": 0}}


def test_error_classes_and_expansions_reach_selfplay_json_and_the_report(tmp_path):
    from tooldojo.loop.controller import selfplay_record
    from tooldojo.report import collect_run
    from tooldojo.report.tables import error_class_table, expansion_table

    it = tmp_path / "iter-001"
    it.mkdir()
    stats = {
        "iteration": 1,
        "selfplay_roles": ["assistant"],
        "forced_cap": 0.5,
        "roles": {},
        "assistant_call_turns": {"synthesized": {"shares": {}}},
        "gate_pass_rate": 0.5,
        "gate_pass_rate_by_role": {},
        "probe": {"error_class": {"heldout/call/wrong_tool": {"count": 1, "share": 0.5}}},
        "expanded": {"wrong_tool": 2},
        "previous_expansions": {
            "missing_arg": {"scenarios": 2, "played": 2, "passed": 1, "probed": 3, "correct": 2}
        },
    }
    (it / "loop_stats.json").write_text(json.dumps(stats))
    common = {"split": "heldout", "kind": "call", "label": {"kind": "call", "calls": []}}
    rows = [
        {**common, "category": "multiple", "correct": False, "trajectory_id": "t1",
         "error_class": "wrong_tool"},
        {**common, "category": "single", "correct": True, "trajectory_id": "t2",
         "error_class": None},
    ]  # fmt: skip
    (it / "probe.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    row = selfplay_record(tmp_path)["iterations"][0]
    assert row["probe_error_classes"] == stats["probe"]["error_class"]
    assert row["expanded"] == {"wrong_tool": 2}
    assert row["previous_expansions"]["missing_arg"]["correct"] == 2

    stage = collect_run(tmp_path).stages[0]
    columns = [("iter-001", stage)]
    errors = error_class_table(columns)
    assert [(key, str(cells[0])) for key, cells in errors.rows] == [
        ("heldout / call / wrong_tool", str(stage.error_classes["heldout / call / wrong_tool"]))
    ]
    rate = stage.error_classes["heldout / call / wrong_tool"]
    assert (rate.k, rate.n) == (1, 2)  # one wrong tool of two call turns probed
    expansions = dict(expansion_table(columns).rows)
    assert expansions["wrong_tool"] == ["made 2"]
    assert expansions["missing_arg"] == ["earlier ones: 2 played, 1 passed, probe 2/3"]


# --- resume by inputs ----------------------------------------------------------------------


def test_a_stage_whose_inputs_changed_is_redone_from_scratch(tmp_path):
    rundir = RunDir(tmp_path / "run", config={})
    data = tmp_path / "run" / "data.txt"
    data.write_text("one")
    out = tmp_path / "run" / "out.jsonl"
    runs: list[str] = []

    def work() -> dict[str, int]:
        runs.append(data.read_text())
        append_jsonl(out, [{"id": data.read_text()}])
        return {}

    def inputs(model: str) -> dict[str, str]:
        return stage_inputs([data], root=rundir.root, models={"m": model}, probe={"n": 1})

    assert rundir.run_stage("s", work, inputs=inputs("a"), outputs=[out])
    assert not rundir.run_stage("s", work, inputs=inputs("a"), outputs=[out])
    assert rundir.run_stage("s", work, inputs=inputs("b"), outputs=[out])  # model swapped
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["one"]
    data.write_text("two")  # an input file changed
    assert rundir.run_stage("s", work, inputs=inputs("b"), outputs=[out])
    assert out.read_text().count("\n") == 1 and runs == ["one", "one", "two"]


def test_an_incomplete_stage_is_retried_without_losing_its_work(tmp_path):
    rundir = RunDir(tmp_path / "run", config={})
    out = tmp_path / "run" / "out.jsonl"
    failed = [2]

    def work() -> dict[str, int]:
        append_jsonl(out, [{"id": f"ok{failed[0]}"}])
        failed[0] -= 1
        return {"incomplete": failed[0]}

    for _ in range(3):
        rundir.run_stage("s", work, inputs={}, outputs=[out])
    assert out.read_text().count("\n") == 2  # retried once more each time, nothing cleared
    assert not rundir.run_stage("s", work, inputs={}, outputs=[out])


def test_bad_selfplay_config_is_a_clear_error(tmp_path):
    from tooldojo.loop.config import load_loop_config

    path = tmp_path / "tooldojo.yaml"
    path.write_text("loop:\n  selfplay: {roles: [judge]}\n")
    with pytest.raises(ToolDojoError, match=r"loop\.selfplay\.roles"):
        load_loop_config(path)


# --- multi-role SFT ------------------------------------------------------------------------


def test_self_played_user_turns_that_passed_become_training_samples(tmp_path):
    from tooldojo.loop.roles import ROLE_CALLS, RecordingModel, role_samples
    from tooldojo.model import ScenarioTurn
    from tooldojo.synth import CURRENT_EPISODE
    from tooldojo.synth.episode import EpisodeState
    from tooldojo.train.data import turn_samples

    path = tmp_path / ROLE_CALLS
    player = RecordingModel(
        ScriptedChatModel(["said outside any episode", "  Weather in Paris please  "]),
        "user",
        path,
    )
    prompt = [
        Message(role="system", content="You are a traveller."),
        Message(role="user", content="Ask for the weather in Paris."),
        Message(role="assistant", content="(an earlier draft: context, not a target)"),
    ]

    async def play() -> None:
        await player.complete(prompt)  # outside an episode: nothing recorded
        state = EpisodeState(Scenario(id="t", category="single", tools=[], turns=[ScenarioTurn()]))
        token = CURRENT_EPISODE.set(state)
        try:
            await player.complete(prompt)
        finally:
            CURRENT_EPISODE.reset(token)

    anyio.run(play)
    passed = single_trajectory("t").model_copy(update={"scenario_id": "t", "passed": True})
    samples = role_samples(path, [passed])
    assert len(samples) == 1
    sample = samples[0]
    assert sample.metadata["role"] == "user" and sample.passed
    assert sample.messages[-1].content == "Weather in Paris please"  # the form that passed
    turns = turn_samples([sample])
    assert len(turns) == 1 and turns[0].history == prompt  # only the role's own answer
    # a user turn that never reached a passed trajectory trains nothing
    failed = passed.model_copy(update={"messages": passed.messages[1:]})
    assert role_samples(path, [failed]) == []


def test_roles_on_one_backend_share_one_model_instance(tmp_path: Path):
    """Asked for one role at a time, the loop still loads one instance per backend (four
    llama.cpp instances of one model held four KV caches and ran make demo out of memory)."""
    from tooldojo.loop._context import LoopContext, LoopRequest

    config = tmp_path / "tooldojo.yaml"
    config.write_text(
        "backends:\n"
        "  remote: {kind: openai, model: m, base_urls: ['http://127.0.0.1:9/v1']}\n"
        "  other: {kind: openai, model: n, base_urls: ['http://127.0.0.1:9/v1']}\n"
        "roles: {user: remote, assistant: remote, server: remote, judge: other}\n"
    )
    request = LoopRequest(
        specs=[], run=tmp_path / "run", iterations=1, config=LoopConfig(), config_path=config
    )
    context = LoopContext(request, RunDir(tmp_path / "run", config={}))
    user, assistant, server, judge = (
        context.model_for(role) for role in ("user", "assistant", "server", "judge")
    )
    assert user is assistant is server
    assert judge is not user


def test_the_progress_bar_takes_items_and_a_late_total(tmp_path):
    from tooldojo.loop._context import LoopContext, LoopRequest
    from tooldojo.loop.config import LoopConfig

    request = LoopRequest([], tmp_path, 1, LoopConfig(), show_progress=True)
    context = LoopContext(request, rundir=None)  # type: ignore[arg-type]  # bar() needs none
    with context.bar("synthesis", 2) as advance:
        advance(object())  # synthesis passes each finished trajectory
        advance()
    with context.bar("probe", None) as advance:
        advance(total=1)  # the probe and the judge learn their total late
        advance()


def test_release_roles_frees_the_models_the_run_loaded_not_the_callers(tmp_path):
    from tooldojo.loop._context import LoopContext, LoopRequest
    from tooldojo.loop.config import LoopConfig

    class Closable:
        closed = 0

        def close(self) -> None:
            self.closed += 1

    mine, shared, given = Closable(), Closable(), Closable()
    request = LoopRequest([], tmp_path, 1, LoopConfig(), models={"judge": given})
    context = LoopContext(request, rundir=None)  # type: ignore[arg-type]  # not needed here
    context.role_models.update(
        {"selfplay:iter-000": mine, "backend:local": shared, "user": shared, "judge": given}
    )
    context.release_roles()
    assert (mine.closed, shared.closed, given.closed) == (1, 1, 0)  # a shared one closed once
    assert context.role_models == {}  # loaded again by the next stage that asks


def test_selfplay_serves_the_checkpoint_with_the_named_backends_settings(tmp_path):
    import shutil

    from tooldojo.llm.embedded import embedded_gguf_path
    from tooldojo.loop._context import LoopRequest, selfplay_loader
    from tooldojo.loop._stage_probe import probe_model
    from tooldojo.loop.controller import run_loop

    config_path = tmp_path / "tooldojo.yaml"
    config_path.write_text(
        "backends:\n"
        "  local: {kind: llamacpp, pool_size: 1, max_batch: 3, n_ctx: 512, weights: file}\n"
        "  remote: {kind: openai, model: m, base_urls: ['http://localhost:1/v1']}\n"
    )

    def request(serve_with: str | None) -> LoopRequest:
        cfg = LoopConfig.model_validate({"selfplay": {"serve_with": serve_with}})
        return LoopRequest(
            specs=["x"], run=tmp_path / "run", iterations=1, config=cfg, config_path=config_path
        )

    assert selfplay_loader(request(None)) is probe_model
    checkpoint = tmp_path / "train" / "checkpoint"
    checkpoint.mkdir(parents=True)
    shutil.copy(embedded_gguf_path(), checkpoint.parent / "model.gguf")
    player = selfplay_loader(request("local"))(checkpoint)
    try:  # the checkpoint's file, with the named backend's engines, batch and weights
        assert player.model_path == checkpoint.parent / "model.gguf"
        assert player.weights == "file" and len(player._engines) == 1
        assert player._engines[0].max_active == 3
    finally:
        player.close()
    for bad in ("remote", "missing"):
        cfg = LoopConfig.model_validate({"selfplay": {"serve_with": bad}})
        with pytest.raises(ToolDojoError, match="not a llamacpp backend"):
            run_loop(  # before any stage runs
                LoopRequest(
                    specs=["x"],
                    run=tmp_path / bad,
                    iterations=1,
                    config=cfg,
                    config_path=config_path,
                )
            )
        assert not (tmp_path / bad).exists()  # nothing written
