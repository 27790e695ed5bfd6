"""tooldojo: closed-loop synthesis, verification, training and evaluation of LLM tool calling.

The public Python API is re-exported here; everything else may change.
"""

from tooldojo.errors import DataError, SpecError, ToolDojoError
from tooldojo.jsonl import append_jsonl, existing_ids, read_jsonl, write_jsonl_atomic
from tooldojo.model import (
    CATEGORIES,
    GATES,
    Label,
    LabelCall,
    Message,
    RunManifest,
    Scenario,
    ScenarioTurn,
    StageRecord,
    Tool,
    ToolCall,
    Trajectory,
    Verdict,
)
from tooldojo.specs import export_tools, load_tools

__version__ = "0.1.0"

# Stage entry points, imported on first use so `import tooldojo` stays light.
_LAZY = {
    "load_model": "tooldojo.llm.config",
    "load_config": "tooldojo.llm.config",
    "ChatModel": "tooldojo.llm.base",
    "SynthRequest": "tooldojo.synth.pipeline",
    "VerifyOptions": "tooldojo.verify.pipeline",
    "verify_file": "tooldojo.verify.pipeline",
    "tool_call_reward": "tooldojo.verify.reward",
    "compute_score": "tooldojo.verify.reward",
    "run_sft": "tooldojo.train",
    "run_grpo": "tooldojo.train",
    "SFTSettings": "tooldojo.train.settings",
    "GRPOSettings": "tooldojo.train.settings",
    "run_bfcl": "tooldojo.eval.bfcl_runner",
    "LoopRequest": "tooldojo.loop.controller",
    "run_loop": "tooldojo.loop.controller",
    "load_loop_config": "tooldojo.loop.config",
    "write_report": "tooldojo.report",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tooldojo' has no attribute {name!r}")


__all__ = [
    "CATEGORIES",
    "GATES",
    "DataError",
    "Label",
    "LabelCall",
    "Message",
    "RunManifest",
    "Scenario",
    "ScenarioTurn",
    "SpecError",
    "StageRecord",
    "Tool",
    "ToolCall",
    "ToolDojoError",
    "Trajectory",
    "Verdict",
    "__version__",
    "append_jsonl",
    "existing_ids",
    "export_tools",
    "load_tools",
    "read_jsonl",
    "write_jsonl_atomic",
    *_LAZY,
]
