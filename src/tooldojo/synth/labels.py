"""Goal-conditioned labels: target calls drawn first, written in BFCL's possible-answer form.

The planner decides what the assistant should call *before* anyone speaks: a model proposes
argument values under a JSON-Schema constraint (``Constraint(kind="json_schema")``), the
proposal is validated with ``jsonschema`` and repaired by re-asking with the error; if the
model still fails, :class:`~tooldojo.synth.values.ValueSampler` draws the values from the
schema. The user simulator then phrases a request carrying those values, so the label of
every assistant turn is known before the assistant speaks.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from tooldojo.llm.base import ChatModel, Constraint, SamplingParams
from tooldojo.mcp.executors.result_checks import scalar_leaves
from tooldojo.model import RESULT_REF_KEY, LabelCall, Message, Tool
from tooldojo.names import alnum_key, name_words
from tooldojo.synth.values import ValueSampler, _flatten, echoed_names, schema_error
from tooldojo.verify.requests import loops

DRAFT_SYSTEM = (
    "You write realistic example calls of software tools. Given a tool, reply with ONLY a JSON "
    "object of argument values a real user might want: concrete, specific values (real-looking "
    "names, places, dates, amounts, ids), never placeholders such as 'string' or 'example'."
)


def possible_answers(value: Any, schema: Any, root: dict[str, Any]) -> list[Any]:
    """BFCL's acceptable-value list for one argument value.

    Objects list every property of their schema: a given one as ``[value]``, an absent
    optional one as ``[""]`` (BFCL's nested dict form); lists of objects do the same per item.
    """
    flat = _flatten(schema, root) if isinstance(schema, dict) else {}
    if isinstance(value, dict) and flat.get("properties"):
        return [_object_answer(value, flat)]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = _flatten(flat.get("items", {}), root)
        if items.get("properties"):
            return [[_object_answer(v, items) for v in value]]
    return [value]


def _object_answer(value: dict[str, Any], flat: dict[str, Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {key: [item] for key, item in value.items()}
    required = set(flat.get("required") or [])
    for key in flat.get("properties") or {}:
        if key not in out and key not in required:
            out[key] = [""]
    return out


def label_call(tool: Tool, arguments: dict[str, Any]) -> LabelCall:
    """The label of one call of ``tool`` with ``arguments`` in possible-answer form.

    Arguments not given: ``[""]`` (may be omitted), plus the schema default if there is one
    (passing the default explicitly means the same call).
    """
    root = tool.parameters
    out: dict[str, list[Any]] = {}
    for name, schema in tool.properties.items():
        if name in arguments:
            value = arguments[name]
            out[name] = (
                value if _is_reference_list(value) else possible_answers(value, schema, root)
            )
            flat = _flatten(schema, root)
            if "default" in flat and flat["default"] == value and name not in tool.required:
                out[name].append("")
        else:
            if name in tool.required:
                raise ValueError(f"label of {tool.name}: required argument {name!r} missing")
            flat = _flatten(schema, root)
            out[name] = [""]
            if "default" in flat and flat["default"] is not None:
                out[name].append(flat["default"])
    return LabelCall(name=tool.name, arguments=out)


def _is_reference_list(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 1 and is_reference(value[0])


def is_reference(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {RESULT_REF_KEY}


def reference(step: int, call: int, field: str) -> dict[str, Any]:
    """An unbound ``$result`` reference: ``pointer`` is found once the result exists."""
    return {RESULT_REF_KEY: {"step": step, "call": call, "pointer": None, "field": field}}


class UndrawableArguments(ValueError):
    """No schema-valid arguments could be drawn for ``tool`` (by the model or the schema walk):
    the planner passes over such a tool instead of failing the whole plan."""

    def __init__(self, tool: str):
        super().__init__(f"cannot draw schema-valid arguments for {tool!r}")
        self.tool = tool


@dataclass
class DraftedCall:
    """One target call and where its values came from (``model`` or ``schema``)."""

    tool: str
    arguments: dict[str, Any]
    source: str
    attempts: int = 0


class ArgumentDrafter:
    """Draws concrete, schema-valid target arguments for a tool.

    With a ``model``: constrained decoding from the tool's schema, ``jsonschema`` validation,
    up to ``max_repairs`` re-asks quoting the error; otherwise (or when that fails) the seeded
    schema walk. ``avoid`` lets parallel scenarios ask for values different from earlier ones.
    """

    def __init__(
        self,
        model: ChatModel | None = None,
        *,
        max_repairs: int = 1,
        sampling: SamplingParams | None = None,
    ):
        self.model = model
        self.max_repairs = max_repairs
        self.sampling = sampling or SamplingParams(temperature=0.9, max_tokens=256)
        self.model_failures = 0
        self.model_successes = 0

    async def draft(
        self, tool: Tool, rng: random.Random, avoid: list[dict[str, Any]] | None = None
    ) -> DraftedCall:
        avoid = avoid or []
        if self.model is not None:
            drafted = await self._from_model(tool, rng, avoid)
            if drafted is not None:
                self.model_successes += 1
                return drafted
            self.model_failures += 1
        arguments: dict[str, Any] = {}
        for attempt in range(1, 9):
            # Later attempts ignore the spec's examples, which would repeat the same values.
            sampler = ValueSampler(rng, use_hints=attempt <= 3)
            arguments = sampler.arguments(tool.parameters)
            if (
                schema_error(tool.parameters, arguments) is None
                and arguments not in avoid
                and not _unfilled(arguments)
                and not echoed_names(arguments, tool.parameters)
            ):
                return DraftedCall(tool.name, arguments, "schema", attempt)
        if schema_error(tool.parameters, arguments) is None:
            return DraftedCall(tool.name, arguments, "schema", 8)
        raise UndrawableArguments(tool.name)

    async def _from_model(
        self, tool: Tool, rng: random.Random, avoid: list[dict[str, Any]]
    ) -> DraftedCall | None:
        messages = [
            Message(role="system", content=DRAFT_SYSTEM),
            Message(role="user", content=draft_prompt(tool, avoid)),
        ]
        sampling = self.sampling.model_copy(update={"seed": rng.randrange(2**31)})
        constraint = Constraint(kind="json_schema", schema=tool.parameters)
        for attempt in range(1, self.max_repairs + 2):
            try:
                completion = await self.model.complete(  # type: ignore[union-attr]
                    messages, sampling=sampling, constraint=constraint
                )
            except Exception:  # a backend that cannot serve this schema: use the fallback
                return None
            text = completion.text.strip()
            problem: str | None
            try:
                arguments = json.loads(_strip_fences(text))
            except ValueError as error:
                problem = f"not JSON ({error})"
            else:
                if not isinstance(arguments, dict):
                    problem = "not a JSON object"
                else:
                    problem = schema_error(tool.parameters, arguments)
                    if problem is None and _placeholder(arguments):
                        problem = "placeholder values; use concrete realistic values"
                    echoed = echoed_names(arguments, tool.parameters) if problem is None else []
                    if echoed:
                        problem = f"the value of {echoed[0]} repeats its name; use a real value"
                    if problem is None and _names_tool(arguments, tool):
                        problem = "a value repeats the tool's name; use a realistic value"
                    if problem is None and _loops(arguments):
                        problem = "a value repeats itself; use a realistic value"
                    if problem is None and arguments in avoid:
                        problem = "repeats earlier values; choose different ones"
                    if problem is None:
                        return DraftedCall(tool.name, arguments, "model", attempt)
            messages += [
                Message(role="assistant", content=text[:2000]),
                Message(role="user", content=f"Invalid: {problem}. Reply with corrected JSON."),
            ]
        return None


def draft_prompt(tool: Tool, avoid: list[dict[str, Any]]) -> str:
    lines = [f"Tool: {tool.name}", f"Description: {tool.description or '(none)'}", "Arguments:"]
    required = set(tool.required)
    for name, schema in tool.properties.items():
        flat = _flatten(schema, tool.parameters)
        kind = flat.get("type", "any")
        flag = "required" if name in required else "optional"
        text = str(flat.get("description", ""))
        if flat.get("enum"):
            text += f" One of: {', '.join(map(str, flat['enum']))}."
        lines.append(f"- {name} ({kind}, {flag}): {text}".rstrip(": "))
    if avoid:
        lines.append("Use values different from: " + "; ".join(json.dumps(a) for a in avoid))
    lines.append("Reply with the JSON object of arguments only.")
    return "\n".join(lines)


_PLACEHOLDERS = re.compile(r"^(string|example|value|test|foo|bar|xxx+|none|null|n/a)$", re.I)
# A slot left to fill: ``<city>``, ``{project_number}``, ``{{userId}}``, ``${TOKEN}``, ``:id``
# as a whole path segment. Seen in passed data as ``,<city>`` for a party id (drafted by the
# model) and ``{{userId}}`` (a spec's own example): no request a person writes holds one.
_TEMPLATE_SLOT = re.compile(
    r"<[A-Za-z_][\w -]*>|\{\{?\s*[A-Za-z_][\w.-]*\s*\}\}?|\$\{|(?:^|/):[a-z_]+(?:/|$)"
)


def _strings(value: Any) -> list[str]:
    """The strings anywhere in a drafted JSON value (what the checks below read)."""
    return [leaf for leaf in scalar_leaves(value) if isinstance(leaf, str)]


def _placeholder(value: Any) -> bool:
    return any(_PLACEHOLDERS.match(s.strip()) or not s.strip() for s in _strings(value)) or (
        _unfilled(value)
    )


def _unfilled(value: Any) -> bool:
    """Whether a string is a template slot or bare punctuation (``","``, ``"]["``): a value
    no person would type, which the user simulator must still copy into the request."""
    return any(
        _TEMPLATE_SLOT.search(s) or (s.strip() and not any(c.isalnum() for c in s))
        for s in _strings(value)
    )


def _names_tool(value: Any, tool: Tool) -> bool:
    """Whether a drafted value holds the tool's name (``"patchBatchV1NamespacedJob"`` as a job
    name): small models copy it from the prompt, and the user simulator must never name the
    tool, so such a plan cannot be written as a request and its scenario is dropped (about a
    quarter of the drops in a 400-scenario run on the refined corpus)."""
    names = {n.lower() for n in (tool.name, tool.original_name) if n and len(n) > 3}
    return any(name in s.lower() for s in _strings(value) for name in names)


def _loops(value: Any) -> bool:
    """Whether a drafted string loops (``projects_page_token_ids_ids_ids_ids``): the user
    simulator may not write a looping request, so such a plan is dropped unwritten."""
    return any(loops(s) for s in _strings(value))


def _strip_fences(text: str) -> str:
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    return match.group(1) if match else text


# --- multi-step: which earlier result feeds a later call ---------------------------------------

_ID_SUFFIX = re.compile(r"(?i)(?:_?id|_?ids|_?key|_?code|_?slug)$")


def id_like(name: str) -> bool:
    return bool(_ID_SUFFIX.search(name)) and len(name) > 2


def _words(text: str) -> set[str]:
    return {w for w in name_words(text) if len(w) > 1}


def producer_score(producer: Tool, consumer: Tool, param: str) -> float:
    """How likely ``producer``'s result holds the value of ``consumer``'s ``param``.

    The spec saying so ("Book identifier as returned by listBooks") counts most; then shared
    words between the parameter and the producer's name, and producer verbs that return ids.
    """
    if producer.name == consumer.name:
        return 0.0
    schema = consumer.properties.get(param, {})
    text = str(schema.get("description", "")) if isinstance(schema, dict) else ""
    score = 0.0
    for name in {producer.name, producer.original_name or producer.name}:
        if name and re.search(rf"\b{re.escape(name)}\b", text):
            score += 3.0
    stem = _words(_ID_SUFFIX.sub("", param)) - {"id"}
    score += len(stem & _words(producer.name))
    if re.match(r"(?i)^(list|search|find|create|add|place|new)", producer.name):
        score += 0.5  # verbs whose results carry ids
    if producer.output_schema and _mentions_key(producer.output_schema, param):
        score += 2.0
    return score if score >= 1.0 else 0.0


def _mentions_key(schema: Any, key: str) -> bool:
    target = alnum_key(key)
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict) and any(alnum_key(k) == target for k in props):
            return True
        return any(_mentions_key(v, key) for v in schema.values())
    if isinstance(schema, list):
        return any(_mentions_key(v, key) for v in schema)
    return False


def find_pointer(result: Any, field: str) -> str | None:
    """JSON pointer of the first value in ``result`` that can fill parameter ``field``.

    Keys are compared loosely (``bookId`` ~ ``book_id``); an id-like parameter also accepts a
    plain ``id`` key. Breadth-first, so the top-level match wins over a nested one.
    """
    wanted = alnum_key(field)
    stripped = alnum_key(_ID_SUFFIX.sub("", field))
    fallbacks = {"id"} if id_like(field) else set()
    queue: list[tuple[str, Any]] = [("", result)]
    fallback: str | None = None
    while queue:
        path, value = queue.pop(0)
        if isinstance(value, dict):
            for key, item in value.items():
                pointer = f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"
                if isinstance(item, dict | list):
                    queue.append((pointer, item))
                    continue
                norm = alnum_key(str(key))
                if norm == wanted or (stripped and norm == f"{stripped}id"):
                    return pointer
                if norm in fallbacks and fallback is None:
                    fallback = pointer
        elif isinstance(value, list):
            for index, item in enumerate(value[:20]):
                queue.append((f"{path}/{index}", item))
    return fallback
