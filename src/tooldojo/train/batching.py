"""Length-grouped batches: samples of similar length share a batch, batches come in random order.

Samples range from a couple of hundred to a couple of thousand tokens (the prompt carries the
tool schemas), and a batch is padded to its longest row. Written here rather than using
transformers' ``LengthGroupedSampler`` because that one sorts only within random
"megabatches" of at most 50 batches and always keeps at least four of them, so a few hundred
samples get little grouping; and it serves each megabatch longest first, a length curriculum
nobody asked for. Here every epoch sorts the whole (shuffled) set by length, cuts it into
batches and shuffles the batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthGroupedBatches(Sampler[int]):
    """Indices such that each run of ``batch_size`` holds samples of neighbouring lengths."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """A new order each epoch, the same one on a resumed run (accelerate calls this)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        shuffled = torch.randperm(len(self.lengths), generator=generator).tolist()
        # A stable sort of a shuffled list: equal lengths land in a random order.
        ordered = sorted(shuffled, key=self.lengths.__getitem__)
        full = len(ordered) - len(ordered) % self.batch_size
        batches = [
            ordered[start : start + self.batch_size] for start in range(0, full, self.batch_size)
        ]
        for position in torch.randperm(len(batches), generator=generator).tolist():
            yield from batches[position]
        # The short remainder comes last: the data loader cuts the stream every batch_size
        # indices, so a short batch in the middle would shift every batch after it.
        yield from ordered[full:]
