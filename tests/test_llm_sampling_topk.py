"""The engine's top-k shortcut draws exactly what the whole-vocabulary chain draws (fast: no
model, only llama.cpp's samplers over made-up logits)."""

from __future__ import annotations

import ctypes

import llama_cpp
import numpy as np

from sampling_support import sampling_engine
from tooldojo.llm.llamacpp_engine import BatchEngine, GenerationParams, _Request

VOCAB = 8_000


def _whole_vocabulary_draw(chain, logits: np.ndarray) -> int:
    """The chain over every token, as the engine sampled before the shortcut."""
    data = (llama_cpp.llama_token_data * VOCAB)()
    view = np.ctypeslib.as_array(data)
    view["id"], view["logit"], view["p"] = np.arange(VOCAB), logits, 0.0
    array = llama_cpp.llama_token_data_array(
        data=ctypes.cast(data, llama_cpp.llama_token_data_p), size=VOCAB, selected=-1, sorted=False
    )
    llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
    return int(array.data[array.selected].id)


def test_top_k_shortcut_draws_the_same_tokens_as_the_whole_vocabulary():
    engine = sampling_engine(VOCAB)
    rng = np.random.default_rng(0)
    for top_k, temperature in ((40, 0.8), (5, 1.2), (40, 0.3)):
        params = GenerationParams(temperature=temperature, top_k=top_k, top_p=0.95, seed=11)
        fast = _Request(tokens=[], params=params, deliver=None)
        fast.chain = BatchEngine._sampler_chain(params)
        reference = BatchEngine._sampler_chain(params)  # same seed: the same random stream
        # Flat logits with a few peaks: many tokens near the k-th, where a wrong cut would show.
        drawn, expected = [], []
        for _ in range(300):
            logits = rng.normal(0.0, 1.0, VOCAB).astype(np.float32)
            logits[rng.integers(0, VOCAB, 3)] += 4.0
            drawn.append(engine._choose(fast, logits))
            expected.append(_whole_vocabulary_draw(reference, logits))
        assert drawn == expected, (top_k, temperature)
        assert len(set(drawn)) > 10  # a draw, not an argmax: the comparison can tell them apart
        llama_cpp.llama_sampler_free(fast.chain)
        llama_cpp.llama_sampler_free(reference)
