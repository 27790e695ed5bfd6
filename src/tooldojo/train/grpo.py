"""GRPO on verified trajectories with TRL's ``GRPOTrainer`` and the gated reward."""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tooldojo.errors import ToolDojoError
from tooldojo.train.data import PromptRenderer, TurnSample, grpo_rows
from tooldojo.train.rewards import RewardVariance, grpo_reward_functions
from tooldojo.train.runner import TrainResult, lora_config, run_training, trainer_arguments
from tooldojo.train.settings import GRPOSettings


def grpo_config(
    settings: GRPOSettings, out_dir: Path, learning_rate: float, reward_weights: list | None
):
    """TRL's ``GRPOConfig`` for ``settings`` (also used by the overhead benchmark)."""
    from trl import GRPOConfig

    return GRPOConfig(
        **trainer_arguments(settings, out_dir, learning_rate),
        num_generations=settings.num_generations,
        beta=settings.beta,
        epsilon=settings.epsilon,
        epsilon_high=settings.epsilon_high,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        reward_weights=reward_weights,
        use_vllm=settings.use_vllm,
        **({"vllm_mode": "colocate"} if settings.use_vllm else {}),
        **settings.extra,
    )


def grpo_dataset(
    samples: list[TurnSample], renderer: PromptRenderer, settings: GRPOSettings
) -> tuple[list[dict], dict]:
    """GRPO rows (labelled call/refusal turns) and what they hold: the share rendered for
    Python calls, the no-call share, and the rows dropped as too long.

    A prompt whose tokens plus ``max_completion_length`` exceed ``max_length`` is dropped and
    counted: TRL's GRPO truncates no prompt, and one multi-turn prompt of several thousand
    tokens took the attention of a 4 x 4 generation batch to 24 GB and the loop was killed
    for memory (a 70-trajectory pool of the refined corpus, 2026-11-26).
    """
    rows = grpo_rows(samples, renderer, python_share=settings.python_share, seed=settings.seed)
    dropped = 0
    if settings.max_length:
        budget = settings.max_length - settings.max_completion_length
        tokenizer = renderer.tokenizer
        kept = [
            row
            for row in rows
            if len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]) <= budget
        ]
        dropped, rows = len(rows) - len(kept), kept
    if settings.no_call_share is not None:
        rows = with_no_call_share(rows, settings.no_call_share, settings.seed)
    python = sum(1 for row in rows if row["codec"] == "pythonic")
    no_call = sum(1 for row in rows if _no_call(row))
    return rows, {
        "samples": len(rows),
        "dropped_too_long": dropped,
        "max_length": settings.max_length,
        "python_call_share": round(python / len(rows), 4) if rows else 0.0,
        "no_call_share": round(no_call / len(rows), 4) if rows else 0.0,
    }


def _no_call(row: dict) -> bool:
    """Whether a GRPO row's label is a no-call decision (refuse, clarify)."""
    return json.loads(row["label"]).get("kind") != "call"


def with_no_call_share(rows: list[dict], share: float, seed: int) -> list[dict]:
    """``rows`` resampled (seeded, as many as before) so that ``share`` of them are no-call
    decisions: decisions and calls are each drawn without repeats while they last, then
    again. Unchanged when either kind is missing, since no share of nothing can be drawn."""
    if not 0.0 <= share <= 1.0:
        raise ToolDojoError(f"grpo: no_call_share must be within 0 and 1, not {share}")
    decisions = [row for row in rows if _no_call(row)]
    calls = [row for row in rows if not _no_call(row)]
    if not rows or (share > 0 and not decisions) or (share < 1 and not calls):
        return rows
    rng = random.Random(f"no-call|{seed}")
    wanted = round(share * len(rows))

    def draw(pool: list[dict], count: int) -> list[dict]:
        out: list[dict] = []
        while len(out) < count:
            out += rng.sample(pool, min(len(pool), count - len(out)))
        return out

    mixed = draw(decisions, wanted) + draw(calls, len(rows) - wanted)
    rng.shuffle(mixed)
    return mixed


ACTIVATION_SAFETY = 1.5
"""Headroom over the counted activations, for what the attention kernel, the optimizer and
GRPO's log-probabilities add. Calibrated on SmolLM2-135M: a GRPO step of 8 sequences of up
to 1,632 tokens (the loop's settings) was killed for memory at 24 GB on 2026-11-27 (about
1.8 MB a token or more); the estimate below gives 2.4 MB."""


def activation_bytes_per_token(config: object) -> float:
    """What a training step keeps per token for the backward pass, without gradient
    checkpointing (fp32): per layer about 12 vectors of the hidden size (norms, q/k/v,
    attention output, residuals) and 4 of the MLP's (gate, up, activation, product)."""
    hidden = int(config.hidden_size)
    inner = int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden)
    layers = int(config.num_hidden_layers)
    return layers * (12 * hidden + 4 * inner) * 4 * ACTIVATION_SAFETY


def physical_memory() -> int:
    """Where the activations live: the first GPU's memory when training runs on one, else
    the machine's RAM."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(0).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class MemoryPlan:
    """How a GRPO step is laid out to fit in memory (``result.training["memory"]``)."""

    step_tokens: int
    activation_gb: float
    memory_gb: float
    micro_batch: int
    grad_accum: int
    gradient_checkpointing: bool
    gradient_checkpointing_auto: bool


def memory_plan(
    rows: list[dict], tokenizer, settings: GRPOSettings, per_token: float, memory: int
) -> MemoryPlan:
    """How a step of ``batch_size`` of the longest rows fits in half of ``memory``.

    GRPO trains on whole prompts: 8 sequences of 1.6k tokens held 24 GB of activations, and
    a run died at its first long batch. When a step does not fit, it is trained in
    micro-batches (the largest that fits; gradients accumulated, so one generation batch and
    one optimizer update per step as before); when one sequence alone does not fit either,
    gradient checkpointing is switched on too (it cost 1.8x per step on this machine, so it
    comes last)."""
    longest = max(
        len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]) for row in rows
    )
    sequence = (longest + settings.max_completion_length) * per_token
    budget = memory / 2
    micro = settings.batch_size
    if settings.grad_accum == 1:  # a micro-batching the user set is kept as it is
        fitting = [d for d in range(1, micro + 1) if micro % d == 0 and d * sequence <= budget]
        micro = max(fitting, default=1)
    checkpointing = settings.gradient_checkpointing or micro * sequence > budget
    return MemoryPlan(
        step_tokens=settings.batch_size * (longest + settings.max_completion_length),
        activation_gb=round(settings.batch_size * sequence / 2**30, 1),
        memory_gb=round(memory / 2**30, 1),
        micro_batch=micro,
        grad_accum=settings.grad_accum * settings.batch_size // micro,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_auto=checkpointing and not settings.gradient_checkpointing,
    )


def build_grpo_trainer(model, tokenizer, rows: list[dict], settings: GRPOSettings, out_dir: Path):
    """A ``GRPOTrainer`` whose reward reads the ``label``/``tools`` columns of ``rows``."""
    from datasets import Dataset
    from trl import GRPOTrainer

    if settings.batch_size % settings.num_generations:
        raise ToolDojoError(
            f"batch size {settings.batch_size} must be a multiple of the group size "
            f"{settings.num_generations} (--num-generations)"
        )
    plan = memory_plan(
        rows, tokenizer, settings, activation_bytes_per_token(model.config), physical_memory()
    )
    settings = replace(
        settings,
        batch_size=plan.micro_batch,
        grad_accum=plan.grad_accum,
        gradient_checkpointing=plan.gradient_checkpointing,
    )
    functions, weights = grpo_reward_functions(settings.codec, settings.gate_metrics)
    # The optimized reward (the only one with weight) decides the advantages: watch its groups.
    variance = RewardVariance(functions[0], settings.num_generations)
    functions[0] = variance
    parameters = sum(p.numel() for p in model.parameters())
    config = grpo_config(settings, out_dir, settings.resolved_learning_rate(parameters), weights)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=functions,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(settings),
    )
    trainer.tooldojo_summary = lambda: variance.summary() | {"memory": asdict(plan)}
    return trainer


def run_grpo(
    data: str | Path,
    model: str,
    out_dir: str | Path,
    settings: GRPOSettings | None = None,
) -> TrainResult:
    """Reinforce ``model`` on the labelled turns of ``data``; resumable, see runner."""
    settings = settings or GRPOSettings()
    return run_training(
        "grpo",
        data,
        model,
        out_dir,
        settings,
        make_rows=lambda samples, renderer: grpo_dataset(samples, renderer, settings),
        build_trainer=build_grpo_trainer,
        padding_side="left",  # generation pads on the left
    )
