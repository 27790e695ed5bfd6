"""GRPO on verified trajectories with TRL's ``GRPOTrainer`` and the gated reward."""

from __future__ import annotations

from pathlib import Path

from tooldojo.errors import ToolDojoError
from tooldojo.train.data import PromptRenderer, grpo_rows, load_verified, turn_samples
from tooldojo.train.metrics import MetricsCSVCallback
from tooldojo.train.models import load_for_training, resolve_model, set_cpu_threads
from tooldojo.train.rewards import grpo_reward_functions
from tooldojo.train.runner import (
    TrainResult,
    finished_result,
    lora_config,
    run_fingerprint,
    train_and_save,
    trainer_arguments,
)
from tooldojo.train.settings import GRPOSettings


def build_grpo_trainer(model, tokenizer, rows: list[dict], settings: GRPOSettings, out_dir: Path):
    """A ``GRPOTrainer`` whose reward reads the ``label``/``tools`` columns of ``rows``."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    if settings.batch_size % settings.num_generations:
        raise ToolDojoError(
            f"batch size {settings.batch_size} must be a multiple of the group size "
            f"{settings.num_generations} (--num-generations)"
        )
    functions, weights = grpo_reward_functions(settings.codec, settings.gate_metrics)
    parameters = sum(p.numel() for p in model.parameters())
    config = GRPOConfig(
        **trainer_arguments(settings, out_dir, settings.resolved_learning_rate(parameters)),
        num_generations=settings.num_generations,
        beta=settings.beta,
        epsilon=settings.epsilon,
        epsilon_high=settings.epsilon_high,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        reward_weights=weights,
        use_vllm=settings.use_vllm,
        **({"vllm_mode": "colocate"} if settings.use_vllm else {}),
        **settings.extra,
    )
    return GRPOTrainer(
        model=model,
        reward_funcs=functions,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(settings),
    )


def run_grpo(
    data: str | Path,
    model: str,
    out_dir: str | Path,
    settings: GRPOSettings | None = None,
) -> TrainResult:
    """Reinforce ``model`` on the labelled turns of ``data``; resumable, see runner."""
    settings = settings or GRPOSettings()
    data, out_dir = Path(data), Path(out_dir)
    ref = resolve_model(model)
    fingerprint = run_fingerprint("grpo", data, ref, settings)
    done = finished_result(out_dir, fingerprint)
    if done is not None:
        return done
    set_cpu_threads(settings.threads)
    samples = turn_samples(load_verified(data))
    hf_model, tokenizer = load_for_training(ref)
    tokenizer.padding_side = "left"  # generation pads on the left
    renderer = PromptRenderer(tokenizer, settings.codec, settings.native_tools)
    rows = grpo_rows(samples, renderer)
    if not rows:
        raise ToolDojoError(f"{data}: no labelled assistant turn to reinforce")
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = build_grpo_trainer(hf_model, tokenizer, rows, settings, out_dir)
    return train_and_save(
        trainer,
        kind="grpo",
        out_dir=out_dir,
        ref=ref,
        tokenizer=tokenizer,
        settings=settings,
        fingerprint=fingerprint,
        samples=len(rows),
        metrics=MetricsCSVCallback(out_dir / "metrics.csv"),
    )
