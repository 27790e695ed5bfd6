"""tooldojo's MCP server: any tool set served as a real MCP server (see docs/mcp.md).

Names are re-exported lazily so that ``tooldojo --help`` (which imports ``tooldojo.mcp.cli``)
does not pay for importing the mcp SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_EPISODE": "tooldojo.mcp.episodes",
    "EPISODE_INIT_META_KEY": "tooldojo.mcp.episodes",
    "EPISODE_META_KEY": "tooldojo.mcp.episodes",
    "Episode": "tooldojo.mcp.episodes",
    "EpisodeStore": "tooldojo.mcp.episodes",
    "Executor": "tooldojo.mcp.executors.base",
    "ToolExecutionError": "tooldojo.mcp.executors.base",
    "ToolOutcome": "tooldojo.mcp.executors.base",
    "ToolRegistry": "tooldojo.mcp.registry",
    "ToolServer": "tooldojo.mcp.server",
    "result_value": "tooldojo.mcp.server",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tooldojo.mcp' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
