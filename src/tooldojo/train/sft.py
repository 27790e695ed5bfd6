"""SFT cold start on verified trajectories with TRL's ``SFTTrainer``."""

from __future__ import annotations

from pathlib import Path

from tooldojo.errors import ToolDojoError
from tooldojo.train.data import PromptRenderer, load_verified, sft_rows, turn_samples
from tooldojo.train.metrics import MetricsCSVCallback
from tooldojo.train.models import load_for_training, resolve_model, set_cpu_threads
from tooldojo.train.runner import (
    TrainResult,
    finished_result,
    lora_config,
    run_fingerprint,
    train_and_save,
    trainer_arguments,
)
from tooldojo.train.settings import SFTSettings


def build_sft_trainer(model, tokenizer, rows: list[dict], settings: SFTSettings, out_dir: Path):
    """An ``SFTTrainer`` on prompt-completion rows: loss on the completion (the turn) only."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        **trainer_arguments(settings, out_dir, settings.resolved_learning_rate()),
        max_length=settings.max_length,
        completion_only_loss=True,
        packing=settings.packing,
    )
    return SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(settings),
    )


def run_sft(
    data: str | Path,
    model: str,
    out_dir: str | Path,
    settings: SFTSettings | None = None,
) -> TrainResult:
    """Fine-tune ``model`` on the passed trajectories of ``data``; resumable, see runner."""
    settings = settings or SFTSettings()
    data, out_dir = Path(data), Path(out_dir)
    ref = resolve_model(model)
    fingerprint = run_fingerprint("sft", data, ref, settings)
    done = finished_result(out_dir, fingerprint)
    if done is not None:
        return done
    set_cpu_threads(settings.threads)
    samples = turn_samples(load_verified(data))
    hf_model, tokenizer = load_for_training(ref)
    renderer = PromptRenderer(tokenizer, settings.codec, settings.native_tools)
    rows = sft_rows(samples, renderer)
    if not rows:
        raise ToolDojoError(f"{data}: the passed trajectories hold no assistant turn to learn")
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = build_sft_trainer(hf_model, tokenizer, rows, settings, out_dir)
    return train_and_save(
        trainer,
        kind="sft",
        out_dir=out_dir,
        ref=ref,
        tokenizer=tokenizer,
        settings=settings,
        fingerprint=fingerprint,
        samples=len(rows),
        metrics=MetricsCSVCallback(out_dir / "metrics.csv"),
    )
