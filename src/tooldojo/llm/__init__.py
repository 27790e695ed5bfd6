"""Model backends behind one async protocol (see :mod:`tooldojo.llm.base`).

Heavy engines (llama_cpp, openai, torch, transformers) are imported by :func:`load_model` only
for the backend asked for, so importing this package stays light.
"""

from tooldojo.llm.base import ChatModel, Completion, Constraint, SamplingParams, Usage
from tooldojo.llm.codecs import DEFAULT_CODEC, ParseError, ToolCallCodec, get_codec
from tooldojo.llm.config import (
    BackendConfig,
    LLMConfig,
    load_config,
    load_model,
    load_role_models,
    parse_spec,
)
from tooldojo.llm.scripted import ScriptedChatModel

__all__ = [
    "DEFAULT_CODEC",
    "BackendConfig",
    "ChatModel",
    "Completion",
    "Constraint",
    "LLMConfig",
    "ParseError",
    "SamplingParams",
    "ScriptedChatModel",
    "ToolCallCodec",
    "Usage",
    "get_codec",
    "load_config",
    "load_model",
    "load_role_models",
    "parse_spec",
]
