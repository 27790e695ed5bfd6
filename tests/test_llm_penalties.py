"""Repetition penalties reach the sampler: the engine's chain lowers tokens it was told were
generated, and the backends pass the fields on (fast: llama.cpp's samplers over made-up
logits, no model)."""

from __future__ import annotations

import llama_cpp
import numpy as np

from sampling_support import sampling_engine
from tooldojo.llm.base import SamplingParams
from tooldojo.llm.llamacpp_engine import BatchEngine, GenerationParams, _Request, penalized
from tooldojo.llm.openai_compat import OpenAIChatModel
from tooldojo.model import Message

VOCAB = 4_000
REPEATED = 17


def _draws(params: GenerationParams, history: list[int], n: int = 200) -> list[int]:
    """``n`` draws over logits where ``REPEATED`` leads clearly, after ``history`` was accepted."""
    engine = sampling_engine(VOCAB)
    request = _Request(tokens=[], params=params, deliver=None)
    request.chain = BatchEngine._sampler_chain(params)
    if penalized(params):
        for token in history:  # what _sample_and_check tells the chain after each token
            llama_cpp.llama_sampler_accept(request.chain, token)
    rng = np.random.default_rng(0)
    drawn = []
    for _ in range(n):
        logits = rng.normal(0.0, 0.5, VOCAB).astype(np.float32)
        logits[REPEATED] = 6.0
        logits[REPEATED + 1] = 5.0
        drawn.append(engine._choose(request, logits))
    llama_cpp.llama_sampler_free(request.chain)
    return drawn


def test_the_repeat_penalty_lowers_tokens_already_generated():
    plain = GenerationParams(temperature=0.8, seed=5)
    penalty = GenerationParams(temperature=0.8, seed=5, repeat_penalty=1.6)
    history = [REPEATED] * 3
    assert not penalized(plain) and penalized(penalty)
    without = _draws(plain, history).count(REPEATED)
    with_penalty = _draws(penalty, history).count(REPEATED)
    assert without > 150  # it leads by one logit: drawn most of the time
    assert with_penalty < 60, with_penalty  # 6.0 / 1.6 = 3.75 < 5.0: the runner-up leads now
    # Nothing generated yet: nothing to penalize, the same draws as without a penalty.
    assert _draws(penalty, []) == _draws(plain, [])


def test_frequency_penalty_counts_repeats_and_greedy_ignores_penalties():
    params = GenerationParams(temperature=0.8, seed=5, frequency_penalty=0.6)
    once, thrice = _draws(params, [REPEATED]), _draws(params, [REPEATED] * 3)
    assert thrice.count(REPEATED) < once.count(REPEATED)
    assert not penalized(GenerationParams(temperature=0.0, repeat_penalty=1.5))


def _sent(sampling: SamplingParams) -> dict:
    model = OpenAIChatModel("m", ["http://127.0.0.1:9/v1"])
    request, _ = model._request([Message(role="user", content="hi")], None, sampling, None)
    return request


def test_openai_requests_carry_frequency_and_presence_penalties_only_when_set():
    sent = _sent(SamplingParams(temperature=0.8, frequency_penalty=0.4, presence_penalty=0.2))
    assert sent["frequency_penalty"] == 0.4 and sent["presence_penalty"] == 0.2
    plain = _sent(SamplingParams(temperature=0.8, repeat_penalty=1.3))
    # repeat_penalty is llama.cpp's (not OpenAI's): a server's own field goes in extra_body.
    assert not {"frequency_penalty", "presence_penalty", "repeat_penalty"} & plain.keys()


def test_the_llamacpp_backend_hands_the_penalties_to_the_engine(monkeypatch):
    import anyio

    from tooldojo.llm import llamacpp
    from tooldojo.llm.llamacpp_engine import GenerationResult

    seen: list[GenerationParams] = []

    async def fake_generate(engine, tokens, params):  # the engine itself is tested above
        seen.append(params)
        return GenerationResult(text="ok", prompt_tokens=len(tokens), completion_tokens=1)

    monkeypatch.setattr(llamacpp, "generate", fake_generate)
    model = llamacpp.LlamaCppChatModel(pool_size=1, n_ctx=512, weights="file", max_batch=1)
    try:
        sampling = SamplingParams(temperature=0.8, repeat_penalty=1.2, frequency_penalty=0.4)
        messages = [Message(role="user", content="hi")]
        anyio.run(lambda: model.complete(messages, sampling=sampling))
    finally:
        model.close()
    assert (seen[0].repeat_penalty, seen[0].frequency_penalty) == (1.2, 0.4)
    assert seen[0].presence_penalty == 0.0 and penalized(seen[0])
