"""The agents of role-play synthesis: user simulator and assistant (the MCP server agent is
:class:`tooldojo.mcp.executors.simulated.SimulatedExecutor`)."""

from tooldojo.agents.assistant import ASSISTANT_SYSTEM_PROMPT, AssistantAgent
from tooldojo.agents.personas import PERSONAS, STYLES, draw_persona
from tooldojo.agents.user import UserSimulator, UserText

__all__ = [
    "ASSISTANT_SYSTEM_PROMPT",
    "PERSONAS",
    "STYLES",
    "AssistantAgent",
    "UserSimulator",
    "UserText",
    "draw_persona",
]
