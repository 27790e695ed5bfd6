"""A tool's response schema made finite, and the token budget its longest answer fits in.

The simulated server decodes its answer under a JSON-schema grammar. An open schema (free
strings, unbounded arrays, free-form objects) lets a small model write until ``max_tokens``
cuts the JSON off, which is how failed results used to reach training data. So before
decoding, the schema is rewritten into a *bounded* one that every value of the original
schema may be narrowed to:

- strings get ``maxLength`` and a printable-ASCII ``pattern`` (llama.cpp's grammar enforces
  both), so one character is at most one token and no escape sequence can lengthen it;
- arrays get ``maxItems``; objects keep their required properties and a few optional ones;
  free-form objects become a small fixed shape; ``$ref`` cycles stop at a depth limit;
- arguments the call names (``id``, ``city``...) are pinned with ``const`` where the schema
  has a matching property, so the result echoes the call it answers.

:func:`token_bound` counts the characters of the longest document the grammar admits (every
character is ASCII and every token covers at least one byte), so a ``max_tokens`` of that
size can never truncate the answer. When even the tightest bounds exceed the budget, the
caller is told why instead of decoding something that cannot fit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import UndefinedTypeCheck

from tooldojo.names import name_words, reports_error, status_flag

SAFE_CHARS = "A-Za-z0-9 .,:;'!@#$%&*+/=_()?-"
"""Printable ASCII without quote or backslash: one character, one byte, no escapes. (Kept
free of regex escapes because llama.cpp's pattern converter mistranslates them.)"""

FORMAT_PATTERNS = {
    "email": "^[a-z]{1,12}[.][a-z]{1,12}@[a-z]{2,12}[.]com$",
    "uri": "^https://[a-z0-9.]{3,24}/[a-z0-9/_]{0,24}$",
    "url": "^https://[a-z0-9.]{3,24}/[a-z0-9/_]{0,24}$",
    "hostname": "^[a-z0-9]{1,16}[.][a-z]{2,8}[.]com$",
    "ipv4": "^1[0-9]{1,2}[.][0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}$",
}
"""Bounded shapes for string formats the output validator checks but llama.cpp's grammar does
not know (written without regex escapes, which its converter mistranslates)."""

FORMAT_LENGTH = {"date": 12, "time": 26, "date-time": 40, "uuid": 38}
"""Longest JSON text (quotes included) llama.cpp's grammar admits for these string formats."""
NUMBER_LENGTH = 53  # llama.cpp: 16 integral + "." + 16 decimal + exponent of 16 digits, sign
INTEGER_LENGTH = 17


@dataclass(frozen=True)
class Bounds:
    """How far a schema is narrowed; tightened step by step until it fits the budget."""

    string_chars: int = 48
    items: int = 3
    optional_properties: int = 6
    depth: int = 4
    echo: int = 6
    """At most this many call arguments are echoed as fields of a generic result."""


LADDER: tuple[Bounds, ...] = (
    Bounds(),
    Bounds(string_chars=48, items=2, optional_properties=3),
    Bounds(string_chars=48, items=1, optional_properties=1, depth=3),
    Bounds(string_chars=32, items=1, optional_properties=0, depth=2, echo=3),
    Bounds(string_chars=16, items=1, optional_properties=0, depth=2, echo=3),
)
"""Fewer fields and items before shorter strings: the 135M server model fills a string to its
bound when it writes prose or an id, and a string cut there fails the call. Replaying 120
recorded simulated calls (``bench/server_results.py --ladders default,fields``), this ladder
gave 114 valid results against 111 for one that shortened strings first (32, then 24
characters), with 11 % fewer generated tokens."""


class UnboundedSchema(ValueError):
    """The schema admits no bounded value (e.g. a required field that recurses forever)."""


SYMBOL_CHARS = " .,:;'!@#$%&*+/=_()?-"
"""The safe characters that are not a letter or digit."""


def _safe_string(chars: int, min_length: int = 0) -> dict[str, Any]:
    """A bounded string of safe characters that says something: a letter or digit first, or
    second after one symbol ("$5.00", "#tag", "(555) 123"), or empty when ``min_length`` is 0.
    A free class let the 135M server fill values with ``");"`` and ``");;;;;;;;;;"``: 42 of
    438 passed trajectories of the scale run held one, and a forced call copied one.

    An unprefixed string still reaches ``chars`` exactly, so a cut one is seen as cut
    (:func:`tooldojo.mcp.executors.simulated._cut_text`); a prefixed one may be one longer."""
    high = max(chars, min_length)
    rest = max(min_length - 1, 0)
    pattern = f"^[{SAFE_CHARS}]{{{min_length},{high}}}$"
    if high - 1 >= rest and high >= 2:
        said = f"[{SYMBOL_CHARS}]?[A-Za-z0-9][{SAFE_CHARS}]{{{rest},{high - 1}}}"
        pattern = f"^{said}$" if min_length else f"^({said})?$"
    return {"type": "string", "minLength": min_length, "maxLength": high, "pattern": pattern}


def generic_result_schema(arguments: dict[str, Any], bounds: Bounds) -> dict[str, Any]:
    """For a tool that declares no response schema: the call's scalar arguments echoed and a
    ``result``: a number, a flag, or a few named values (short word names, a number or a
    short word value each).

    No free-text field: a small model fills any sentence-sized string up to its length
    bound, and a string cut there is a failed result. Short named values are what a person's
    answer quotes, so the assistant's final answer can be grounded in them.
    """
    short = min(bounds.string_chars, 24)
    label = _word_string(short)
    properties: dict[str, Any] = {}
    for name, value in list(_scalars(arguments).items())[: bounds.echo]:
        properties[name] = {"const": value}
    named_value = {
        "type": "object",
        "properties": {
            "name": _word_string(min(short, 20)),
            "value": {"anyOf": [{"type": "number"}, label]},
        },
        "required": ["name", "value"],
    }
    properties["result"] = {
        "anyOf": [
            {"type": "array", "items": named_value, "minItems": 1, "maxItems": bounds.items},
            {"type": "number"},
            {"type": "boolean"},
        ]
    }
    return {"type": "object", "properties": properties, "required": list(properties)}


def _word_string(chars: int) -> dict[str, Any]:
    """A short value of words: starts with a letter or digit; no sentence punctuation, so
    it stays a name or a value rather than growing into prose."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": chars,
        "pattern": f"^[A-Za-z0-9][A-Za-z0-9 .:%/-]{{0,{chars - 1}}}$",
    }


def _scalars(arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in arguments.items()
        if isinstance(v, str | int | float | bool) and not (isinstance(v, str) and len(v) > 80)
    }


def bounded_schema(
    schema: dict[str, Any] | None,
    arguments: dict[str, Any],
    bounds: Bounds,
    keep: Sequence[str] = (),
) -> dict[str, Any]:
    """A finite narrowing of ``schema`` (a generic result when ``None``) for one call, shaped
    as a success (:func:`success_shape`); ``keep``: fields the answer must hold, at the top
    level or in every record of a list (see :func:`_keep_fields`)."""
    shaped = success_shape(schema) if schema else None
    if not shaped:
        out = generic_result_schema(arguments, bounds)
        _keep_fields(out, {}, keep, bounds)
        return out
    out = _Bounder(schema, bounds).visit(shaped, 0)
    if out is None:
        raise UnboundedSchema("the response schema admits no bounded value")
    if out.get("type") == "object" and isinstance(out.get("properties"), dict):
        _pin_arguments(out, schema, arguments)
        _keep_fields(out, schema, keep, bounds)
    elif keep and _is_object(out.get("items")) and out.get("type") == "array":
        # A list of records (getOrgArticles: [{"slug": ...}]) that a later step reads a
        # field of: at least one record, and every record holds the field (multi-step
        # episodes failed with "the result of step 0 has no field 'slug'").
        items = shaped.get("items")
        if isinstance(items, dict) and "$ref" in items:
            items = resolve_ref(schema, str(items["$ref"]))
        _keep_fields(out["items"], items if isinstance(items, dict) else {}, keep, bounds)
        out["minItems"] = max(1, out.get("minItems", 0))
        out["maxItems"] = max(out["minItems"], out.get("maxItems", 1))
    return out


def _is_object(schema: Any) -> bool:
    return (
        isinstance(schema, dict)
        and schema.get("type") == "object"
        and isinstance(schema.get("properties"), dict)
    )


def success_shape(schema: dict[str, Any]) -> dict[str, Any] | None:
    """``schema`` narrowed to a success: optional top-level fields that report a failure
    (``error``, ``errors``, ``WebException``) left out, and status flags pinned (``success``
    and ``ok`` true, ``isFaulted`` false). ``None`` when nothing but such fields is left and
    the schema admits other fields: it is an error body (a DELETE whose only documented
    response is its error), so the generic result stands in.

    Why: the server model plays calls the plan expects to succeed (planned failures are
    injected apart, :meth:`SimulatedExecutor._injected_failure`), and given an optional
    ``error`` field it filled it: 31 of the 46 "success says error" results of the scale3
    run's 651 episodes were such a field of the tool's own schema, and each failed its
    trajectory at the execution gate. Trajectories failing so: 41 of the run's first 660,
    6 of the 352 played after this. The result is still checked against the whole schema.
    """
    top = schema
    if "$ref" in top:
        top = resolve_ref(schema, str(top["$ref"])) or top
    properties = top.get("properties")
    if not isinstance(properties, dict) or not properties:
        return schema
    required = {name for name in top.get("required", []) if isinstance(name, str)}
    kept: dict[str, Any] = {}
    for name, sub in properties.items():
        flag = status_flag(name)
        if flag and isinstance(sub, dict) and sub.get("type") == "boolean":
            kept[name] = {**sub, "const": flag == "success"}
        elif name in required or not reports_error(name):
            kept[name] = sub
    if not kept:
        return schema if top.get("additionalProperties") is False else None
    defs = {k: schema[k] for k in ("$defs", "definitions") if k in schema}
    return {**defs, **top, "properties": kept}


def _keep_fields(
    out: dict[str, Any], original: dict[str, Any], keep: Sequence[str], bounds: Bounds
) -> None:
    """Make ``keep`` required top-level properties of ``out``: bounded from ``original``'s
    own property when it has one, else a short string. Why: the bounding drops optional
    properties past a budget, and a planned next step that reads one of them (a multi-step
    scenario passing ``divisionId`` on) then failed on every run that dropped it: all 4
    multi-step episodes of a 64-scenario run on the refined corpus."""
    properties = out["properties"]
    required = out.setdefault("required", [])
    originals = original.get("properties") if isinstance(original.get("properties"), dict) else {}
    for name in keep:
        if name not in properties:
            sub = originals.get(name)
            bounded = _Bounder(original, bounds).visit(sub, 1) if sub is not None else None
            properties[name] = bounded or _safe_string(bounds.string_chars, 1)
        if name not in required:
            required.append(name)


def _pin_arguments(out: dict[str, Any], original: dict[str, Any], arguments: dict[str, Any]):
    """Top-level properties named like a scalar argument return that argument's value."""
    properties = out["properties"]
    for name, value in _scalars(arguments).items():
        sub = properties.get(name)
        if not isinstance(sub, dict) or "const" in sub:
            continue
        try:
            valid = Draft202012Validator({**sub, "$defs": original.get("$defs", {})}).is_valid(
                value
            )
        except Exception:  # an odd sub-schema: leave the property free
            valid = False
        if valid:
            properties[name] = {"const": value}
            required = out.setdefault("required", [])
            if name not in required:
                required.append(name)


PROSE_WORDS = frozenset(
    {"description", "desc", "message", "msg", "summary", "detail", "details", "comment",
     "comments", "note", "notes", "bio", "about", "body", "text", "content", "reason",
     "explanation", "remark", "remarks", "instructions", "caption", "abstract"}
)  # fmt: skip
"""Last words of a field name that holds sentences (``description``, ``return_message``)."""

DROP_OPTIONAL_PROSE = True
"""Leave optional free-text fields out of the bounded schema (see :func:`prose`); a switch
for ``bench/server_results.py --prose``."""


def prose(name: str, schema: Any) -> bool:
    """Whether field ``name`` is free text: a plain string (no enum, format, pattern or
    ``maxLength`` under the string bound) whose name ends in one of :data:`PROSE_WORDS`.

    Why: the 135M server writes such a field as a sentence, usually the schema's description
    of it ("The default workflow is..."), runs it to the string bound, and a string cut there
    fails the call; those cuts were the largest cause of failed results (79 of 131 in the
    scale3 run's first 728 episodes). An optional one is left out, as the generic result
    has no free-text field; a required one, or one a later step reads, stays. Replaying 40
    calls that had failed, 31 gave a valid result this way against 28 with such fields kept
    (cuts 7 against 12; ``bench/server_results.py --failed-only --prose keep,drop``).
    """
    if not isinstance(schema, dict) or schema.get("type") != "string":
        return False
    if any(key in schema for key in ("enum", "const", "format", "pattern")):
        return False
    if isinstance(schema.get("maxLength"), int) and schema["maxLength"] < Bounds.string_chars:
        return False  # short by its own schema: never cut at the bound
    words = name_words(name)
    return bool(words) and words[-1] in PROSE_WORDS


def _of_type(value: Any, schema: dict[str, Any]) -> bool:
    """Whether ``value`` is of ``schema``'s ``type`` (any type when it names none, or only
    names jsonschema does not know), as jsonschema's own type checker reads it."""
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
    verdicts = []
    for name in kinds:
        try:
            verdicts.append(Draft202012Validator.TYPE_CHECKER.is_type(value, name))
        except UndefinedTypeCheck:
            continue
    return not verdicts or any(verdicts)


def resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any] | None:
    """The schema a local ``$ref`` (``#/$defs/item``) points to in ``root``, or ``None``."""
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


class _Bounder:
    def __init__(self, root: dict[str, Any], bounds: Bounds):
        self.root = root
        self.bounds = bounds

    def visit(self, schema: Any, depth: int) -> dict[str, Any] | None:
        """The bounded form of ``schema``; ``None`` when no bounded value exists."""
        if schema is True or schema == {}:
            return _safe_string(self.bounds.string_chars)
        if not isinstance(schema, dict):
            return None
        if "$ref" in schema:
            target = resolve_ref(self.root, str(schema["$ref"]))
            if target is None or depth > self.bounds.depth + 2:
                return None
            return self.visit(target, depth + 1)
        if "const" in schema:
            return {"const": schema["const"]} if _of_type(schema["const"], schema) else None
        if "enum" in schema:
            # Only the values of the declared type: specs contradict themselves (an array
            # whose enum lists strings), and a value the schema rejects fails every answer.
            values = [value for value in schema["enum"] or [] if _of_type(value, schema)]
            return {"enum": values} if values else None
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                options = [self.visit(option, depth) for option in schema[key]]
                kept = [option for option in options if option is not None]
                return {"anyOf": kept} if kept else None
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
            for part in schema["allOf"]:
                part = (
                    resolve_ref(self.root, part["$ref"])
                    if isinstance(part, dict) and "$ref" in part
                    else part
                )
                if not isinstance(part, dict):
                    continue
                merged["properties"].update(part.get("properties", {}))
                merged["required"] += list(part.get("required", []))
            return self.visit(merged, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            options = [self.visit({**schema, "type": t}, depth) for t in kind]
            kept = [option for option in options if option is not None]
            return {"anyOf": kept} if kept else None
        if kind is None:
            if "properties" in schema:
                kind = "object"
            elif "items" in schema:
                kind = "array"
            else:
                return {"anyOf": [{"type": "number"}, _safe_string(self.bounds.string_chars)]}
        if kind == "string":
            return self._string(schema)
        if kind in ("number", "integer", "boolean", "null"):
            return {k: v for k, v in schema.items() if k in ("type", "minimum", "maximum")}
        if kind == "array":
            return self._array(schema, depth)
        if kind == "object":
            return self._object(schema, depth)
        return None

    def _string(self, schema: dict[str, Any]) -> dict[str, Any]:
        fmt = schema.get("format")
        if fmt in FORMAT_LENGTH:
            return {"type": "string", "format": fmt}
        if fmt in FORMAT_PATTERNS:
            return {"type": "string", "pattern": FORMAT_PATTERNS[fmt]}
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            bounded = bounded_pattern(pattern, self.bounds.string_chars)
            if bounded is not None:
                return {"type": "string", "pattern": bounded}
        low = int(schema.get("minLength", 0) or 0)
        chars = self.bounds.string_chars
        if isinstance(schema.get("maxLength"), int):
            chars = min(chars, schema["maxLength"])
        return _safe_string(chars, min(low, 64))

    def _array(self, schema: dict[str, Any], depth: int) -> dict[str, Any] | None:
        low = int(schema.get("minItems", 0) or 0)
        high = self.bounds.items if depth < self.bounds.depth else 0
        if isinstance(schema.get("maxItems"), int):
            high = min(high, schema["maxItems"])
        high = max(high, low)
        items = schema.get("items", {})
        if isinstance(items, list):  # old-style tuple
            parts = [self.visit(item, depth + 1) for item in items]
            return (
                None if any(p is None for p in parts) else {"type": "array", "prefixItems": parts}
            )
        if high == 0:
            return {"type": "array", "items": {"type": "null"}, "maxItems": 0}
        bounded = self.visit(items, depth + 1)
        if bounded is None:
            return None if low else {"type": "array", "items": {"type": "null"}, "maxItems": 0}
        return {"type": "array", "items": bounded, "minItems": low, "maxItems": high}

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any] | None:
        properties = schema.get("properties")
        required = [r for r in schema.get("required", []) if isinstance(r, str)]
        if not isinstance(properties, dict) or not properties:
            extra = schema.get("additionalProperties")
            if extra is False or depth >= self.bounds.depth:
                return {"type": "object", "properties": {}}
            value = self.visit(extra if isinstance(extra, dict) else {}, depth + 1)
            if value is None:
                return {"type": "object", "properties": {}}
            names = ["id", "name", "value"][: max(1, self.bounds.items)]
            return {"type": "object", "properties": dict.fromkeys(names, value), "required": names}
        out: dict[str, Any] = {}
        optional_budget = self.bounds.optional_properties if depth < self.bounds.depth else 0
        for name, sub in properties.items():
            is_required = name in required
            if not is_required and (
                optional_budget <= 0 or (DROP_OPTIONAL_PROSE and prose(name, sub))
            ):
                continue
            bounded = self.visit(sub, depth + 1)
            if bounded is None:
                if is_required:
                    return None
                continue
            if not is_required:
                optional_budget -= 1
            out[name] = bounded
        # Optional fields the model keeps are asked for: a result with its data filled in
        # reads like a real API's, and the bound below counts them anyway.
        return {"type": "object", "properties": out, "required": list(out)}


def pattern_width(pattern: str) -> int | None:
    """The longest string ``pattern`` matches, or ``None`` when unbounded or unparsable."""
    import re._parser as sre_parse  # the stdlib's own regex parser knows match widths

    try:
        _, high = sre_parse.parse(pattern).getwidth()
    except Exception:
        return None
    return high if high < 10_000 else None


def bounded_pattern(pattern: str, chars: int) -> str | None:
    """``pattern`` if it bounds its matches, else with ``+``/``*`` turned into ``{1,n}``/
    ``{0,n}`` (outside character classes); ``None`` when that does not bound it either."""
    if not (pattern.startswith("^") and pattern.endswith("$")) or any(
        token in pattern for token in ("(?", "|", "\\b", "\\p", "\\u")
    ):
        return None  # constructs llama.cpp's grammar converter drops: it would not bound it
    if any(escape not in "dws.-+*?()[]{}^$/\\" for escape in re.findall(r"\\(.)", pattern)):
        return None
    if pattern_width(pattern) is not None:
        return pattern
    out, in_class, escaped = [], False, False
    for char in pattern:
        if escaped:
            out.append(char)
            escaped = False
            continue
        if char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char in "+*" and not in_class:
            out.append(f"{{{1 if char == '+' else 0},{chars}}}")
            continue
        out.append(char)
    rewritten = "".join(out)
    return rewritten if pattern_width(rewritten) is not None else None


def token_bound(schema: Any) -> int:
    """Characters (hence at most tokens) of the longest JSON text llama.cpp's grammar for the
    bounded ``schema`` admits, counting its optional single spaces."""
    if not isinstance(schema, dict):
        return NUMBER_LENGTH
    if "const" in schema:
        return len(json.dumps(schema["const"])) + 1
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"]) + 1
    if "anyOf" in schema:
        return max(token_bound(option) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") in FORMAT_LENGTH:
            return FORMAT_LENGTH[schema["format"]] + 1
        if "maxLength" in schema:
            return int(schema["maxLength"]) + 3
        # A spec's own pattern: its characters may need escapes or several bytes each.
        return 6 * (pattern_width(str(schema.get("pattern", ""))) or 64) + 3
    if kind == "integer":
        return INTEGER_LENGTH + 1
    if kind == "number":
        return NUMBER_LENGTH + 1
    if kind == "boolean":
        return 6
    if kind == "null":
        return 5
    if kind == "array":
        if "prefixItems" in schema:
            return 4 + sum(token_bound(item) + 2 for item in schema["prefixItems"])
        return 4 + int(schema.get("maxItems", 0)) * (token_bound(schema["items"]) + 2)
    if kind == "object":
        return 4 + sum(
            len(json.dumps(name)) + 3 + token_bound(sub) + 2
            for name, sub in schema.get("properties", {}).items()
        )
    return NUMBER_LENGTH


@dataclass(frozen=True)
class ResponsePlan:
    """The grammar schema of one simulated answer and the tokens it is given."""

    schema: dict[str, Any]
    max_tokens: int
    bounds: Bounds


def plan_response(
    schema: dict[str, Any] | None,
    arguments: dict[str, Any],
    budget: int,
    start: Bounds = LADDER[0],
    keep: Sequence[str] = (),
) -> ResponsePlan:
    """The loosest rung of :data:`LADDER` whose longest answer fits ``budget`` tokens.

    Raises :class:`UnboundedSchema` with the smallest bound found when none fits.
    """
    smallest = None
    for bounds in (start, *LADDER[1:]):
        bounds = replace(bounds, string_chars=min(bounds.string_chars, start.string_chars))
        bounded = bounded_schema(schema, arguments, bounds, keep)
        need = token_bound(bounded) + 4  # end of text, and slack for a final space
        if need <= budget:
            return ResponsePlan(bounded, need, bounds)
        smallest = need if smallest is None else min(smallest, need)
    raise UnboundedSchema(
        f"even the tightest bounded response needs {smallest} tokens, over the budget of {budget}"
    )
