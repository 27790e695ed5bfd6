"""Tool-call codecs: how tools are taught to a model in text and how its calls are read back.

A codec is the text protocol between a model and tooldojo for models (or stages)
that do not use an API's native ``tool_calls`` field:

* ``render(tools)`` -> system-prompt text that lists the tools and teaches the format;
* ``parse(text)`` -> the calls in a model's answer (``[]`` when it holds none; a
  :class:`ParseError` when it clearly tries to call but the call is malformed);
* ``format_calls(calls)`` -> the assistant text for given calls (the inverse of ``parse``,
  used to write training targets and to replay history to the model).

Four formats:

``hermes``  Hermes/Qwen ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (the
            default for models whose chat template lacks tool support, such as SmolLM2).
``pythonic`` BFCL's Python-call syntax ``[f(a=1), g(b="x")]``, parsed with :mod:`ast`, never
            evaluated.
``json``    a plain JSON list of ``{"name": ..., "arguments": {...}}`` objects (a single object is
            accepted too).
``openai``  the OpenAI ``tool_calls`` array (``{"id", "type": "function", "function": {"name",
            "arguments": "<JSON string>"}}``), as an API with native tool support returns it.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, ClassVar

from tooldojo.errors import ToolDojoError
from tooldojo.model import Tool, ToolCall

DEFAULT_CODEC = "hermes"
"""What models without native tool support (the embedded SmolLM2) are prompted with."""


class ParseError(ToolDojoError):
    """A model answer that tries to call a tool but does not form a valid call."""

    def __init__(self, codec: str, message: str, text: str = ""):
        self.codec = codec
        self.message = message
        self.text = text
        super().__init__(str(self))

    def __str__(self) -> str:
        snippet = self.text.strip().replace("\n", " ")
        if len(snippet) > 120:
            snippet = snippet[:117] + "..."
        shown = f" in {snippet!r}" if snippet else ""
        return f"{self.codec} tool call: {self.message}{shown}"


_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*[ \t]*\n?(.*?)```", re.DOTALL)


def _fenced_blocks(text: str) -> list[str]:
    """Bodies of Markdown code fences, so a call wrapped in ```json ... ``` is still found."""
    return [match.group(1) for match in _FENCE.finditer(text)]


def _tool_lines(tools: list[Tool]) -> str:
    """One compact JSON line per tool (compact because prompt length is the training budget)."""
    return "\n".join(
        json.dumps(tool.to_openai(), ensure_ascii=False, separators=(",", ":")) for tool in tools
    )


DESCRIPTION_CHARS = 100
"""Descriptions in compact signatures are cut to their first sentence and at most this many
characters: the rest (error codes, caveats) costs prompt tokens on every turn and every training
sample while rarely changing which call is right."""


_ABBREVIATIONS = {"e.g.", "i.e.", "etc.", "vs.", "approx.", "no.", "(e.g.", "(i.e."}


def trim_description(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """First sentence of ``text`` (whitespace collapsed), cut at a word before ``limit`` chars."""
    text = " ".join((text or "").split())
    # A sentence ends at ". X" unless the dot ends an abbreviation such as "e.g.".
    for match in re.finditer(r"(?<=[.!?])\s+(?=[A-Z`])", text):
        before = text[: match.start()].rsplit(" ", 1)[-1].lower()
        if before not in _ABBREVIATIONS:
            text = text[: match.start()]
            break
    if len(text) > limit:
        text = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text


def _literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class _SignatureWriter:
    """TypeScript-like types of a tool's JSON Schema, resolving its local ``$ref``s."""

    MAX_DEPTH = 4

    def __init__(self, root: dict[str, Any]):
        self.defs = {**root.get("definitions", {}), **root.get("$defs", {})}
        self.root = root

    def _resolve(self, ref: str) -> dict[str, Any] | None:
        if ref == "#":
            return self.root
        for prefix in ("#/$defs/", "#/definitions/"):
            if ref.startswith(prefix):
                target = self.defs.get(ref[len(prefix) :])
                return target if isinstance(target, dict) else None
        return None

    def type_of(self, schema: Any, depth: int = 0) -> str:
        if not isinstance(schema, dict):
            return "any"
        if "$ref" in schema:
            target = self._resolve(schema["$ref"])
            if target is None or depth >= self.MAX_DEPTH:
                return str(schema["$ref"]).rsplit("/", 1)[-1] or "object"
            return self.type_of(target, depth + 1)
        if "const" in schema:
            return _literal(schema["const"])
        if isinstance(schema.get("enum"), list):
            return "|".join(_literal(value) for value in schema["enum"])
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                return "|".join(self.type_of(option, depth + 1) for option in schema[key])
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                part = (
                    self._resolve(part["$ref"])
                    if isinstance(part, dict) and "$ref" in part
                    else part
                )
                if isinstance(part, dict):
                    merged = {**merged, **part}
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return self.type_of({**merged, **rest}, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            return "|".join(self.type_of({**schema, "type": one}, depth) for one in kind)
        if kind == "array" or "items" in schema:
            item = self.type_of(schema.get("items"), depth + 1) if "items" in schema else "any"
            return f"({item})[]" if "|" in item else f"{item}[]"
        if kind == "object" or "properties" in schema:
            properties = schema.get("properties")
            if not isinstance(properties, dict) or not properties or depth >= self.MAX_DEPTH:
                return "object"
            return "{" + self.fields(schema, depth + 1) + "}"
        if kind in ("integer", "number"):
            return kind + self._bounds(schema)
        if kind == "string":
            if schema.get("format"):
                return f"string({schema['format']})"
            pattern = schema.get("pattern")
            if isinstance(pattern, str) and len(pattern) <= 40:
                return f"string(/{pattern}/)"
            return "string"
        return str(kind) if isinstance(kind, str) else "any"

    @staticmethod
    def _bounds(schema: dict[str, Any]) -> str:
        low, high = schema.get("minimum"), schema.get("maximum")
        xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if low is not None and high is not None:
            return f"[{low}..{high}]"
        parts = [
            f">={low}" if low is not None else f">{xlow}" if isinstance(xlow, (int, float)) else "",
            f"<={high}"
            if high is not None
            else f"<{xhigh}"
            if isinstance(xhigh, (int, float))
            else "",
        ]
        parts = [part for part in parts if part]
        return f"[{','.join(parts)}]" if parts else ""

    def fields(self, schema: dict[str, Any], depth: int) -> str:
        required = set(schema.get("required") or [])
        out = []
        for name, sub in (schema.get("properties") or {}).items():
            text = f"{name}{'' if name in required else '?'}: {self.type_of(sub, depth)}"
            if isinstance(sub, dict) and "default" in sub:
                text += f" = {_literal(sub['default'])}"
            out.append(text)
        return ", ".join(out)


def compact_signature(tool: Tool) -> str:
    """The fewest tokens that fully specify ``tool``: a TypeScript-like signature line.

    ``name(arg: type, opt?: type = default) - description``, then one indented line per argument
    that has a description. Types keep enums (as literal unions), formats, short patterns,
    numeric bounds, nested objects and arrays; ``?`` marks an optional argument. About a third
    of the tokens of the tool's JSON Schema (see ``bench/embedded_throughput.py``), the one
    rendering used at synthesis, training and inference.
    """
    schema = tool.parameters if isinstance(tool.parameters, dict) else {}
    writer = _SignatureWriter(schema)
    line = f"{tool.name}({writer.fields(schema, 1)})"
    description = trim_description(tool.description)
    if description:
        line += f" - {description}"
    lines = [line]
    for name, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict) and sub.get("description"):
            lines.append(f"  {name}: {trim_description(sub['description'])}")
    return "\n".join(lines)


def _call_from_mapping(codec: str, value: Any, text: str) -> ToolCall:
    """A call from ``{"name", "arguments"}`` (``parameters`` and JSON-string arguments allowed)."""
    if not isinstance(value, dict):
        raise ParseError(codec, f"expected an object with 'name' and 'arguments', got {value!r}")
    if "function" in value and isinstance(value["function"], dict):
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise ParseError(codec, "the call has no string 'name'", text)
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as error:
            raise ParseError(
                codec, f"arguments of {name!r} are not valid JSON ({error.msg})", text
            ) from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ParseError(codec, f"arguments of {name!r} must be a JSON object", text)
    return ToolCall(name=name, arguments=arguments)


class ToolCallCodec:
    """Base class: one text format for tool calls. Subclasses set ``name`` and the three methods."""

    name: ClassVar[str] = ""

    def render(self, tools: list[Tool]) -> str:
        raise NotImplementedError

    def parse(self, text: str) -> list[ToolCall]:
        raise NotImplementedError

    def format_calls(self, calls: list[ToolCall]) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class HermesCodec(ToolCallCodec):
    """``<tool_call>{json}</tool_call>`` blocks, as Hermes and Qwen chat templates write them."""

    name = "hermes"
    OPEN = "<tool_call>"
    CLOSE = "</tool_call>"

    def render(self, tools: list[Tool]) -> str:
        # Qwen2.5 / Hermes template wording, so checkpoints trained on them feel at home; the
        # signatures are compact (prompt length is the budget of inference and training alike).
        signatures = "\n".join(compact_signature(tool) for tool in tools)
        return (
            "# Tools\n\n"
            "You may call one or more functions to assist with the user query.\n"
            "Function signatures (`?`: optional argument, `= x`: its default) are within "
            "<tools></tools> XML tags:\n"
            f"<tools>\n{signatures}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments "
            "within <tool_call></tool_call> XML tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
            "</tool_call>"
        )

    def format_calls(self, calls: list[ToolCall]) -> str:
        blocks = [
            f"{self.OPEN}\n"
            + json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
            + f"\n{self.CLOSE}"
            for call in calls
        ]
        return "\n".join(blocks)

    def parse(self, text: str) -> list[ToolCall]:
        # The JSON body is read with raw_decode rather than a regex up to </tool_call>, so an
        # argument value that itself contains "</tool_call>" or "<tool_call>" stays intact.
        decoder = json.JSONDecoder()
        calls: list[ToolCall] = []
        position = 0
        while True:
            start = text.find(self.OPEN, position)
            if start < 0:
                return calls
            body_start = start + len(self.OPEN)
            body = text[body_start:]
            stripped = body.lstrip()
            if stripped.startswith("```"):  # a fence inside the tags: ```json\n{...}\n```
                stripped = stripped[3:].lstrip("abcdefghijklmnopqrstuvwxyz").lstrip()
            offset = len(text) - len(stripped)
            try:
                value, end = decoder.raw_decode(text, offset)
            except json.JSONDecodeError as error:
                raise ParseError(
                    self.name, f"invalid JSON inside <tool_call> ({error.msg})", text[start:]
                ) from None
            calls.append(_call_from_mapping(self.name, value, text[start:end]))
            rest = text[end:].lstrip().removeprefix("```").lstrip()
            if rest.startswith(self.CLOSE):
                position = len(text) - len(rest) + len(self.CLOSE)
            elif rest == "" or rest.startswith(self.OPEN):
                # A missing close tag at the very end (generation stopped on it) or before the next
                # call is a common harmless slip of small models: accept it.
                position = len(text) - len(rest)
            else:
                raise ParseError(
                    self.name, "expected </tool_call> after the call's JSON", text[start:]
                )


class JsonCodec(ToolCallCodec):
    """A plain JSON list of ``{"name", "arguments"}`` objects (a single object is accepted)."""

    name = "json"

    def render(self, tools: list[Tool]) -> str:
        return (
            "You can call these functions (JSON Schema of each, one per line):\n"
            f"{_tool_lines(tools)}\n\n"
            "To call functions, answer with only a JSON list of calls:\n"
            '[{"name": <function-name>, "arguments": <args-json-object>}, ...]\n'
            "Otherwise answer in plain text."
        )

    def format_calls(self, calls: list[ToolCall]) -> str:
        payload = [{"name": call.name, "arguments": call.arguments} for call in calls]
        return json.dumps(payload, ensure_ascii=False)

    def parse(self, text: str) -> list[ToolCall]:
        for candidate in [*_fenced_blocks(text), text]:
            for value in _json_values(candidate):
                calls = self._calls_from_value(value, text)
                if calls is not None:
                    return calls
        if '"name"' in text and "{" in text:
            raise ParseError(self.name, "looks like a call but is not valid JSON", text)
        return []

    @staticmethod
    def _is_call(value: Any) -> bool:
        return isinstance(value, dict) and (
            isinstance(value.get("function"), dict)
            or ("name" in value and ("arguments" in value or "parameters" in value))
        )

    def _calls_from_value(self, value: Any, text: str) -> list[ToolCall] | None:
        """Calls in a decoded JSON value; ``None`` when the value is not call-shaped at all."""
        if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
            value = value["tool_calls"]
        if isinstance(value, dict):
            return [_call_from_mapping(self.name, value, text)] if self._is_call(value) else None
        if isinstance(value, list) and any(self._is_call(item) for item in value):
            return [_call_from_mapping(self.name, item, text) for item in value]
        return None


def _json_values(text: str) -> list[Any]:
    """Every JSON object or array in ``text`` that decodes, in order (prose around is ignored)."""
    decoder = json.JSONDecoder()
    values = []
    position = 0
    for match in re.finditer(r"[\[{]", text):
        if match.start() < position:
            continue  # inside a value already decoded
        try:
            value, position = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        values.append(value)
    return values


class OpenAICodec(ToolCallCodec):
    """The OpenAI ``tool_calls`` array; ``arguments`` is a JSON string, as the API sends it.

    With a native-tools API the tools travel in the request's ``tools`` field and the calls in the
    response's ``tool_calls``; this codec is their text form (logs, exports, prompts).
    """

    name = "openai"

    def render(self, tools: list[Tool]) -> str:
        return (
            "You can call these functions (OpenAI tools format, one per line):\n"
            f"{_tool_lines(tools)}\n\n"
            "To call functions, answer with only a JSON list of OpenAI tool calls:\n"
            '[{"id": <call-id>, "type": "function", "function": {"name": <function-name>, '
            '"arguments": <args-json-object-as-string>}}, ...]\n'
            "Otherwise answer in plain text."
        )

    def format_calls(self, calls: list[ToolCall]) -> str:
        return json.dumps([call.to_openai() for call in calls], ensure_ascii=False)

    def parse(self, text: str) -> list[ToolCall]:
        for candidate in [*_fenced_blocks(text), text]:
            for value in _json_values(candidate):
                if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
                    value = value["tool_calls"]
                if isinstance(value, dict) and "function" in value:
                    value = [value]
                if isinstance(value, list) and any(
                    isinstance(item, dict) and "function" in item for item in value
                ):
                    return self._calls(value, text)
        if '"function"' in text:
            raise ParseError(self.name, "looks like a tool call but is not valid JSON", text)
        return []

    def _calls(self, value: list[Any], text: str) -> list[ToolCall]:
        if not all(
            isinstance(item, dict) and isinstance(item.get("function"), dict) for item in value
        ):
            raise ParseError(self.name, "every tool call needs a 'function' object", text)
        calls = []
        for item in value:
            call = _call_from_mapping(self.name, item["function"], text)
            call.id = str(item.get("id") or "")
            calls.append(call)
        return calls


class PythonicCodec(ToolCallCodec):
    """BFCL's ``[f(a=1), g(b="x")]``: keyword arguments with literal values, read with :mod:`ast`.

    Only literals are accepted (numbers, strings, booleans, None, lists, tuples, dicts, negative
    numbers, and JSON's ``true``/``false``/``null`` spelled as names); nothing is ever evaluated.
    """

    name = "pythonic"
    _CALL_START = re.compile(r"\[\s*[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\s*\(")
    _JSON_NAMES: ClassVar[dict[str, Any]] = {"true": True, "false": False, "null": None}

    def render(self, tools: list[Tool]) -> str:
        # BFCL's own prompting wording, so scores are comparable with its published numbers.
        return (
            "You are an expert in composing functions. You are given a question and a set of "
            "possible functions. Based on the question, you will need to make one or more "
            "function/tool calls to achieve the purpose. If none of the functions can be used, "
            "point it out. If the given question lacks the parameters required by the function, "
            "also point it out.\n\n"
            "If you decide to invoke any of the function(s), you MUST put it in the format of "
            "[func_name1(params_name1=params_value1, params_name2=params_value2...), "
            "func_name2(params)]\n"
            "You SHOULD NOT include any other text in the response if you call a function.\n\n"
            "Here is a list of functions in JSON format that you can invoke:\n"
            f"{_tool_lines(tools)}"
        )

    def format_calls(self, calls: list[ToolCall]) -> str:
        return "[" + ", ".join(self._format_call(call) for call in calls) + "]"

    def _format_call(self, call: ToolCall) -> str:
        if not all(part.isidentifier() for part in call.name.split(".")):
            raise ToolDojoError(f"tool name {call.name!r} cannot be written as a Python call")
        bad = [key for key in call.arguments if not key.isidentifier()]
        if bad:
            raise ToolDojoError(
                f"argument name {bad[0]!r} of {call.name!r} cannot be a Python keyword argument"
            )
        arguments = ", ".join(f"{key}={value!r}" for key, value in call.arguments.items())
        return f"{call.name}({arguments})"

    def parse(self, text: str) -> list[ToolCall]:
        for candidate in [*_fenced_blocks(text), text]:
            calls = self._parse_candidate(candidate.strip())
            if calls is not None:
                return calls
        return []

    def _parse_candidate(self, text: str) -> list[ToolCall] | None:
        """Calls in ``text``; ``None`` when it holds no call at all."""
        try:
            tree = ast.parse(text, mode="eval").body
        except SyntaxError:
            tree = None
        if tree is not None:
            return self._calls_from_node(tree, text)
        # Prose around a call list: try each "[name(" start with each "]" end, longest first.
        starts = [match.start() for match in self._CALL_START.finditer(text)]
        if not starts:
            return None
        ends = [index for index, char in enumerate(text) if char == "]"]
        for start in starts:
            for end in reversed([e for e in ends if e > start]):
                try:
                    node = ast.parse(text[start : end + 1], mode="eval").body
                except SyntaxError:
                    continue
                calls = self._calls_from_node(node, text)
                if calls is not None:
                    return calls
        raise ParseError(self.name, "malformed Python call list", text[starts[0] :])

    def _calls_from_node(self, node: ast.expr, text: str) -> list[ToolCall] | None:
        if isinstance(node, ast.Call):
            items: list[ast.expr] = [node]
        elif isinstance(node, ast.List | ast.Tuple):
            items = list(node.elts)
            if not any(isinstance(item, ast.Call) for item in items):
                return None
        else:
            return None
        calls = []
        for item in items:
            if not isinstance(item, ast.Call):
                raise ParseError(self.name, "every item of the list must be a call", text)
            calls.append(self._call_from_node(item, text))
        return calls

    def _call_from_node(self, node: ast.Call, text: str) -> ToolCall:
        name = self._dotted_name(node.func, text)
        if node.args:
            raise ParseError(
                self.name, f"{name}() has positional arguments; use keyword=value", text
            )
        arguments: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                raise ParseError(self.name, f"{name}() uses **kwargs; name each argument", text)
            arguments[keyword.arg] = self._literal(keyword.value, name, text)
        return ToolCall(name=name, arguments=arguments)

    def _dotted_name(self, node: ast.expr, text: str) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{self._dotted_name(node.value, text)}.{node.attr}"
        raise ParseError(self.name, "a call must name a function like f(...) or a.b(...)", text)

    def _literal(self, node: ast.expr, name: str, text: str) -> Any:
        # Hand-written rather than ast.literal_eval: it maps tuples to lists and sets/bytes/
        # complex numbers to errors, so every result is JSON-able, and it reads true/false/null.
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool | int | float | str) or node.value is None:
                if isinstance(node.value, float) and node.value != node.value:
                    raise ParseError(self.name, f"{name}(): NaN is not a JSON value", text)
                return node.value
            raise ParseError(self.name, f"{name}(): unsupported literal {node.value!r}", text)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self._literal(node.operand, name, text)
            if isinstance(operand, bool) or not isinstance(operand, int | float):
                raise ParseError(self.name, f"{name}(): a sign applies to numbers only", text)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.List | ast.Tuple):
            return [self._literal(item, name, text) for item in node.elts]
        if isinstance(node, ast.Dict):
            result: dict[str, Any] = {}
            for key_node, value_node in zip(node.keys, node.values, strict=True):
                if key_node is None:
                    raise ParseError(
                        self.name, f"{name}(): ** inside a dict is not a literal", text
                    )
                key = self._literal(key_node, name, text)
                if not isinstance(key, str):
                    raise ParseError(self.name, f"{name}(): dict keys must be strings", text)
                result[key] = self._literal(value_node, name, text)
            return result
        if isinstance(node, ast.Name) and node.id in self._JSON_NAMES:
            return self._JSON_NAMES[node.id]
        shown = ast.get_source_segment(text, node) or type(node).__name__
        raise ParseError(self.name, f"{name}(): {shown!r} is not a literal value", text)


_CODECS: dict[str, type[ToolCallCodec]] = {
    codec.name: codec for codec in (HermesCodec, PythonicCodec, JsonCodec, OpenAICodec)
}
CODEC_NAMES: tuple[str, ...] = tuple(_CODECS)


def get_codec(name: str) -> ToolCallCodec:
    """The codec called ``name`` (``hermes``, ``pythonic``, ``json`` or ``openai``)."""
    try:
        return _CODECS[name]()
    except KeyError:
        raise ToolDojoError(
            f"unknown tool-call codec {name!r}; choose one of {', '.join(CODEC_NAMES)}"
        ) from None
