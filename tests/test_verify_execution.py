"""The execution gate replays calls on a real in-memory MCP server (mcp SDK, MCPServer)."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from tooldojo.model import Label, LabelCall, Message, Tool, ToolCall, Trajectory
from tooldojo.verify import VerifyOptions, verify_trajectory
from tooldojo.verify.execution import mcp_client_factory, results_consistent


def make_server() -> MCPServer:
    """A tiny stateful shop: fresh state per server instance."""
    server = MCPServer("shop")
    stock = {"pen": 3}

    @server.tool()
    def create_order(item: str, qty: int = 1) -> dict:
        """Order an item."""
        if stock.get(item, 0) < qty:
            raise ToolError(f"not enough {item}")
        stock[item] -= qty
        return {"order_id": f"{item}-{qty}", "left": stock[item]}

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return server


TOOLS = [
    Tool(
        name="create_order",
        parameters={
            "type": "object",
            "properties": {"item": {"type": "string"}, "qty": {"type": "integer"}},
            "required": ["item"],
        },
    ),
    Tool(
        name="add",
        parameters={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    ),
]


def shop_trajectory(qty: int, recorded: str, *, answered: bool = True) -> Trajectory:
    call = ToolCall(id="c1", name="create_order", arguments={"item": "pen", "qty": qty})
    add = ToolCall(id="c2", name="add", arguments={"a": 2, "b": 3})
    messages = [
        Message(role="user", content="Two pens please, and what is 2+3?"),
        Message(role="assistant", tool_calls=[call, add]),
    ]
    if answered:
        messages.append(Message(role="tool", tool_call_id="c1", content=recorded))
    messages += [
        Message(role="tool", tool_call_id="c2", content="5"),
        Message(role="assistant", content="Ordered; 2+3 is 5."),
    ]
    label = Label(
        kind="call",
        calls=[
            LabelCall(name="create_order", arguments={"item": ["pen"], "qty": [qty]}),
            LabelCall(name="add", arguments={"a": [2], "b": [3]}),
        ],
    )
    return Trajectory(id="shop", tools=TOOLS, messages=messages, labels=[label, Label(kind="text")])


def fresh_server_factory():
    opened: list[str] = []

    @asynccontextmanager
    async def factory(trajectory: Trajectory):
        opened.append(trajectory.id)
        async with Client(make_server()) as client:
            yield client

    return factory, opened


async def run(trajectory: Trajectory, factory, consistency="exact") -> Trajectory:
    options = VerifyOptions(
        gates=["format", "schema", "label", "execution"],
        executor=factory,
        consistency=consistency,
    )
    return await verify_trajectory(trajectory, options)


@pytest.mark.anyio
async def test_consistent_replay_passes_on_a_fresh_episode_per_trajectory() -> None:
    factory, opened = fresh_server_factory()
    recorded = json.dumps({"order_id": "pen-2", "left": 1})
    result = await run(shop_trajectory(2, recorded), factory)
    assert result.passed is True, result.verdicts[-1].reason
    assert result.verdicts[-1].gate == "execution"
    assert "2 call(s) replayed" in result.verdicts[-1].reason
    again = await run(shop_trajectory(2, recorded), factory)  # state does not leak
    assert again.passed is True
    assert opened == ["shop", "shop"]


@pytest.mark.anyio
async def test_inconsistent_or_failing_or_unanswered_calls_fail() -> None:
    factory, _ = fresh_server_factory()
    made_up = json.dumps({"order_id": "pen-2", "left": 99})
    result = await run(shop_trajectory(2, made_up), factory)
    assert result.passed is False
    assert "differs from replay (exact)" in result.verdicts[-1].reason
    # Values vary but the shape is the same: passes under "shape".
    assert (await run(shop_trajectory(2, made_up), factory, "shape")).passed is True
    other_shape = json.dumps({"id": "x"})
    assert (await run(shop_trajectory(2, other_shape), factory, "shape")).passed is False

    failing = await run(shop_trajectory(5, json.dumps({"order_id": "pen-5"})), factory)
    assert "replay failed" in failing.verdicts[-1].reason and "not enough pen" in (
        failing.verdicts[-1].reason
    )
    unanswered = await run(shop_trajectory(2, "", answered=False), factory)
    assert "no recorded result" in unanswered.verdicts[-1].reason
    # Each failure also has its code, for counting failures by reason.
    codes = [t.verdicts[-1].failure_codes() for t in (result, failing, unanswered)]
    assert codes == [["replay_differs"], ["replay_failed"], ["no_result"]]


def test_results_consistent_modes() -> None:
    assert results_consistent({"a": 1}, {"a": 1}, "exact")
    assert not results_consistent({"a": 1}, {"a": 2}, "exact")
    assert results_consistent({"a": 1}, {"a": 2}, "shape")
    assert results_consistent(1, 2.5, "shape")
    assert not results_consistent("x", {"a": 1}, "shape")
    assert results_consistent("x", {"a": 1}, "none")


@pytest.mark.anyio
async def test_mcp_client_factory_accepts_a_server_object() -> None:
    factory = mcp_client_factory(make_server())
    recorded = json.dumps({"order_id": "pen-1", "left": 2})
    trajectory = shop_trajectory(1, recorded)
    assert (await run(trajectory, factory)).passed is True


def test_a_success_that_carries_an_error_object_is_a_failed_result() -> None:
    from tooldojo.model import Message, Trajectory
    from tooldojo.verify.execution import recorded_failures

    def with_result(body: dict, origin: str = "model") -> Trajectory:
        result = Message(role="tool", name="export", tool_call_id="c1", content=json.dumps(body))
        result.origin = origin  # "model": the simulated server wrote it
        return Trajectory(
            id="t", messages=[Message(role="user", content="Run the export, please."), result]
        )

    operation = {"done": True, "error": {"code": 0, "message": "The server-assigned name"}}
    (found,) = recorded_failures(with_result(operation))
    assert found[0] == "failed_result" and "error" in found[1]
    assert recorded_failures(with_result({"done": True, "error": None, "name": "op-1"})) == []
    assert recorded_failures(with_result({"rows": 3, "errors": []})) == []
    # A real tool's own error answer is its result (the turn gates read what is said of it).
    assert recorded_failures(with_result({"error": "no file /notes/x.txt"}, "executed")) == []
    # Any top-level error-like field with content, or a state flag that says so, from the
    # scale run's passed data (s21-01569, -02559, -03068, -02376): each must fail.
    for failed in (
        {"remoteException": {"message": "The file is not a file. The file is a directory"}},
        {"Items": [], "WebException": {"Errors": [], "StatusCode": 100}},
        {"Count": 1, "ErrorMessages": [{"Code": "1", "FaultMessage": "1.1.0.0"}]},
        {"Count": 1, "IsFaulted": True},
        {"balance": "0", "ok": False},
        {"isSuccessful": False},
    ):
        (found,) = recorded_failures(with_result(failed))
        assert found[0] == "failed_result", failed
    # Settings that name errors, empty error lists and states that say all is well pass.
    for fine in (
        {"activeErrorOverride": True, "isError": False, "success": True},
        {"ErrorMessages": [], "WebException": {"Errors": [], "Code": ""}},
        {"LastFailureTime": "", "terror": "a film"},
        {"errorCount": 3, "maxErrors": 10, "errorPolicy": "retry"},
    ):
        assert recorded_failures(with_result(fine)) == [], fine


def test_a_simulated_value_that_says_nothing_is_a_junk_result() -> None:
    from tooldojo.model import Message, Trajectory
    from tooldojo.verify.execution import recorded_failures

    def with_result(body: object, origin: str = "model") -> Trajectory:
        result = Message(role="tool", name="patch", tool_call_id="c1", content=json.dumps(body))
        result.origin = origin
        return Trajectory(id="t", messages=[Message(role="user", content="Patch it."), result])

    # from the scale run: the simulated server's filler, which a forced call then copied
    (found,) = recorded_failures(with_result({"status": 200, "workgroup_id": ");;;;;;;;"}))
    assert found[0] == "junk_result" and "');;;;;;;;'" in found[1]
    assert recorded_failures(with_result({"tags": [{"value": ");"}]}))[0][0] == "junk_result"
    # a single symbol may be a value (a delimiter), and a real tool's answer is its own
    assert recorded_failures(with_result({"delimiter": ",", "price": "$5.00"})) == []
    assert recorded_failures(with_result({"sep": ";;"}, origin="executed")) == []
    # runaway values below the string bound, from the scale3 run (8 of 21 had passed)
    for runaway in ("CJHU7oI2_CJHU7oI2_CJHU7oI2_C", "lars.john.john.john.v1.2.0", "/v2/v2/v2/v2"):
        (found,) = recorded_failures(with_result({"id": runaway, "ok": True}))
        assert found[0] == "junk_result", runaway
    # repeats that are values: digits, a piece twice, short units, a UUID
    for fine in ("1000000000", "new-york-new-york", "aaa-bb", "3f2b-4c1d-3f2b-9e8a-0d1c"):
        assert recorded_failures(with_result({"id": fine})) == [], fine


@pytest.mark.anyio
async def test_a_resume_keeps_its_own_verdicts_and_redoes_those_of_other_gates(tmp_path) -> None:
    from tooldojo.jsonl import write_jsonl_atomic
    from tooldojo.model import Message, Trajectory
    from tooldojo.verify.pipeline import VerifyOptions, verify_file

    trajectories = [
        Trajectory(id=f"t{k}", messages=[Message(role="user", content="Hi.")]) for k in range(3)
    ]
    source, out = tmp_path / "in.jsonl", tmp_path / "verified.jsonl"
    write_jsonl_atomic(source, trajectories)
    first = await verify_file(source, out, VerifyOptions(gates=["format"]))
    assert (first.verified, first.skipped, first.stale) == (3, 0, None)
    again = await verify_file(source, out, VerifyOptions(gates=["format"]))
    assert (again.verified, again.skipped, again.stale) == (0, 3, None)  # a plain resume
    # other gates: the old verdicts are not this run's, so all are verified again (resuming
    # by id alone kept them: the scale run's 8 runaway values passed that way)
    other = await verify_file(source, out, VerifyOptions(gates=["format", "turns"]))
    assert (other.verified, other.skipped) == (3, 0)
    assert other.stale == tmp_path / "verified.jsonl.stale" and other.stale.exists()
    # output from before stamps existed counts as another run's too
    (tmp_path / "verified.jsonl.gates.json").unlink()
    assert (await verify_file(source, out, VerifyOptions(gates=["format", "turns"]))).verified == 3
