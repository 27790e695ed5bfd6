"""The weights options: bf16 and q8_0 converted once into the cache and answering (q8_0 on the
AMX kernels where the CPU has them), and what ``auto`` picks."""

from __future__ import annotations

import anyio
import llama_cpp
import pytest

from tooldojo.llm.embedded import embedded_gguf_path
from tooldojo.llm.llamacpp import LlamaCppChatModel, _file_type, weights_file
from tooldojo.llm.llamacpp_engine import GenerationParams, generate
from tooldojo.model import Message


def test_bf16_weights_are_converted_once_and_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLDOJO_CACHE", str(tmp_path))
    source = embedded_gguf_path()
    converted = weights_file(source, "bf16")
    assert converted.parent == tmp_path / "gguf" and converted != source
    assert _file_type(converted) == llama_cpp.LLAMA_FTYPE_MOSTLY_BF16
    assert weights_file(converted, "bf16") == converted  # a bf16 file is used as it is
    assert weights_file(source, "bf16") == converted  # cached, not converted again
    model = LlamaCppChatModel(pool_size=1, max_batch=1, n_ctx=256, weights="bf16")
    try:
        prompt = model.render_prompt([Message(role="user", content="Say hello.")], None)
        result = anyio.run(
            generate, model._engines[0], model.tokenize(prompt), GenerationParams(max_tokens=8)
        )
        assert result.text.strip() and result.error is None
    finally:
        model.close()


def test_auto_weights_are_q8_0_only_where_llama_cpp_multiplies_on_amx(monkeypatch):
    from tooldojo.errors import ToolDojoError
    from tooldojo.llm import llamacpp

    monkeypatch.setattr(llamacpp.llama_cpp, "llama_supports_gpu_offload", lambda: False)
    monkeypatch.setattr(llamacpp, "system_info", lambda: "AVX2 = 1 | AVX512 = 1 | REPACK = 1")
    assert llamacpp.resolved_weights("auto") == "f16"
    monkeypatch.setattr(llamacpp, "system_info", lambda: "AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1")
    assert llamacpp.resolved_weights("auto") == "q8_0"
    assert llamacpp.resolved_weights("f16") == "f16"  # an explicit choice is kept
    monkeypatch.setattr(llamacpp.llama_cpp, "llama_supports_gpu_offload", lambda: True)
    assert llamacpp.resolved_weights("auto") == "f16"  # layers on a GPU
    assert llamacpp.resolved_weights("auto", gpu_layers=0) == "q8_0"
    with pytest.raises(ToolDojoError, match="weights must be one of"):
        llamacpp.resolved_weights("q2")


def test_q8_0_weights_answer_batched(tmp_path, monkeypatch):
    """Four prompts decoded together from 8-bit weights: on an AMX CPU this runs llama.cpp's
    AMX_INT8 tile kernels (batches of several tokens), which died with SIGILL before our patch
    to their tile configuration (patches/llama.cpp-amx-tile-config.patch)."""
    monkeypatch.setenv("TOOLDOJO_CACHE", str(tmp_path))
    model = LlamaCppChatModel(pool_size=1, max_batch=4, n_ctx=512, weights="q8_0")
    questions = [
        "What is the capital of France? One word.",
        "What is the capital of Italy? One word.",
        "What is the capital of Spain? One word.",
        "What is the capital of Germany? One word.",
    ]
    cities = ["Paris", "Rome", "Madrid", "Berlin"]

    async def answers() -> list[str]:
        out: dict[int, str] = {}

        async def one(index: int, question: str) -> None:
            prompt = model.render_prompt([Message(role="user", content=question)], None)
            params = GenerationParams(max_tokens=16, stop=[model._eog_text])
            out[index] = (await generate(model._engines[0], model.tokenize(prompt), params)).text

        async with anyio.create_task_group() as group:
            for index, question in enumerate(questions):
                group.start_soon(one, index, question)
        return [out[index] for index in range(len(questions))]

    try:
        assert _file_type(model.weights_path) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
        texts = anyio.run(answers)
        assert model.stats.decode_calls < model.stats.decoded_tokens  # batched passes
        assert sum(city in text for city, text in zip(cities, texts, strict=True)) >= 3, texts
    finally:
        model.close()


def test_an_8_bit_kv_cache_needs_flash_attention_and_answers():
    from tooldojo.errors import ToolDojoError

    with pytest.raises(ToolDojoError, match="needs flash_attn"):
        LlamaCppChatModel(pool_size=1, max_batch=1, n_ctx=256, kv_cache="q8_0", flash_attn=False)
    with pytest.raises(ToolDojoError, match="kv_cache must be one of"):
        LlamaCppChatModel(pool_size=1, max_batch=1, n_ctx=256, kv_cache="q4_0")
    state_bytes = {}
    for kv_cache in ("f16", "q8_0"):
        model = LlamaCppChatModel(pool_size=1, max_batch=1, n_ctx=256, kv_cache=kv_cache)
        try:
            prompt = model.render_prompt(
                [Message(role="user", content="What is the capital of France? One word.")], None
            )
            params = GenerationParams(max_tokens=8, stop=[model._eog_text])
            result = anyio.run(generate, model._engines[0], model.tokenize(prompt), params)
            assert "Paris" in result.text, result.text
            state_bytes[kv_cache] = llama_cpp.llama_state_get_size(model._engines[0]._ctx)
        finally:
            model.close()
    # The same cells in 8-bit blocks (34 bytes per 32 values, against 64): about half the bytes.
    assert state_bytes["q8_0"] < 0.6 * state_bytes["f16"], state_bytes
