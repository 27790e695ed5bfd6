"""GRPO rewards: the gated reward from verification, plus per-gate pass rates for the logs.

The gate metrics are reward functions with weight 0: TRL logs each one's mean and std
(``rewards/format_gate/mean``...), so ``metrics.csv`` shows where completions fail,
without changing the optimized reward.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from tooldojo.llm.codecs import DEFAULT_CODEC
from tooldojo.model import Tool
from tooldojo.verify.reward import RewardBreakdown, ToolCallReward, reward_breakdown
from tooldojo.verify.schema import argument_error
from tooldojo.verify.turns import completion_turn


@lru_cache(maxsize=4096)
def _tools_by_name(tools_json: str) -> dict[str, Tool]:
    tools = [
        Tool.model_validate({**t["function"], "source": "train"}) for t in json.loads(tools_json)
    ]
    return {tool.name: tool for tool in tools}


@lru_cache(maxsize=65536)
def _breakdown(completion: str, label: str, tools: str, codec: str) -> RewardBreakdown:
    return reward_breakdown(completion, label, tools, codec)


def _schema_ok(completion: Any, tools_json: str, codec: str) -> bool:
    try:
        calls, _ = completion_turn(completion, codec)
    except Exception:  # unparseable output already fails the format gate
        return False
    offered = _tools_by_name(tools_json)
    return all(
        call.name in offered and argument_error(offered[call.name], call.arguments) is None
        for call in calls
    )


class GateMetric:
    """Zero-weight reward function reporting whether completions pass one gate (1.0 or 0.0)."""

    def __init__(self, gate: str):
        if gate not in ("format", "schema", "label"):
            raise ValueError(gate)
        self.gate = gate
        self.__name__ = f"{gate}_gate"

    def __call__(self, prompts=None, completions=None, completion_ids=None, **columns: Any):
        labels, tools = columns["label"], columns["tools"]
        codecs = columns.get("codec") or [DEFAULT_CODEC] * len(completions)
        scores = []
        for completion, label, tool_set, codec in zip(
            completions, labels, tools, codecs, strict=True
        ):
            if isinstance(completion, str):
                breakdown = _breakdown(completion, label, tool_set, codec)
            else:  # conversational completions (message lists) are not hashable
                breakdown = reward_breakdown(completion, label, tool_set, codec)
            if self.gate == "format":
                passed = breakdown.format_ok
            elif self.gate == "label":
                passed = breakdown.exact
            else:
                passed = breakdown.format_ok and _schema_ok(completion, tool_set, codec)
            scores.append(1.0 if passed else 0.0)
        return scores


class RewardVariance:
    """Wraps the optimized reward and records, per generation batch, which groups varied.

    GRPO learns only from groups whose completions earned different rewards: a group of
    equal rewards has zero advantage everywhere. TRL orders a batch group by group
    (``num_generations`` consecutive completions per prompt), so groups are consecutive
    slices. Each call logs ``groups_with_reward_variance`` (a ``metrics.csv`` column);
    :meth:`summary` gives the share of steps with at least one varied group.
    """

    def __init__(self, reward: Any, num_generations: int):
        self.reward = reward
        self.num_generations = num_generations
        self.__name__ = getattr(reward, "__name__", "reward")
        self.batches: list[tuple[int, int]] = []
        """(groups, groups with non-zero variance) per call, i.e. per generation batch."""

    def __call__(self, prompts=None, completions=None, completion_ids=None, **columns: Any):
        log_metric = columns.get("log_metric")
        scores = self.reward(
            prompts=prompts, completions=completions, completion_ids=completion_ids, **columns
        )
        size = self.num_generations
        groups = [scores[i : i + size] for i in range(0, len(scores), size)]
        varied = sum(1 for g in groups if _varies(g))
        self.batches.append((len(groups), varied))
        if log_metric is not None and groups:
            log_metric("groups_with_reward_variance", varied / len(groups))
        return scores

    def summary(self) -> dict[str, float | int]:
        """Shares over the generation batches this process scored."""
        steps = len(self.batches)
        groups = sum(g for g, _ in self.batches)
        return {
            "reward_batches": steps,
            "steps_with_reward_variance": (
                round(sum(1 for _, v in self.batches if v) / steps, 4) if steps else 0.0
            ),
            "groups_with_reward_variance": (
                round(sum(v for _, v in self.batches) / groups, 4) if groups else 0.0
            ),
        }


def _varies(scores: list[Any]) -> bool:
    values = [s for s in scores if s is not None]
    return len(values) > 1 and max(values) - min(values) > 1e-9


def grpo_reward_functions(codec: str = DEFAULT_CODEC, gate_metrics: bool = True):
    """(functions, weights): the gated reward, then zero-weight gate pass rates."""
    functions: list[Any] = [ToolCallReward(codec=codec, name="gated_reward")]
    weights = [1.0]
    if gate_metrics:
        functions += [GateMetric("format"), GateMetric("schema"), GateMetric("label")]
        weights += [0.0, 0.0, 0.0]
    return functions, weights
