"""Reading assistant turns as calls: structured ``tool_calls`` or raw text through a codec.

Every gate looks at the same thing: for each assistant message, the calls it made (or the
text it answered) and the label it should match. This module computes that view once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tooldojo.llm.codecs import DEFAULT_CODEC, ParseError, get_codec
from tooldojo.model import Label, Message, ToolCall, Trajectory


@dataclass
class Turn:
    """One assistant message as calls or text, with its label (``None`` if unlabeled)."""

    index: int
    """Position among assistant messages (``labels[index]`` is its label)."""
    message_index: int
    """Position in ``trajectory.messages``."""
    calls: list[ToolCall] = field(default_factory=list)
    text: str = ""
    label: Label | None = None
    parse_error: str | None = None
    """Set when the text tried to call a tool but the call did not parse."""
    origin: str | None = None
    """``Message.origin``: a ``forced`` turn was copied from its label, so it matches by
    construction and says nothing about the model; gates count it apart."""


def parse_text(text: str, codec: str = DEFAULT_CODEC) -> list[ToolCall]:
    """Calls in raw model text (``[]`` for a plain answer); raises ``ParseError`` if malformed."""
    return get_codec(codec).parse(text)


def turn_from_message(message: Message, codec: str = DEFAULT_CODEC) -> tuple[list[ToolCall], str]:
    """Calls and text of one assistant message; text is parsed only when no ``tool_calls``."""
    text = message.content or ""
    if message.tool_calls:
        return list(message.tool_calls), text
    return parse_text(text, codec), text


def completion_turn(completion: Any, codec: str = DEFAULT_CODEC) -> tuple[list[ToolCall], str]:
    """Calls and text of a sampled completion: a string, a message dict/list, or a Message.

    A message list (TRL conversational completions) contributes its last assistant message.
    """
    if isinstance(completion, str):
        return parse_text(completion, codec), completion
    if isinstance(completion, Message):
        return turn_from_message(completion, codec)
    if isinstance(completion, list):
        messages = [m for m in completion if _role(m) == "assistant"] or list(completion)
        if not messages:
            return [], ""
        completion = messages[-1]
    if isinstance(completion, dict):
        raw_calls = completion.get("tool_calls") or []
        calls = [ToolCall.from_openai(call) for call in raw_calls]
        text = completion.get("content") or ""
        if not isinstance(text, str):  # content parts
            text = "".join(part.get("text", "") for part in text if isinstance(part, dict))
        if calls:
            return calls, text
        return parse_text(text, codec), text
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


def _role(message: Any) -> str | None:
    if isinstance(message, dict):
        return message.get("role")
    return getattr(message, "role", None)


def assistant_turns(trajectory: Trajectory, codec: str = DEFAULT_CODEC) -> list[Turn]:
    """The assistant turns of ``trajectory``, each parsed and paired with its label."""
    turns: list[Turn] = []
    for message_index, message in enumerate(trajectory.messages):
        if message.role != "assistant":
            continue
        index = len(turns)
        label = trajectory.labels[index] if index < len(trajectory.labels) else None
        turn = Turn(
            index=index,
            message_index=message_index,
            label=label,
            origin=getattr(message, "origin", None),
        )
        try:
            turn.calls, turn.text = turn_from_message(message, codec)
        except ParseError as error:
            turn.text = message.content or ""
            turn.parse_error = str(error)
        turns.append(turn)
    return turns
