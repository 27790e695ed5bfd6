"""BFCL's two ways of asking a model, and of reading its answer back, built on BFCL's own code.

``prompting``: BFCL's default system prompt (its ``system_prompt_pre_processing_chat_model``:
persona, Python-call output format, the function docs as JSON) is put in front of the
question and the model answers in plain text, which BFCL's ``default_decode_ast_prompting`` /
``default_decode_execute_prompting`` decode. Function names keep their dots
(``math.factorial``), as BFCL shows them.

``fc`` (function calling): the function docs become tools with BFCL's ``convert_to_tool``
(OpenAI style: dots in names replaced by ``_``, BFCL types mapped to JSON Schema) and the model
answers through its backend's native tool interface. The raw answer is kept in BFCL's FC form
(``[{name: "<JSON arguments>"}]``, or the text when no call was made) and decoded exactly as
BFCL's OpenAI handler does; the AST checker maps the sanitized names back to dotted ones.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

from tooldojo.llm.base import Completion
from tooldojo.model import Message, Tool, ToolCall

Mode = Literal["prompting", "fc"]
MODES: tuple[str, ...] = ("prompting", "fc")


def _handler_utils() -> Any:
    from bfcl_eval.model_handler import utils

    return utils


def bfcl_tools(functions: list[dict[str, Any]]) -> list[Tool]:
    """BFCL function docs as tools, converted by BFCL's own ``convert_to_tool`` (OpenAI style)."""
    from bfcl_eval.constants.enums import ModelStyle
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI

    converted = _handler_utils().convert_to_tool(
        functions, GORILLA_TO_OPENAPI, ModelStyle.OPENAI_COMPLETIONS
    )
    tools = []
    for original, item in zip(functions, converted, strict=True):
        function = item["function"]
        tools.append(
            Tool(
                name=function["name"],
                description=function.get("description", ""),
                parameters=function["parameters"],
                original_name=original["name"],
                source="bfcl",
            )
        )
    return tools


def to_messages(turn: list[dict[str, Any]]) -> list[Message]:
    """BFCL's ``{"role", "content"}`` question messages as tooldojo messages."""
    return [Message(role=item["role"], content=item.get("content") or "") for item in turn]


def prompting_first_turn(
    first_turn: list[dict[str, Any]], functions: list[dict[str, Any]], entry_id: str
) -> list[Message]:
    """The first turn with BFCL's default system prompt in front (merged into an existing one)."""
    turn = _handler_utils().system_prompt_pre_processing_chat_model(
        copy.deepcopy(first_turn), functions, entry_id
    )
    return to_messages(turn)


def fc_raw_result(completion: Completion) -> list[dict[str, str]] | str:
    """BFCL's raw FC result: ``[{name: arguments_json}]`` when calls were made, else the text.

    A backend that reads calls from text (a codec) reports a call of a tool that was not
    offered as a failed completion whose text lists the calls; BFCL would have passed such a
    call on to its checker (which fails it, and counts it as a call for irrelevance), so it is
    turned back into calls here.
    """
    calls = list(completion.tool_calls)
    if not calls and completion.error and completion.error.startswith("unknown tool"):
        calls = _calls_from_listing(completion.text)
    if calls:
        return [{call.name: json.dumps(call.arguments)} for call in calls]
    return completion.text


def _calls_from_listing(text: str) -> list[ToolCall]:
    try:
        items = json.loads(text)
        return [ToolCall(name=item["name"], arguments=item["arguments"]) for item in items]
    except (ValueError, TypeError, KeyError):
        return []


def decode_ast(raw: Any, mode: Mode, language: str = "Python") -> list[dict[str, Any]]:
    """The checker's input ``[{func: {arg: value}}]``; raises when the answer holds no calls.

    FC mirrors BFCL's ``OpenAICompletionsHandler.decode_ast`` (a text answer fails to decode);
    prompting calls BFCL's ``default_decode_ast_prompting``.
    """
    if mode == "fc":
        if not isinstance(raw, list):
            raise ValueError("the model answered in text, without a function call")
        decoded = []
        for invoked in raw:
            name = next(iter(invoked))
            decoded.append({name: json.loads(invoked[name])})
        return decoded
    from bfcl_eval.constants.enums import ReturnFormat

    if not isinstance(raw, str):
        raise ValueError(f"expected text in prompting mode, got {type(raw).__name__}")
    return _handler_utils().default_decode_ast_prompting(
        raw, ReturnFormat[language.upper()], has_tool_call_tag=False
    )


def decode_execute(raw: Any, mode: Mode) -> list[str]:
    """Calls as BFCL's execution strings (``["cd(folder='x')"]``), BFCL's decode_execute."""
    utils = _handler_utils()
    if mode == "fc":
        if not isinstance(raw, list):
            raise ValueError("the model answered in text, without a function call")
        return utils.convert_to_function_call(raw)
    return utils.default_decode_execute_prompting(raw)


def decoded_to_calls(decoded: list[dict[str, Any]]) -> list[ToolCall]:
    """Decoded ``[{func: {arg: value}}]`` as tool calls (to execute them in an environment)."""
    return [
        ToolCall(name=name, arguments=dict(args)) for item in decoded for name, args in item.items()
    ]
