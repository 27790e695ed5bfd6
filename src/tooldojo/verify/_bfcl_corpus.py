"""A checker-agreement corpus built from BFCL's data: TEST DATA ONLY, never training data.

Each BFCL entry's ground truth becomes a correct model output plus perturbations (wrong
value, missing required, extra parameter, wrong type, wrong function, swapped order, wrong
count, and a few that should still pass: int for float, string noise, omitted optional).
Both our label gate and BFCL's official ``ast_checker`` judge every case; the test and
``bench/verify_speed.py`` use it.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

from tooldojo.model import LabelCall, Tool

CATEGORIES = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)

_BFCL_TYPES = {"dict": "object", "float": "number", "tuple": "array"}


def sanitize_name(name: str) -> str:
    """Tool names as tooldojo models see them (OpenAI's rule; BFCL only needs ``.`` → ``_``)."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64]


def _to_json_schema(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            if value != "any":  # BFCL's "any" has no JSON Schema type
                out["type"] = _BFCL_TYPES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _to_json_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = _to_json_schema(value)
        else:
            out[key] = value
    return out


def bfcl_function_to_tool(function: dict[str, Any]) -> Tool:
    """A BFCL function doc as a tooldojo :class:`Tool` (JSON Schema types, sanitized name)."""
    parameters = _to_json_schema(function.get("parameters") or {"type": "dict"})
    parameters["type"] = "object"
    return Tool(
        name=sanitize_name(function["name"]),
        description=function.get("description", ""),
        parameters=parameters,
        original_name=function["name"],
        source="bfcl",
    )


@dataclass
class Case:
    """One check: a model output (BFCL decoded form, sanitized names) against an entry."""

    entry_id: str
    category: str
    variant: str
    functions: list[dict[str, Any]]
    answer: list[dict[str, dict[str, list[Any]]]]
    output: list[dict[str, dict[str, Any]]]
    tools: list[Tool] = field(default_factory=list)
    label: list[LabelCall] = field(default_factory=list)

    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        return [next(iter(item.items())) for item in self.output]


def _read_jsonl(path: Any) -> Iterator[dict[str, Any]]:
    with path.open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def load_entries(category: str) -> list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]]:
    """``(id, function docs, ground truth)`` for one BFCL category from the installed data."""
    data = files("bfcl_eval") / "data"
    answers = {
        row["id"]: row["ground_truth"]
        for row in _read_jsonl(data / "possible_answer" / f"BFCL_v4_{category}.json")
    }
    return [
        (row["id"], row["function"], answers[row["id"]])
        for row in _read_jsonl(data / f"BFCL_v4_{category}.json")
    ]


def _param_type(function: dict[str, Any], param: str) -> tuple[str, str | None]:
    details = function["parameters"].get("properties", {}).get(param, {})
    kind = details.get("type", "any")
    items = details.get("items", {}).get("type") if isinstance(details.get("items"), dict) else None
    return kind, items


def _first(values: list[Any]) -> Any:
    for value in values:
        if value != "":
            return value
    return ""


def _materialize_dict(possible: dict[str, list[Any]]) -> dict[str, Any]:
    return {k: _first(v) for k, v in possible.items() if _first(v) != "" or "" not in v}


def _correct_value(kind: str, items: str | None, values: list[Any]) -> Any:
    value = _first(values)
    if kind == "dict" and isinstance(value, dict):
        return _materialize_dict(value)
    if kind in ("array", "tuple") and items == "dict" and isinstance(value, list):
        return [_materialize_dict(v) if isinstance(v, dict) else v for v in value]
    return copy.deepcopy(value)


def _correct_output(functions: list[dict[str, Any]], answer: list[dict[str, Any]]) -> list[Any]:
    by_name = {f["name"]: f for f in functions}
    output = []
    for expected in answer:
        ((name, params),) = expected.items()
        function = by_name[name]
        args = {}
        for param, values in params.items():
            if _first(values) == "":
                continue  # only "" acceptable: omit it
            kind, items = _param_type(function, param)
            args[param] = _correct_value(kind, items, values)
        output.append({sanitize_name(name): args})
    return output


def _wrong_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7919
    if isinstance(value, float):
        return value + 7919.5
    if isinstance(value, str):
        return value + " zq"
    if isinstance(value, list):
        return [*value, value[0]] if value else ["zq"]
    if isinstance(value, dict):
        return {**value, "zq_key": "zq"}
    return "zq"


def _wrong_type(value: Any) -> Any:
    if isinstance(value, str):
        return 12345
    if isinstance(value, bool | int | float):
        return "12"
    if isinstance(value, list):
        return "zq"
    return ["zq"]


def _perturb(rng: random.Random, case: Case) -> Iterator[tuple[str, list[Any]]]:
    output = case.output
    by_name = {sanitize_name(f["name"]): f for f in case.functions}
    index = rng.randrange(len(output))
    name, args = next(iter(output[index].items()))

    def with_call(new_name: str, new_args: dict[str, Any]) -> list[Any]:
        out = copy.deepcopy(output)
        out[index] = {new_name: new_args}
        return out

    if args:
        param = rng.choice(sorted(args))
        yield "wrong_value", with_call(name, {**args, param: _wrong_value(args[param])})
        yield "wrong_type", with_call(name, {**args, param: _wrong_type(args[param])})
        value = args[param]
        if isinstance(value, float) and value.is_integer():
            yield "int_for_float", with_call(name, {**args, param: int(value)})
        if isinstance(value, str) and value:
            noisy = value.upper() + " ."
            yield "string_noise", with_call(name, {**args, param: noisy})
    else:
        yield "wrong_value", with_call(name, {"zq_param": "zq"})
    required = by_name[name]["parameters"].get("required", [])
    present_required = [p for p in required if p in args]
    if present_required:
        dropped = rng.choice(present_required)
    elif args:
        dropped = rng.choice(sorted(args))
    else:
        dropped = None
    if dropped is not None:
        yield "missing_param", with_call(name, {k: v for k, v in args.items() if k != dropped})
    optional = [p for p, values in next(iter(case.answer[index].values())).items() if "" in values]
    if optional:
        first = optional[0]
        reduced = {k: v for k, v in args.items() if k != first}
        yield "omit_optional", with_call(name, reduced)
    yield "extra_param", with_call(name, {**args, "unexpected_zq": 1})
    others = [n for n in by_name if n != name]
    yield "wrong_function", with_call(rng.choice(others) if others else name + "_v2", args)
    if len(output) > 1:
        yield "swapped_order", list(reversed(copy.deepcopy(output)))
        yield "dropped_call", copy.deepcopy(output[:-1])
    yield "extra_call", [*copy.deepcopy(output), copy.deepcopy(output[index])]
    yield "no_call", []


def build_corpus(categories: tuple[str, ...] = CATEGORIES, seed: int = 0) -> list[Case]:
    """Every entry of ``categories`` as a correct case plus at least five perturbations."""
    cases: list[Case] = []
    for category in categories:
        for entry_id, functions, answer in load_entries(category):
            tools = [bfcl_function_to_tool(f) for f in functions]
            label = [
                LabelCall(name=sanitize_name(name), arguments=params)
                for expected in answer
                for name, params in expected.items()
            ]
            base = Case(
                entry_id,
                category,
                "correct",
                functions,
                answer,
                _correct_output(functions, answer),
                tools,
                label,
            )
            cases.append(base)
            rng = random.Random(f"{seed}:{entry_id}")
            for variant, output in _perturb(rng, base):
                cases.append(
                    Case(entry_id, category, variant, functions, answer, output, tools, label)
                )
    return cases
