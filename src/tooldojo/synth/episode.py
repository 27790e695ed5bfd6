"""One role-played episode: user ⇄ assistant ⇄ MCP server, from a scenario to a trajectory.

The labels are the scenario's planned steps, assigned to assistant messages in order within
each user turn; a ``$result`` reference is made absolute (the turn's offset added to its
step) and bound to a JSON pointer once the result it names exists. When the assistant strays
from the plan (text where a call was due, extra calls) the labels stay what the plan said,
so verification flags the episode rather than the synthesis hiding it.

Every message records who wrote it (``Message.origin``: ``model``, ``forced``, ``template``,
``executed``; a simulated tool result is ``model``, the server role's), summed into
``metadata["origins"]``. A step whose label refers to a field the
earlier result does not have is a *failed step* (``metadata["failed_steps"]``, with the
reason): the episode ends there and the execution gate rejects it. When the user model cannot
write a message and templates already fill their capped share, the episode is dropped.
"""

from __future__ import annotations

import contextvars
import copy
import json
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import mcp.types as types

from tooldojo.agents.assistant import AssistantAgent
from tooldojo.agents.personas import draw_persona
from tooldojo.agents.user import TemplateCapReached, UserSimulator, UserText
from tooldojo.llm.base import Usage
from tooldojo.mcp.episodes import EPISODE_META_KEY, RESULT_FIELDS_META_KEY
from tooldojo.mcp.server import INJECTED_META_KEY, SIMULATED_META_KEY
from tooldojo.model import RESULT_REF_KEY, Label, Message, Scenario, Tool, Trajectory
from tooldojo.synth.labels import find_pointer
from tooldojo.verify.accounting import message_origins
from tooldojo.verify.label import UnresolvedReference
from tooldojo.verify.requests import assistant_text_before


class EpisodeFailed(Exception):
    """An episode could not be played (a backend kept failing); it is retried on resume."""


class ToolCaller(Protocol):
    """What an episode needs from an MCP client (``mcp.Client`` is one)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, *, meta: Any = None
    ) -> types.CallToolResult: ...


Connect = Callable[[Sequence[str]], AbstractAsyncContextManager[ToolCaller]]
"""Opens one MCP session (one per episode) offering the named tools."""


@dataclass
class EpisodeEnv:
    """Everything an episode needs besides its scenario."""

    tools: dict[str, Tool]
    user: UserSimulator
    assistant: AssistantAgent
    connect: Connect
    max_steps: int = 6
    models: dict[str, str] = field(default_factory=dict)
    """Model name per role, recorded in every trajectory."""
    accept_request: Callable[[Scenario, str], str | None] | None = None
    """Called with the first request; returns why to drop the episode (dedup) or ``None``."""
    end_episode: Callable[[str], None] | None = None
    """Frees the server's state of an episode (in-process servers)."""


@dataclass
class EpisodeState:
    """The live state of one episode, visible to model calls made on its behalf.

    Set in :data:`CURRENT_EPISODE` while the episode runs, so a scripted oracle in a test can
    answer with the label the runner is about to record.
    """

    scenario: Scenario
    messages: list[Message] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    pending: Label | None = None


CURRENT_EPISODE: contextvars.ContextVar[EpisodeState | None] = contextvars.ContextVar(
    "tooldojo_synth_episode", default=None
)


@dataclass
class Dropped:
    """An episode dropped before the assistant ran (a near-duplicate request)."""

    scenario_id: str
    reason: str
    request: str


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.tokens: dict[str, dict[str, int]] = {}

    def add(self, role: str, started: float, usage: Usage | None = None) -> None:
        self.seconds[role] = round(self.seconds.get(role, 0.0) + time.perf_counter() - started, 4)
        if usage is not None:
            slot = self.tokens.setdefault(role, {"prompt": 0, "completion": 0})
            slot["prompt"] += usage.prompt_tokens
            slot["completion"] += usage.completion_tokens


def _absolute(label: Label, offset: int) -> Label:
    """``label`` with its ``$result`` steps shifted from turn-relative to trajectory-wide."""
    if not any(_refs(call.arguments) for call in label.calls):
        return label
    label = label.model_copy(deep=True)
    for call in label.calls:
        for ref in _refs(call.arguments):
            ref["step"] = int(ref.get("step", 0)) + offset
    return label


def _refs(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        if set(value) == {RESULT_REF_KEY} and isinstance(value[RESULT_REF_KEY], dict):
            return [value[RESULT_REF_KEY]]
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def _fields_read_later(steps: list[Label], step: int, position: int) -> list[str]:
    """Fields of the result of call ``position`` at ``step`` (of one turn's planned steps)
    that a later step's reference reads."""
    fields = [
        str(ref.get("field", ""))
        for later in steps[step + 1 :]
        for call in later.calls
        for ref in _refs(call.arguments)
        if int(ref.get("step", -1)) == step and int(ref.get("call", 0)) == position
    ]
    return [name for name in dict.fromkeys(fields) if name]


def _bind(label: Label, results: dict[tuple[int, int], Any]) -> list[str]:
    """Fill the pointers of ``label``'s references from recorded results; returns why each
    reference that could not be bound was not (no such result, or no such field in it)."""
    unbound = []
    for call in label.calls:
        for ref in _refs(call.arguments):
            if ref.get("pointer") is not None:
                continue
            key = (int(ref.get("step", -1)), int(ref.get("call", 0)))
            field_name = str(ref.get("field", ""))
            if key not in results:
                unbound.append(f"{call.name}: step {key[0]} call {key[1]} has no result")
                continue
            pointer = find_pointer(results[key], field_name)
            if pointer is None:
                unbound.append(
                    f"{call.name}: the result of step {key[0]} has no field {field_name!r}"
                )
            else:
                ref["pointer"] = pointer
    return unbound


def _result_text(result: types.CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, types.TextContent))


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def episode_start(scenario: Scenario) -> tuple[random.Random, Scenario]:
    """The episode's random stream and a copy of ``scenario`` with its persona and style
    drawn from it (when the plan left them open): what every run of the episode starts from."""
    rng = random.Random(f"episode|{scenario.seed}|{scenario.id}")
    scenario = scenario.model_copy(deep=True)
    if not scenario.persona or not scenario.style:
        persona, style = draw_persona(rng)
        scenario.persona = scenario.persona or persona
        scenario.style = scenario.style or style
    return rng, scenario


async def run_episode(scenario: Scenario, env: EpisodeEnv) -> Trajectory | Dropped:
    """Play ``scenario`` to the end; raises :class:`EpisodeFailed` if a backend fails."""
    rng, scenario = episode_start(scenario)
    missing = [name for name in scenario.tools if name not in env.tools]
    if missing:
        raise EpisodeFailed(f"scenario {scenario.id} offers unknown tools: {', '.join(missing)}")
    offered = [env.tools[name] for name in scenario.tools]
    state = EpisodeState(scenario, messages=[env.assistant.system_message()])
    token = CURRENT_EPISODE.set(state)
    timer = _Timer()
    started = time.perf_counter()
    sources: list[str] = []
    results: dict[tuple[int, int], Any] = {}
    unbound = 0
    failed_steps: list[dict[str, Any]] = []
    max_steps_hit = False
    episode_id = f"{scenario.id}#{rng.randrange(16**8):08x}"
    try:
        async with env.connect(scenario.tools) as caller:
            for turn_index, turn in enumerate(scenario.turns):
                if failed_steps:
                    break
                try:
                    user = await _user(
                        env,
                        scenario,
                        turn_index,
                        rng,
                        timer,
                        None,
                        assistant_text_before(state.messages),
                    )
                except TemplateCapReached as error:
                    return Dropped(scenario.id, f"template cap: {error}", "")
                sources.append(user.source)
                if turn_index == 0 and env.accept_request is not None:
                    reason = env.accept_request(scenario, user.text)
                    if reason is not None:
                        return Dropped(scenario.id, reason, user.text)
                state.messages.append(_user_message(user))
                offset = len(state.labels)
                step = 0
                clarified = False
                while True:
                    if step >= env.max_steps:
                        max_steps_hit = True
                        break
                    if step < len(turn.steps):
                        label = _absolute(turn.steps[step], offset)
                    else:
                        label = Label(
                            kind="refuse" if scenario.category == "irrelevance" else "text"
                        )
                    why = _bind(label, results)
                    unbound += len(why)
                    if why:  # the plan cannot go on: a failed step, not an exception
                        failed_steps.append({"step": len(state.labels), "reason": "; ".join(why)})
                        break
                    state.pending = label
                    began = time.perf_counter()
                    try:
                        completion = await env.assistant.step(
                            state.messages, offered, seed=rng.randrange(2**31), label=label
                        )
                    except UnresolvedReference as error:
                        failed_steps.append({"step": len(state.labels), "reason": str(error)})
                        break
                    timer.add("assistant", began, completion.usage)
                    if not completion.ok and not completion.text.strip():
                        raise EpisodeFailed(f"assistant model failed: {completion.error}")
                    message = completion.as_message()
                    message.origin = "model"
                    if completion.model.startswith("label("):
                        message.guided = "label"  # teacher-forced from the goal (guidance)
                        message.origin = "forced"
                    elif completion.model.startswith(("grounded(", "asks(", "refuses(")):
                        # a result value, the missing parameter or a refusal's "I cannot" was
                        # required by a grammar
                        message.constrained = completion.model.split("(")[0]
                    if not completion.ok:
                        message.content = completion.text  # raw bad output: data for the gates
                    state.messages.append(message)
                    state.labels.append(label)
                    state.pending = None
                    index = len(state.labels) - 1
                    step += 1
                    if message.tool_calls:
                        for position, call in enumerate(message.tool_calls):
                            fields = _fields_read_later(turn.steps, index - offset, position)
                            results[(index, position)] = await _call(
                                env, caller, call, scenario, episode_id, state, timer, fields
                            )
                        continue
                    if label.kind == "clarify" and turn.withheld and not clarified:
                        try:
                            answer = await _user(
                                env, scenario, turn_index, rng, timer, message.content or ""
                            )
                        except TemplateCapReached as error:
                            return Dropped(scenario.id, f"template cap: {error}", "")
                        sources.append(answer.source)
                        state.messages.append(_user_message(answer))
                        clarified = True
                        continue
                    break
    finally:
        CURRENT_EPISODE.reset(token)
        if env.end_episode is not None:
            env.end_episode(episode_id)
    timer.seconds["total"] = round(time.perf_counter() - started, 4)
    return Trajectory(
        id=scenario.id,
        scenario_id=scenario.id,
        category=scenario.category,
        tools=copy.deepcopy(offered),
        messages=state.messages,
        labels=state.labels,
        metadata={
            "models": dict(env.models),
            "persona": scenario.persona,
            "style": scenario.style,
            "seed": scenario.seed,
            "episode": episode_id,
            "timings_s": timer.seconds,
            "tokens": timer.tokens,
            "user_sources": sources,
            "value_sources": scenario.metadata.get("value_sources", []),
            **(
                {"near_miss": scenario.metadata["near_miss"]}
                if "near_miss" in scenario.metadata
                else {}
            ),
            "max_steps_hit": max_steps_hit,
            "unbound_references": unbound,
            "failed_steps": failed_steps,
            "injected_failures": sum(1 for m in state.messages if getattr(m, "injected", False)),
            "origins": message_origins(Trajectory(id="-", messages=state.messages)),
        },
    )


def _user_message(text: UserText) -> Message:
    message = Message(
        role="user",
        content=text.text,
        origin="model" if text.source == "model" else "template",
    )
    if text.constrained:
        message.constrained = "values"  # the planned values were required by a grammar
    return message


async def _user(
    env: EpisodeEnv,
    scenario: Scenario,
    turn_index: int,
    rng: random.Random,
    timer: _Timer,
    question: str | None,
    after: str = "",
) -> UserText:
    began = time.perf_counter()
    if question is None:
        text = await env.user.request(scenario, turn_index, rng, after)
    else:
        text = await env.user.clarification(scenario, turn_index, question, rng)
    timer.add("user", began, text.usage)
    return text


async def _call(
    env: EpisodeEnv,
    caller: ToolCaller,
    call: Any,
    scenario: Scenario,
    episode_id: str,
    state: EpisodeState,
    timer: _Timer,
    fields: list[str] | None = None,
) -> Any:
    """Run one call through MCP and append its tool message; returns the parsed result.
    ``fields``: what later steps read from the result, asked of the server with the call."""
    began = time.perf_counter()
    if call.name not in scenario.tools:
        text, is_error = f"unknown tool {call.name!r}: it is not offered in this conversation", True
        injected = simulated = False
    else:
        meta: dict[str, Any] = {EPISODE_META_KEY: episode_id}
        if fields:
            meta[RESULT_FIELDS_META_KEY] = fields
        result = await caller.call_tool(call.name, call.arguments, meta=meta)
        text, is_error = _result_text(result), bool(result.is_error)
        injected = bool((result.meta or {}).get(INJECTED_META_KEY))
        simulated = bool((result.meta or {}).get(SIMULATED_META_KEY))
    timer.add("tools", began)
    message = Message(
        role="tool",
        content=text,
        tool_call_id=call.id,
        name=call.name,
        is_error=is_error or None,
        origin="model" if simulated else "executed",  # the server role's model wrote it
    )
    if injected:
        message.injected = True  # a failure planned by fault injection: a labelled case
    state.messages.append(message)
    return _parse(text)
