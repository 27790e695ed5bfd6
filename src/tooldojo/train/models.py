"""Load the model being trained: a Hugging Face directory or a GGUF file (the embedded default too).

transformers dequantizes a GGUF into a regular ``LlamaForCausalLM`` (``gguf_file=``); the
source GGUF is remembered so the GGUF export can reuse its tokenizer and metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooldojo.errors import ToolDojoError

EMBEDDED_ALIASES = ("embedded", "default", "llamacpp")
TRAIN_INFO_FILE = "tooldojo_train.json"
"""Written beside every checkpoint: base model, source GGUF, codec, settings."""


@dataclass(frozen=True)
class ModelRef:
    """Where to load from: ``directory`` plus ``gguf_file`` when the weights are a GGUF."""

    directory: Path
    gguf_file: str | None = None
    source_gguf: Path | None = None
    """The GGUF whose tokenizer/metadata a GGUF export reuses (inherited by our checkpoints)."""

    @property
    def display(self) -> str:
        return str(self.directory / self.gguf_file) if self.gguf_file else str(self.directory)


def resolve_model(spec: str) -> ModelRef:
    """``embedded`` | path/to/model.gguf | a Hugging Face checkpoint directory."""
    if spec in EMBEDDED_ALIASES:
        from tooldojo.llm.embedded import embedded_gguf_path

        path = embedded_gguf_path()
        return ModelRef(path.parent, path.name, path)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelRef(path.parent, path.name, path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ToolDojoError(f"{path}: not a Hugging Face checkpoint (no config.json)")
        info = read_train_info(path)
        source = info.get("source_gguf")
        return ModelRef(path, None, Path(source) if source else None)
    raise ToolDojoError(
        f"{spec}: model not found (give 'embedded', a .gguf file or a checkpoint directory)"
    )


def read_train_info(directory: Path) -> dict[str, Any]:
    path = directory / TRAIN_INFO_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def set_cpu_threads(threads: int | None) -> int:
    """One thread per process by default: two busy threads on two shared cores stall."""
    import torch

    count = threads or int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    torch.set_num_threads(count)
    return count


def load_for_training(ref: ModelRef, *, dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) with a pad token set (SmolLM2 pads with its end-of-turn token)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    if ref.gguf_file:
        kwargs["gguf_file"] = ref.gguf_file
    tokenizer = AutoTokenizer.from_pretrained(ref.directory, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        ref.directory, dtype=getattr(torch, dtype), **kwargs
    )
    if ref.gguf_file:
        _forget_gguf_quantizer(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _forget_gguf_quantizer(model: Any) -> None:
    """A GGUF is dequantized to ordinary float weights on load, yet transformers keeps a
    "quantized with gguf" marker that refuses ``save_pretrained``; the weights are plain
    tensors, so the marker is dropped."""
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
