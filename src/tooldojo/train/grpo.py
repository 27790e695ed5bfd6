"""GRPO on verified trajectories with TRL's ``GRPOTrainer`` and the gated reward."""

from __future__ import annotations

import json
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
    python = sum(1 for row in rows if row["codec"] == "pythonic")
    no_call = sum(1 for row in rows if json.loads(row["label"]).get("kind") != "call")
    return rows, {
        "samples": len(rows),
        "dropped_too_long": dropped,
        "max_length": settings.max_length,
        "python_call_share": round(python / len(rows), 4) if rows else 0.0,
        "no_call_share": round(no_call / len(rows), 4) if rows else 0.0,
    }


def build_grpo_trainer(model, tokenizer, rows: list[dict], settings: GRPOSettings, out_dir: Path):
    """A ``GRPOTrainer`` whose reward reads the ``label``/``tools`` columns of ``rows``."""
    from datasets import Dataset
    from trl import GRPOTrainer

    if settings.batch_size % settings.num_generations:
        raise ToolDojoError(
            f"batch size {settings.batch_size} must be a multiple of the group size "
            f"{settings.num_generations} (--num-generations)"
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
    trainer.tooldojo_summary = variance.summary
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
