"""The MCP server over the in-memory transport: registry, validation, errors, episodes,
and the python executor (real callables, real SDK client)."""

from __future__ import annotations

import time
from typing import Literal

import anyio
import mcp
import pytest

from tooldojo.errors import ToolDojoError
from tooldojo.mcp.episodes import EPISODE_INIT_META_KEY, EPISODE_META_KEY, EpisodeStore
from tooldojo.mcp.executors.base import ToolOutcome
from tooldojo.mcp.executors.python import PythonExecutor
from tooldojo.mcp.introspect import parse_docstring, tool_from_callable
from tooldojo.mcp.registry import ToolRegistry
from tooldojo.mcp.server import SIMULATED_META_KEY, ToolServer, result_value
from tooldojo.model import Tool


def add(a: int, b: int = 1) -> dict[str, int]:
    """Add two integers.

    Args:
        a (int): The first number.
        b (int): The second number,
            one by default.
    """
    return {"sum": a + b}


def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"boom: {reason}")


def sleepy(seconds: float) -> str:
    """Blocks its thread."""
    time.sleep(seconds)
    return "woke"


class Counter:
    """A stateful tool set: one counter per episode."""

    def __init__(self) -> None:
        self.value = 0

    def increment(self, by: int = 1) -> dict[str, int]:
        """Increase the counter."""
        self.value += by
        return {"value": self.value}

    def read(self) -> dict[str, int]:
        """The current value."""
        return {"value": self.value}

    def _hidden(self) -> None:
        raise AssertionError("private methods are not tools")


def counter_setup(instance: Counter, init: dict) -> None:
    instance.value = int(init.get("start", 0))


class HangingExecutor:
    name = "hang"

    async def execute(self, tool, arguments, episode) -> ToolOutcome:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")


def make_server(timeout: float = 5.0) -> ToolServer:
    registry = ToolRegistry()
    registry.add(*_python_set(PythonExecutor(functions=[add, explode, sleepy])))
    registry.add(*_python_set(PythonExecutor(classes=[Counter], setup=counter_setup)))
    registry.add([Tool(name="hang", description="never returns")], HangingExecutor())
    return ToolServer(registry, call_timeout_s=timeout)


def _python_set(executor: PythonExecutor) -> tuple[list[Tool], PythonExecutor]:
    return executor.tools, executor


def _text(result) -> str:
    return "".join(block.text for block in result.content)


@pytest.mark.anyio
async def test_lists_registry_tools_with_their_schemas() -> None:
    server = make_server()
    async with mcp.Client(server.server) as client:
        listing = await client.list_tools()
    by_name = {tool.name: tool for tool in listing.tools}
    assert set(by_name) == {"add", "explode", "sleepy", "increment", "read", "hang"}
    assert by_name["add"].description == "Add two integers."
    schema = by_name["add"].input_schema
    assert schema["required"] == ["a"]
    assert schema["properties"]["b"]["description"] == "The second number, one by default."
    assert schema["additionalProperties"] is False


@pytest.mark.anyio
async def test_a_scoped_session_lists_and_calls_only_its_tools_and_shares_episode_state() -> None:
    server = make_server()
    meta = {EPISODE_META_KEY: "e1"}
    async with mcp.Client(server.scoped(["increment", "add"])) as client:
        listing = await client.list_tools()
        added = await client.call_tool("add", {"a": 2, "b": 40})
        outside = await client.call_tool("read", {}, meta=meta)
        await client.call_tool("increment", {"by": 5}, meta=meta)
    assert [tool.name for tool in listing.tools] == ["increment", "add"]
    assert added.structured_content == {"sum": 42}
    assert outside.is_error and "unknown tool 'read'" in _text(outside)
    # The same episode, seen through the whole server: the scoped call changed its state.
    async with mcp.Client(server.server) as client:
        read = await client.call_tool("read", {}, meta=meta)
    assert read.structured_content == {"value": 5}
    with pytest.raises(ToolDojoError, match="no tool 'subtract'"):
        server.scoped(["add", "subtract"])


@pytest.mark.anyio
async def test_result_fields_reach_the_executor_for_that_call_only() -> None:
    from tooldojo.mcp.episodes import RESULT_FIELDS_META_KEY

    seen = []

    class Recording:
        name = "recording"

        async def execute(self, tool, arguments, episode) -> ToolOutcome:
            seen.append(list(episode.result_fields))
            return ToolOutcome({"ok": True})

    registry = ToolRegistry()
    registry.add([Tool(name="make", description="makes a thing")], Recording())
    server = ToolServer(registry)
    async with mcp.Client(server.server) as client:
        await client.call_tool(
            "make", {}, meta={EPISODE_META_KEY: "e", RESULT_FIELDS_META_KEY: ["id"]}
        )
        await client.call_tool("make", {}, meta={EPISODE_META_KEY: "e"})
        bad = await client.call_tool("make", {}, meta={RESULT_FIELDS_META_KEY: "id"})
    assert seen == [["id"], []]
    assert bad.is_error and "must be a list of names" in _text(bad)


@pytest.mark.anyio
async def test_call_returns_text_and_structured_content() -> None:
    async with mcp.Client(make_server().server) as client:
        result = await client.call_tool("add", {"a": 2, "b": 40})
    assert not result.is_error
    assert result.structured_content == {"sum": 42}
    assert _text(result) == '{"sum": 42}'


@pytest.mark.anyio
async def test_bad_arguments_give_the_validator_message() -> None:
    async with mcp.Client(make_server().server) as client:
        wrong_type = await client.call_tool("add", {"a": "two"})
        missing = await client.call_tool("add", {"b": 3})
        extra = await client.call_tool("add", {"a": 1, "c": 3})
        unknown = await client.call_tool("subtract", {"a": 1})
    assert wrong_type.is_error
    assert _text(wrong_type) == "invalid arguments for 'add' at /a: 'two' is not of type 'integer'"
    assert missing.is_error and "'a' is a required property" in _text(missing)
    assert extra.is_error and "Additional properties are not allowed" in _text(extra)
    assert unknown.is_error and "unknown tool 'subtract'" in _text(unknown)


@pytest.mark.anyio
async def test_executor_exception_is_an_error_result_and_server_keeps_serving() -> None:
    async with mcp.Client(make_server().server) as client:
        failed = await client.call_tool("explode", {"reason": "test"})
        after = await client.call_tool("add", {"a": 1})
    assert failed.is_error
    assert _text(failed) == "'explode' failed: RuntimeError: boom: test"
    assert after.structured_content == {"sum": 2}


@pytest.mark.anyio
async def test_hung_executors_time_out() -> None:
    server = make_server(timeout=0.3)
    async with mcp.Client(server.server) as client:
        started = time.perf_counter()
        hung_async = await client.call_tool("hang", {})
        hung_thread = await client.call_tool("sleepy", {"seconds": 3})
        elapsed = time.perf_counter() - started
    assert hung_async.is_error and _text(hung_async) == "'hang' timed out after 0.3 s"
    assert hung_thread.is_error and "timed out" in _text(hung_thread)
    assert elapsed < 2.0


@pytest.mark.anyio
async def test_episodes_are_isolated_and_start_from_their_init() -> None:
    server = make_server()
    first = {EPISODE_META_KEY: "ep-1", EPISODE_INIT_META_KEY: {"start": 10}}
    second = {EPISODE_META_KEY: "ep-2"}
    async with mcp.Client(server.server) as client:
        await client.call_tool("increment", {"by": 5}, meta=first)
        await client.call_tool("increment", {}, meta=second)
        await client.call_tool("increment", {}, meta=first)
        one = await client.call_tool("read", {}, meta=first)
        two = await client.call_tool("read", {}, meta=second)
        default = await client.call_tool("read", {})
    assert result_value(one) == {"value": 16}
    assert result_value(two) == {"value": 1}
    assert result_value(default) == {"value": 0}
    assert [record.tool for record in server.episodes.get("ep-1").log] == [
        "increment",
        "increment",
        "read",
    ]
    assert server.episodes.end("ep-1") and "ep-1" not in server.episodes


@pytest.mark.anyio
async def test_many_concurrent_episodes_in_memory() -> None:
    server = make_server()

    async def episode(index: int) -> None:
        meta = {EPISODE_META_KEY: f"c{index}"}
        async with mcp.Client(server.server) as client:
            for _ in range(index % 5 + 1):
                await client.call_tool("increment", {}, meta=meta)
            result = await client.call_tool("read", {}, meta=meta)
            assert result_value(result) == {"value": index % 5 + 1}

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for index in range(100):
                group.start_soon(episode, index)
    assert len(server.episodes) == 100


@pytest.mark.anyio
async def test_output_that_breaks_the_output_schema_is_an_error() -> None:
    registry = ToolRegistry()
    tool = Tool(
        name="add",
        parameters={"type": "object", "properties": {"a": {"type": "integer"}}},
        output_schema={
            "type": "object",
            "properties": {"total": {"type": "integer"}},
            "required": ["total"],
        },
    )
    registry.add([tool], PythonExecutor(functions=[add], tools=[tool]))
    async with mcp.Client(ToolServer(registry).server) as client:
        listing = await client.list_tools()
        result = await client.call_tool("add", {"a": 1})
    assert listing.tools[0].output_schema == tool.output_schema
    assert result.is_error
    assert "breaks its output schema" in _text(result) and "'total'" in _text(result)


def test_type_hints_become_json_schema() -> None:
    def book(
        city: str,
        nights: int,
        kind: Literal["hotel", "hostel"] = "hotel",
        guests: list[str] | None = None,
    ) -> dict:
        """Book a room.

        Args:
            city: Where.
            nights (int): How long.
        Returns:
            dict: the booking.
        """
        return {}

    tool = tool_from_callable(book)
    props = tool.parameters["properties"]
    assert tool.required == ["city", "nights"]
    assert props["city"] == {"type": "string", "description": "Where."}
    assert props["kind"]["enum"] == ["hotel", "hostel"] and props["kind"]["default"] == "hotel"
    assert {"type": "null"} in props["guests"]["anyOf"]
    assert tool.description == "Book a room."


def test_docstring_parser_keeps_continuations_and_skips_other_sections() -> None:
    summary, args = parse_docstring(
        """Do it.

        More detail.

        Args:
            x (int): first
                continued.
            y: second
        Raises:
            z: not an argument
        """
    )
    assert summary == "Do it."
    assert args == {"x": "first continued.", "y": "second"}


def test_python_executor_from_file_and_class_targets(tmp_path) -> None:
    module = tmp_path / "shop_tools.py"
    module.write_text(
        "def price(item: str) -> float:\n    '''Price of an item.'''\n    return 1.5\n\n"
        "def _private() -> None: ...\n\n"
        "class Cart:\n    def add(self, item: str) -> list:\n        return [item]\n",
        encoding="utf-8",
    )
    functions = PythonExecutor.from_target(str(module))
    assert [tool.name for tool in functions.tools] == ["price"]
    methods = PythonExecutor.from_target(f"{module}:Cart")
    assert [tool.name for tool in methods.tools] == ["add"]
    with pytest.raises(ToolDojoError, match="has no class 'Missing'"):
        PythonExecutor.from_target(f"{module}:Missing")
    with pytest.raises(ToolDojoError, match="import failed"):
        PythonExecutor.from_target("no_such_module_anywhere")
    given = Tool(name="lookup_price", original_name="price", description="given schema")
    executor = PythonExecutor.from_target(str(module), tools=[given])
    assert executor.tools == [given]
    with pytest.raises(ToolDojoError, match="no Python callable"):
        PythonExecutor.from_target(str(module), tools=[Tool(name="nope")])


def test_registry_refuses_duplicates_and_invalid_schemas() -> None:
    registry = ToolRegistry()
    executor = PythonExecutor(functions=[add])
    registry.add(executor.tools, executor)
    with pytest.raises(ToolDojoError, match="registered twice"):
        registry.add(executor.tools, executor)
    bad = Tool(name="bad", parameters={"type": "object", "properties": {"x": {"type": 5}}})
    with pytest.raises(ToolDojoError, match=r"'bad'.*invalid JSON Schema"):
        registry.add([bad], executor)


@pytest.mark.anyio
async def test_names_only_validation_leaves_types_to_the_executor() -> None:
    registry = ToolRegistry()
    executor = PythonExecutor(functions=[add])
    registry.add(executor.tools, executor, check_types=False)
    server = ToolServer(registry)
    loose = await server.call("add", {"a": 1.5, "b": 1})
    missing = await server.call("add", {"b": 1})
    assert not (loose.meta or {}).get(SIMULATED_META_KEY)  # really executed, not model-written
    assert result_value(loose) == {"sum": 2.5}
    assert missing.is_error and "'a' is a required property" in _text(missing)


def test_episode_store_drops_least_recently_used() -> None:
    store = EpisodeStore(max_episodes=2)
    store.get_or_create("a", {"x": 1})
    store.get_or_create("b")
    store.get_or_create("a", {"x": 2})  # touch a; init of an existing episode is ignored
    store.get_or_create("c")
    assert "b" not in store and "a" in store and "c" in store
    assert store.get("a").init == {"x": 1}
