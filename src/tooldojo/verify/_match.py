"""Matching calls against BFCL possible-answer labels, with BFCL's exact semantics.

This mirrors ``bfcl_eval/eval_checker/ast_eval/ast_checker.py`` (Python language) rule for
rule, so a label gate verdict equals the official checker's on the same input (a test asserts
100% agreement on a corpus built from BFCL's data). We re-implement it instead of calling the
official code because GRPO computes a reward for every sampled completion: tool shapes are
compiled once per tool (not re-derived per check), strings are normalized with
``str.translate`` and memoized, and the success path builds no error strings.

Semantics, in BFCL's words and ours:

- each label argument lists acceptable values; ``""`` in the list means it may be omitted;
- a parameter typed ``number`` (BFCL ``float``) accepts an int;
- strings compare after BFCL's normalization (drop `` ,./-_*^``, lowercase, ``'`` → ``"``),
  also inside lists and as dict values; other values compare with Python ``==``;
- a value whose type differs from the schema but equals the label's value type is a
  "variable" and compares raw (BFCL's escape hatch for expressions like ``x`` for a string);
- several expected calls match order-free but greedily, in label order, first fit wins
  (exactly BFCL's ``parallel_function_checker_no_order``); the call count must be equal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tooldojo.model import LabelCall, Tool

# JSON Schema type → the Python type BFCL's checker expects (BFCL: string, integer, float,
# boolean, array/tuple, dict, any→str). A missing or unknown type behaves like BFCL's "any".
_TYPE_OF_SCHEMA: dict[str, type] = {
    "string": str,
    "integer": int,
    "number": float,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "object": dict,
    "dict": dict,
}

_STRIP = str.maketrans({c: None for c in " ,./-_*^"} | {"'": '"'})


@lru_cache(maxsize=65536)
def standardize_string(text: str) -> str:
    """BFCL's ``standardize_string``: drop `` ,./-_*^``, lowercase, single → double quotes."""
    # Translating the quote before lowercasing is equivalent: lower() never yields ' or ".
    return text.translate(_STRIP).lower()


def _std(value: Any) -> Any:
    return standardize_string(value) if type(value) is str else value


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """What the checker needs to know about one parameter."""

    kind: type
    """Expected Python type (``str`` for untyped, like BFCL's ``any``)."""
    nested: type | None = None
    """For arrays: the expected item type, checked one level deep as BFCL does."""


@dataclass(frozen=True, slots=True)
class ToolShape:
    """A tool compiled for matching: parameter specs and required names."""

    name: str
    params: Mapping[str, ParamSpec]
    required: tuple[str, ...]


def _schema_type(schema: Any) -> type:
    if not isinstance(schema, dict):
        return str
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        kind = non_null[0] if len(non_null) == 1 else None
    return _TYPE_OF_SCHEMA.get(kind, str) if isinstance(kind, str) else str


def shape_from_parameters(name: str, parameters: Mapping[str, Any]) -> ToolShape:
    """Compile a JSON Schema (or BFCL) ``parameters`` object into a :class:`ToolShape`."""
    params: dict[str, ParamSpec] = {}
    for param, schema in (parameters.get("properties") or {}).items():
        kind = _schema_type(schema)
        nested = None
        if kind is list and isinstance(schema, dict) and "items" in schema:
            nested = _schema_type(schema["items"])
        params[param] = ParamSpec(kind=kind, nested=nested)
    return ToolShape(name=name, params=params, required=tuple(parameters.get("required") or ()))


_shape_cache: dict[tuple[str, str], ToolShape] = {}


def shape_of(tool: Tool) -> ToolShape:
    """The compiled shape of ``tool``, cached by name and schema content."""
    digest = hashlib.sha1(
        json.dumps(tool.parameters, sort_keys=True, default=str).encode()
    ).hexdigest()
    key = (tool.name, digest)
    shape = _shape_cache.get(key)
    if shape is None:
        if len(_shape_cache) > 4096:
            _shape_cache.clear()
        shape = _shape_cache[key] = shape_from_parameters(tool.name, tool.parameters)
    return shape


def shape_from_label(call: LabelCall) -> ToolShape:
    """A shape inferred from a label alone, for when no tool schema is at hand (e.g. rewards).

    Each parameter's type is that of its first non-``""`` acceptable value; nothing is required
    beyond what the label itself requires.
    """
    params: dict[str, ParamSpec] = {}
    for param, values in call.arguments.items():
        sample = next((v for v in values if v != ""), "")
        kind = type(sample) if type(sample) in _TYPE_OF_SCHEMA.values() else str
        nested = None
        if kind is list and sample:
            first = sample[0]
            nested = type(first) if type(first) in _TYPE_OF_SCHEMA.values() else str
        params[param] = ParamSpec(kind=kind, nested=nested)
    return ToolShape(name=call.name, params=params, required=())


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Why calls do not match a label (``error_type`` uses BFCL's vocabulary)."""

    error_type: str
    message: str


def _first_answer_type(possible: Sequence[Any]) -> type | None:
    for answer in possible:
        if answer != "":
            return type(answer)
    return None


def _leaf_type_ok(value: Any, possible: Any, expected: type) -> bool:
    if type(value) is expected:
        return True
    answer_type = _first_answer_type(possible)
    return answer_type is not None and type(value) is answer_type


def _dict_ok(value: dict[str, Any], possibles: Sequence[Any]) -> bool:
    for possible in possibles:
        if possible == "":
            continue
        ok = True
        for key, item in value.items():
            if key not in possible:
                ok = False
                break
            if _std(item) not in [_std(x) for x in possible[key]]:
                ok = False
                break
        if ok:
            for key, allowed in possible.items():
                if key not in value and "" not in allowed:
                    ok = False
                    break
        if ok:
            return True
    return False


def _list_of_dicts_ok(value: list[Any], possibles: Sequence[Any]) -> bool:
    for possible in possibles:
        if len(value) != len(possible):
            continue
        if all(_dict_ok(value[i], [possible[i]]) for i in range(len(value))):
            return True
    return False


def _list_ok(value: list[Any], possibles: Sequence[Any]) -> bool:
    standardized = [_std(item) for item in value]
    for possible in possibles:
        if standardized == [_std(possible[j]) for j in range(len(possible))]:
            return True
    return False


def _option_map_ok(value: dict[str, Any], option: dict[str, Any]) -> bool:
    """``value`` against one option map of a label (each key's acceptable values, ``""``
    meaning it may be left out), its values compared as literals."""
    if not all(isinstance(allowed, list) for allowed in option.values()):
        return False
    if any(key not in option for key in value):
        return False
    for key, allowed in option.items():
        if key in value:
            if not any(item != "" and _std(value[key]) == _std(item) for item in allowed):
                return False
        elif "" not in allowed:
            return False
    return True


def label_form_match(value: Any, possible: Sequence[Any]) -> bool:
    """Whether ``value`` is one of ``possible`` as synthesis labels write nested arguments
    (``synth.labels.possible_answers``): a dict held as it is, an option map one level deep,
    or a list holding option maps; deeper values are literals. Scalars are left to BFCL's
    own comparison.

    Why: the BFCL checker above reads nested forms only where the tool's shape says dict or
    list of dicts, and compares literal dicts as option maps. On refined OpenAPI tools whose
    body schemas it types as ``str`` (a ``$ref`` it does not follow), or whose dict declares
    no properties (so the label holds it literally), the label's own canonical call failed
    it: 4 of 47 episodes of a 64-scenario run on the refined corpus."""
    for option in possible:
        if not isinstance(option, dict | list) or type(value) is not type(option):
            continue  # scalars: BFCL's own comparison stands
        if isinstance(option, dict):
            # A dict the label holds as it is (its schema declares no properties), or a map.
            literal = not all(isinstance(allowed, list) for allowed in option.values())
            if (literal and value == option) or _option_map_ok(value, option):
                return True
            continue
        if (
            len(option) == len(value)
            and any(isinstance(o, dict) for o in option)
            and all(
                _std(v) == _std(o)
                or (isinstance(o, dict) and isinstance(v, dict) and _option_map_ok(v, o))
                for v, o in zip(value, option, strict=True)
            )
        ):
            return True
    return False


def check_param(spec: ParamSpec, value: Any, possible: Sequence[Any]) -> str | None:
    """BFCL's type and value check of one argument; returns an error type or ``None``.

    A value error is waived when the value matches in the labels' own nested form
    (:func:`label_form_match`)."""
    error = _bfcl_check_param(spec, value, possible)
    if error is not None and error.startswith("value_error") and label_form_match(value, possible):
        return None
    return error


def _bfcl_check_param(spec: ParamSpec, value: Any, possible: Sequence[Any]) -> str | None:
    kind = spec.kind
    if kind is float and type(value) is int:
        value = float(value)
    answer_type = _first_answer_type(possible)
    is_variable = answer_type is not None and answer_type is not kind
    if type(value) is kind:
        nested = spec.nested
        if nested is not None:
            for item in possible:
                if type(item) is not list or all(_leaf_type_ok(v, item, nested) for v in value):
                    break
            else:
                return "type_error:nested"
    elif answer_type is not None and type(value) is answer_type:
        is_variable = True
    else:
        return "type_error:simple"
    if not is_variable:
        if kind is dict:
            return None if _dict_ok(value, possible) else "value_error:dict_value"
        if kind is list and spec.nested is dict:
            return None if _list_of_dicts_ok(value, possible) else "value_error:list_dict"
        if kind is str:
            standardized = standardize_string(value)
            for answer in possible:
                if type(answer) is str and standardize_string(answer) == standardized:
                    return None
            return "value_error:string"
        if kind is list:
            return None if _list_ok(value, possible) else "value_error:list/tuple"
    return None if value in possible else "value_error:others"


def check_call(
    shape: ToolShape, name: str, arguments: Mapping[str, Any], expected: Mapping[str, list[Any]]
) -> Mismatch | None:
    """One call against one expected call (BFCL's ``simple_function_checker``)."""
    if name != shape.name:
        return Mismatch("wrong_func_name", f"expected {shape.name!r}, got {name!r}")
    for param in shape.required:
        if param not in arguments:
            return Mismatch("missing_required", f"{name}: missing required parameter {param!r}")
    params = shape.params
    try:
        for param, value in arguments.items():
            spec = params.get(param)
            if spec is None or param not in expected:
                return Mismatch("unexpected_param", f"{name}: unexpected parameter {param!r}")
            error = check_param(spec, value, expected[param])
            if error is not None:
                return Mismatch(
                    error,
                    f"{name}: {param}={value!r} is not one of {expected[param]!r}",
                )
    except (TypeError, AttributeError, KeyError, IndexError) as error:
        # Shapes the official checker would crash on (e.g. a dict where a list is expected).
        return Mismatch("malformed_value", f"{name}: cannot compare arguments ({error})")
    for param, allowed in expected.items():
        if param not in arguments and "" not in allowed:
            return Mismatch("missing_optional", f"{name}: parameter {param!r} not provided")
    return None


CallLike = tuple[str, Mapping[str, Any]]


def match_calls(
    calls: Sequence[CallLike],
    expected: Sequence[LabelCall],
    shapes: Mapping[str, ToolShape],
) -> Mismatch | None:
    """All ``calls`` against all ``expected`` calls: equal count, order-free, greedy first fit.

    ``shapes`` maps tool names to compiled shapes; an expected call whose tool is unknown falls
    back to a shape inferred from the label itself.
    """
    if len(calls) != len(expected):
        return Mismatch("wrong_count", f"expected {len(expected)} call(s), got {len(calls)}")
    matched: set[int] = set()
    for want in expected:
        shape = shapes.get(want.name) or shape_from_label(want)
        first: Mismatch | None = None
        for index, (name, arguments) in enumerate(calls):
            if index in matched:
                continue
            mismatch = check_call(shape, name, arguments, want.arguments)
            if mismatch is None:
                matched.add(index)
                break
            if first is None or (first.error_type == "wrong_func_name" and name == want.name):
                first = mismatch
        else:
            assert first is not None
            if len(expected) == 1:
                return first
            return Mismatch("cannot_find_match", f"no call matches {want.name}: {first.message}")
    return None
