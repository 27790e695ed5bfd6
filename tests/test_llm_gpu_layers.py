"""``gpu_layers``: how many layers a llama.cpp built for a GPU offloads (-1: all of them).

This machine has no GPU, so what is checked here is the setting's path: the config accepts
-1 and counts and refuses anything below, and a CPU build loads the model with every layer
asked for the GPU (llama.cpp keeps them on the CPU). The GPU path itself ran on a lent H200
(docs/synth.md, "Worker processes and a GPU").
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tooldojo.llm.config import BackendConfig
from tooldojo.llm.embedded import embedded_gguf_path
from tooldojo.llm.llamacpp_engine import load_llama_model


def test_gpu_layers_is_all_a_count_or_none() -> None:
    assert BackendConfig(kind="llamacpp").gpu_layers is None  # llama.cpp's own default
    assert BackendConfig(kind="llamacpp", gpu_layers=-1).gpu_layers == -1
    with pytest.raises(ValidationError, match="gpu_layers"):
        BackendConfig(kind="llamacpp", gpu_layers=-2)


def test_a_cpu_build_loads_the_model_with_all_layers_asked_for_the_gpu() -> None:
    import llama_cpp

    model = load_llama_model(str(embedded_gguf_path()), gpu_layers=-1)
    assert model.n_vocab() > 40_000  # loaded whole
    assert not llama_cpp.llama_supports_gpu_offload()  # this machine's build: nothing moved
