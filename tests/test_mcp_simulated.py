"""Orchestration of the simulated executor, with a scripted model standing in for the LLM:
caching, consistency, output-schema re-asks and injected failures. (Whether a real model
plays APIs well is checked by the slow end-to-end test with the embedded model.)"""

from __future__ import annotations

import json

import pytest

from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.mcp.episodes import Episode
from tooldojo.mcp.executors.base import ToolExecutionError
from tooldojo.mcp.executors.simulated import SimulatedExecutor, is_read_only
from tooldojo.mcp.registry import ToolRegistry
from tooldojo.mcp.server import SIMULATED_META_KEY, ToolServer, result_value
from tooldojo.model import Tool

GET_ORDER = Tool(
    name="get_order",
    description="Fetch an order.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}}},
    output_schema={
        "type": "object",
        "properties": {"id": {"type": "string"}, "status": {"type": "string"}},
        "required": ["id", "status"],
    },
)
CANCEL_ORDER = Tool(
    name="cancel_order",
    description="Cancel an order.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}}},
)


@pytest.mark.anyio
async def test_reads_are_cached_until_a_write_and_the_prompt_carries_the_log() -> None:
    replies = [
        '{"id": "A1", "status": "open"}',
        '{"cancelled": true}',
        '{"id": "A1", "status": "cancelled"}',
    ]
    model = ScriptedChatModel(replies)
    registry = ToolRegistry()
    registry.add([GET_ORDER, CANCEL_ORDER], SimulatedExecutor(model))
    server = ToolServer(registry)
    first = await server.call("get_order", {"order_id": "A1"}, episode="e")
    again = await server.call("get_order", {"order_id": "A1"}, episode="e")
    await server.call("cancel_order", {"order_id": "A1"}, episode="e")
    after = await server.call("get_order", {"order_id": "A1"}, episode="e")
    assert result_value(first) == result_value(again) == {"id": "A1", "status": "open"}
    assert result_value(after) == {"id": "A1", "status": "cancelled"}
    assert len(model.calls) == 3  # the repeated read came from the cache
    assert all((r.meta or {}).get(SIMULATED_META_KEY) for r in (first, again, after))
    last_prompt = model.calls[-1][0][-1].content
    assert 'cancel_order({"order_id": "A1"}) -> {"cancelled": true}' in last_prompt
    assert "Response schema:" in last_prompt


@pytest.mark.anyio
async def test_episodes_do_not_share_cache_or_log() -> None:
    model = ScriptedChatModel(['{"id": "A1", "status": "open"}', '{"id": "A1", "status": "x"}'])
    registry = ToolRegistry()
    registry.add([GET_ORDER], SimulatedExecutor(model))
    server = ToolServer(registry)
    one = await server.call("get_order", {"order_id": "A1"}, episode="one")
    two = await server.call("get_order", {"order_id": "A1"}, episode="two")
    assert result_value(one)["status"] == "open" and result_value(two)["status"] == "x"
    assert "Earlier calls" not in model.calls[1][0][-1].content


@pytest.mark.anyio
async def test_output_schema_mismatch_is_re_asked_then_given_up() -> None:
    model = ScriptedChatModel(['{"id": "A1"}', '```json\n{"id": "A1", "status": "open"}\n```'])
    executor = SimulatedExecutor(model)
    outcome = await executor.execute(GET_ORDER, {"order_id": "A1"}, Episode(id="e"))
    assert outcome.value == {"id": "A1", "status": "open"}
    correction = model.calls[1][0][-1].content
    assert "'status' is a required property" in correction

    stubborn = SimulatedExecutor(ScriptedChatModel(["not json"] * 3), max_retries=2)
    with pytest.raises(ToolExecutionError, match="no valid result after 3 attempts"):
        await stubborn.execute(GET_ORDER, {"order_id": "A1"}, Episode(id="e"))


@pytest.mark.anyio
async def test_the_server_samples_with_a_frequency_penalty_and_each_try_draws_anew() -> None:
    from tooldojo.llm.base import SamplingParams
    from tooldojo.mcp.executors.simulated import SERVER_FREQUENCY_PENALTY

    model = ScriptedChatModel(['{"id": "A1"}', '{"id": "A1", "status": "open"}'])
    executor = SimulatedExecutor(model, sampling=SamplingParams(temperature=0.3))
    await executor.execute(GET_ORDER, {"order_id": "A1"}, Episode(id="e"))
    tries = [sampling for _, _, sampling in model.calls]
    assert {s.frequency_penalty for s in tries} == {SERVER_FREQUENCY_PENALTY}
    assert len({s.seed for s in tries}) == 2  # the retry is another draw, not the same one
    # A penalty the role's configuration sets is kept, and no other is added.
    own = SamplingParams(temperature=0.3, repeat_penalty=1.2, seed=7)
    model = ScriptedChatModel(['{"id": "A1", "status": "open"}'])
    await SimulatedExecutor(model, sampling=own).execute(
        GET_ORDER, {"order_id": "A1"}, Episode(id="e")
    )
    ((_, _, sampling),) = model.calls
    assert (sampling.frequency_penalty, sampling.repeat_penalty, sampling.seed) == (0.0, 1.2, 7)


@pytest.mark.anyio
async def test_grammar_is_the_bounded_schema_with_arguments_pinned_and_a_token_budget() -> None:
    seen = []

    class Recording(ScriptedChatModel):
        async def complete(self, messages, tools=None, *, sampling=None, constraint=None):
            seen.append((sampling, constraint))
            return await super().complete(messages, tools, sampling=sampling)

    executor = SimulatedExecutor(Recording(['{"id": "A9", "status": "open"}']), budget_tokens=300)
    await executor.execute(GET_ORDER, {"order_id": "A9", "id": "A9"}, Episode(id="e"))
    sampling, constraint = seen[0]
    schema = constraint.json_schema
    assert schema["properties"]["id"] == {"const": "A9"}  # the call's id is echoed
    assert schema["properties"]["status"]["maxLength"] <= 48
    assert sampling.max_tokens <= 300


@pytest.mark.anyio
async def test_an_error_body_that_breaks_the_schema_is_no_result() -> None:
    model = ScriptedChatModel(['{"error": "order A9 does not exist"}'] * 2)
    registry = ToolRegistry()
    registry.add([GET_ORDER], SimulatedExecutor(model))
    result = await ToolServer(registry).call("get_order", {"order_id": "A9"}, episode="e")
    assert result.is_error and "no valid result" in result.content[0].text
    assert not (result.meta or {}).get("tooldojo/injected_failure")


@pytest.mark.anyio
async def test_injected_failures_follow_the_rate_and_are_deterministic() -> None:
    def respond(messages, tools):
        return json.dumps({"id": "x", "status": "open"})

    async def failures(seed: int) -> list[bool]:
        executor = SimulatedExecutor(ScriptedChatModel(respond), failure_rate=0.3, seed=seed)
        flags = []
        for index in range(200):
            outcome = await executor.execute(GET_ORDER, {"order_id": str(index)}, Episode(id="e"))
            if outcome.is_error:
                assert outcome.injected
                assert outcome.value["error"]["type"] in {
                    "not_found",
                    "permission_denied",
                    "rate_limited",
                }
            flags.append(outcome.is_error)
        return flags

    first, again, other = await failures(1), await failures(1), await failures(2)
    assert first == again and first != other
    assert 30 <= sum(first) <= 90


def test_read_only_detection() -> None:
    assert is_read_only(GET_ORDER) and not is_read_only(CANCEL_ORDER)
    post = Tool(name="get_thing", metadata={"http": {"method": "post", "path": "/x"}})
    assert not is_read_only(post)
    hinted = Tool(name="cancel", metadata={"annotations": {"readOnlyHint": True}})
    assert is_read_only(hinted)


@pytest.mark.anyio
async def test_the_wall_clock_limit_follows_the_token_budget_and_a_timeout_names_its_cause():
    import anyio

    class Stalled(ScriptedChatModel):
        async def complete(self, messages, tools=None, *, sampling=None, constraint=None):
            await anyio.sleep(2)
            return await super().complete(messages, tools, sampling=sampling)

    executor = SimulatedExecutor(Stalled(['{"id": "A1", "status": "open"}']), budget_tokens=300)
    assert executor.min_timeout_s >= 2 * 300 / 2.0  # two attempts at 2 tokens/s at least
    registry = ToolRegistry()
    registry.add([GET_ORDER], executor)
    server = ToolServer(registry, call_timeout_s=0.01)
    executor.min_tokens_per_s, executor.prompt_allowance_s = 1e6, 0.05  # a very slow "model"
    result = await server.call("get_order", {"order_id": "A1"}, episode="e")
    text = result.content[0].text
    assert result.is_error and "timed out after" in text and "tokens/s" in text


def test_cut_text_at_the_string_bound_is_prose_or_a_runaway_not_a_whole_token():
    from tooldojo.mcp.executors.simulated import _cut_text

    assert _cut_text({"start": "2025-12-31T14:00:00Z"}, 16) == ""  # format-bounded, whole
    assert _cut_text({"title": "The Left Hand of"}, 16).startswith("the text")  # prose: cut
    assert _cut_text(["123456789012345678901234"], 24)  # a runaway number string: cut
    assert _cut_text({"owner": "john.john.john.john.john"}, 24)  # a loop: cut
    # one token at the bound is a usable value, not text cut mid-sentence
    assert _cut_text({"id": "com.google.apps.vue.ComV"}, 24) == ""
    assert _cut_text({"url": "https://www.ebay.com/en/"}, 24) == ""
    assert _cut_text({"id": "com.google.apps.vue.ComV"}, 48) == ""  # under the bound


@pytest.mark.anyio
async def test_prose_cut_at_the_bound_ends_at_its_last_full_sentence_or_fails() -> None:
    from tooldojo.mcp.executors.simulated import _end_at_sentence

    note = "Deleted the note. It will be gone from all devices"  # 50 characters, cut at 48
    assert _end_at_sentence({"status": note[:48]}, 48) == {"status": "Deleted the note."}
    assert _end_at_sentence(["Done. It will be gone from every device in a day"], 48) == [
        "Done. It will be gone from every device in a day"  # "Done." is too short to keep
    ]
    assert _end_at_sentence({"id": "v1.2. x"}, 48) == {"id": "v1.2. x"}  # under the bound
    cut = json.dumps({"id": "A1", "status": note[:48]})
    executor = SimulatedExecutor(ScriptedChatModel([cut]), max_retries=0)
    outcome = await executor.execute(GET_ORDER, {"order_id": "A1"}, Episode(id="e"))
    assert outcome.value == {"id": "A1", "status": "Deleted the note."}
    runon = json.dumps({"id": "A1", "status": ("the note is gone from all devices " * 2)[:48]})
    executor = SimulatedExecutor(ScriptedChatModel([runon]), max_retries=0)
    with pytest.raises(ToolExecutionError, match="was cut at 48 characters"):
        await executor.execute(GET_ORDER, {"order_id": "A1"}, Episode(id="e"))


@pytest.mark.anyio
async def test_each_tool_is_shown_its_own_worked_example_the_same_on_every_call() -> None:
    from tooldojo.mcp.executors.simulated import WORKED_EXAMPLES, worked_example

    for _, reply in WORKED_EXAMPLES:
        json.loads(reply)  # each shown reply is the JSON body it teaches
    # spread over the tools (one example was copied into 13 % of the passed scale3 data)...
    shown = {worked_example(f"tool_{number}")[1] for number in range(60)}
    assert len(shown) == len(WORKED_EXAMPLES) > 1
    # ...and the one a tool gets is what its prompt holds, call after call
    model = ScriptedChatModel(['{"id": "A1", "status": "open"}', '{"id": "B2", "status": "x"}'])
    executor = SimulatedExecutor(model)
    for order in ("A1", "B2"):
        await executor.execute(GET_ORDER, {"order_id": order}, Episode(id=order))
    for messages, *_ in model.calls:
        assert [m.content for m in messages[1:3]] == list(worked_example("get_order"))


@pytest.mark.anyio
async def test_a_runaway_value_below_the_string_bound_is_asked_again() -> None:
    model = ScriptedChatModel(
        ['{"id": "john.john.john.john", "status": "open"}', '{"id": "A1", "status": "open"}']
    )
    outcome = await SimulatedExecutor(model).execute(GET_ORDER, {"order_id": "A1"}, Episode(id="e"))
    assert outcome.value == {"id": "A1", "status": "open"} and len(model.calls) == 2
    assert "repeats" in model.calls[1][0][-1].content  # the retry says what was wrong


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("made_up", "said"),
    [
        ('{"id": "A1", "status": "Error: order not found"}', "reports a failure"),
        ('{"id": ");", "status": "open"}', "says nothing"),
    ],
)
async def test_a_made_up_failure_or_filler_is_asked_again_and_given_up_when_it_stays(
    made_up: str, said: str
) -> None:
    """The server is asked for a success: a result reporting a failure, or filler, is re-asked
    (the retry says why), and when the model keeps writing it the call fails, as before."""
    model = ScriptedChatModel([made_up, '{"id": "A1", "status": "open"}'])
    outcome = await SimulatedExecutor(model).execute(GET_ORDER, {"order_id": "A1"}, Episode(id="e"))
    assert outcome.value == {"id": "A1", "status": "open"} and len(model.calls) == 2
    assert said in model.calls[1][0][-1].content

    stubborn = ScriptedChatModel([made_up, made_up])
    with pytest.raises(ToolExecutionError, match=said):
        await SimulatedExecutor(stubborn).execute(GET_ORDER, {"order_id": "A1"}, Episode(id="e"))


class _ConstraintsSeen(ScriptedChatModel):
    """A scripted server that keeps the grammar schema of each request."""

    def __init__(self, replies: list[str]):
        super().__init__(replies)
        self.schemas: list[dict] = []

    async def complete(self, messages, tools=None, *, sampling=None, constraint=None):
        self.schemas.append(constraint.json_schema)
        return await super().complete(messages, tools, sampling=sampling, constraint=constraint)


@pytest.mark.anyio
@pytest.mark.parametrize("tighten", [True, False])
async def test_after_a_runaway_the_retry_is_decoded_at_a_tighter_rung(monkeypatch, tighten):
    """A retry after a runaway or a cut string gets fewer optional fields (the next rung of
    the ladder); with the option off it gets the same grammar."""
    from tooldojo.mcp.executors import simulated

    monkeypatch.setattr(simulated, "TIGHTEN_ON_RETRY", tighten)
    optional = {f"note_{n}": {"type": "string"} for n in range(6)}
    tool = GET_ORDER.model_copy(
        update={
            "output_schema": {
                "type": "object",
                "properties": {"id": {"type": "string"}} | optional,
                "required": ["id"],
            }
        }
    )
    model = _ConstraintsSeen(['{"id": "john.john.john.john"}', '{"id": "A1"}'])
    outcome = await SimulatedExecutor(model).execute(tool, {"order_id": "A1"}, Episode(id="e"))
    assert outcome.value == {"id": "A1"}
    first, second = (set(schema["properties"]) for schema in model.schemas)
    assert (second < first) if tighten else (second == first)
    # a schema problem is not a runaway: its retry keeps the grammar
    model = _ConstraintsSeen(['{"id": 5}', '{"id": "A1"}'])
    await SimulatedExecutor(model).execute(tool, {"order_id": "A1"}, Episode(id="f"))
    assert len(model.schemas) == 2 and model.schemas[0] == model.schemas[1]
