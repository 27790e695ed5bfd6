"""Verification: gates that decide which trajectories may train, and the gated GRPO reward.

Gates (in order, short-circuiting): format → schema → label → execution → agreement → judge.
See docs/verify.md.
"""

from tooldojo.verify.agreement import agreement_gate
from tooldojo.verify.execution import CallerFactory, ToolCaller, execution_gate, mcp_client_factory
from tooldojo.verify.format import format_gate
from tooldojo.verify.judge import judge_gate
from tooldojo.verify.label import calls_mismatch, label_gate
from tooldojo.verify.pipeline import (
    DEFAULT_GATES,
    VerifyOptions,
    funnel,
    verify_file,
    verify_trajectory,
)
from tooldojo.verify.reward import (
    ToolCallReward,
    compute_score,
    gated_reward,
    reward_breakdown,
    tool_call_reward,
)
from tooldojo.verify.schema import schema_gate
from tooldojo.verify.turns import assistant_turns

__all__ = [
    "DEFAULT_GATES",
    "CallerFactory",
    "ToolCallReward",
    "ToolCaller",
    "VerifyOptions",
    "agreement_gate",
    "assistant_turns",
    "calls_mismatch",
    "compute_score",
    "execution_gate",
    "format_gate",
    "funnel",
    "gated_reward",
    "judge_gate",
    "label_gate",
    "mcp_client_factory",
    "reward_breakdown",
    "schema_gate",
    "tool_call_reward",
    "verify_file",
    "verify_trajectory",
]
