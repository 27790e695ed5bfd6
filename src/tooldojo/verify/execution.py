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

from tooldojo.mcp.executors.result_checks import junk_value, reads_as_failure
from tooldojo.model import Message, Trajectory, Verdict, problem_details
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
        elif (dressed := reads_as_failure(value, message.origin == "model")) is not None:
            found.append(
                ("failed_result", f"message {position} ({message.name}): success says {dressed!r}")
            )
        elif (
            message.origin == "model"
            and value is not text  # parsed as JSON: plain text is not checked for junk
            and (junk := junk_value(value)) is not None
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
            details=problem_details(failures),
        )
    errors: list[tuple[str, str]] = []  # (code, line)
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
                    errors.append(("no_result", f"{where}: no recorded result"))
                    continue
                if recorded.is_error:
                    errors.append(("failed_result", f"{where}: recorded result is an error"))
                    continue
                result = await caller.call_tool(call.name, call.arguments)
                replayed += 1
                values = result_values(result)
                if result.is_error:
                    errors.append(
                        ("replay_failed", f"{where}: replay failed: {str(values[0])[:200]}")
                    )
                    continue
                recorded_value = _json_or_text(recorded.content or "")
                if not any(results_consistent(recorded_value, v, consistency) for v in values):
                    errors.append(
                        (
                            "replay_differs",
                            f"{where}: recorded result differs from replay ({consistency})",
                        )
                    )
            if len(answers) > len(turn.calls):
                extra = len(answers) - len(turn.calls)
                errors.append(
                    (
                        "unanswered_result",
                        f"turn {turn.index}: {extra} tool message(s) answer no call",
                    )
                )
    return Verdict(
        gate="execution",
        passed=not errors,
        score=max(0.0, 1.0 - len(errors) / max(replayed, 1)),
        reason="; ".join(m for _, m in errors)
        if errors
        else f"{replayed} call(s) replayed consistently",
        details=problem_details(errors) | {"consistency": consistency} if errors else {},
    )
