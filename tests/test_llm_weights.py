"""The bf16 weights option: converted once into the cache, recognised as bf16, and it answers."""

from __future__ import annotations

import anyio
import llama_cpp

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
