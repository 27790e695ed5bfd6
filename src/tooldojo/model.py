"""The one data model every stage of the loop reads and writes.

Stages talk through JSONL files of these records in a run directory, so the
models are deliberately plain: OpenAI-style chat messages, JSON Schema tools and
BFCL possible-answer labels. Everything here round-trips through
``model_dump(mode="json")`` / ``model_validate`` without loss.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""OpenAI's rule for function names; every normalized tool name follows it."""

Category = Literal[
    "single",
    "parallel",
    "multiple",
    "parallel_multiple",
    "multi_step",
    "multi_turn",
    "clarify",
    "irrelevance",
]
CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]

GateName = Literal[
    "format", "schema", "label", "execution", "request", "turns", "agreement", "judge"
]
"""In running order: cheap checks of the trajectory itself first, replays and models last."""
GATES: tuple[str, ...] = GateName.__args__  # type: ignore[attr-defined]


def utc_now() -> str:
    """ISO-8601 UTC timestamp used in every record (sortable, timezone explicit)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Record(BaseModel):
    """Base for persisted records: unknown keys are kept, so newer files load in older code."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Tool(_Record):
    """One callable tool, normalized from any spec format.

    ``parameters`` is always a JSON Schema of ``"type": "object"``; recursive
    schemas keep their cycles in ``$defs`` rather than being expanded.
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    output_schema: dict[str, Any] | None = None
    source: str = ""
    """Where the tool came from, e.g. ``openapi:petstore.yaml`` or ``mcp:stdio:python srv.py``."""
    original_name: str | None = None
    """The name in the source spec before sanitizing (e.g. ``math.factorial``)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Source-specific facts (OpenAPI method/path/parameter locations, MCP annotations...)."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not TOOL_NAME_PATTERN.match(value):
            raise ValueError(f"tool name {value!r} does not match {TOOL_NAME_PATTERN.pattern}")
        return value

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError('tool parameters must be a JSON Schema with "type": "object"')
        return value

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.parameters.get("properties", {}))

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class ToolCall(_Record):
    """One call the assistant made (arguments already decoded from JSON)."""

    id: str = ""
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }

    @classmethod
    def from_openai(cls, data: dict[str, Any]) -> ToolCall:
        """Parse an OpenAI ``tool_calls`` entry; ``arguments`` may be a JSON string or a dict."""
        function = data.get("function", data)
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            arguments = json.loads(arguments) if arguments.strip() else {}
        if not isinstance(arguments, dict):
            raise ValueError(f"tool call arguments must be a JSON object, got {arguments!r}")
        return cls(id=data.get("id", ""), name=function["name"], arguments=arguments)


Role = Literal["system", "user", "assistant", "tool"]
Origin = Literal["model", "forced", "template", "executed"]
ORIGINS: tuple[str, ...] = Origin.__args__  # type: ignore[attr-defined]


class Message(_Record):
    """An OpenAI chat message. ``tool`` messages answer a call by ``tool_call_id``."""

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    """For ``tool`` messages: the tool that produced the result."""
    is_error: bool | None = None
    """For ``tool`` messages: the executor reported a failure (MCP ``isError``)."""
    origin: Origin | None = None
    """Who wrote this turn during synthesis: ``model`` (the role's model, freely), ``forced``
    (copied from the planned label), ``template`` (filled from a template) or ``executed``
    (a tool result). ``None`` for messages that did not come from a synthesis episode."""

    def to_openai(self) -> dict[str, Any]:
        """The message as the OpenAI chat API expects it (no tooldojo-only keys)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.role == "tool":
            out["tool_call_id"] = self.tool_call_id
            if self.name:
                out["name"] = self.name
        return out


RESULT_REF_KEY = "$result"
"""A label value ``{"$result": {"step": i, "call": j, "pointer": "/order/id"}}`` stands for a
field of an earlier tool result (multi-step); it is resolved once that result exists."""


class LabelCall(_Record):
    """One expected call in BFCL possible-answer form.

    Each argument maps to the list of acceptable values; ``""`` in the list
    means the argument may be omitted.
    """

    name: str
    arguments: dict[str, list[Any]] = Field(default_factory=dict)

    def to_bfcl(self) -> dict[str, dict[str, list[Any]]]:
        """BFCL's ``{"func": {"arg": [values]}}`` shape, as its checkers expect."""
        return {self.name: self.arguments}

    @classmethod
    def from_bfcl(cls, data: dict[str, dict[str, list[Any]]]) -> LabelCall:
        ((name, arguments),) = data.items()
        return cls(name=name, arguments=arguments)


LabelKind = Literal["call", "text", "clarify", "refuse"]


class Label(_Record):
    """The ground truth for one assistant step, known before the assistant speaks.

    ``call``: ``calls`` lists the expected calls (order-free when several, i.e. parallel);
    ``text``: a final text answer; ``clarify``: a question asking for ``missing`` arguments;
    ``refuse``: no tool fits, so no call may be made (irrelevance).
    """

    kind: LabelKind = "call"
    calls: list[LabelCall] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    corrected_from: Label | None = None
    """Set when a judge replaced the original label; keeps what was there before."""


class ScenarioTurn(_Record):
    """One user turn of a scenario and the assistant steps it should lead to."""

    intent: str = ""
    """What the user wants in this turn, in the planner's words (the user simulator phrases it)."""
    withheld: dict[str, Any] = Field(default_factory=dict)
    """clarify: argument values the user leaves out at first and gives when asked."""
    steps: list[Label] = Field(default_factory=list)


class Scenario(_Record):
    """A planned episode: category, tools on offer, persona and goal-conditioned labels."""

    id: str
    category: Category
    tools: list[str]
    """Names of the tools offered to the assistant (targets and distractors)."""
    turns: list[ScenarioTurn] = Field(default_factory=list)
    persona: str = ""
    style: str = ""
    seed: int = 0
    parent_id: str | None = None
    """For expanded scenarios: the failing sample this one was derived from."""
    metadata: dict[str, Any] = Field(default_factory=dict)


class Verdict(_Record):
    """The outcome of one verification gate for one trajectory."""

    gate: GateName
    passed: bool
    score: float = 0.0
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    corrected_labels: list[Label] | None = None
    """A judge may propose corrected labels; they are recorded, never silently applied."""

    def failure_codes(self) -> list[str]:
        """Why the gate failed, as codes of a fixed vocabulary, one per error line: the gate's
        ``details["reasons"]``; for files written before the gates gave them, the label gate's
        BFCL error types read from its lines, else the gate's name. Free text (a tool's name, a
        value) is never a code, so failures can be counted by reason."""
        reasons = [str(code) for code in self.details.get("reasons") or []]
        errors = [str(error) for error in self.details.get("errors", [])]
        if not reasons and self.gate == "label":
            reasons = [_label_error_code(error) for error in errors]
        return reasons or [self.gate]


def problem_details(found: list[tuple[str, str]]) -> dict[str, Any]:
    """A failed verdict's ``details`` from its ``(code, line)`` problems: the codes under
    ``reasons`` (what :meth:`Verdict.failure_codes` reads) and the lines under ``errors``, in
    the same order; ``{}`` when nothing failed. Every gate writes its findings through this."""
    if not found:
        return {}
    return {"reasons": [code for code, _ in found], "errors": [line for _, line in found]}


_LABEL_ERROR_CODE = re.compile(r"^turn \d+: ([a-z_]+)(:[a-z_/]+)?: ")
"""The code in the label gate's older error lines ("turn 1: value_error:list/tuple: ...")."""


def _label_error_code(error: str) -> str:
    match = _LABEL_ERROR_CODE.match(error)
    return match.group(1) + (match.group(2) or "") if match else "label"


Split = Literal["train", "heldout"]


class Trajectory(_Record):
    """One role-played episode: OpenAI messages, the tools offered, and per-step labels.

    ``labels[k]`` is the label of the k-th assistant message. ``verdicts`` and
    ``passed`` are filled by verification.
    """

    id: str
    scenario_id: str | None = None
    category: Category | None = None
    tools: list[Tool] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    labels: list[Label] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    passed: bool | None = None
    split: Split = "train"
    iteration: int = 0
    created_at: str = Field(default_factory=utc_now)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def assistant_turns(self) -> list[Message]:
        return [m for m in self.messages if m.role == "assistant"]

    def openai_messages(self) -> list[dict[str, Any]]:
        return [m.to_openai() for m in self.messages]

    def openai_tools(self) -> list[dict[str, Any]]:
        return [t.to_openai() for t in self.tools]


StageStatus = Literal["pending", "running", "done", "failed"]


class StageRecord(_Record):
    """What a stage of a run did: when, with which inputs, producing which outputs."""

    status: StageStatus = "pending"
    started_at: str | None = None
    finished_at: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    """File (relative to the run directory) → content hash when the stage started."""
    outputs: dict[str, str] = Field(default_factory=dict)
    """File → content hash when the stage finished; a resume trusts these."""
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = None


class RunManifest(_Record):
    """``manifest.json`` of a run directory: configuration, versions, seeds and stage status."""

    name: str
    created_at: str = Field(default_factory=utc_now)
    config: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    seed: int = 0
    stages: dict[str, StageRecord] = Field(default_factory=dict)
    """Keyed by ``"<iteration dir>/<stage>"``, e.g. ``"iter-000/synth"``."""

    def stage(self, key: str) -> StageRecord:
        """The record for ``key``, created pending if absent."""
        return self.stages.setdefault(key, StageRecord())
