"""A batch engine reduced to what its sampling reads, for tests of llama.cpp's samplers over
made-up logits (no model)."""

from __future__ import annotations

import llama_cpp
import numpy as np

from tooldojo.llm.llamacpp_engine import BatchEngine


def sampling_engine(vocab: int) -> BatchEngine:
    """Only what ``_choose`` reads: the vocabulary size and the candidate buffer."""
    engine = object.__new__(BatchEngine)
    engine.n_vocab = vocab
    engine._candidates = (llama_cpp.llama_token_data * vocab)()
    engine._candidate_view = np.ctypeslib.as_array(engine._candidates)
    engine._ids = np.arange(vocab, dtype=np.int32)
    return engine
