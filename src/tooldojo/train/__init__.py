"""Training on verified trajectories: SFT cold start, GRPO with the gated reward, GGUF export.

Heavy libraries (torch, transformers, TRL) load only when a run starts.
"""

from tooldojo.train.settings import GRPOSettings, SFTSettings

__all__ = ["GRPOSettings", "SFTSettings", "export_gguf", "run_grpo", "run_sft"]


def run_sft(*args, **kwargs):
    """See :func:`tooldojo.train.sft.run_sft`."""
    from tooldojo.train.sft import run_sft as run

    return run(*args, **kwargs)


def run_grpo(*args, **kwargs):
    """See :func:`tooldojo.train.grpo.run_grpo`."""
    from tooldojo.train.grpo import run_grpo as run

    return run(*args, **kwargs)


def export_gguf(*args, **kwargs):
    """See :func:`tooldojo.train.gguf_export.export_gguf`."""
    from tooldojo.train.gguf_export import export_gguf as run

    return run(*args, **kwargs)
