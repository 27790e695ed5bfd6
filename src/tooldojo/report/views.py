"""What one iteration's section shows, shaped for the templates (no I/O, no markup).

Every share gets its denominator here (a gate's failure reasons over the trajectories that
reached that gate), so the templates only print :class:`Rate` objects, never bare floats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tooldojo.report.collect import RunData, StageData
from tooldojo.report.examples import ProbeErrorGroup, ReasonGroup, format_label
from tooldojo.report.stats import Rate


@dataclass(frozen=True)
class ChatTurn:
    """One message as the chat view draws it."""

    role: str
    text: str
    calls: list[str]
    name: str = ""
    is_error: bool = False
    origin: str = ""
    label: str = ""


@dataclass
class GateFailures:
    gate: str
    entered: int
    reasons: list[tuple[ReasonGroup, Rate]] = field(default_factory=list)


@dataclass
class IterationView:
    name: str
    samples: list[tuple[str, str, list[ChatTurn]]]
    """(trajectory id, category, turns) of each sampled verified trajectory."""
    failures: list[GateFailures]
    probe_errors: list[ProbeErrorGroup]


def chat_turns(trajectory: dict[str, Any]) -> list[ChatTurn]:
    """A trajectory's messages with assistant calls as code and each turn's label beside it."""
    labels = trajectory.get("labels") or []
    turns, assistant = [], 0
    for message in trajectory.get("messages", []):
        role = message.get("role", "?")
        calls = [
            f"{call.get('name', '?')}({json.dumps(call.get('arguments', {}), ensure_ascii=False)})"
            for call in message.get("tool_calls") or []
        ]
        label = ""
        if role == "assistant":
            if assistant < len(labels):
                label = format_label(labels[assistant])
            assistant += 1
        turns.append(
            ChatTurn(
                role=role,
                text=message.get("content") or "",
                calls=calls,
                name=message.get("name") or "",
                is_error=bool(message.get("is_error")),
                origin=str(message.get("origin") or ""),
                label=label,
            )
        )
    return turns


def iteration_view(stage: StageData) -> IterationView:
    entered = {step.gate: step.entered for step in stage.funnel}
    failures = [
        GateFailures(
            gate=gate,
            entered=entered.get(gate, 0),
            reasons=[
                (group, Rate(group.count, entered[gate]))
                for group in groups
                if entered.get(gate, 0) >= group.count
            ],
        )
        for gate, groups in stage.failures.items()
    ]
    return IterationView(
        name=stage.name,
        samples=[
            (str(t.get("id", "")), str(t.get("category") or ""), chat_turns(t))
            for t in stage.samples
        ],
        failures=failures,
        probe_errors=stage.probe_errors,
    )


def refine_rows(report: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The refinement report flattened to ``(key, value)`` rows, two levels deep.

    Its exact shape belongs to the corpus stage; the report shows whatever it holds
    rather than depending on its field names.
    """
    if not report:
        return []
    rows = []
    for key, value in report.items():
        if isinstance(value, dict):
            for inner, item in value.items():
                shown = item if isinstance(item, str | int | float) else json.dumps(item)
                rows.append((f"{key} / {inner}", str(shown)))
        elif isinstance(value, list):
            rows.append((key, json.dumps(value)[:300]))
        else:
            rows.append((key, str(value)))
    return rows


def run_facts(run: RunData) -> dict[str, str]:
    return {
        "run": str(run.root),
        "model": run.model or "?",
        "seed": str(run.seed),
        "stages done": f"{run.stages_done}/{run.stages_total}",
    }
