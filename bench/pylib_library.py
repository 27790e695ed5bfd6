"""How many executable Python library tools ``pylib:default`` yields, and what they cost.

1. Build: time to introspect and probe the default module set, against its floor, the time
   to import those modules alone (measured in a fresh interpreter, as the build's own import
   cost); the kept count per module and the drops by reason.
2. Calls: every kept tool called once over the real MCP SDK in-memory client with its probe
   arguments, through the sandboxed library executor, against calling the same functions
   directly in this process (the floor); per-call medians and the ratio.

Acceptance of issue 13 item 2: at least 500 kept tools.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python bench/pylib_library.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from tooldojo.mcp.executors.python import LibraryExecutor
from tooldojo.mcp.registry import ToolRegistry
from tooldojo.mcp.server import ToolServer
from tooldojo.model import Tool
from tooldojo.specs.pytools import DEFAULT_MODULES, build_library
from tooldojo.specs.pytools._call import call_plan, coerce, run_call


def import_floor(modules: tuple[str, ...]) -> float:
    """Seconds a fresh interpreter takes to import ``modules`` (and start)."""
    code = "import importlib,time;t=time.perf_counter();" + "".join(
        f"importlib.import_module({m!r});" for m in modules
    )
    code += "print(time.perf_counter()-t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


async def time_mcp_calls(tools: list[Tool]) -> tuple[list[float], int]:
    executor = LibraryExecutor(workers=1)
    registry = ToolRegistry()
    registry.add(tools, executor)
    server = ToolServer(registry)
    times: list[float] = []
    errors = 0
    try:
        async with Client(server.server) as client:
            await client.call_tool(tools[0].name, tools[0].metadata["python_example"]["arguments"])
            for tool in tools:
                arguments = tool.metadata["python_example"]["arguments"]
                started = time.perf_counter()
                result = await client.call_tool(tool.name, arguments)
                times.append(time.perf_counter() - started)
                errors += bool(result.is_error)
    finally:
        executor.close()
    return times, errors


def time_direct_calls(tools: list[Tool]) -> list[float]:
    warnings.simplefilter("ignore")  # as in the worker: probe values trip numeric warnings
    times = []
    for tool in tools:
        arguments = coerce(tool.parameters, tool.metadata["python_example"]["arguments"])
        started = time.perf_counter()
        run_call(call_plan(tool.metadata), arguments)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the build report here")
    parser.add_argument(
        "--examples", type=Path, help="write a Markdown table of 20 tools drawn at random here"
    )
    parser.add_argument("--seed", type=int, default=13, help="seed of the drawing")
    args = parser.parse_args()

    floor = import_floor(DEFAULT_MODULES)
    tools, report = build_library(DEFAULT_MODULES)
    print(
        f"build: {report.kept} tools kept of {report.candidates} candidates in "
        f"{report.seconds:.2f} s (importing the modules alone: {floor:.2f} s, "
        f"ratio {report.seconds / floor:.1f}x)"
    )
    print("kept by module: " + ", ".join(f"{m} {n}" for m, n in report.kept_by_module.items()))
    print("dropped by reason: " + ", ".join(f"{r} {n}" for r, n in report.dropped.most_common()))
    print(f"BFCL check: {report.bfcl_check}")
    print(f"acceptance (>= 500 executable tools): {'met' if report.kept >= 500 else 'NOT met'}")

    callable_tools = [tool for tool in tools if "python_example" in tool.metadata]
    mcp_times, errors = anyio.run(time_mcp_calls, callable_tools)
    direct = time_direct_calls(callable_tools)
    mcp_median, direct_median = statistics.median(mcp_times), statistics.median(direct)
    print(
        f"calls: {len(mcp_times)} tools called over MCP in-memory, {errors} error results; "
        f"median {mcp_median * 1e3:.2f} ms per call vs {direct_median * 1e3:.3f} ms direct "
        f"(ratio {mcp_median / direct_median:.0f}x; p95 {_p95(mcp_times) * 1e3:.2f} ms)"
    )
    if args.json:
        data: dict[str, Any] = report.as_dict()
        data["import_floor_s"] = round(floor, 2)
        data["mcp_call_median_ms"] = round(mcp_median * 1e3, 3)
        data["direct_call_median_ms"] = round(direct_median * 1e3, 4)
        data["mcp_call_errors"] = errors
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if args.examples:
        args.examples.write_text(examples_markdown(callable_tools, args.seed), encoding="utf-8")


def examples_markdown(tools: list[Tool], seed: int, count: int = 20) -> str:
    """Tools drawn at random (seeded), each with its probe call and the real result."""
    import random

    rows = ["| tool | description | parameters | probe call → result |", "|---|---|---|---|"]
    for tool in sorted(random.Random(seed).sample(tools, count), key=lambda t: t.name):
        params = ", ".join(
            f"{name}{'' if name in tool.required else '?'}: {_type(schema)}"
            for name, schema in tool.properties.items()
        )
        example = tool.metadata["python_example"]
        call = json.dumps(example["arguments"], ensure_ascii=False)
        result = json.dumps(example["result"], ensure_ascii=False)
        result = result if len(result) <= 80 else result[:77] + "..."
        rows.append(f"| `{tool.name}` | {tool.description} | {params} | `{call}` → `{result}` |")
    return "\n".join(rows).replace("|", "|") + "\n"


def _type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "enum"
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}))}"
    return str(schema.get("type", "any"))


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


if __name__ == "__main__":
    main()
