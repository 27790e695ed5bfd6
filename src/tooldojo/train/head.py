"""The LM head over only the positions the loss is taken on.

SmolLM2's 49k-token vocabulary makes the output projection about a fifth of a forward pass,
and SFT takes its loss on the assistant turn only, a small part of each sample: the prompt
carries the tool schemas and the history. TRL's SFTTrainer calls
``model(..., labels=labels, fused_lm_head=True)`` and expects per-token log-probabilities;
its own fused head projects *every* position on devices without Triton (the CPU here), and
in its backward projects them all again. This head runs the backbone, then projects only
the hidden states whose next-token label is not ``-100``, with one plain ``F.linear`` and
PyTorch's log-softmax, and scatters the results back to TRL's output shape. The loss, its
normalisation and TRL's metrics are unchanged: ignored positions contribute zero either way.
"""

from __future__ import annotations

import functools
import types
from typing import Any

MAX_SELECTED_ROWS = 1024
"""Project at most this many positions at once (bounds the ``[rows, vocab]`` logits in memory)."""


def _selected_log_probs(hidden: Any, weight: Any, bias: Any, targets: Any):
    """log p(target), entropy and top-1 hit for each row of ``hidden`` ([N, H])."""
    import torch
    import torch.nn.functional as F

    log_probs, entropies, top1 = [], [], []
    for start in range(0, hidden.shape[0], MAX_SELECTED_ROWS):
        rows = slice(start, start + MAX_SELECTED_ROWS)
        logits = F.linear(hidden[rows], weight, bias).float()
        log_softmax = logits.log_softmax(-1)
        log_probs.append(log_softmax.gather(-1, targets[rows, None]).squeeze(-1))
        with torch.no_grad():  # metrics only, as in TRL
            entropies.append(-(log_softmax.exp() * log_softmax).sum(-1))
            top1.append(logits.argmax(-1) == targets[rows])
    return torch.cat(log_probs), torch.cat(entropies), torch.cat(top1)


def add_selected_lm_head(model: Any) -> None:
    """Make ``model(..., labels=..., fused_lm_head=True)`` project only labelled positions.

    Patches ``model.forward`` the way TRL's ``add_fused_lm_head`` does (so PEFT and
    accelerate wrappers still reach it); any other call goes to the forward installed before,
    so generation is unchanged. Returns TRL's ``FusedCausalLMOutput`` with ``log_probs``,
    ``entropy``, ``is_top1`` and ``label_mask``.
    """
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    previous_forward = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head:
            if labels is not None:
                kwargs["labels"] = labels
            if num_items_in_batch is not None:
                kwargs["num_items_in_batch"] = num_items_in_batch
            return previous_forward(*args, **kwargs)
        if kwargs.pop("shift_labels", None) is not None:
            raise ValueError("the selected LM head does not take pre-shifted labels")
        kwargs["use_cache"] = False
        # Looked up on every call: PEFT replaces modules after the patch.
        hidden_states = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        mask = targets != -100
        head = self.get_output_embeddings()
        log_probs, entropy, top1 = _selected_log_probs(
            hidden_states[mask], head.weight, head.bias, targets[mask]
        )
        # masked_scatter keeps an all-ignored batch connected to the graph (a zero loss).
        log_probs = log_probs.new_zeros(mask.shape).masked_scatter(mask, log_probs)
        entropy = entropy.new_zeros(mask.shape).masked_scatter(mask, entropy)
        top1 = torch.zeros_like(mask).masked_scatter(mask, top1)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / count,
            log_probs=log_probs,
            entropy=entropy,
            is_top1=top1,
            label_mask=mask,
        )

    model.forward = types.MethodType(forward, model)
