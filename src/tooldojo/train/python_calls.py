"""Samples that teach Python-call syntax (``[f(a=1), g(b="x")]``) besides the native format.

Benchmarks such as BFCL ask a model, in a system prompt of their own, to answer with a Python
list of calls. A model that has only seen its native ``<tool_call>`` blocks answers them in
prose. So a share of the SFT samples is rendered with a system prompt asking for Python calls
and the answer written in that syntax, by the same codec that parses it at evaluation.

The system prompts below are our own words, written without reference to any benchmark's
prompt (BFCL is test data only; its text must never reach training). Several wordings are
rotated so the model learns the request, not one sentence, and the tool list is laid out in
several ways (one compact JSON object per line, or one indented JSON array), because the layout
is up to whoever writes the system prompt: a model that has seen a single layout tends to
continue an unfamiliar one (copying the schemas) instead of answering with calls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable

from tooldojo.llm.codecs import _tool_lines, get_codec
from tooldojo.model import Message, Tool

PYTHON_CALL_PROMPTS: tuple[str, ...] = (
    "Functions you can use are listed below as JSON schemas. To use them, "
    "reply with only a Python list of calls written with keyword arguments, for example "
    '[get_price(item="tea", count=2)]. Several calls go in the same list. When no function '
    "here fits the request, reply in plain text and call nothing.\n\n"
    "Functions:\n{tools}",
    "You have access to these tools, described in JSON:\n{tools}\n\n"
    "Answer a request that needs tools with a single Python list of function calls and "
    'nothing else, e.g. [lookup(city="Lima"), convert(value=3.5, unit="km")]. Use the '
    "argument names exactly as the schemas spell them. When no tool fits, answer the user "
    "directly in words.",
    "Reply format: a Python list of calls, [name(arg=value, ...), ...], with literal values "
    "and no other text. Only the tools below exist; if the request cannot be served by them, "
    "say so briefly instead of calling anything.\n\n{tools}",
)

PYTHON_SYNTAX = "python"
NATIVE_SYNTAX = "native"


def _unit_interval(*parts: object) -> float:
    """A stable number in [0, 1) from ``parts`` (Python's ``hash`` is salted per process)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _indented_array(tools: list[Tool], indent: int) -> str:
    return json.dumps(
        [tool.to_openai()["function"] for tool in tools], indent=indent, ensure_ascii=False
    )


TOOL_LAYOUTS: dict[str, Callable[[list[Tool]], str]] = {
    "lines": _tool_lines,  # one compact object per line, as the native prompt has them
    "array2": lambda tools: _indented_array(tools, 2),
    "array4": lambda tools: _indented_array(tools, 4),
}


def _pick(options: tuple | list, *parts: object) -> object:
    return options[int(_unit_interval(*parts) * len(options))]


def python_prompt(tools: list[Tool], key: str, layout: str | None = None) -> str:
    """One of our system prompts asking for Python calls, with ``tools`` listed in one of the
    :data:`TOOL_LAYOUTS` (``layout``, else drawn from ``key`` like the wording)."""
    wording = _pick(PYTHON_CALL_PROMPTS, "wording", key)
    layout = layout or _pick(list(TOOL_LAYOUTS), "layout", key)
    return wording.format(tools=TOOL_LAYOUTS[layout](tools))


def writable_in_python(messages: Iterable[Message]) -> bool:
    """Whether every call in ``messages`` can be written as a Python call (identifier names)."""
    codec = get_codec("pythonic")
    for message in messages:
        if message.tool_calls:
            try:
                codec.format_calls(message.tool_calls)
            except Exception:  # a name or keyword that is not a Python identifier
                return False
    return True


def choose_python(trajectory_ids: Iterable[str], share: float, seed: int) -> set[str]:
    """``round(share x n)`` of the ``n`` trajectories, by a seeded hash, whose samples are
    rendered for Python syntax (all of a trajectory's turns alike, so a multi-turn history
    never mixes the two syntaxes)."""
    ranked = sorted(set(trajectory_ids), key=lambda t: _unit_interval("python-share", seed, t))
    return set(ranked[: round(share * len(ranked))])


def render_python_chat(messages: list[Message], tools: list[Tool], key: str) -> list[dict]:
    """Plain chat turns: our Python-call system prompt, calls written as Python lists."""
    from tooldojo.llm._shared import render_chat

    chat = render_chat(messages, None, get_codec("pythonic"))
    system = python_prompt(tools, key)
    if chat and chat[0]["role"] == "system":
        chat[0]["content"] = f"{chat[0]['content']}\n\n{system}" if chat[0]["content"] else system
    else:
        chat.insert(0, {"role": "system", "content": system})
    return chat
