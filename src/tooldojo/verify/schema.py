"""The schema gate: every called tool exists and its arguments validate against its schema.

The MCP server does not validate arguments, so we do, with ``jsonschema`` validators compiled
once per tool schema and cached by tool name plus schema content hash.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from tooldojo.model import Tool, Verdict, problem_details
from tooldojo.verify.turns import Turn


@lru_cache(maxsize=4096)
def _compiled(name: str, digest: str, schema_json: str) -> Validator:
    schema = json.loads(schema_json)
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def validator_of(tool: Tool) -> Validator:
    """The compiled validator of ``tool.parameters`` (raises ``SchemaError`` if invalid)."""
    schema_json = json.dumps(tool.parameters, sort_keys=True, default=str)
    digest = hashlib.sha1(schema_json.encode()).hexdigest()
    return _compiled(tool.name, digest, schema_json)


def argument_error(tool: Tool, arguments: dict[str, Any]) -> tuple[str, str] | None:
    """``(code, message)`` of the most relevant validation error of ``arguments``, or ``None``
    when they are valid. The code is the JSON-Schema keyword that failed (``required``,
    ``type``, ``enum``...) or ``invalid_schema``: a fixed vocabulary, so failures can be
    counted by reason (the message starts with the tool's name, which is no reason)."""
    try:
        validator = validator_of(tool)
    except SchemaError as error:
        return "invalid_schema", f"tool {tool.name} has an invalid schema: {error.message}"
    error = best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return str(error.validator), f"{tool.name}{'/' + where if where else ''}: {error.message}"


def schema_gate(turns: list[Turn], tools: list[Tool]) -> Verdict:
    """Pass when every call names an offered tool with schema-valid arguments. A failure's
    ``details`` hold the error lines and one reason code per line (see :func:`argument_error`;
    ``unknown_tool`` for a call to a tool not offered)."""
    by_name = {tool.name: tool for tool in tools}
    found: list[tuple[str, str]] = []  # (code, line)
    checked = 0
    for turn in turns:
        for call in turn.calls:
            checked += 1
            tool = by_name.get(call.name)
            if tool is None:
                found.append(("unknown_tool", f"turn {turn.index}: unknown tool {call.name!r}"))
                continue
            problem = argument_error(tool, call.arguments)
            if problem is not None:
                found.append((problem[0], f"turn {turn.index}: {problem[1]}"))
    return Verdict(
        gate="schema",
        passed=not found,
        score=1.0 - len(found) / checked if checked else 1.0,
        reason="; ".join(line for _, line in found) if found else f"{checked} call(s) valid",
        details=problem_details(found),
    )
