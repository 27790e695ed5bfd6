"""Trajectories → training samples, rendered exactly as the model sees them at inference.

A multi-turn or multi-step trajectory becomes one sample per assistant turn: the
history up to that turn is the prompt, the turn itself the completion. Tools are
rendered by the model's chat template when it supports tools, otherwise into the
system prompt with the same codec and :func:`tooldojo.llm._shared.render_chat`
the backends use, so training and inference prompts are byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooldojo.errors import ToolDojoError
from tooldojo.jsonl import read_jsonl
from tooldojo.llm._shared import render_chat
from tooldojo.llm.codecs import DEFAULT_CODEC, get_codec
from tooldojo.model import Label, Message, Tool, Trajectory
from tooldojo.train.python_calls import (
    NATIVE_SYNTAX,
    PYTHON_SYNTAX,
    choose_python,
    render_python_chat,
    writable_in_python,
)


@dataclass(frozen=True)
class TurnSample:
    """One assistant turn of a trajectory with everything before it."""

    trajectory_id: str
    turn: int
    category: str
    tools: list[Tool]
    history: list[Message]
    target: Message
    label: Label | None


def turn_samples(trajectories: Iterable[Trajectory]) -> list[TurnSample]:
    """Split trajectories into per-assistant-turn samples (``labels[k]`` goes with turn k)."""
    samples = []
    for trajectory in trajectories:
        turn = 0
        # A self-played role's sample (loop.roles): earlier assistant messages are its prompt.
        last_only = bool(trajectory.metadata.get("train_last_turn_only"))
        final = max(
            (i for i, m in enumerate(trajectory.messages) if m.role == "assistant"), default=-1
        )
        for index, message in enumerate(trajectory.messages):
            if message.role != "assistant":
                continue
            if last_only and index != final:
                turn += 1
                continue
            label = trajectory.labels[turn] if turn < len(trajectory.labels) else None
            samples.append(
                TurnSample(
                    trajectory_id=trajectory.id,
                    turn=turn,
                    category=trajectory.category or "",
                    tools=trajectory.tools,
                    history=trajectory.messages[:index],
                    target=message,
                    label=label,
                )
            )
            turn += 1
    return samples


def load_verified(path: str | Path, *, split: str | None = "train") -> list[Trajectory]:
    """Trajectories that passed verification (only those may train the model)."""
    path = Path(path)
    if not path.is_file():
        raise ToolDojoError(f"{path}: no such data file")
    kept = [
        t
        for t in read_jsonl(path, Trajectory)
        if t.passed is True and (split is None or t.split == split)
    ]
    if not kept:
        raise ToolDojoError(
            f"{path}: no trajectory with passed=true"
            + (f" in split {split!r}" if split else "")
            + " (run `tooldojo verify` first: only verified data may train the model)"
        )
    return kept


def template_supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a ``tools`` argument itself."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(template.values())
    return "tools" in template


class PromptRenderer:
    """Renders samples as prompt and completion strings for one tokenizer.

    ``native_tools=None`` decides from the chat template: a template that knows about
    tools gets OpenAI messages and tools; one that does not (SmolLM2) gets tools in the
    system prompt and calls written with ``codec``.
    """

    def __init__(
        self, tokenizer: Any, codec: str = DEFAULT_CODEC, native_tools: bool | None = None
    ):
        self.tokenizer = tokenizer
        self.codec = get_codec(codec)
        self.native = template_supports_tools(tokenizer) if native_tools is None else native_tools

    def _chat(
        self, messages: list[Message], tools: list[Tool], python_key: str | None
    ) -> list[dict[str, Any]]:
        if python_key is not None:
            return render_python_chat(messages, tools, python_key)
        if self.native:
            return [m.to_openai() for m in messages]
        return render_chat(messages, tools, self.codec)

    def _apply(
        self, chat: list[dict[str, Any]], tools: list[Tool], generation: bool, python: bool
    ) -> str:
        kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": generation}
        if self.native and tools and not python:
            kwargs["tools"] = [t.to_openai() for t in tools]
        return self.tokenizer.apply_chat_template(chat, **kwargs)

    def prompt(
        self, history: list[Message], tools: list[Tool], *, python_key: str | None = None
    ) -> str:
        """The text the model is given before it answers.

        ``python_key`` (the trajectory id) renders the Python-call variant instead: our own
        system prompt asking for ``[f(a=1)]`` calls, the wording chosen from the key.
        """
        chat = self._chat(history, tools, python_key)
        return self._apply(chat, tools, generation=True, python=python_key is not None)

    def completion(
        self,
        history: list[Message],
        tools: list[Tool],
        target: Message,
        *,
        python_key: str | None = None,
    ) -> str:
        """The assistant turn as the template writes it, ending with its end-of-turn token."""
        python = python_key is not None
        prompt = self.prompt(history, tools, python_key=python_key)
        chat = self._chat([*history, target], tools, python_key)
        full = self._apply(chat, tools, generation=False, python=python)
        if not full.startswith(prompt):
            raise ToolDojoError(
                "the chat template renders the history differently with and without the "
                "answer; cannot split prompt from completion for this model"
            )
        completion = full[len(prompt) :]
        eos = getattr(self.tokenizer, "eos_token", None)
        # TRL appends EOS when a completion does not end with it; the template's trailing
        # newline after <|im_end|> would otherwise earn a second end token.
        if eos and completion.rstrip().endswith(eos):
            completion = completion.rstrip()
        return completion


def syntax_plan(samples: list[TurnSample], python_share: float, seed: int) -> dict[str, str]:
    """Per trajectory id, its syntax: exactly ``round(python_share x n)`` of the ``n``
    trajectories whose calls can all be written as Python calls, chosen by a seeded hash.

    Why not one draw per trajectory: over the ~50 trajectories of an iteration, independent
    draws at 0.3 gave 9 (17 %), so the configured share was not what the model saw."""
    writable: dict[str, bool] = {}
    for sample in samples:
        ok = writable.get(sample.trajectory_id, True)
        writable[sample.trajectory_id] = ok and writable_in_python([*sample.history, sample.target])
    chosen = choose_python([t for t, ok in writable.items() if ok], python_share, seed)
    return {t: PYTHON_SYNTAX if t in chosen else NATIVE_SYNTAX for t in writable}


def sft_row(sample: TurnSample, renderer: PromptRenderer, syntax: str) -> dict[str, str]:
    """One prompt-completion row in ``syntax``."""
    key = sample.trajectory_id if syntax == PYTHON_SYNTAX else None
    return {
        "prompt": renderer.prompt(sample.history, sample.tools, python_key=key),
        "completion": renderer.completion(
            sample.history, sample.tools, sample.target, python_key=key
        ),
    }


def sft_rows(
    samples: list[TurnSample],
    renderer: PromptRenderer,
    *,
    python_share: float = 0.0,
    seed: int = 0,
) -> list[dict[str, str]]:
    """Prompt-completion rows: TRL's SFTTrainer masks the prompt, so only the turn is learned.

    About ``python_share`` of the trajectories are rendered for Python-call syntax (see
    :mod:`tooldojo.train.python_calls`); the rest in the model's native format.
    """
    plan = syntax_plan(samples, python_share, seed)
    return [sft_row(s, renderer, plan[s.trajectory_id]) for s in samples]


def grpo_rows(
    samples: list[TurnSample],
    renderer: PromptRenderer,
    *,
    python_share: float = 0.0,
    seed: int = 0,
) -> list[dict[str, str]]:
    """String prompts plus the label and tools as JSON text columns the reward reads.

    GRPO ignores a per-row ``tools`` column when rendering prompts, so prompts are
    pre-rendered with the tools inside; the columns only feed the reward. A row drawn for
    Python-call syntax (``python_share``) asks for Python calls and is scored with the
    ``pythonic`` codec.
    """
    rows = []
    plan = syntax_plan(samples, python_share, seed)
    for s in samples:
        # A final prose answer after tool results has no checkable ground truth: the gated
        # reward would pay any text, so such turns are left to SFT.
        if s.label is None or s.label.kind == "text":
            continue
        python = plan[s.trajectory_id] == PYTHON_SYNTAX
        rows.append(
            {
                "prompt": renderer.prompt(
                    s.history, s.tools, python_key=s.trajectory_id if python else None
                ),
                "label": s.label.model_dump_json(),
                "tools": json.dumps([t.to_openai() for t in s.tools]),
                "category": s.category,
                "codec": "pythonic" if python else renderer.codec.name,
            }
        )
    return rows
