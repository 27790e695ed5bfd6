"""Realistic SFT samples for the training benchmarks, built in seconds without a model.

The planner (schema drafter, no LLM) plans scenarios over ``examples/specs``; each becomes a
passed trajectory the way role-play writes it: the user's request with its values, the
assistant's calls, a tool result, and a closing answer (or a refusal for irrelevance). The
prompts therefore carry the real tool schemas rendered as training renders them, which is
what sets their length. Benchmark data only: nothing here trains a model we ship.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tooldojo.model import Label, Message, Scenario, Tool, ToolCall, Trajectory

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(str(p) for p in (ROOT / "examples" / "specs").iterdir())
MIX = {"single": 3, "multiple": 3, "parallel": 2, "parallel_multiple": 2, "irrelevance": 1}


def _request(intent: str, asks: list[dict[str, Any]]) -> str:
    values = "; ".join(
        ", ".join(f"{key} {json.dumps(value)}" for key, value in ask["values"].items())
        for ask in asks
        if ask.get("values")
    )
    return f"{intent}. Use {values}." if values else f"{intent}."


def _trajectory(scenario: Scenario, tools: dict[str, Tool]) -> Trajectory:
    offered = [tools[name] for name in scenario.tools]
    turn = scenario.turns[0]
    asks = scenario.metadata["asks"][0]
    messages = [Message(role="user", content=_request(turn.intent, asks))]
    if scenario.category == "irrelevance":
        messages.append(
            Message(
                role="assistant",
                content="None of the tools I have can do that, so I cannot help with this one.",
            )
        )
        labels = [Label(kind="refuse")]
    else:
        calls = [
            ToolCall(id=f"{scenario.id}-{i}", name=ask["tool"], arguments=ask["values"])
            for i, ask in enumerate(asks)
        ]
        messages.append(Message(role="assistant", tool_calls=calls))
        for call in calls:
            result = {"status": "ok", "request": call.arguments, "id": call.id}
            messages.append(
                Message(
                    role="tool", tool_call_id=call.id, name=call.name, content=json.dumps(result)
                )
            )
        summary = ", ".join(f"{c.name} returned status ok" for c in calls)
        messages.append(Message(role="assistant", content=f"Done: {summary}."))
        labels = [turn.steps[0], Label(kind="text")]
    return Trajectory(
        id=f"bench-{scenario.id}",
        scenario_id=scenario.id,
        category=scenario.category,
        tools=offered,
        messages=messages,
        labels=labels,
        passed=True,
    )


def bench_trajectories(count: int, seed: int = 0) -> list[Trajectory]:
    """``count`` passed trajectories planned over ``examples/specs``."""
    from tooldojo.specs.loader import load_tools
    from tooldojo.synth.planner import PlanOptions, plan_scenarios

    tools = load_tools(SPECS)
    options = PlanOptions(
        n=count, seed=seed, mix=MIX, min_per_tool=0, max_distractors=1, strict=False
    )
    plan = asyncio.run(plan_scenarios(tools, options))
    by_name = {tool.name: tool for tool in tools}
    return [_trajectory(scenario, by_name) for scenario in plan.scenarios]


def bench_rows(count: int, tokenizer, settings) -> tuple[list[dict], dict]:
    """``count`` SFT samples (assistant turns) rendered as ``run_sft`` renders them, and their
    data summary (samples over ``settings.max_length`` are dropped there, and counted)."""
    from tooldojo.train.data import PromptRenderer, turn_samples
    from tooldojo.train.sft import sft_dataset

    samples = turn_samples(bench_trajectories(count // 2 + 1, seed=settings.seed))[:count]
    renderer = PromptRenderer(tokenizer, settings.codec, settings.native_tools)
    return sft_dataset(samples, renderer, settings)
