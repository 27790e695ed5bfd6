"""Pieces of synthesis on their own: possible answers, result pointers, value drawing, the
user simulator's checks and fallbacks, near-duplicate filtering, lexical similarity."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import jsonschema
import pytest

from tooldojo.agents.user import RequestCheck, TemplateCapReached, UserSimulator, mentions
from tooldojo.llm.base import Completion
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.model import Scenario, ScenarioTurn, Tool
from tooldojo.synth.dedup import NearDuplicateFilter
from tooldojo.synth.labels import ArgumentDrafter, find_pointer, label_call, possible_answers
from tooldojo.synth.similarity import ToolSimilarity
from tooldojo.synth.values import (
    ValueSampler,
    echoed_names,
    realistic_text,
    sample_regex,
    schema_error,
)

PRICE = {
    "type": "object",
    "required": ["amount", "currency"],
    "properties": {
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "note": {"type": "string"},
    },
}
TOOL = Tool(
    name="set_price",
    description="Change the price of a book.",
    parameters={
        "type": "object",
        "required": ["book_id", "price"],
        "properties": {
            "book_id": {"type": "string", "pattern": "^bk_[a-z0-9]{4}$"},
            "price": PRICE,
            "notify": {"type": "boolean", "default": True},
            "reason": {"type": "string"},
        },
    },
)


def test_label_call_uses_bfcl_possible_answer_form():
    label = label_call(TOOL, {"book_id": "bk_ab12", "price": {"amount": 9.5, "currency": "EUR"}})
    assert label.arguments == {
        "book_id": ["bk_ab12"],
        "price": [{"amount": [9.5], "currency": ["EUR"], "note": [""]}],
        "notify": ["", True],
        "reason": [""],
    }
    explicit_default = label_call(
        TOOL, {"book_id": "bk_ab12", "price": {"amount": 1, "currency": "USD"}, "notify": True}
    )
    assert explicit_default.arguments["notify"] == [True, ""]
    with pytest.raises(ValueError, match="required"):
        label_call(TOOL, {"book_id": "bk_ab12"})
    items = possible_answers(
        [{"amount": 1, "currency": "EUR"}], {"type": "array", "items": PRICE}, {}
    )
    assert items == [[{"amount": [1], "currency": ["EUR"], "note": [""]}]]


def test_find_pointer_prefers_exact_keys_then_ids():
    result = {"items": [{"book_id": "bk_1", "title": "x"}], "id": "order_9"}
    assert find_pointer(result, "bookId") == "/items/0/book_id"
    assert find_pointer({"event": {"id": "evt_2"}}, "event_id") == "/event/id"
    assert find_pointer({"name": "x"}, "event_id") is None
    assert find_pointer("plain text", "event_id") is None


def test_values_are_schema_valid_and_seeded():
    for seed in range(30):
        values = ValueSampler(random.Random(seed)).arguments(TOOL.parameters)
        jsonschema.validate(values, TOOL.parameters)
    one = ValueSampler(random.Random(7)).arguments(TOOL.parameters)
    assert one == ValueSampler(random.Random(7)).arguments(TOOL.parameters)
    for seed in range(20):
        text = sample_regex(r"^[A-Z][A-Z0-9.\-]{0,9}$", random.Random(seed))
        assert schema_error({"type": "string", "pattern": r"^[A-Z][A-Z0-9.\-]{0,9}$"}, text) is None


@pytest.mark.anyio
async def test_drafter_repairs_then_falls_back():
    answers = iter(
        ['{"book_id": "nope"}', '{"book_id": "bk_zz99", "price": {"amount": 3, "currency": "GBP"}}']
    )
    model = ScriptedChatModel(lambda m, t: next(answers))
    drafted = await ArgumentDrafter(model).draft(TOOL, random.Random(0))
    assert drafted.source == "model" and drafted.attempts == 2
    assert drafted.arguments["book_id"] == "bk_zz99"
    repair_prompt = model.calls[1][0][-1].content
    assert "Invalid" in repair_prompt and "price" in repair_prompt

    broken = ScriptedChatModel(lambda m, t: "not json at all")
    drafted = await ArgumentDrafter(broken, max_repairs=1).draft(TOOL, random.Random(0))
    assert drafted.source == "schema" and len(broken.calls) == 2
    jsonschema.validate(drafted.arguments, TOOL.parameters)


@pytest.mark.anyio
async def test_drafter_repairs_a_value_that_repeats_the_tool_name() -> None:
    # The user simulator must never name the tool, so a planned value holding the name makes
    # a scenario nobody can write: the drafter asks again, then falls back to the sampler.
    answers = iter(
        [
            '{"book_id": "bk_ab12", "price": {"amount": 3, "currency": "GBP"}, '
            '"reason": "Set_Price"}',
            '{"book_id": "bk_ab12", "price": {"amount": 3, "currency": "GBP"}, "reason": "sale"}',
        ]
    )
    model = ScriptedChatModel(lambda m, t: next(answers))
    drafted = await ArgumentDrafter(model).draft(TOOL, random.Random(0))
    assert drafted.source == "model" and drafted.attempts == 2
    assert drafted.arguments["reason"] == "sale"
    assert "tool's name" in model.calls[1][0][-1].content

    # A model that keeps writing such a value (the name, or a loop) gets the sampler's.
    for reason, problem in (("call set_price", "tool's name"), ("sale_ids_ids_ids_ids", "itself")):
        answer = json.dumps(
            {"book_id": "bk_ab12", "price": {"amount": 1, "currency": "USD"}, "reason": reason}
        )
        stuck = ScriptedChatModel(lambda m, t, answer=answer: answer)
        drafted = await ArgumentDrafter(stuck, max_repairs=1).draft(TOOL, random.Random(0))
        assert drafted.source == "schema"
        assert problem in stuck.calls[1][0][-1].content


@pytest.mark.anyio
@pytest.mark.parametrize(
    "reason",
    [
        ",<city>",
        "projects/{project_number}/locations",
        "{{userId}}",
        "${TOKEN}",
        "/users/:id",
        "][",
    ],
)
async def test_drafter_repairs_a_template_slot_or_bare_punctuation(reason: str) -> None:
    # Seen in passed data: a party id ",<city>" and a spec example "{{userId}}". The user
    # simulator would have to copy the slot into the request, and the label would ask for it.
    answer = json.dumps(
        {"book_id": "bk_ab12", "price": {"amount": 1, "currency": "USD"}, "reason": reason}
    )
    stuck = ScriptedChatModel(lambda m, t: answer)
    drafted = await ArgumentDrafter(stuck, max_repairs=1).draft(TOOL, random.Random(0))
    assert drafted.source == "schema"
    assert "placeholder" in stuck.calls[1][0][-1].content


@pytest.mark.anyio
async def test_the_sampler_skips_a_spec_example_that_is_a_template_slot() -> None:
    # The spec's example is tried first (the first three attempts use hints); a slot in it
    # sends the drafter on to the attempts that draw without hints.
    tool = Tool(
        name="get_user",
        description="Fetch a user.",
        parameters={
            "type": "object",
            "required": ["user_id"],
            "properties": {"user_id": {"type": "string", "example": "{{userId}}"}},
        },
    )
    for seed in range(5):
        drafted = await ArgumentDrafter().draft(tool, random.Random(seed))
        assert drafted.source == "schema" and drafted.arguments["user_id"] != "{{userId}}"
        assert drafted.attempts > 3


# Names whose fallback values reached passed training data as "filter-401",
# "resourcegroupname-939", "parent-453", "maxresults-945" and "creatorrequestid-407".
FALLBACK_NAMES = [
    "filter",
    "resourceGroupName",
    "parent",
    "MaxResults",
    "CreatorRequestId",
    "photoID",
    "pageToken",
    "namespace",
    "fileName",
    "callbackUrl",
    "title",
]


def test_the_fallback_string_never_spells_out_its_parameter_name() -> None:
    for seed in range(10):
        rng = random.Random(seed)
        for name in FALLBACK_NAMES:
            value = ValueSampler(rng).value({"type": "string"}, {}, name=name)
            assert not echoed_names({name: value}, {"properties": {name: {"type": "string"}}})
            assert not re.fullmatch(r"[a-z]+-\d{3}", value), (name, value)
    rng = random.Random(0)
    assert realistic_text("callbackUrl", rng).startswith("http")
    assert realistic_text("CreatorRequestId", rng).replace("-", "").isalnum()
    assert " " in realistic_text("displayName", rng)  # a person's name
    assert realistic_text("MaxResults", rng).isdigit()  # a count, even typed as a string
    assert realistic_text("pid", rng).replace("-", "").isalnum()
    # A name with no known word gets one word: two drawn apart read as a broken phrase.
    assert " " not in realistic_text("NameContains", rng)
    # The same seed gives the same plan, on any day (no date relative to today).
    for name in ("filter", "expireTime", "startDate"):
        assert realistic_text(name, random.Random(3)) == realistic_text(name, random.Random(3))
    assert realistic_text("expireTime", rng).startswith("2025-")


def test_the_word_pools_match_a_name_by_word_not_by_substring() -> None:
    names = {"name": {"type": "string"}, "fileName": {"type": "string"}}
    for seed in range(10):
        drawn = ValueSampler(random.Random(seed)).arguments(
            {"type": "object", "required": ["name", "fileName"], "properties": names}
        )
        assert drawn["name"] in (
            "Maria Lopez",
            "Kenji Ito",
            "Amara Okafor",
            "Lars Eriksen",
            "Priya Nair",
        )
        assert "." in drawn["fileName"] and " " not in drawn["fileName"]


def test_an_echoed_name_is_found_at_any_depth_unless_the_schema_fixes_it() -> None:
    schema = {
        "type": "object",
        "properties": {
            "store_id": {"type": "string"},
            "shortName": {"type": "string"},
            "sort": {"type": "string"},
            "order": {"type": "string", "enum": ["order_asc", "order_desc"]},
            "body": {"type": "object", "properties": {"MaxResults": {"type": "string"}}},
        },
    }
    drafted = {
        "store_id": "example_store_id",
        "shortName": "ShortName",
        "sort": "sort",  # under five letters: too common inside real values to judge
        "order": "order_asc",
        "body": {"MaxResults": "maxresults-945"},
    }
    assert echoed_names(drafted, schema) == ["store_id", "shortName", "MaxResults"]
    real = {"store_id": "st_4471", "shortName": "Kenji", "body": {"MaxResults": "50"}}
    assert echoed_names(real, schema) == []


@pytest.mark.anyio
async def test_drafter_repairs_a_value_that_repeats_its_parameter_name() -> None:
    answer = json.dumps(
        {"book_id": "bk_ab12", "price": {"amount": 1, "currency": "USD"}, "reason": "the_reason"}
    )
    stuck = ScriptedChatModel(lambda m, t: answer)
    drafted = await ArgumentDrafter(stuck, max_repairs=1).draft(TOOL, random.Random(0))
    assert drafted.source == "schema"
    assert "value of reason repeats its name" in stuck.calls[1][0][-1].content
    assert "reason" not in str(drafted.arguments.get("reason", "")).lower()


@pytest.mark.anyio
async def test_the_drafter_keeps_values_that_only_look_like_slots() -> None:
    for reason in ("meet at 12:30, x < 7 > 2", "sale {50% off", "a/b:c", "C++ book: 20% off"):
        answer = json.dumps(
            {"book_id": "bk_ab12", "price": {"amount": 1, "currency": "USD"}, "reason": reason}
        )
        model = ScriptedChatModel(lambda m, t, answer=answer: answer)
        drafted = await ArgumentDrafter(model).draft(TOOL, random.Random(0))
        assert drafted.source == "model", reason


def test_a_short_value_is_mentioned_only_as_a_word_of_its_own() -> None:
    # Withholding "A" (a seat class) used to leak through any request with an "a" in it, so
    # such clarify scenarios were always dropped.
    assert mentions("Upgrade me to class A, please", "A")
    assert mentions("region eu, then us", "eu") and mentions("(A)", "A")
    assert not mentions("Book a seat for Maria", "A") and not mentions("Europe", "eu")
    assert mentions("Deliver to 12 Main Street", "12") and not mentions("a 120 m walk", "12")
    assert mentions("pay 9.5 EUR", "EUR") and mentions("the Parisian office", "Paris")
    check = RequestCheck(required=["Maria"], forbidden=["A"], tool_names=[])
    assert not check.unwritable()
    assert check.problems("Book a seat for Maria, please.") == []
    assert check.problems("Book seat A for Maria, please.") == ["mentions withheld A"]


def _scenario(**turn) -> Scenario:
    return Scenario(
        id="x",
        category="clarify" if turn.get("withheld") else "single",
        tools=["set_price"],
        turns=[ScenarioTurn(intent="change a price", **turn)],
        style="chatty",
        persona="a shop owner",
        metadata={
            "asks": [
                [
                    {
                        "tool": "set_price",
                        "description": TOOL.description,
                        "values": {
                            "book_id": "bk_ab12",
                            "price": {"amount": 9.5, "currency": "EUR"},
                        },
                    }
                ]
            ]
        },
    )


@pytest.mark.anyio
async def test_user_simulator_checks_model_text_and_falls_back_to_templates():
    good = ScriptedChatModel(["Please set the price of bk_ab12 to 9.5 EUR, thanks!"])
    text = await UserSimulator(good).request(_scenario(), 0, random.Random(0))
    assert text.source == "model" and text.text.startswith("Please set the price of bk_ab12")

    bad = ScriptedChatModel(["call set_price: bk_ab12 9.5 EUR", "I want to change a price."])
    text = await UserSimulator(bad, attempts=2, template_cap=1.0).request(
        _scenario(), 0, random.Random(0)
    )
    assert text.source == "template"
    assert text.problems[0] == "names the tool set_price"
    assert any(p.startswith("missing bk_ab12") for p in text.problems)
    assert "asks for nothing (no question, no request)" in text.problems  # a bare statement

    statement = ScriptedChatModel(
        ["bk_ab12 is 9.5 EUR.", "Please set the price of bk_ab12 to 9.5 EUR."]
    )
    text = await UserSimulator(statement, attempts=2).request(_scenario(), 0, random.Random(0))
    assert text.source == "model" and text.attempts == 2  # the statement was retried
    assert all(mentions(text.text, v) for v in ("bk_ab12", 9.5, "EUR"))
    assert "set_price" not in text.text

    clarify = _scenario(withheld={"book_id": "bk_ab12"})
    leaky = ScriptedChatModel(["Set bk_ab12 to 9.5 EUR"] * 2)
    text = await UserSimulator(leaky, attempts=2, template_cap=1.0).request(
        clarify, 0, random.Random(0)
    )
    assert text.source == "template" and "bk_ab12" not in text.text and "9.5" in text.text
    answer = await UserSimulator(None).clarification(clarify, 0, "Which book?", random.Random(0))
    assert "bk_ab12" in answer.text

    failing = ScriptedChatModel([Completion(error="down", finish_reason="error")] * 2)
    text = await UserSimulator(failing, attempts=2, template_cap=1.0).request(
        _scenario(), 0, random.Random(0)
    )
    assert text.source == "template" and text.problems == ["down", "down"]


@pytest.mark.anyio
async def test_templates_are_capped_and_above_the_cap_the_episode_is_dropped():
    def answer(messages, tools):
        return "Please set the price of bk_ab12 to 9.5 EUR, thanks!" if ok[0] else "no idea"

    ok = [True]
    user = UserSimulator(ScriptedChatModel(answer), attempts=1, template_cap=0.2)
    for index in range(7):  # 7 episodes the model writes itself
        await user.request(_scenario().model_copy(update={"id": f"s{index}"}), 0, random.Random(0))
    ok[0] = False
    text = await user.request(_scenario().model_copy(update={"id": "s7"}), 0, random.Random(0))
    assert text.source == "template"  # 1 of 8 episodes templated: within 20 %
    with pytest.raises(TemplateCapReached, match="templates already fill their share"):
        await user.request(_scenario().model_copy(update={"id": "s8"}), 0, random.Random(0))
    text = await user.request(_scenario().model_copy(update={"id": "s7"}), 0, random.Random(0))
    assert text.source == "template"  # an episode already charged may template again


def test_the_model_writes_from_style_examples_and_form_like_text_is_rejected():
    from tooldojo.agents.request_examples import EXAMPLES

    assert len(EXAMPLES) >= 40 and len({e.style for e in EXAMPLES}) == 5
    check = RequestCheck(required=["Lisbon"], forbidden=[], tool_names=[], keys=["city"])
    assert check.problems("City: Lisbon") == ["lists city as fields"]
    assert check.problems("Weather in Lisbon, please") == []
    assert check.problems("I'm here to help! Weather in Lisbon, please") == [
        "speaks as the assistant, not as the user"
    ]


def test_request_check_numbers_and_echoes():
    check = RequestCheck(required=[250000.0, "EUR"], forbidden=[], tool_names=[])
    assert check.problems("Borrow 250,000 EUR") == []
    assert check.problems("Borrow 2500000 EUR")  # a different number
    assert check.problems("- Case 1: 250000 EUR")  # the prompt echoed back


def test_near_duplicates_are_dropped_and_distinct_requests_kept():
    seen = NearDuplicateFilter(threshold=0.8)
    base = "Could you get the current weather in Lisbon, Portugal in celsius? Thanks so much!"
    assert seen.check("a", base) is None
    assert seen.check("b", base.replace("Thanks so much!", "Thanks so much!!")) == "a"
    assert seen.check("c", "Convert 250 EUR to JPY at today's rate, please.") is None
    assert seen.check("a", base) is None  # the same key again is not a duplicate of itself
    assert seen.dropped == 1


def test_similarity_groups_by_vocabulary_and_source():
    weather = Tool(
        name="get_current_weather", description="Current weather for a city.", source="a"
    )
    forecast = Tool(name="get_forecast", description="Weather forecast for a city.", source="a")
    stock = Tool(name="get_stock_quote", description="Latest stock price for a ticker.", source="b")
    sim = ToolSimilarity([weather, forecast, stock])
    assert sim.related("get_current_weather")[0] == "get_forecast"
    assert "get_stock_quote" in sim.unrelated("get_forecast")
    assert "get_current_weather" not in sim.unrelated("get_forecast")


def _planned(sid: str, steps: int, turns: int = 1, withheld: bool = False) -> Scenario:
    from tooldojo.model import Label, LabelCall

    call = Label(kind="call", calls=[LabelCall(name="t", arguments={"x": [1]})])
    turn = ScenarioTurn(steps=[call] * steps, withheld={"x": 1} if withheld else {})
    return Scenario(id=sid, category="single", tools=["t"], turns=[turn] * turns)


def test_play_order_interleaves_categories_and_ends_longest_first():
    from tooldojo.synth.plan_file import play_order

    # planned as the scale run's plan puts them: all of one category, then the next
    pending = [("multi_turn", 9)] * 4 + [("single", 3)] * 8 + [("clarify", 5)] * 4
    order = play_order(pending, block=4)
    assert sorted(order) == list(range(16))  # every scenario, once
    for start in range(0, 16, 4):  # every stretch of the run holds each category in its share
        block = [pending[i] for i in order[start : start + 4]]
        assert sorted(category for category, _ in block) == [
            "clarify",
            "multi_turn",
            "single",
            "single",
        ]
    # the last block longest first, so the run does not end on a long episode
    assert [pending[i][1] for i in order[-4:]] == [9, 5, 3, 3]
    # a run restarted early still starts with the shortest category (sorting every block
    # longest first put it last in each, and three restarts a session never reached it)
    assert "single" in {pending[i][0] for i in order[:2]}
    # the old order, longest first over the whole run, fails the first check: two categories
    old = sorted(range(16), key=lambda i: -pending[i][1])
    assert {pending[i][0] for i in old[:8]} == {"multi_turn", "clarify"}


def test_plan_file_serves_longest_episodes_first_without_holding_the_plan(tmp_path):
    from tooldojo.errors import DataError
    from tooldojo.jsonl import write_jsonl_atomic
    from tooldojo.synth.plan_file import PlanFile, expected_model_calls, in_play_order

    plan = [
        _planned("a", 1),
        _planned("b", 1, turns=3),
        _planned("c", 2),
        _planned("d", 1, withheld=True),
        _planned("e", 1, turns=3),
    ]
    assert [expected_model_calls(s.turns) for s in plan] == [3, 9, 4, 5, 9]
    path = tmp_path / "scenarios.jsonl"
    write_jsonl_atomic(path, plan)
    stored = PlanFile(path)
    assert len(stored) == 5 and [s.id for s in stored] == ["a", "b", "c", "d", "e"]
    # one category, under one block: longest first, ties in plan order
    assert [s.id for s in stored.in_play_order(skip={"e"})] == ["b", "d", "c", "a"]
    stored.extend([_planned("x", 4)])  # added after planning (the loop's expansions)
    assert len(stored) == 6 and [s.id for s in stored][-1] == "x"
    order = [s.id for s in stored.in_play_order(skip=set())]
    assert order == ["b", "e", "x", "d", "c", "a"]
    assert next(s.model_dump() for s in stored.in_play_order(set())) == plan[1].model_dump()
    assert [s.id for s in in_play_order(plan, {"b"})] == ["e", "d", "c", "a"]  # a list too

    path.write_text(path.read_text() + '{"id": "broken"}\n')
    with pytest.raises(DataError, match=r"scenarios\.jsonl"):
        PlanFile(path).check()


@pytest.mark.anyio
async def test_a_result_without_the_referenced_field_is_a_failed_step_not_an_exception():
    from contextlib import asynccontextmanager

    import mcp.types as types

    from tooldojo.agents.assistant import AssistantAgent
    from tooldojo.model import Label, LabelCall, ScenarioTurn
    from tooldojo.synth.episode import EpisodeEnv, run_episode
    from tooldojo.verify import VerifyOptions, verify_trajectory

    asked = []

    class Caller:
        async def call_tool(self, name, arguments=None, *, meta=None):
            asked.append((name, meta.get("tooldojo/result_fields")))
            body = '{"name": "draft"}'  # no "id" field for the next step to use
            return types.CallToolResult(content=[types.TextContent(type="text", text=body)])

    @asynccontextmanager
    async def connect(names):
        yield Caller()

    tools = {
        name: Tool(name=name, parameters={"type": "object", "properties": {"x": {}}})
        for name in ("make", "use")
    }
    ref = {"$result": {"step": 0, "call": 0, "field": "id"}}
    scenario = Scenario(
        id="m1",
        category="multi_step",
        tools=["make", "use"],
        turns=[
            ScenarioTurn(
                intent="make a thing, then use it",
                steps=[
                    Label(calls=[LabelCall(name="make", arguments={"x": [1]})]),
                    Label(calls=[LabelCall(name="use", arguments={"x": [ref]})]),
                    Label(kind="text"),
                ],
            )
        ],
    )
    assistant = AssistantAgent(ScriptedChatModel(["I can't"] * 5), guidance="label")
    env = EpisodeEnv(tools=tools, user=UserSimulator(None), assistant=assistant, connect=connect)
    trajectory = await run_episode(scenario, env)
    (failed,) = trajectory.metadata["failed_steps"]
    assert failed["step"] == 1 and "has no field 'id'" in failed["reason"]
    # The server was told the next step reads "id" (a simulated one would have written it).
    assert asked == [("make", ["id"])]
    verified = await verify_trajectory(trajectory, VerifyOptions())
    assert not verified.passed and verified.verdicts[-1].gate == "execution"


@pytest.mark.anyio
async def test_injected_failures_are_marked_and_unplanned_ones_fail_the_trajectory():
    from contextlib import asynccontextmanager

    import mcp.types as types

    from tooldojo.agents.assistant import AssistantAgent
    from tooldojo.mcp.server import INJECTED_META_KEY, SIMULATED_META_KEY
    from tooldojo.model import Label, LabelCall, ScenarioTurn
    from tooldojo.synth.episode import EpisodeEnv, run_episode
    from tooldojo.verify import VerifyOptions, verify_trajectory

    def caller_for(injected: bool):
        class Caller:
            async def call_tool(self, name, arguments=None, *, meta=None):
                body = '{"error": {"type": "rate_limited", "message": "Too many requests"}}'
                return types.CallToolResult(
                    content=[types.TextContent(type="text", text=body)],
                    is_error=True,
                    # injected failures come from the simulated executor: model-written results
                    _meta={INJECTED_META_KEY: True, SIMULATED_META_KEY: True} if injected else None,
                )

        @asynccontextmanager
        async def connect(names):
            yield Caller()

        return connect

    tool = Tool(name="get_rate", parameters={"type": "object", "properties": {"pair": {}}})
    scenario = Scenario(
        id="f1",
        category="single",
        tools=["get_rate"],
        turns=[
            ScenarioTurn(
                intent="get the EUR/USD rate",
                steps=[
                    Label(calls=[LabelCall(name="get_rate", arguments={"pair": ["EURUSD"]})]),
                    Label(kind="text"),
                ],
            )
        ],
        metadata={"asks": [[{"tool": None, "description": "EURUSD rate please"}]]},
    )
    answer = "Sorry, the rate service said too many requests; please try again later."
    for injected, gate in ((True, None), (False, "execution")):
        assistant = AssistantAgent(ScriptedChatModel([answer] * 3), guidance="label")
        env = EpisodeEnv(
            tools={"get_rate": tool},
            user=UserSimulator(None),
            assistant=assistant,
            connect=caller_for(injected),
        )
        trajectory = await run_episode(scenario, env)
        tool_message = next(m for m in trajectory.messages if m.role == "tool")
        assert tool_message.origin == ("model" if injected else "executed")
        assert tool_message.is_error
        assert getattr(tool_message, "injected", False) is injected
        assert trajectory.metadata["injected_failures"] == int(injected)
        verified = await verify_trajectory(trajectory, VerifyOptions())
        stopped = None if verified.passed else verified.verdicts[-1].gate
        assert stopped == gate, verified.verdicts[-1].reason


def test_request_check_rejects_the_prompts_value_name_form_and_the_grammar_asks():
    import re

    from tooldojo.agents.user import RequestCheck, values_constraint

    check = RequestCheck(required=["DE"], forbidden=[], tool_names=[], keys=["region"])
    assert check.problems("DE (region)") == ["lists region as fields"]
    assert check.problems("It is for Germany, DE.") == []
    schema = values_constraint(["DE", 3], question=True).json_schema
    pattern = schema["properties"]["message"]["pattern"]
    assert re.fullmatch(pattern, "Any alerts for DE in the next 3 days?")
    assert not re.fullmatch(pattern, "Any alerts for DE in the next 3 days.")
    assert not re.fullmatch(pattern, "Any alerts for the next 3 days in DE?")  # order kept
    assert re.fullmatch(pattern, "Any alerts for DE in 3?")  # the value may end it
    assert not re.fullmatch(pattern, "Any alerts for DE in the next 3 days,?")  # no ",?"
    topical = values_constraint([], question=True, topic="alert").json_schema
    assert re.fullmatch(topical["properties"]["message"]["pattern"], "Any alerts for me today?")
    assert not re.fullmatch(topical["properties"]["message"]["pattern"], "Any alerts, today,?")
    assert values_constraint(['say "hi"']) is None  # quotes: no grammar, free tries only


def test_request_check_refuses_echoes_and_number_dumps_and_the_grammar_leaves_numbers_to_values():
    import re

    from tooldojo.agents.user import RequestCheck, values_constraint

    check = RequestCheck(required=[172.91], forbidden=[], tool_names=[], opens=True)
    assert check.problems("Could you get the skewness of 172.91?") == []
    dump = "Skewness? 172.91, 45.88, 408.72, 10.23, 10.23, 10.23, 11.12, 11.12?"
    assert check.problems(dump) == ["not a message: mostly numbers and symbols"]
    echo = "Please provide the x (you say it later) in the response."
    assert "repeats the instructions instead of writing the message" in check.problems(echo)
    answered = 'Sure. The assistant asked me: "What is x?" 2.5'
    assert "repeats the instructions instead of writing the message" in check.problems(answered)
    topical = RequestCheck(required=[], forbidden=[], tool_names=[], topics=[{"recip"}])
    assert topical.problems("Please provide the x in the response.") == [
        "does not say what it wants done"
    ]
    assert topical.problems("What is the reciprocal, please?") == []
    answer = RequestCheck(required=[2.5], forbidden=[], tool_names=[])  # answers a question
    assert answer.problems("2.5, 3, 4, 5, 6, 7") == []
    schema = values_constraint([172.91], question=True).json_schema
    pattern = schema["properties"]["message"]["pattern"]
    assert re.fullmatch(pattern, "Could you get the skewness of 172.91 for me?")
    assert not re.fullmatch(pattern, "199.23, 45.88 172.91, 10.23?")  # numbers only as values


def test_values_grammar_asks_for_the_tools_topic_in_the_models_words():
    import re

    from tooldojo.agents.user import topic_word, values_constraint

    ask = {"tool": "scipy_stats_skew", "description": "Compute the sample skewness of a data."}
    assert topic_word(ask) == "skewn"
    schema = values_constraint([172.91], question=True, topic="skewn").json_schema
    pattern = schema["properties"]["message"]["pattern"]
    assert "|" not in pattern  # the llama.cpp backend drops patterns with alternation
    assert re.fullmatch(pattern, "Could you get the skewness of 172.91 for me?")
    assert not re.fullmatch(pattern, "Could you get the value of 172.91 for me?")  # no topic
    only = values_constraint([], topic="recip").json_schema["properties"]["message"]
    assert re.fullmatch(only["pattern"], "I need a reciprocal, please.")
    assert values_constraint([]) is None


def test_template_cap_out_of_range_is_a_clear_cli_error(tmp_path, monkeypatch, capsys):
    from tooldojo.cli import main

    spec = Path(__file__).resolve().parents[1] / "examples/specs/weather_finance.openai.json"
    args = ["synth", "--specs", str(spec), "--n", "2", "--out", str(tmp_path / "out")]
    monkeypatch.setattr("sys.argv", ["tooldojo", *args, "--template-cap", "1.5"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    assert "--template-cap must be between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.anyio
async def test_the_user_does_not_parrot_the_assistant():
    """A draft that mostly repeats the assistant's message is retried (the request gate's
    echo_request would fail it), for an answer to a question and for a later request."""
    question = "Which book would you like to reprice, and could you give me its id please?"
    clarify = _scenario(withheld={"book_id": "bk_ab12"})
    parrot = "Which book would you like to reprice, and could you give me its id bk_ab12?"
    user = UserSimulator(ScriptedChatModel([parrot, "It is bk_ab12."]), attempts=2)
    answer = await user.clarification(clarify, 0, question, random.Random(0))
    assert answer.source == "model" and answer.text == "It is bk_ab12." and answer.attempts == 2
    assert answer.problems == ["repeats the assistant's message"]  # the first draft's
    said = "You can set the price of a book by its id and the amount in euros, whenever you like."
    later = "Please set the price of a book by its id and the amount in euros: bk_ab12, 9.5 EUR."
    fresh = "Please set the price of bk_ab12 to 9.5 EUR."
    user = UserSimulator(ScriptedChatModel([later, fresh]), attempts=2)
    text = await user.request(_scenario(), 0, random.Random(0), after=said)
    assert text.text == fresh and text.attempts == 2
    user = UserSimulator(ScriptedChatModel([later]), attempts=1)
    assert (await user.request(_scenario(), 0, random.Random(0))).text == later  # nothing said
