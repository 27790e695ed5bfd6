"""What SFT and GRPO runs share: output layout, device choice, resume, merge and export.

Output directory::

    OUT/checkpoint/      merged Hugging Face model + tokenizer + tooldojo_train.json
    OUT/metrics.csv      one row per logging step
    OUT/model.gguf       the checkpoint for the llamacpp backend (unless export is off)
    OUT/trainer/         Trainer checkpoints, so a killed run resumes where it stopped
    OUT/result.json      written last: the run is finished (a re-run with the same data
                         and settings returns it instead of training again)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tooldojo.errors import ToolDojoError
from tooldojo.hashing import content_hash
from tooldojo.train.data import PromptRenderer, TurnSample, load_verified, turn_samples
from tooldojo.train.metrics import MetricsCSVCallback
from tooldojo.train.models import (
    TRAIN_INFO_FILE,
    ModelRef,
    load_for_training,
    resolve_model,
    set_cpu_threads,
)
from tooldojo.train.settings import CommonSettings

RESULT_FILE = "result.json"


@dataclass
class TrainResult:
    """Where the outputs are and what the run measured."""

    out_dir: Path
    checkpoint: Path
    gguf: Path | None
    metrics_csv: Path
    steps: int
    seconds: float
    samples: int
    """Samples trained on: assistant turns for SFT (one conversation row holds several), rows
    for GRPO."""
    skipped: bool = False
    """True when an identical finished run was found and nothing was trained."""
    data: dict[str, Any] = field(default_factory=dict)
    """What the training rows held (shares of Python-call and no-call samples, tokens...)."""
    training: dict[str, Any] = field(default_factory=dict)
    """Run-level measures: tokens/s, and for GRPO the share of steps with reward variance."""

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "gguf": str(self.gguf) if self.gguf else None,
            "metrics_csv": str(self.metrics_csv),
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "samples": self.samples,
            "data": self.data,
            "training": self.training,
        }


def run_fingerprint(kind: str, data: Path, ref: ModelRef, settings: CommonSettings) -> str:
    payload = json.dumps(
        {"kind": kind, "data": content_hash(data), "model": ref.display, **settings.to_dict()},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def finished_result(out_dir: Path, fingerprint: str) -> TrainResult | None:
    """The earlier result if this exact run already finished in ``out_dir``."""
    path = out_dir / RESULT_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved.get("fingerprint") != fingerprint:
        return None
    return TrainResult(
        out_dir=out_dir,
        checkpoint=Path(saved["checkpoint"]),
        gguf=Path(saved["gguf"]) if saved.get("gguf") else None,
        metrics_csv=Path(saved["metrics_csv"]),
        steps=saved["steps"],
        seconds=saved["seconds"],
        samples=saved["samples"],
        skipped=True,
        data=saved.get("data", {}),
        training=saved.get("training", {}),
    )


def resolved_precision(precision: str) -> str:
    """``fp32`` or ``bf16`` for this machine (see ``CommonSettings.precision``)."""
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16"
    # AMX (Sapphire Rapids and later) multiplies bf16 tiles natively; AVX2 and plain AVX-512
    # machines emulate bf16 matmuls, slower than fp32.
    return "bf16" if torch.cpu.get_capabilities().get("amx_bf16") else "fp32"


def device_arguments(precision: str = "auto") -> dict[str, Any]:
    """The Trainer's device and mixed-precision fields: a GPU when there is one, else the CPU."""
    import torch

    return {
        "use_cpu": not torch.cuda.is_available(),
        "bf16": resolved_precision(precision) == "bf16",
    }


def trainer_arguments(settings: CommonSettings, out_dir: Path, learning_rate: float) -> dict:
    """The TrainingArguments fields both trainers share."""
    return {
        "output_dir": str(out_dir / "trainer"),
        "learning_rate": learning_rate,
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.grad_accum,
        "logging_steps": settings.logging_steps,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": 1,
        "seed": settings.seed,
        "report_to": "none",
        "dataloader_num_workers": 0,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "disable_tqdm": False,
        **device_arguments(settings.precision),
    }


def lora_config(settings: CommonSettings):
    if not settings.lora_r:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha or 2 * settings.lora_r,
        lora_dropout=settings.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def last_trainer_checkpoint(out_dir: Path) -> str | None:
    """The newest ``trainer/checkpoint-N`` of a killed run, to resume from."""
    folder = out_dir / "trainer"
    if not folder.is_dir():
        return None
    found = sorted(
        (p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    return str(found[-1]) if found else None


def train_and_save(
    trainer: Any,
    *,
    kind: str,
    out_dir: Path,
    ref: ModelRef,
    tokenizer: Any,
    settings: CommonSettings,
    fingerprint: str,
    samples: int,
    metrics: MetricsCSVCallback,
    data_summary: dict[str, Any] | None = None,
    training_summary: Callable[[], dict[str, Any]] | None = None,
) -> TrainResult:
    """Train (resuming if a trainer checkpoint exists), merge, save, export, record."""
    started = time.perf_counter()
    trainer.add_callback(metrics)
    trainer.train(resume_from_checkpoint=last_trainer_checkpoint(out_dir))
    seconds = time.perf_counter() - started
    training = {
        "train_seconds": round(seconds, 2),
        "precision": resolved_precision(settings.precision),
        **metrics.summary(),
    }
    if training_summary is not None:
        training.update(training_summary())

    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # LoRA: ship one plain checkpoint
        model = model.merge_and_unload()
    checkpoint = out_dir / "checkpoint"
    staging = out_dir / ".checkpoint.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    info = {
        "kind": kind,
        "base_model": ref.display,
        "source_gguf": str(ref.source_gguf) if ref.source_gguf else None,
        "codec": settings.codec,
        "native_tools": settings.native_tools,
        "settings": settings.to_dict(),
        "data": data_summary or {},
    }
    (staging / TRAIN_INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
    shutil.rmtree(checkpoint, ignore_errors=True)
    os.replace(staging, checkpoint)

    gguf_path = None
    if settings.export_gguf:
        from tooldojo.train.gguf_export import export_gguf

        gguf_path = export_gguf(checkpoint, out_dir / "model.gguf", outtype=settings.export_gguf)

    result = TrainResult(
        out_dir=out_dir,
        checkpoint=checkpoint,
        gguf=gguf_path,
        metrics_csv=metrics.path,
        steps=trainer.state.global_step,
        seconds=seconds,
        samples=samples,
        data=data_summary or {},
        training=training,
    )
    record = {**result.to_json(), "fingerprint": fingerprint, "kind": kind}
    tmp = out_dir / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, out_dir / RESULT_FILE)
    shutil.rmtree(out_dir / "trainer", ignore_errors=True)
    return result


def run_training(
    kind: str,
    data: str | Path,
    model: str,
    out_dir: str | Path,
    settings: CommonSettings,
    *,
    make_rows: Callable[[list[TurnSample], PromptRenderer], tuple[list[dict], dict[str, Any]]],
    build_trainer: Callable[..., Any],
    padding_side: str | None = None,
) -> TrainResult:
    """The shared course of an SFT or GRPO run: skip if finished, render rows, train, save.

    ``make_rows`` returns the rows and a summary of what they hold (``result.data``);
    ``build_trainer`` may set ``trainer.tooldojo_summary``, a callable whose dict joins
    ``result.training`` after training.
    """
    data, out_dir = Path(data), Path(out_dir)
    if not data.is_file():  # before hashing it for the fingerprint
        raise ToolDojoError(f"{data}: no such data file")
    ref = resolve_model(model)
    fingerprint = run_fingerprint(kind, data, ref, settings)
    done = finished_result(out_dir, fingerprint)
    if done is not None:
        return done
    set_cpu_threads(settings.threads)
    samples = turn_samples(load_verified(data))
    hf_model, tokenizer = load_for_training(ref)
    if padding_side:
        tokenizer.padding_side = padding_side
    rows, data_summary = make_rows(
        samples, PromptRenderer(tokenizer, settings.codec, settings.native_tools)
    )
    if not rows:
        raise ToolDojoError(f"{data}: the passed trajectories hold no turn {kind} can train on")
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(hf_model, tokenizer, rows, settings, out_dir)
    return train_and_save(
        trainer,
        kind=kind,
        out_dir=out_dir,
        ref=ref,
        tokenizer=tokenizer,
        settings=settings,
        fingerprint=fingerprint,
        # turns learned: an SFT conversation row holds several (data["rows"] counts rows)
        samples=data_summary.get("samples", len(rows)),
        metrics=MetricsCSVCallback(out_dir / "metrics.csv"),
        data_summary=data_summary,
        training_summary=getattr(trainer, "tooldojo_summary", None),
    )
