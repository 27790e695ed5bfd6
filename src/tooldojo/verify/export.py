"""Exports of passed trajectories to the formats trainers read.

``hf``        Hugging Face ``datasets`` Parquet, one row per trajectory; nested fields
              (messages, tools, labels, verdicts) as JSON text, so Arrow never merges
              differently shaped structs into one struct full of nulls.
``trl``       TRL conversational Parquet: ``messages`` (OpenAI chat, tool-call arguments as
              JSON strings) and ``tools`` (JSON text), read by ``SFTTrainer``.
``sharegpt``  LLaMA-Factory ShareGPT JSON: ``conversations`` with ``human`` / ``gpt`` /
              ``function_call`` / ``observation`` turns, ``system`` and ``tools`` (JSON text).
``verl``      verl RL Parquet, one row per labelled call turn: ``prompt`` (the messages
              before it, calls rendered with the codec), ``reward_model.ground_truth`` (the
              label as JSON, result references resolved) and ``extra_info`` with the tools,
              for :func:`tooldojo.verify.reward.compute_score`.

Every export is written to a temporary file in the target folder and renamed into place, so
a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import read_jsonl, write_json_atomic
from tooldojo.llm.codecs import DEFAULT_CODEC, get_codec
from tooldojo.model import Label, Message, Trajectory
from tooldojo.verify.label import UnresolvedReference, resolved_label_calls
from tooldojo.verify.turns import assistant_turns

EXPORT_FORMATS = ("hf", "trl", "sharegpt", "verl")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def hf_row(trajectory: Trajectory) -> dict[str, Any]:
    """All of a trajectory, flat: scalars as columns, nested fields as JSON text."""
    return {
        "id": trajectory.id,
        "scenario_id": trajectory.scenario_id,
        "category": trajectory.category,
        "split": trajectory.split,
        "iteration": trajectory.iteration,
        "passed": trajectory.passed,
        "messages": _dumps(trajectory.openai_messages()),
        "tools": _dumps(trajectory.openai_tools()),
        "labels": _dumps([label.model_dump(mode="json") for label in trajectory.labels]),
        "verdicts": _dumps([v.model_dump(mode="json") for v in trajectory.verdicts]),
    }


def _trl_message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.tool_calls:
        out["tool_calls"] = [call.to_openai() for call in message.tool_calls]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id or ""
        out["name"] = message.name or ""
    return out


def trl_row(trajectory: Trajectory) -> dict[str, Any]:
    """TRL conversational: ``messages`` as OpenAI chat messages, ``tools`` as JSON text."""
    return {
        "id": trajectory.id,
        "messages": [_trl_message(m) for m in trajectory.messages],
        "tools": _dumps(trajectory.openai_tools()),
    }


def sharegpt_row(trajectory: Trajectory) -> dict[str, Any]:
    """LLaMA-Factory ShareGPT with tools (``function_call`` values are JSON call objects)."""
    system = "\n".join(m.content or "" for m in trajectory.messages if m.role == "system")
    conversations: list[dict[str, str]] = []
    pending_observations: list[str] = []

    def flush_observations() -> None:
        if pending_observations:
            value = (
                pending_observations[0]
                if len(pending_observations) == 1
                else _dumps(pending_observations)
            )
            conversations.append({"from": "observation", "value": value})
            pending_observations.clear()

    for message in trajectory.messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            pending_observations.append(message.content or "")
            continue
        flush_observations()
        if message.role == "user":
            conversations.append({"from": "human", "value": message.content or ""})
        elif message.tool_calls:
            calls = [{"name": c.name, "arguments": c.arguments} for c in message.tool_calls]
            value = _dumps(calls[0] if len(calls) == 1 else calls)
            conversations.append({"from": "function_call", "value": value})
        else:
            conversations.append({"from": "gpt", "value": message.content or ""})
    flush_observations()
    tools = [tool.to_openai()["function"] for tool in trajectory.tools]
    return {
        "id": trajectory.id,
        "conversations": conversations,
        "system": system,
        "tools": _dumps(tools),
    }


def verl_rows(trajectory: Trajectory, codec: str = DEFAULT_CODEC) -> list[dict[str, Any]]:
    """One verl RL row per labelled assistant turn; earlier calls rendered as codec text."""
    renderer = get_codec(codec)
    turns = assistant_turns(trajectory, codec)
    tools_json = _dumps(trajectory.openai_tools())
    rows = []
    for turn in turns:
        if turn.label is None:
            continue
        label = turn.label
        if label.kind == "call":
            try:
                calls = resolved_label_calls(label, turns, trajectory.messages, trajectory.tools)
            except UnresolvedReference as error:
                raise ToolDojoError(f"trajectory {trajectory.id}: {error}") from None
            label = Label(kind="call", calls=calls)
        prompt = []
        for message in trajectory.messages[: turn.message_index]:
            content = message.content or ""
            if message.role == "assistant" and message.tool_calls:
                content = renderer.format_calls(list(message.tool_calls))
            prompt.append({"role": message.role, "content": content})
        rows.append(
            {
                "data_source": "tooldojo",
                "prompt": prompt,
                "ability": "tool_calling",
                "reward_model": {
                    "style": "rule",
                    "ground_truth": label.model_dump_json(exclude={"corrected_from"}),
                },
                "extra_info": {
                    "id": trajectory.id,
                    "turn": turn.index,
                    "category": trajectory.category or "",
                    "split": trajectory.split,
                    "tools": tools_json,
                    "codec": codec,
                },
            }
        )
    return rows


def _write_parquet_atomic(rows: list[dict[str, Any]], out: Path) -> None:
    import datasets  # heavy: imported only when exporting

    datasets.disable_progress_bars()

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        datasets.Dataset.from_list(rows).to_parquet(str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def export_trajectories(
    trajectories: Iterable[Trajectory],
    fmt: str,
    out: str | Path,
    *,
    include_failed: bool = False,
    codec: str = DEFAULT_CODEC,
) -> int:
    """Write the passed trajectories (all with ``include_failed``) as ``fmt``; returns rows."""
    if fmt not in EXPORT_FORMATS:
        raise ToolDojoError(f"unknown export format {fmt!r}; choose one of {EXPORT_FORMATS}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    chosen = [t for t in trajectories if include_failed or t.passed]
    if fmt == "sharegpt":
        rows = [sharegpt_row(t) for t in chosen]
    elif fmt == "verl":
        rows = [row for t in chosen for row in verl_rows(t, codec)]
    elif fmt == "trl":
        rows = [trl_row(t) for t in chosen]
    else:
        rows = [hf_row(t) for t in chosen]
    if not rows:
        raise ToolDojoError("nothing to export: no passed trajectory (use --include-failed?)")
    if fmt == "sharegpt":
        write_json_atomic(out, rows, indent=1)
    else:
        _write_parquet_atomic(rows, out)
    return len(rows)


def export_file(
    in_path: str | Path,
    fmt: str,
    out: str | Path,
    *,
    include_failed: bool = False,
    codec: str = DEFAULT_CODEC,
) -> int:
    """:func:`export_trajectories` over a verified JSONL file."""
    if not Path(in_path).exists():
        raise ToolDojoError(f"{in_path}: no such file")
    return export_trajectories(
        read_jsonl(in_path, Trajectory), fmt, out, include_failed=include_failed, codec=codec
    )
