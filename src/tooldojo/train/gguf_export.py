"""Export a trained Llama-architecture checkpoint to GGUF for the embedded llamacpp backend.

Written with the ``gguf`` package's writer. Tokenizer metadata is copied from the GGUF
the model was first loaded from (the embedded SmolLM2 keeps its exact llama.cpp
tokenizer, pre-tokenizer and chat template); a checkpoint without one gets a BPE
tokenizer converted from its ``tokenizer.json``.

Hand-written rather than calling llama.cpp's ``convert_hf_to_gguf.py`` because that
script is not on PyPI; this covers the Llama family the loop trains (SmolLM2, Llama).
For other architectures, use llama.cpp's converter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tooldojo.errors import ToolDojoError
from tooldojo.train.models import read_train_info

OUT_TYPES = ("f32", "f16", "q8_0")


def _permute_for_rope(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's rotary layout for q/k projections (what its converter applies, and what
    transformers' GGUF loader undoes)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _load_state_dict(checkpoint: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    files = sorted(checkpoint.glob("*.safetensors"))
    if not files:
        raise ToolDojoError(f"{checkpoint}: no *.safetensors weights to export")
    state: dict[str, np.ndarray] = {}
    for file in files:
        state.update(load_file(str(file)))
    return state


def _copy_tokenizer_fields(writer: Any, source: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(str(source))
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        main = field.types[0]
        sub = field.types[1] if main == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), main, sub)


def _write_hf_tokenizer(writer: Any, checkpoint: Path) -> None:
    """A byte-level BPE tokenizer (``tokenizer.json``) as llama.cpp's ``gpt2`` vocabulary."""
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise ToolDojoError(
            f"{checkpoint}: only BPE tokenizers can be exported here; use llama.cpp's "
            "convert_hf_to_gguf.py for this model"
        )
    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    by_id = {i: t for t, i in vocab.items()}
    special = set(tokenizer.all_special_ids) | {
        int(i) for i, t in tokenizer.added_tokens_decoder.items() if t.special
    }
    tokens, types = [], []
    for i in range(size):
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        types.append(
            gguf.TokenType.CONTROL
            if i in special
            else gguf.TokenType.UNUSED
            if i not in by_id
            else gguf.TokenType.NORMAL
        )
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for setter, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_token_id),
        (writer.add_eos_token_id, tokenizer.eos_token_id),
        (writer.add_pad_token_id, tokenizer.pad_token_id),
        (writer.add_unk_token_id, tokenizer.unk_token_id),
    ):
        if token_id is not None:
            setter(token_id)
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def export_gguf(
    checkpoint: str | Path,
    out: str | Path,
    *,
    outtype: str = "f16",
    source_gguf: str | Path | None = None,
) -> Path:
    """Write ``out`` (atomically) from the Hugging Face ``checkpoint``; returns ``out``."""
    import gguf

    checkpoint, out = Path(checkpoint), Path(out)
    if outtype not in OUT_TYPES:
        raise ToolDojoError(f"GGUF type must be one of {', '.join(OUT_TYPES)}, not {outtype!r}")
    config = json.loads((checkpoint / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise ToolDojoError(
            f"{checkpoint}: GGUF export supports Llama-architecture models, not "
            f"{config.get('model_type')!r}; use llama.cpp's convert_hf_to_gguf.py"
        )
    # transformers 5 keeps rope settings in "rope_parameters"; older configs at top level.
    rope = {**config, **(config.get("rope_parameters") or {})}
    if config.get("rope_scaling") or rope.get("rope_type", "default") != "default":
        raise ToolDojoError(f"{checkpoint}: rope scaling is not supported by this exporter")
    source = source_gguf or read_train_info(checkpoint).get("source_gguf")

    blocks = config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    tmp = out.with_name(f".{out.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(checkpoint.name)
    writer.add_block_count(blocks)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(head_dim)
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[outtype]
    writer.add_file_type(file_type)
    if source and Path(source).is_file():
        _copy_tokenizer_fields(writer, Path(source))
    else:
        _write_hf_tokenizer(writer, checkpoint)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, blocks)
    state = _load_state_dict(checkpoint)
    tied = config.get("tie_word_embeddings", False)
    for key, value in state.items():
        if key == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        if key.endswith("rotary_emb.inv_freq"):
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ToolDojoError(f"{checkpoint}: no GGUF name for tensor {key!r}")
        data = value.astype(np.float32)
        if key.endswith("q_proj.weight"):
            data = _permute_for_rope(data, heads)
        elif key.endswith("k_proj.weight"):
            data = _permute_for_rope(data, kv_heads)
        if data.ndim == 1 or outtype == "f32":
            writer.add_tensor(name, data)
        elif outtype == "f16":
            writer.add_tensor(name, data.astype(np.float16))
        else:
            quantized = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, out)
    return out
