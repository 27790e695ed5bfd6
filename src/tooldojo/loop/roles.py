"""Multi-role SFT: the self-played user and server learn from their own turns that passed.

When the checkpoint plays the user simulator or the MCP server, what it was asked and what it
answered are not in the trajectory (the trajectory holds the conversation, not the role's own
prompt). :class:`RecordingModel` wraps the self-play model for such a role and appends every
answer, with the exact prompt it was given, to ``role_calls.jsonl``. After verification,
:func:`role_samples` keeps only answers that reached a trajectory which passed every gate —
the user message the user simulator's own checks accepted, the tool result the server's
schema accepted — and turns each into a training sample: the role's prompt, then its answer
as the one assistant turn to learn (``metadata["train_last_turn_only"]``: earlier assistant
messages in a role's prompt, such as the server's few-shot example, are context, not targets).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tooldojo.jsonl import append_jsonl, read_jsonl
from tooldojo.llm.base import ChatModel, Completion, Constraint, SamplingParams
from tooldojo.model import Label, Message, Tool, Trajectory
from tooldojo.verify.accounting import message_origin

ROLE_CALLS = "role_calls.jsonl"
TRAINED_ROLES = ("user", "server")
"""Roles whose own turns become training samples (the assistant's are the trajectory)."""


class RoleCall(BaseModel):
    """One answer of a self-played role, with the prompt it answered."""

    id: str
    role: str
    scenario_id: str
    messages: list[Message]
    tools: list[Tool] = Field(default_factory=list)
    text: str


class RecordingModel:
    """``inner`` playing ``role``; each successful answer given inside a synthesis episode is
    appended to ``path`` (one complete line at a time)."""

    def __init__(self, inner: ChatModel, role: str, path: Path):
        self.inner = inner
        self.role = role
        self.path = path
        self.name = inner.name

    async def complete(
        self,
        messages: list[Message],
        tools: list[Tool] | None = None,
        *,
        sampling: SamplingParams | None = None,
        constraint: Constraint | None = None,
    ) -> Completion:
        from tooldojo.synth import CURRENT_EPISODE

        completion = await self.inner.complete(
            messages, tools, sampling=sampling, constraint=constraint
        )
        state = CURRENT_EPISODE.get()
        if state is not None and completion.ok and completion.text.strip():
            record = RoleCall(
                id=uuid.uuid4().hex,
                role=self.role,
                scenario_id=state.scenario.id,
                messages=list(messages),
                tools=list(tools or []),
                text=completion.text,
            )
            append_jsonl(self.path, [record])
        return completion

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None


def _accepted(call: RoleCall, trajectory: Trajectory) -> str | None:
    """The text of ``trajectory`` that ``call``'s answer became, if it is there."""
    for message in trajectory.messages:
        content = (message.content or "").strip()
        if not content:
            continue
        own = message_origin(message) == "model"
        if call.role == message.role == "user" and own and content in call.text:
            return content  # the simulator may trim its model's text; that form passed
        if call.role == "server" and message.role == "tool" and not message.is_error:
            parsed = _json(content)
            if parsed is not None and parsed == _json(call.text):
                return content
    return None


def role_samples(calls_file: Path, passed: Iterable[Trajectory]) -> list[Trajectory]:
    """Training samples from the role answers that reached a passed trajectory (one per
    distinct answer), ready for the training pool."""
    if not calls_file.is_file():
        return []
    by_scenario: dict[str, list[Trajectory]] = {}
    for trajectory in passed:
        by_scenario.setdefault(trajectory.scenario_id or trajectory.id, []).append(trajectory)
    samples: list[Trajectory] = []
    seen: set[tuple[str, str, str]] = set()
    for call in read_jsonl(calls_file, RoleCall):
        if call.role not in TRAINED_ROLES:
            continue
        for trajectory in by_scenario.get(call.scenario_id, []):
            accepted = _accepted(call, trajectory)
            key = (trajectory.id, call.role, accepted or "")
            if accepted is None or key in seen:
                continue
            seen.add(key)
            answer = Message(role="assistant", content=accepted)
            answer.origin = "model"
            turns = sum(m.role == "assistant" for m in call.messages) + 1
            samples.append(
                Trajectory(
                    id=f"{trajectory.id}~{call.role}{len(seen)}",
                    scenario_id=trajectory.scenario_id,
                    tools=call.tools,
                    messages=[*call.messages, answer],
                    labels=[Label(kind="text")] * turns,
                    passed=True,
                    split="train",
                    iteration=trajectory.iteration,
                    metadata={
                        "role": call.role,
                        "train_last_turn_only": True,
                        "from_trajectory": trajectory.id,
                    },
                )
            )
            break
    return samples
