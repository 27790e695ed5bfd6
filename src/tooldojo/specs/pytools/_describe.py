"""Signature and docstring of a library callable → a JSON Schema for its parameters.

Sources, strongest first: a per-function override, a type hint, the docstring's type text
(numpydoc ``a : array_like``), the default value, then the parameter's name (``n`` is a
count, ``text`` a string). C builtins without a signature (``math.log``) are read from
their text signature or the ``name(args)`` line their docstring opens with. A required
parameter none of these can describe drops the function; an optional one is left out.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import docstring_parser

EMPTY = inspect.Parameter.empty

# Integer parameters that size a result or a loop get a small maximum; others a wide one.
SIZE_LIKE = frozenset(
    [
        "n",
        "k",
        "r",
        "m",
        "num",
        "size",
        "count",
        "width",
        "length",
        "repeats",
        "reps",
        "deg",
        "degree",
        "order",
        "N",
        "M",
        "ndigits",
        "nmax",
        "nt",
        "numbins",
        "ndim",
        "minlength",
        "shape",
        "new_shape",
        "dimensions",
    ]
)
SIZE_MAX = 1000
INT_BOUND = 10**12
MAX_ITEMS = 1000

# Optional parameters that take callables or only steer error reporting here.
IGNORED_IF_OPTIONAL = frozenset(["key", "name", "throw", "warning", "disp"])

# Optional knobs of numpy/scipy that are about memory layout or machinery, not the question.
IGNORED = frozenset(
    [
        "out",
        "dtype",
        "where",
        "casting",
        "order",
        "subok",
        "signature",
        "like",
        "keepdims",
        "axis",
        "axes",
        "initial",
        "overwrite_input",
        "overwrite_a",
        "overwrite_b",
        "check_finite",
        "nan_policy",
        "random_state",
        "rng",
        "method",
        "weights_fn",
        "device",
        "copy",
    ]
)

_NAME_TYPES: dict[str, dict[str, Any]] = {}
for _names, _schema in (
    ("n k r m i j year month day week hour minute second ndigits lo hi width ordinal", "integer"),
    ("theyear themonth y1 y2 w l c firstweekday", "integer"),
    ("x y z a b t phi theta angle base exp g h l v rel_tol abs_tol start stop", "number"),
    (
        "text s string word chr unistr form sep fillchar prefix key name placeholder date_string",
        "string",
    ),
    ("format", "string"),
    ("data iterable seq sequence values xs points p q coordinates vector", "array"),
):
    for _name in _names.split():
        _NAME_TYPES[_name] = (
            {"type": "array", "items": {"type": "number"}, "maxItems": MAX_ITEMS}
            if _schema == "array"
            else {"type": _schema}
        )

_SIGNATURE_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*)\((.*)\)\s*(?:-+>.*)?$")


@dataclass
class Param:
    """One parameter as the call sees it: how it is passed and what JSON it takes."""

    name: str
    kind: str  # "pos" (positional-only), "kw", or "star" (*args)
    default: Any = EMPTY
    annotation: Any = EMPTY


@dataclass
class Description:
    """What the describer made of a callable, or why it gave up."""

    summary: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)
    star: str | None = None
    problem: str | None = None  # drop reason when set
    detail: str = ""


def split_doc(doc: str) -> tuple[list[str], str]:
    """Leading ``name(args)`` lines of a docstring (C functions' signatures) and the rest."""
    lines = doc.strip("\n").splitlines()
    signatures: list[str] = []
    while lines and (_SIGNATURE_LINE.match(lines[0]) or not lines[0].strip()):
        if lines[0].strip():
            signatures.append(lines[0].strip())
        lines.pop(0)
    return signatures, "\n".join(lines)


def first_sentence(text: str, *, at_least: int = 15) -> str:
    """The first sentence of the first paragraph, on one line (more sentences while it is
    shorter than ``at_least`` characters: "Beta function." says little on its own)."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    paragraph = re.sub(r"^[\w ,]*->\s*", "", paragraph)  # "int, int -> Construct a date..."
    # Markdown emphasis (*data*) goes; arithmetic (x * (2**i)) stays.
    paragraph = re.sub(
        r"(?<![\w)])\*{1,2}([^*\s](?:[^*]*?[^*\s])?)\*{1,2}(?![\w(])", r"\1", paragraph
    ).replace("`", "")
    sentences = re.findall(r".+?[.!?](?=\s|$)|.+$", paragraph)
    summary = ""
    for sentence in sentences:
        summary = f"{summary} {sentence.strip()}".strip()
        if len(summary) >= at_least:
            break
    return summary


def params_from_text(text: str) -> list[Param] | None:
    """Parameters from ``name(a, b=1, /, *, c=2)`` or ``log(x, [base=math.e])`` text."""
    match = _SIGNATURE_LINE.match(text)
    if not match:
        return None
    inner = match.group(2)
    params: list[Param] = []
    kind = "kw"
    optional_depth = 0
    for raw in re.split(r",", inner):
        token = raw.strip()
        optional_depth += token.count("[")
        token = token.replace("[", "").replace("]", "").strip()
        if not token or token == "...":
            continue
        if token == "/":
            for param in params:
                param.kind = "pos"
            continue
        if token == "*":
            kind = "kw"
            continue
        name, _, default_text = token.partition("=")
        name = name.strip()
        if name.startswith("**"):
            continue
        if name.startswith("*"):
            params.append(Param(name.lstrip("*"), "star"))
            continue
        if not name.isidentifier() or name == "$module":
            if name in ("$module", "$self", "$type"):
                continue
            return None
        default: Any = EMPTY
        if default_text:
            try:
                default = ast.literal_eval(default_text.strip())
            except (ValueError, SyntaxError):
                default = None  # a default we cannot read (math.e): still optional
        elif optional_depth > 0:
            default = None
        params.append(Param(name, kind, default))
        optional_depth -= raw.count("]")
    return params


def signature_params(function: Any, signatures: Sequence[str]) -> list[Param] | None:
    """Parameters from ``inspect.signature``, else the text signature, else the docstring."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        params = []
        for parameter in signature.parameters.values():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                continue
            kind = {
                inspect.Parameter.POSITIONAL_ONLY: "pos",
                inspect.Parameter.VAR_POSITIONAL: "star",
            }.get(parameter.kind, "kw")
            params.append(Param(parameter.name, kind, parameter.default, parameter.annotation))
        return params
    text = getattr(function, "__text_signature__", None)
    if text:
        name = getattr(function, "__name__", "f")
        cleaned = re.sub(r"<[^>]*>", "None", text)
        parsed = params_from_text(f"{name}{cleaned}")
        if parsed is not None:
            return parsed
    for line in signatures:
        parsed = params_from_text(line)
        if parsed is not None:
            for param in parsed:  # C functions documented this way take no keywords
                if param.kind == "kw":
                    param.kind = "pos"
            return parsed
    return None


def ufunc_params(ufunc: Any, signatures: Sequence[str]) -> list[Param]:
    """A ufunc's inputs, named as its docstring's own signature line names them (``jv(v, z)``)."""
    for line in reversed(signatures):
        parsed = params_from_text(line)
        if parsed is None:
            continue
        names = [p.name for p in parsed if p.name not in IGNORED and p.kind != "star"]
        if len(names) >= ufunc.nin and "/" not in line:
            return [Param(name, "pos") for name in names[: ufunc.nin]]
    names = ["x"] if ufunc.nin == 1 else [f"x{i + 1}" for i in range(ufunc.nin)]
    return [Param(name, "pos") for name in names]


# -- types ---------------------------------------------------------------------------------

_UNDESCRIBABLE = re.compile(
    r"callable|function|dtype|data-type|object|file|generator|randomstate|dict|mapping|"
    r"class|type\b|module|ndarray, optional$|bitgenerator|sparse|instance",
    re.IGNORECASE,
)
_ARRAY = re.compile(r"array|sequence|list|iterable|tuple|vector|matrix|\(\s*[A-Z.]", re.I)
_MATRIX = re.compile(r"\(\s*(\.\.\.,\s*)?[A-Z]\s*,\s*[A-Z]\s*\)|2-?d|matrix", re.IGNORECASE)


def schema_from_text(
    text: str, *, elementwise: bool, whole: str | None = None
) -> dict[str, Any] | None:
    """A JSON Schema from numpydoc type text such as ``int, optional`` or ``{'a', 'b'}``.

    Of alternatives (``None or int or tuple of ints``) the first describable one is taken:
    the plainest form, the one a user would give.
    """
    text = re.sub(r",?\s*(optional|default[:= ].*)$", "", text.strip(), flags=re.I).strip()
    if " or " in text and not text.startswith("{"):
        for alternative in re.split(r"\s+or\s+", text):
            if alternative.strip() in ("None", ""):
                continue
            schema = schema_from_text(alternative, elementwise=elementwise, whole=text)
            if schema is not None:
                return schema
        return None
    if not text:
        return None
    if text.startswith("{"):
        try:
            values = ast.literal_eval(text.replace("{", "[").replace("}", "]"))
        except (ValueError, SyntaxError):
            return None
        values = [v for v in values if isinstance(v, str | int | float) and v is not None]
        return {"enum": values} if values else None
    if _UNDESCRIBABLE.search(text):
        return None
    if _ARRAY.search(text) or text.lower() in ("array_like", "array-like"):
        if elementwise:
            return {"type": "number"}
        # Item types read the whole text: "tuple or int" is a tuple of ints.
        whole = whole or text
        item_type = "integer" if re.search(r"\bints?\b|integers?", whole) else "number"
        if re.search(r"\bstr|string", text):
            item_type = "string"
        items: dict[str, Any] = {"type": item_type}
        if _MATRIX.search(text):
            items = {"type": "array", "items": items, "maxItems": MAX_ITEMS}
        return {"type": "array", "items": items, "maxItems": MAX_ITEMS}
    lowered = text.lower()
    if re.search(r"\bbool", lowered):
        return {"type": "boolean"}
    if re.search(r"\bint", lowered):
        return {"type": "integer"}
    if re.search(r"float|scalar|number|real|complex|numeric", lowered):
        return {"type": "number"}
    if re.search(r"\bstr|string", lowered):
        return {"type": "string"}
    return None


def schema_from_annotation(annotation: Any) -> dict[str, Any] | None:
    """A JSON Schema from a simple type hint (``int``, ``list[float]``, ``Literal[...]``)."""
    if annotation is EMPTY or annotation is Any:
        return None
    if isinstance(annotation, str):
        return schema_from_text(annotation, elementwise=False)
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Literal:
        return {"enum": [a for a in typing.get_args(annotation) if a is not None]}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return schema_from_annotation(args[0])
    if origin in (list, tuple, set, frozenset) or str(origin).startswith("<class 'collections"):
        item = schema_from_annotation(args[0]) if args else {"type": "number"}
        return {"type": "array", "items": item, "maxItems": MAX_ITEMS} if item else None
    simple = {bool: "boolean", int: "integer", float: "number", complex: "number", str: "string"}
    if annotation in simple:
        return {"type": simple[annotation]}
    return None


def schema_from_default(default: Any) -> dict[str, Any] | None:
    if isinstance(default, bool):
        return {"type": "boolean"}
    if isinstance(default, int):
        return {"type": "integer"}
    if isinstance(default, float):
        return {"type": "number"}
    if isinstance(default, str):
        return {"type": "string"}
    return None


def bounded(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Integers get a maximum (small for sizes and counts: ``math.factorial(10**9)`` must not
    be askable); arrays a maximum length, so no call can ask for a huge allocation."""
    if schema.get("type") == "integer":
        limit = SIZE_MAX if name in SIZE_LIKE else INT_BOUND
        schema.setdefault("minimum", -limit if name not in SIZE_LIKE else -SIZE_MAX)
        schema.setdefault("maximum", limit)
    if schema.get("type") == "array":
        schema.setdefault("maxItems", MAX_ITEMS)
        items = schema.get("items")
        if isinstance(items, dict):
            bounded(name, items)
    return schema


def describe_params(
    params: Sequence[Param],
    doc_types: dict[str, tuple[str, str]],
    *,
    elementwise: bool = False,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Description:
    """Schema, call plan and required list for ``params``; ``problem`` set when undescribable."""
    overrides = overrides or {}
    result = Description()
    properties: dict[str, Any] = {}
    required: list[str] = []
    for index, param in enumerate(params):
        if index == 0 and param.name in ("self", "cls"):
            continue
        optional = param.default is not EMPTY
        if optional and (param.name in IGNORED_IF_OPTIONAL or param.name.startswith("_")):
            continue
        if param.name in IGNORED:
            if optional:
                continue
            return Description(problem="undescribable_parameter", detail=param.name)
        type_text, text = doc_types.get(param.name, ("", ""))
        schema = (
            overrides.get(param.name)
            or schema_from_annotation(param.annotation)
            or (schema_from_text(type_text, elementwise=elementwise) if type_text else None)
            or schema_from_default(param.default)
            or _NAME_TYPES.get(param.name)
        )
        if schema is None:
            if optional:
                continue
            return Description(problem="undescribable_parameter", detail=param.name)
        schema = bounded(param.name, dict(schema))
        if param.kind == "star":
            schema = (
                schema
                if schema.get("type") == "array"
                else {
                    "type": "array",
                    "items": schema,
                    "maxItems": MAX_ITEMS,
                }
            )
            result.star = param.name
        if text:
            schema["description"] = " ".join(text.split())[:300]
        if optional and _plain_default(param.default):
            schema["default"] = param.default
        if param.kind == "pos":
            result.positional.append(param.name)
        if not optional and param.kind != "star":
            required.append(param.name)
        properties[param.name] = schema
    if result.star and result.star not in required:
        required.append(result.star)
    result.parameters = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if not required:
        del result.parameters["required"]
    return result


def _plain_default(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, bool | int | str)


def doc_params(doc: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """(summary, {parameter: (type text, description)}) from a numpydoc, Google or reST doc."""
    try:
        parsed = docstring_parser.parse(doc)
    except Exception:  # a docstring the parser chokes on still has a first sentence
        return first_sentence(doc), {}
    # The parser cuts the summary at the first line break; a summary that runs on to the
    # next line ("... and number of days (28-31) for\n year, month.") is joined back.
    joiner = "\n\n" if parsed.blank_after_short_description else "\n"
    summary = first_sentence(
        joiner.join(p for p in (parsed.short_description, parsed.long_description) if p) or doc
    )
    params: dict[str, tuple[str, str]] = {}
    for item in parsed.params:
        for name in item.arg_name.replace("*", "").split(","):
            params[name.strip()] = (item.type_name or "", item.description or "")
    return summary, params
