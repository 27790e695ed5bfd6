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
]
