"""Python library tools (``--specs pylib:...``): introspection, the safety filter, the probe,
and real execution through the MCP SDK's in-memory client, alone and in a mixed pool."""

from __future__ import annotations

import json
import math

import pytest
from mcp import Client

from tooldojo.errors import SpecError, ToolDojoError
from tooldojo.llm.scripted import ScriptedChatModel
from tooldojo.mcp.executors.python import LibraryExecutor
from tooldojo.mcp.factory import ServeOptions, add_routed, build_tool_server
from tooldojo.mcp.registry import ToolRegistry
from tooldojo.mcp.server import ToolServer, result_value
from tooldojo.model import Tool
from tooldojo.specs import load_tools
from tooldojo.specs.pytools import build_library, parse_pylib_spec
from tooldojo.specs.pytools._call import CallFailed, Sandbox, to_json
from tooldojo.specs.pytools._describe import schema_from_text
from tooldojo.specs.pytools._safety import check_ref, denied_name
from tooldojo.synth.environment import build_tool_server as synth_tool_server


@pytest.fixture(scope="module")
def small_library() -> dict[str, Tool]:
    modules = ["math", "statistics", "calendar", "unicodedata", "textwrap"]
    tools, _ = build_library(modules, exclude_bfcl=False)  # math.gcd is a BFCL function
    return {tool.name: tool for tool in tools}


def test_known_functions_are_described(small_library: dict[str, Tool]) -> None:
    gcd = small_library["math_gcd"]
    assert gcd.metadata == {
        "python": "math:gcd",
        "python_call": {"positional": [], "star": "integers"},
        "domain": "python/math",
        "source": "pylib",
        "python_example": gcd.metadata["python_example"],
    }
    assert gcd.parameters["properties"]["integers"]["items"]["type"] == "integer"
    assert gcd.required == ["integers"]
    assert len(gcd.description) >= 15

    # A C builtin without a signature, read from its docstring: base is optional.
    log = small_library["math_log"]
    assert log.required == ["x"]
    assert set(log.properties) == {"x", "base"}
    assert log.metadata["python_call"]["positional"] == ["x", "base"]

    # Sizes are bounded, so no one can ask for factorial(10**9).
    assert small_library["math_factorial"].properties["n"]["maximum"] == 1000

    # Defaults become optional parameters with their default and type.
    wrap = small_library["textwrap_wrap"]
    assert wrap.required == ["text"]
    assert wrap.properties["width"] == {**wrap.properties["width"], "type": "integer"}
    assert wrap.properties["width"]["default"] == 70

    # Every kept tool: a clean name, a real description, a python reference, an example.
    for tool in small_library.values():
        assert tool.name.startswith(tool.metadata["domain"].removeprefix("python/") + "_")
        assert len(tool.description) >= 15, tool.name
        assert tool.metadata["python"].count(":") == 1
        assert tool.metadata["source"] == "pylib"


def test_numpydoc_types_and_enums() -> None:
    tools, report = build_library(["scipy.special", "numpy.linalg"], probe=False)
    by_name = {tool.name: tool for tool in tools}
    jv = by_name["scipy_special_jv"]  # a ufunc: parameter names from its docstring
    assert jv.required == ["v", "z"]
    assert jv.properties["v"]["type"] == "number"
    assert jv.metadata["python_call"]["positional"] == ["v", "z"]
    det = by_name["numpy_linalg_det"]
    assert det.properties["a"]["type"] == "array"
    assert det.properties["a"]["items"]["type"] == "array"  # (..., M, M) → a matrix
    assert schema_from_text("{'left', 'right'}, optional", elementwise=False) == {
        "enum": ["left", "right"]
    }
    assert schema_from_text("int, optional", elementwise=False) == {"type": "integer"}
    assert schema_from_text("callable", elementwise=False) is None
    assert report.candidates > report.kept > 0


def test_distribution_methods_become_tools() -> None:
    tools, report = build_library(["scipy.stats"], probe=False)
    by_name = {tool.name: tool for tool in tools}
    cdf = by_name["scipy_stats_norm_cdf"]
    assert cdf.required == ["x"]
    assert cdf.properties["scale"]["exclusiveMinimum"] == 0
    gamma = by_name["scipy_stats_gamma_pdf"]
    assert gamma.required == ["x", "a"]
    assert "binom" in " ".join(by_name) and "scipy_stats_binom_pmf" in by_name
    assert report.dropped  # some scipy.stats functions take callables: dropped, counted


@pytest.mark.parametrize(
    "ref",
    [
        "os:remove",
        "builtins:eval",
        "builtins:exec",
        "builtins:open",
        "builtins:__import__",
        "subprocess:run",
        "pickle:loads",
        "time:sleep",
        "numpy:load",
        "numpy:save",
        "numpy:fromfile",
        "numpy:lib.npyio.os.system",
        "math:__loader__",
        "math:sqrt;import os",
    ],
)
def test_safety_filter_rejects(ref: str) -> None:
    assert check_ref(ref) is not None


def test_safety_filter_allows_plain_math() -> None:
    assert check_ref("math:gcd") is None
    assert check_ref("scipy.stats:norm.cdf") is None
    assert denied_name("input") and denied_name("sleep") and denied_name("loadtxt")


def test_functions_bfcl_documents_are_excluded() -> None:
    pytest.importorskip("bfcl_eval")
    tools, report = build_library(["math"], probe=False)
    names = {tool.name for tool in tools}
    assert "math_gcd" not in names and "math_factorial" not in names  # BFCL's test functions
    assert "math_comb" in names
    assert report.bfcl_check.startswith("names")
    assert report.dropped["bfcl_overlap"] >= 2
    everything, _ = build_library(["math"], probe=False, exclude_bfcl=False)
    assert "math_gcd" in {tool.name for tool in everything}


def test_unknown_module_in_spec_is_a_clear_error() -> None:
    with pytest.raises(SpecError, match="not on the pylib allowlist"):
        parse_pylib_spec("pylib:math,os")
    assert parse_pylib_spec("pylib:default") == parse_pylib_spec("pylib:")


def test_probe_drops_what_cannot_be_called_with_reasons() -> None:
    _, report = build_library(["math", "heapq", "numpy.linalg"])
    reasons = dict(report.dropped)
    # linalg.cross of 2-vectors raises; heapq.heappush takes a list it mutates...
    assert reasons.get("probe_raised", 0) > 0
    assert reasons.get("undescribable_parameter", 0) > 0
    assert report.kept + sum(reasons.values()) == report.candidates


def test_probe_refuses_samples_its_schema_refuses() -> None:
    from tooldojo.specs.pytools import LibraryReport, _probe_all

    tool = Tool(
        name="math_sqrt_big",
        description="Square root, only of numbers from 10 up.",
        parameters={
            "type": "object",
            "properties": {"x": {"type": "number", "minimum": 10}},
            "required": ["x"],
        },
        metadata={"python": "math:sqrt", "python_call": {"positional": ["x"], "star": None}},
    )
    report = LibraryReport(modules=["math"])
    assert _probe_all([tool], report, 3.0) == []
    assert report.dropped == {"probe_invalid_sample": 1}
    tool.parameters["properties"]["x"]["minimum"] = 0
    assert _probe_all([tool], report, 3.0) == [tool]
    assert tool.metadata["python_example"] == {"arguments": {"x": 0.5}, "result": 0.5**0.5}


def test_json_conversion() -> None:
    import datetime
    import fractions

    import numpy

    assert to_json(numpy.float64(1.5)) == 1.5
    assert to_json(numpy.array([[1, 2], [3, 4]])) == [[1, 2], [3, 4]]
    assert to_json(complex(1, -2)) == {"real": 1.0, "imag": -2.0}
    assert to_json(datetime.date(2024, 6, 15)) == "2024-06-15"
    assert to_json(fractions.Fraction(3, 4)) == "3/4"
    assert to_json(math.inf) == "inf"
    with pytest.raises(CallFailed, match="not JSON"):
        to_json(object())


def test_sandbox_limits_time_memory_and_size() -> None:
    with Sandbox(timeout_s=0.5, max_chars=1000) as sandbox:
        plan = {"ref": "math:comb", "positional": ["n", "k"], "star": None}
        with pytest.raises(CallFailed) as slow:
            sandbox.call(plan, {"n": 10**7, "k": 5 * 10**6})
        assert slow.value.reason == "timeout"
        with pytest.raises(CallFailed) as big:
            sandbox.call(plan, {"n": 6000, "k": 3000})  # 1,800 digits
        assert big.value.reason == "result_too_large"
        # The worker was replaced after the timeout and still answers.
        assert sandbox.call(plan, {"n": 5, "k": 2}) == 10
        ones = {"ref": "numpy:ones", "positional": [], "star": None}
        with pytest.raises(CallFailed) as memory:  # 3.2 GB, over the 2 GiB address limit
            sandbox.call(ones, {"shape": [20000, 20000]}, timeout_s=20)
        assert memory.value.reason == "memory"


@pytest.mark.anyio
async def test_real_execution_round_trip_over_mcp() -> None:
    server = build_tool_server(
        ServeOptions(specs=["pylib:math,statistics,datetime"], executor="python")
    )
    async with Client(server.server) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert {"math_comb", "statistics_median_low", "datetime_date_fromisocalendar"} <= listed
        comb = await client.call_tool("math_comb", {"n": 4, "k": 2})
        assert not comb.is_error and result_value(comb) == 6
        # JSON says 4.0 is an integer; the call gets an int.
        assert result_value(await client.call_tool("math_comb", {"n": 4.0, "k": 2})) == 6
        median = await client.call_tool("statistics_median_low", {"data": [3, 1, 2, 4]})
        assert result_value(median) == 2
        iso = await client.call_tool(
            "datetime_date_fromisocalendar", {"year": 2024, "week": 1, "day": 1}
        )
        assert result_value(iso) == "2024-01-01"

        bad_domain = await client.call_tool("math_log", {"x": -1})
        assert bad_domain.is_error
        assert "ValueError: math domain error" in bad_domain.content[0].text
        bad_type = await client.call_tool("math_comb", {"n": "four", "k": 2})
        assert bad_type.is_error and "invalid arguments" in bad_type.content[0].text
        too_big = await client.call_tool("math_comb", {"n": 10**9, "k": 2})
        assert too_big.is_error and "maximum" in too_big.content[0].text


@pytest.mark.anyio
async def test_executor_refuses_a_reference_off_the_allowlist() -> None:
    forged = Tool(
        name="wipe",
        description="Looks harmless but names os.remove.",
        parameters={"type": "object", "properties": {"path": {"type": "string"}}},
        metadata={"python": "os:remove"},
    )
    with pytest.raises(ToolDojoError, match="not on the allowlist"):
        LibraryExecutor.check_tools([forged])
    registry = ToolRegistry()
    executor = LibraryExecutor(workers=1)
    registry.add([forged], executor)  # even if registered around the check...
    result = await ToolServer(registry).call("wipe", {"path": "/tmp/x"})
    assert result.is_error and "may not be executed" in result.content[0].text
    executor.close()


ORDER_TOOL = Tool(
    name="get_order",
    description="Fetch an order by its id.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}}},
)


@pytest.mark.anyio
async def test_mixed_pool_routes_each_tool_to_its_executor() -> None:
    from tooldojo.mcp.executors.simulated import SimulatedExecutor

    tools = [*load_tools(["pylib:math"]), ORDER_TOOL]
    model = ScriptedChatModel(['{"id": "A1", "status": "open"}'])
    registry = ToolRegistry()
    add_routed(registry, tools, SimulatedExecutor(model))
    server = ToolServer(registry)
    assert result_value(await server.call("math_comb", {"n": 4, "k": 2})) == 6
    assert model.calls == []  # executed for real, not simulated
    order = await server.call("get_order", {"order_id": "A1"})
    assert result_value(order) == {"id": "A1", "status": "open"}
    assert len(model.calls) == 1
    with pytest.raises(ToolDojoError, match="not Python library tools"):
        add_routed(ToolRegistry(), [ORDER_TOOL], None)


@pytest.mark.anyio
async def test_synth_server_executes_pylib_tools_and_simulates_the_rest() -> None:
    """The path ``tooldojo synth --specs pylib:... --executor simulated`` takes."""
    model = ScriptedChatModel(['{"id": "A1", "status": "open"}'])
    tools = [*load_tools(["pylib:statistics"]), ORDER_TOOL]
    server, served = synth_tool_server(tools, "simulated", server_model=model)
    assert len(served) == len(tools)
    async with Client(server.server) as client:
        mean = await client.call_tool("statistics_fmean", {"data": [1, 2, 3, 4]})
        assert result_value(mean) == 2.5
        assert model.calls == []
        order = await client.call_tool("get_order", {"order_id": "A1"})
        assert json.loads(order.content[0].text) == {"id": "A1", "status": "open"}


@pytest.mark.slow
def test_default_library_holds_at_least_500_executable_tools() -> None:
    tools, report = build_library()
    assert report.kept == len(tools) >= 500
    assert len({tool.metadata["domain"] for tool in tools}) >= 10


@pytest.mark.anyio
async def test_synth_run_records_true_results_of_pylib_tools(tmp_path) -> None:
    """``tooldojo synth --specs pylib:... SPEC --executor simulated`` end to end, with scripted
    user and assistant: library calls carry their real results, the rest are simulated."""
    from pathlib import Path

    from test_synth_orchestration import copying_user, oracle
    from tooldojo.jsonl import read_jsonl
    from tooldojo.model import Trajectory
    from tooldojo.specs.pytools._call import call_plan, coerce, run_call
    from tooldojo.synth.pipeline import SynthRequest, prepare_run, run_prepared

    server = ScriptedChatModel(lambda messages, tools: '{"ok": true}', name="server")
    spec = Path(__file__).parent.parent / "examples/specs/bookstore.openapi30.yaml"
    request = SynthRequest(
        specs=["pylib:statistics,colorsys", str(spec)],
        n=16,
        out=tmp_path / "out",
        executor="simulated",
        values="schema",
        categories=["single"],
        concurrency=2,
        models={
            "user": ScriptedChatModel(copying_user, name="user"),
            "assistant": ScriptedChatModel(oracle, name="oracle"),
            "server": server,
        },
        config=None,
    )
    prepared = await prepare_run(request)
    await run_prepared(prepared)
    tools = {tool.name: tool for tool in load_tools(["pylib:statistics,colorsys"])}
    executed = simulated = 0
    for trajectory in read_jsonl(tmp_path / "out" / "trajectories.jsonl", Trajectory):
        calls = {c.id: c for m in trajectory.messages for c in (m.tool_calls or [])}
        for message in (m for m in trajectory.messages if m.role == "tool"):
            call = calls[message.tool_call_id]
            tool = tools.get(call.name)
            if tool is None:
                simulated += 1
                continue
            executed += 1
            try:
                expected = run_call(
                    call_plan(tool.metadata), coerce(tool.parameters, call.arguments)
                )
            except CallFailed:
                assert message.is_error
                continue
            assert json.loads(message.content) == expected, call
    assert executed > 0 and simulated > 0
    # The server model never saw a library call (it may see one simulated call several times:
    # re-asks when its answer breaks the operation's response schema).
    prompts = [" ".join(m.content or "" for m in messages) for messages, *_ in server.calls]
    assert prompts
    assert not [name for name in tools for prompt in prompts if f"{name}(" in prompt]


@pytest.mark.anyio
async def test_execution_gate_checks_true_results_of_pylib_trajectories(tmp_path) -> None:
    """Synthesized with library tools only, replayed by the execution gate on a fresh library
    server: true results pass exactly; a tampered result fails."""
    from test_synth_orchestration import copying_user, oracle
    from tooldojo.jsonl import read_jsonl, write_jsonl_atomic
    from tooldojo.model import Trajectory
    from tooldojo.synth.pipeline import SynthRequest, prepare_run, run_prepared
    from tooldojo.verify.execution import mcp_client_factory
    from tooldojo.verify.pipeline import VerifyOptions, verify_file

    request = SynthRequest(
        specs=["pylib:colorsys,calendar"],
        n=8,
        out=tmp_path / "out",
        executor="simulated",
        values="schema",
        categories=["single"],
        concurrency=2,
        models={
            "user": ScriptedChatModel(copying_user, name="user"),
            "assistant": ScriptedChatModel(oracle, name="oracle"),
            "server": ScriptedChatModel(["unused"], name="server"),
        },
        config=None,
    )
    await run_prepared(await prepare_run(request))
    produced = tmp_path / "out" / "trajectories.jsonl"
    clean = [
        t
        for t in read_jsonl(produced, Trajectory)
        if not any(m.is_error for m in t.messages if m.role == "tool")
    ]
    assert clean
    server = build_tool_server(ServeOptions(specs=["pylib:colorsys,calendar"], executor="python"))
    options = VerifyOptions(gates=["execution"], executor=mcp_client_factory(server.server))

    write_jsonl_atomic(tmp_path / "clean.jsonl", clean)
    run = await verify_file(tmp_path / "clean.jsonl", tmp_path / "clean.out.jsonl", options)
    assert run.passed == len(clean)

    tampered = clean[0].model_copy(deep=True)
    message = next(m for m in tampered.messages if m.role == "tool")
    message.content = json.dumps({"made": "up"})
    write_jsonl_atomic(tmp_path / "tampered.jsonl", [tampered])
    run = await verify_file(tmp_path / "tampered.jsonl", tmp_path / "tampered.out.jsonl", options)
    assert run.passed == 0
