"""The `tooldojo specs` commands, and every bad-input case: one line, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from server_support import free_port
from tooldojo import load_tools

EXAMPLES = Path(__file__).parent.parent / "examples" / "specs"
EXAMPLE_FILES = sorted(str(p) for p in EXAMPLES.iterdir())


def tooldojo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tooldojo.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )


def test_inspect_lists_every_example_tool():
    result = tooldojo("specs", "inspect", *EXAMPLE_FILES)
    assert result.returncode == 0, result.stderr
    for tool in load_tools(EXAMPLE_FILES):
        assert tool.name in result.stdout


def test_inspect_json_revalidates(tmp_path):
    result = tooldojo("specs", "inspect", "--json", *EXAMPLE_FILES)
    assert result.returncode == 0, result.stderr
    saved = tmp_path / "tools.json"
    saved.write_text(result.stdout)
    assert load_tools(str(saved)) == load_tools(EXAMPLE_FILES)


@pytest.mark.parametrize("fmt", ["openai", "bfcl", "mcp"])
def test_convert_writes_each_format(tmp_path, fmt):
    out = tmp_path / f"tools.{fmt}.json"
    result = tooldojo("specs", "convert", *EXAMPLE_FILES, "--to", fmt, "-o", str(out))
    assert result.returncode == 0, result.stderr
    tools = load_tools(str(out))
    assert len(tools) == len(load_tools(EXAMPLE_FILES))


OPENAPI_HEAD = '{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, '


def op_with_schema(schema: str) -> str:
    return (
        OPENAPI_HEAD + '"paths": {"/a": {"post": {"operationId": "a", "requestBody": '
        '{"content": {"application/json": {"schema": ' + schema + "}}}}}}, "
        '"components": {"schemas": {"A": {"$ref": "#/components/schemas/B"}, '
        '"B": {"$ref": "#/components/schemas/A"}, "Good": {"type": "string"}}}}'
    )


BAD_INPUTS = {
    "malformed_json": ("bad.json", '{"openapi": "3.1.0",\n  "paths": {,}}', "line 2:"),
    "malformed_yaml": ("bad.yaml", "openapi: 3.0.0\npaths:\n  /a: [unclosed\n", "line 4:"),
    "unresolvable_ref": (
        "ref.json",
        op_with_schema('{"$ref": "#/components/schemas/Nope"}'),
        "unresolvable $ref '#/components/schemas/Nope'",
    ),
    "cyclic_ref": (
        "cycle.json",
        op_with_schema('{"$ref": "#/components/schemas/A"}'),
        "cyclic $ref",
    ),
    "bad_meta_schema": (
        "meta.json",
        op_with_schema('{"type": "strng"}'),
        "at /paths/~1a/post/requestBody/content/application~1json/schema/type",
    ),
    "duplicate_after_sanitizing": (
        "dup.json",
        json.dumps(
            [
                {"name": "math.add", "parameters": {"type": "object"}},
                {"name": "math_add", "parameters": {"type": "object"}},
            ]
        ),
        "duplicate tool name 'math_add'",
    ),
    "empty_file": ("empty.json", "  \n", "empty file"),
    "not_object_parameters": (
        "arr.json",
        json.dumps([{"name": "f", "parameters": {"type": "array"}}]),
        "at /0/parameters/type",
    ),
    "unknown_shape": ("what.json", json.dumps({"hello": "world"}), "unrecognized spec"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_exit_2_and_no_output(tmp_path, case):
    name, content, expected = BAD_INPUTS[case]
    spec = tmp_path / name
    spec.write_text(content)
    out = tmp_path / "out.json"
    result = tooldojo("specs", "convert", str(spec), "--to", "openai", "-o", str(out))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(spec) in lines[0] and expected in lines[0], lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [spec]


def test_file_over_size_limit(tmp_path):
    spec = tmp_path / "big.json"
    spec.write_text(json.dumps([{"name": f"f{i}", "description": "x" * 100} for i in range(20)]))
    result = tooldojo("specs", "inspect", str(spec), "--max-mb", "0.001")
    assert result.returncode == 2 and "over the limit" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_and_dead_url(tmp_path):
    result = tooldojo("specs", "inspect", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "no such file" in result.stderr
    url = f"http://127.0.0.1:{free_port()}/mcp"
    result = tooldojo("specs", "inspect", url)
    assert result.returncode == 2, result.stderr
    assert url in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_command_that_fails_exits_non_zero(tmp_path):
    """``typer.Exit(1)`` must reach the shell (click returns it without standalone mode)."""
    port = free_port()
    config = tmp_path / "tooldojo.yaml"
    config.write_text(
        json.dumps(
            {
                "backends": {
                    "down": {
                        "kind": "openai",
                        "model": "m",
                        "base_urls": [f"http://127.0.0.1:{port}/v1"],
                        "max_retries": 0,
                        "timeout_s": 5,
                    }
                },
                "roles": {"assistant": "down"},
            }
        )
    )
    spec = EXAMPLES / "weather_finance.openai.json"
    command = [sys.executable, "-m", "tooldojo.cli", "call", "--specs", str(spec)]
    result = subprocess.run(
        [*command, "--config", str(config), "What is the weather in Paris?"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "error:" in result.stderr and "ConnectionRefused" in result.stderr
