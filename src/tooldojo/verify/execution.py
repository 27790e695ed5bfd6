"""The execution gate: replay a trajectory's calls on an executor and compare the results.

The gate needs only an object with ``async call_tool(name, arguments) -> CallToolResult``
(a connected ``mcp.Client`` is one), obtained per trajectory from an async-context factory so
each replay gets fresh episode state. Every call must run without ``isError``, every call
must have a recorded tool message and every tool message must answer a call, and the
recorded result must be consistent with the replayed one:

``exact``  the same JSON value (text compared as text when it is not JSON);
``shape``  the same JSON type, and for objects the same keys (for executors whose values
           vary from run to run, e.g. an LLM-simulated API);
``none``   only that the calls run.

Without an executor the gate still reads the recorded results: a call the plan expected to
succeed whose result is a failure (``is_error``, a timeout, a simulator that gave up) fails the
trajectory, as does a planned step that could not run (``metadata["failed_steps"]``, e.g. a
result without the field a later step refers to). Failures injected on purpose (the tool
message carries ``injected: true``) are the one labelled exception.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, Protocol

import mcp.types as types

from tooldojo.mcp.executors.simulated import runaway_piece
from tooldojo.model import Message, Trajectory, Verdict
from tooldojo.names import reports_error, status_flag
from tooldojo.verify.grounding import scalar_leaves
from tooldojo.verify.turns import Turn

Consistency = Literal["exact", "shape", "none"]


class ToolCaller(Protocol):
    """What the gate needs from an executor; ``mcp.Client`` satisfies it."""

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult: ...


CallerFactory = Callable[[Trajectory], AbstractAsyncContextManager[ToolCaller]]
"""Opens a caller for one trajectory (a new MCP session, a fresh episode...)."""


def mcp_client_factory(target: Any) -> CallerFactory:
    """A factory connecting ``mcp.Client`` to ``target`` for each trajectory.

    ``target`` is anything ``mcp.Client`` accepts (a server object, a streamable-HTTP URL,
    ``StdioServerParameters``) or the string ``"stdio:COMMAND ARGS"``.
    """
    from mcp import Client, StdioServerParameters

    if isinstance(target, str) and target.startswith("stdio:"):
        command, *args = shlex.split(target[len("stdio:") :])
        target = StdioServerParameters(command=command, args=args)

    @asynccontextmanager
    async def open_client(trajectory: Trajectory):  # type: ignore[no-untyped-def]
        async with Client(target) as client:
            yield client

    return open_client


def result_values(result: types.CallToolResult) -> list[Any]:
    """The values a result carries: its text (parsed if JSON), and structured content if any.

    Recorders differ in which one they keep (a server may wrap ``3`` as ``{"result": 3}``), so
    a recorded result is consistent when it agrees with either.
    """
    text = "".join(b.text for b in result.content if isinstance(b, types.TextContent))
    values = [_json_or_text(text)]
    if result.structured_content is not None:
        values.append(result.structured_content)
    return values


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def results_consistent(recorded: Any, replayed: Any, mode: Consistency) -> bool:
    """Whether a recorded result agrees with a replayed one under ``mode``."""
    if mode == "none":
        return True
    if mode == "exact":
        return recorded == replayed
    if type(recorded) is not type(replayed) and not (
        isinstance(recorded, int | float) and isinstance(replayed, int | float)
    ):
        return False
    if isinstance(recorded, dict):
        return set(recorded) == set(replayed)
    return True


FAILURE_TEXT = re.compile(
    r"timed out after|gave no valid result|cannot answer:|breaks its output schema"
    r"|^'[^']+' failed: |^unknown tool |^invalid arguments for "
)
"""What executors write when a call failed, for results recorded without ``is_error``."""


SUCCESS_SAYS_FAILURE = re.compile(
    r"(?i)^\s*(error|failed|failure|invalid|exception)\b|\berror:|\bnot (found|allowed)\b"
)


def _reads_as_failure(value: Any, simulated: bool = False) -> str | None:
    """What in a *successful* result's value (its JSON, or its text) reports a failure (a
    simulator that could not make the call succeed but returned it as success), or ``None``.
    ``simulated``: the server model wrote the result, so an error object in it is a failure it
    made up."""
    if simulated and isinstance(value, dict):
        # An error object in a model-written success (Google's long-running Operation:
        # {"done": true, "error": {...}}): the simulated server filled the schema's optional
        # "error", and the result passed as a success; 1 of 30 samples of the scale run held
        # one. A real tool's own {"error": ...} answer is its result, read by the turn gates.
        # The same for any top-level error-like field ("remoteException", "ErrorMessages",
        # "WebException") with content, or a flag saying so ({"IsFaulted": true}): 3 of 353
        # passed trajectories of the issue-15 scale run (s21-01569, -02559, -03068) held one.
        for key, field_value in value.items():
            if (said := _error_field(key, field_value)) is not None:
                return said
    return next(
        (
            leaf[:80]
            for leaf in scalar_leaves(value)
            if isinstance(leaf, str) and SUCCESS_SAYS_FAILURE.search(leaf)
        ),
        None,
    )


def _has_content(value: Any) -> bool:
    """Some non-empty scalar at any depth ({"Errors": [], "Code": ""} has none)."""
    if isinstance(value, dict):
        return any(_has_content(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_content(v) for v in value)
    return value not in (None, "", False)


def _error_field(key: str, value: Any) -> str | None:
    """``key: value`` (short) when this top-level field of a result reports a failure."""
    if isinstance(value, bool):
        flag = status_flag(key)
        failed = (value and flag == "failed") or (not value and flag == "success")
    else:
        failed = reports_error(key) and _has_content(value)
    return f"{key}: {json.dumps(value, ensure_ascii=False)}"[:80] if failed else None


def _junk_value(value: Any) -> str | None:
    """A string in a simulated result's JSON value that says nothing, the server model's
    filler where a value belongs (which a forced call then copies):

    * two or more characters and no letter or digit (``");"``, ``");;;;;;;;;"``, ``", "``);
      42 of 438 passed trajectories of the scale run held one. A single character (``","``
      for a delimiter) may be a value.
    * a runaway: a piece of three or more characters, one a letter, three times running
      (``CJHU7oI2_CJHU7oI2_CJHU7oI2_C``, ``john.john.john.john``, ``/v2/v2/v2/v2``;
      :func:`~tooldojo.mcp.executors.simulated.runaway_piece`). The simulator used to fail
      such text only where it reached the string bound; below it, 21 of 651 trajectories of
      the scale3 run held one, 8 of them passed.
    """
    for leaf in scalar_leaves(value):
        if not isinstance(leaf, str):
            continue
        if len(leaf.strip()) >= 2 and not _ALNUM.search(leaf):
            return leaf[:40]
        if piece := runaway_piece(leaf):
            return piece[:40]
    return None


_ALNUM = re.compile(r"[^\W_]")
"""A letter or digit (in any script)."""


def recorded_failures(trajectory: Trajectory) -> list[tuple[str, str]]:
    """(code, message) for each failed result or step that nobody planned."""
    found: list[tuple[str, str]] = []
    for position, message in enumerate(trajectory.messages):
        if message.role != "tool":
            continue
        text = message.content or ""
        value = _json_or_text(text)  # parsed once for both checks below
        failed = bool(message.is_error) or bool(FAILURE_TEXT.search(text))
        if failed and getattr(message, "injected", False):
            continue
        if failed:
            code = "timeout" if "timed out" in text else "failed_result"
            found.append((code, f"message {position} ({message.name}): {text[:160]}"))
        elif (dressed := _reads_as_failure(value, message.origin == "model")) is not None:
            found.append(
                ("failed_result", f"message {position} ({message.name}): success says {dressed!r}")
            )
        elif (
            message.origin == "model"
            and value is not text  # parsed as JSON: plain text is not checked for junk
            and (junk := _junk_value(value)) is not None
        ):
            found.append(
                (
                    "junk_result",
                    f"message {position} ({message.name}): a value {junk!r} says nothing",
                )
            )
    for step in trajectory.metadata.get("failed_steps") or []:
        found.append(("failed_step", f"step {step.get('step')}: {step.get('reason')}"))
    return found


def _answers(turn: Turn, messages: list[Message]) -> list[Message]:
    """The tool messages right after an assistant message (until the next non-tool one)."""
    out = []
    for message in messages[turn.message_index + 1 :]:
        if message.role != "tool":
            break
        out.append(message)
    return out


async def execution_gate(
    turns: list[Turn],
    trajectory: Trajectory,
    factory: CallerFactory | None,
    consistency: Consistency = "exact",
) -> Verdict:
    """Check the recorded results; with ``factory``, also replay every call in order on a
    fresh caller and compare."""
    failures = recorded_failures(trajectory)
    if failures or factory is None:
        calls = sum(len(turn.calls) for turn in turns)
        return Verdict(
            gate="execution",
            passed=not failures,
            score=max(0.0, 1.0 - len(failures) / max(calls, 1)),
            reason="; ".join(m for _, m in failures)
            if failures
            else f"{calls} recorded result(s) succeeded (not replayed)",
            details={"reasons": [c for c, _ in failures], "errors": [m for _, m in failures]}
            if failures
            else {},
        )
    errors: list[str] = []
    replayed = 0
    async with factory(trajectory) as caller:
        for turn in turns:
            answers = _answers(turn, trajectory.messages)
            by_id = {m.tool_call_id: m for m in answers if m.tool_call_id}
            for position, call in enumerate(turn.calls):
                recorded = by_id.get(call.id) if call.id else None
                if recorded is None and not call.id and position < len(answers):
                    recorded = answers[position]
                where = f"turn {turn.index} call {position} ({call.name})"
                if recorded is None:
                    errors.append(f"{where}: no recorded result")
                    continue
                if recorded.is_error:
                    errors.append(f"{where}: recorded result is an error")
                    continue
                result = await caller.call_tool(call.name, call.arguments)
                replayed += 1
                values = result_values(result)
                if result.is_error:
                    errors.append(f"{where}: replay failed: {str(values[0])[:200]}")
                    continue
                recorded_value = _json_or_text(recorded.content or "")
                if not any(results_consistent(recorded_value, v, consistency) for v in values):
                    errors.append(f"{where}: recorded result differs from replay ({consistency})")
            if len(answers) > len(turn.calls):
                errors.append(
                    f"turn {turn.index}: {len(answers) - len(turn.calls)} tool message(s) "
                    "answer no call"
                )
    return Verdict(
        gate="execution",
        passed=not errors,
        score=max(0.0, 1.0 - len(errors) / max(replayed, 1)),
        reason="; ".join(errors) if errors else f"{replayed} call(s) replayed consistently",
        details={"errors": errors, "consistency": consistency} if errors else {},
    )
