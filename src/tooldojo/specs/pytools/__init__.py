"""Executable tools introspected from installed Python libraries (``--specs pylib:default``).

Every public callable of an allowlisted module (stdlib ``math``, ``statistics``, ``calendar``
..., numpy, ``scipy.special``, ``scipy.stats`` and its distributions) becomes a candidate;
names on the denylist are skipped, signatures and docstrings become JSON Schemas, and each
candidate is called once with sample arguments in a sandboxed worker process. Only those
that answer with JSON data are kept, so the python executor can run every kept tool for
real and the execution gate checks true results. Each drop is counted with its reason.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from tooldojo.errors import SpecError
from tooldojo.model import Tool
from tooldojo.specs._schema import sanitize_name
from tooldojo.specs.pytools import _cache
from tooldojo.specs.pytools._bfcl_overlap import bfcl_function_names, content_guard, overlap
from tooldojo.specs.pytools._call import CallFailed, Sandbox, call_plan
from tooldojo.specs.pytools._describe import (
    IGNORED,
    Description,
    Param,
    describe_params,
    doc_params,
    first_sentence,
    params_from_text,
    signature_params,
    split_doc,
    ufunc_params,
)
from tooldojo.specs.pytools._probe import VARIANTS, is_useful, sample_arguments
from tooldojo.specs.pytools._safety import ALLOWED_MODULES, check_ref, denied_name

PYLIB_PREFIX = "pylib:"
DEFAULT_MODULES: tuple[str, ...] = ALLOWED_MODULES
MIN_DESCRIPTION = 15
PROBE_TIMEOUT_S = 3.0

# Classes whose constructors or class methods return plain values (dates, fractions).
_CLASS_CALLABLES = {
    "datetime": (
        "date",
        "time",
        "timedelta",
        "date.fromisoformat",
        "date.fromordinal",
        "date.fromisocalendar",
        "datetime.fromisoformat",
        "datetime.strptime",
    ),
    "fractions": ("Fraction",),
    # Finite iterators over a given list (results are taken boundedly); count, cycle and
    # repeat are infinite and left out.
    "itertools": (
        "combinations",
        "combinations_with_replacement",
        "permutations",
        "accumulate",
        "pairwise",
        "compress",
    ),
}

# Where neither signature nor docstring says what a parameter is.
_ARRAY = {"type": "array", "items": {"type": "number"}}
_BOOLEAN = {"type": "boolean"}
_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "math:dist": {"p": _ARRAY, "q": _ARRAY},
    "bisect:bisect_left": {"a": _ARRAY, "x": {"type": "number"}},
    "bisect:bisect_right": {"a": _ARRAY, "x": {"type": "number"}},
    "bisect:bisect": {"a": _ARRAY, "x": {"type": "number"}},
    "math:fsum": {"seq": _ARRAY},
    "math:prod": {"iterable": _ARRAY},
    "math:sumprod": {"p": _ARRAY, "q": _ARRAY},
    "fractions:Fraction": {"numerator": {"type": "integer"}, "denominator": {"type": "integer"}},
    "math:gcd": {"integers": {"type": "array", "items": {"type": "integer"}}},
    "math:lcm": {"integers": {"type": "array", "items": {"type": "integer"}}},
    "math:hypot": {"coordinates": _ARRAY},
    "itertools:compress": {
        "data": _ARRAY,
        "selectors": {"type": "array", "items": {"type": "boolean"}},
    },
    "cmath:rect": {"r": {"type": "number"}, "phi": {"type": "number"}},
    **{
        f"colorsys:{name}": {p: {"type": "number"} for p in params}
        for name, params in (
            ("hls_to_rgb", "hls"),
            ("hsv_to_rgb", "hsv"),
            ("yiq_to_rgb", "yiq"),
            ("rgb_to_hls", "rgb"),
            ("rgb_to_hsv", "rgb"),
            ("rgb_to_yiq", "rgb"),
        )
    },
    "statistics:correlation": {"x": _ARRAY, "y": _ARRAY},
    "statistics:covariance": {"x": _ARRAY, "y": _ARRAY},
    "statistics:linear_regression": {"x": _ARRAY, "y": _ARRAY},
}
# Functions whose docstring is missing or says too little; written from the module's docs.
_DESCRIPTIONS = {
    "math:factorial": "Find n!, the factorial of a non-negative integer n.",
    "statistics:covariance": "Sample covariance of two inputs x and y of the same length.",
    "datetime:date": "Build a calendar date from year, month and day (checked to exist).",
    "datetime:time": "Build a time of day from hour, minute and second.",
    "datetime:date.fromordinal": "The date of a proleptic Gregorian ordinal (day 1 is 0001-01-01).",
    "fractions:Fraction": "The exact fraction numerator/denominator, reduced to lowest terms.",
    **{
        f"colorsys:{a}_to_{b}": f"Convert a color from {a.upper()} to {b.upper()} coordinates "
        "(all components between 0 and 1)."
        for a, b in (
            ("rgb", "yiq"),
            ("yiq", "rgb"),
            ("rgb", "hls"),
            ("hls", "rgb"),
            ("rgb", "hsv"),
            ("hsv", "rgb"),
        )
    },
}
_TEXT_SIGNATURES = {  # C functions whose docstring gives types but no parameter names
    "datetime:date.fromisocalendar": "fromisocalendar(year, week, day, /)",
    "datetime:date.fromordinal": "fromordinal(ordinal, /)",
    "datetime:date.fromisoformat": "fromisoformat(date_string, /)",
    "datetime:datetime.fromisoformat": "fromisoformat(date_string, /)",
    "datetime:datetime.strptime": "strptime(date_string, format, /)",
    "datetime:timedelta": "timedelta(days=0, seconds=0, microseconds=0, milliseconds=0, "
    "minutes=0, hours=0, weeks=0)",
}
_EXTRA_NAMES = {"ordinal": {"type": "integer", "minimum": 1, "maximum": 3_652_059}}

_DISTRIBUTION_METHODS = {
    "continuous": (
        ("pdf", "x", "Probability density function at x of {label}."),
        ("cdf", "x", "Cumulative distribution function at x of {label}."),
        ("ppf", "q", "Percent point function (inverse of the CDF) at probability q of {label}."),
    ),
    "discrete": (
        ("pmf", "k", "Probability mass function at k of {label}."),
        ("cdf", "k", "Cumulative distribution function at k of {label}."),
    ),
}


@dataclass
class LibraryReport:
    """How the library was built: what was kept and dropped, by reason and by module."""

    modules: list[str]
    candidates: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    kept_by_module: Counter[str] = field(default_factory=Counter)
    bfcl_check: str = "off"  # "names", "names+guard", "unavailable" (no bfcl-eval) or "off"
    drops: list[tuple[str, str, str]] = field(default_factory=list)  # (ref, reason, detail)
    seconds: float = 0.0

    def drop(self, ref: str, reason: str, detail: str = "") -> None:
        self.dropped[reason] += 1
        self.drops.append((ref, reason, detail))

    def as_dict(self) -> dict[str, Any]:
        return {
            "modules": self.modules,
            "candidates": self.candidates,
            "kept": self.kept,
            "dropped": dict(self.dropped.most_common()),
            "kept_by_module": dict(self.kept_by_module.most_common()),
            "bfcl_check": self.bfcl_check,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class Candidate:
    module: str
    qualname: str
    obj: Any

    @property
    def ref(self) -> str:
        return f"{self.module}:{self.qualname}"


def parse_pylib_spec(spec: str) -> tuple[str, ...]:
    """``pylib:default`` or ``pylib:math,statistics`` → the module names it asks for."""
    body = spec.removeprefix(PYLIB_PREFIX).strip()
    if body in ("", "default", "all"):
        return DEFAULT_MODULES
    modules = tuple(part.strip() for part in body.split(",") if part.strip())
    for module in modules:
        if module not in ALLOWED_MODULES:
            raise SpecError(
                spec,
                None,
                f"module {module!r} is not on the pylib allowlist ({', '.join(ALLOWED_MODULES)})",
            )
    return modules


def pylib_tools(spec: str) -> list[Tool]:
    """The probed tools a ``pylib:...`` spec names (built once per process, then copied)."""
    tools, _ = _cached_library(parse_pylib_spec(spec))
    return [tool.model_copy(deep=True) for tool in tools]


@functools.lru_cache(maxsize=8)
def _cached_library(modules: tuple[str, ...]) -> tuple[tuple[Tool, ...], LibraryReport]:
    """Built once per process; across processes read back from the disk cache
    (:mod:`tooldojo.specs.pytools._cache`) while nothing it depends on changed."""
    options: dict[str, Any] = {"probe": True, "exclude_bfcl": True, "timeout_s": PROBE_TIMEOUT_S}
    key = _cache.library_key(modules, options)
    path = _cache.cache_path(modules, options)
    stored = _cache.load(path, key, lambda fields: LibraryReport(**_cache.report_kwargs(fields)))
    if stored is not None:
        return tuple(stored[0]), stored[1]
    tools, report = build_library(modules, **options)
    if not report.dropped.get("probe_timeout"):  # a timeout may be the load: probe it again
        _cache.store(path, key, tools, _cache.report_fields(report))
    return tuple(tools), report


def build_library(
    modules: Sequence[str] = DEFAULT_MODULES,
    *,
    probe: bool = True,
    exclude_bfcl: bool = True,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> tuple[list[Tool], LibraryReport]:
    """Introspect ``modules`` into tools; with ``probe``, keep only those a sample call ran;
    with ``exclude_bfcl``, drop those that overlap BFCL's functions (the test set)."""
    started = time.perf_counter()
    report = LibraryReport(modules=list(modules))
    described: list[Tool] = []
    seen_objects: dict[int, Any] = {}  # holding the objects keeps their ids from being reused
    for module in modules:
        for candidate in _candidates(module, report):
            report.candidates += 1
            identity = id(candidate.obj)
            if identity in seen_objects:
                report.drop(candidate.ref, "alias")
                continue
            seen_objects[identity] = candidate.obj
            tool = _tool_or_drop(candidate, report)
            if tool is not None:
                described.append(tool)
        report.candidates += _distribution_candidates(module, described, report)
    if exclude_bfcl:
        described = _without_bfcl(described, report)
    kept = _probe_all(described, report, timeout_s) if probe else described
    names: set[str] = set()
    unique: list[Tool] = []
    for tool in kept:
        if tool.name in names:
            report.drop(tool.metadata["python"], "duplicate_name", tool.name)
            continue
        names.add(tool.name)
        unique.append(tool)
        report.kept_by_module[tool.metadata["domain"].removeprefix("python/")] += 1
    report.kept = len(unique)
    report.seconds = time.perf_counter() - started
    return unique, report


def _candidates(module_name: str, report: LibraryReport) -> Iterator[Candidate]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SpecError(f"pylib:{module_name}", None, f"cannot import it: {error}") from None
    names = list(getattr(module, "__all__", None) or dir(module))
    found = []
    for name in set(names):
        if name.startswith("_"):
            continue
        obj = getattr(module, name, None)
        if obj is None or inspect.ismodule(obj) or inspect.isclass(obj) or not callable(obj):
            continue
        if _is_distribution(obj):
            continue  # handled method by method
        found.append(Candidate(module_name, name, obj))
    # Of several names for one object (scipy.special.jn is jv), its own name comes first.
    found.sort(key=lambda c: (c.qualname != getattr(c.obj, "__name__", None), c.qualname))
    yield from found
    for qualname in _CLASS_CALLABLES.get(module_name, ()):
        obj = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
        yield Candidate(module_name, qualname, obj)


def _is_distribution(obj: Any) -> bool:
    return hasattr(obj, "shapes") and hasattr(obj, "cdf") and hasattr(obj, "ppf")


def _tool_or_drop(candidate: Candidate, report: LibraryReport) -> Tool | None:
    ref = candidate.ref
    problem = check_ref(ref) or denied_name(candidate.qualname)
    if problem:
        report.drop(ref, "denied", problem)
        return None
    doc = inspect.getdoc(candidate.obj) or ""
    signatures, body = split_doc(doc)
    if ref in _TEXT_SIGNATURES:
        signatures = [_TEXT_SIGNATURES[ref]]
    numpy = _numpy()
    elementwise = numpy is not None and isinstance(candidate.obj, numpy.ufunc)
    params: list[Param] | None
    if elementwise:
        params = ufunc_params(candidate.obj, signatures)
    elif ref in _TEXT_SIGNATURES:
        params = params_from_text(_TEXT_SIGNATURES[ref])
    else:
        params = signature_params(candidate.obj, signatures)
    if params is None:
        report.drop(ref, "no_signature")
        return None
    summary, doc_types = doc_params(body or doc)
    summary = _DESCRIPTIONS.get(ref, summary)
    description = describe_params(
        params,
        doc_types,
        elementwise=elementwise,
        overrides={**_EXTRA_NAMES, **_OVERRIDES.get(ref, {})},
    )
    return _finish(candidate.module, candidate.qualname, summary, description, report)


def _finish(
    module: str, qualname: str, summary: str, description: Description, report: LibraryReport
) -> Tool | None:
    ref = f"{module}:{qualname}"
    if description.problem:
        report.drop(ref, description.problem, description.detail)
        return None
    if re.match(rf"{re.escape(qualname.rsplit('.', 1)[-1])}\s*\(", summary):
        report.drop(ref, "short_description", "only a signature line")  # array(object, ...
        return None
    if len(summary) < MIN_DESCRIPTION:
        report.drop(ref, "short_description", summary)
        return None
    if not description.parameters["properties"]:
        report.drop(ref, "no_parameters")  # nothing to ask a user for
        return None
    return Tool(
        name=sanitize_name(f"{module.replace('.', '_')}_{qualname.replace('.', '_')}"),
        description=summary[:400],
        parameters=description.parameters,
        source=f"pylib:{module}",
        original_name=f"{module}.{qualname}",
        metadata={
            "python": ref,
            "python_call": {"positional": description.positional, "star": description.star},
            "domain": f"python/{module}",
            "source": "pylib",
        },
    )


def _distribution_candidates(module_name: str, out: list[Tool], report: LibraryReport) -> int:
    """``scipy.stats`` distributions: pdf/cdf/ppf (pmf/cdf when discrete), one tool each."""
    if module_name != "scipy.stats":
        return 0
    module = importlib.import_module(module_name)
    count = 0
    for name in sorted(getattr(module, "__all__", dir(module))):
        dist = getattr(module, name, None)
        if not _is_distribution(dist) or name.startswith("_"):
            continue
        discrete = hasattr(dist, "pmf")
        label = first_sentence(inspect.getdoc(dist) or f"the {name} distribution").rstrip(".")
        label = label[0].lower() + label[1:] if label else name
        shapes = [s.strip() for s in (dist.shapes or "").split(",") if s.strip()]
        for method, first, text in _DISTRIBUTION_METHODS["discrete" if discrete else "continuous"]:
            count += 1
            description = _distribution_schema(first, shapes, discrete, method)
            tool = _finish(
                module_name, f"{name}.{method}", text.format(label=label), description, report
            )
            if tool is not None:
                out.append(tool)
    return count


def _distribution_schema(first: str, shapes: list[str], discrete: bool, method: str) -> Description:
    number: dict[str, Any] = {"type": "number"}
    first_text = {
        "x": "Point at which to evaluate the function.",
        "q": "Lower-tail probability, between 0 and 1.",
        "k": "Number of occurrences (an integer value of the variable).",
    }[first]
    properties: dict[str, Any] = {first: {**number, "description": first_text}}
    if first == "k":
        properties[first] = {
            "type": "integer",
            "minimum": -(10**6),
            "maximum": 10**6,
            "description": first_text,
        }
    for shape in shapes:
        if discrete and shape in ("n", "N", "M", "K"):
            properties[shape] = {
                "type": "integer",
                "minimum": 0,
                "maximum": 10**6,
                "description": f"Shape parameter {shape} (a count).",
            }
        else:
            properties[shape] = {**number, "description": f"Shape parameter {shape}."}
    properties["loc"] = {
        "type": "integer" if discrete else "number",
        "default": 0,
        "description": "Location (shift) of the distribution.",
    }
    if not discrete:
        properties["scale"] = {
            "type": "number",
            "default": 1.0,
            "exclusiveMinimum": 0,
            "description": "Scale (stretch) of the distribution, positive.",
        }
    return Description(
        parameters={
            "type": "object",
            "properties": properties,
            "required": [first, *shapes],
            "additionalProperties": False,
        },
        positional=[first],
    )


def _without_bfcl(tools: list[Tool], report: LibraryReport) -> list[Tool]:
    names = bfcl_function_names()
    if names is None:
        report.bfcl_check = "unavailable"
        return tools
    guard = content_guard()
    report.bfcl_check = "names+guard" if guard is not None else "names"
    kept = []
    for tool in tools:
        problem = overlap(tool, names, guard)
        if problem:
            report.drop(tool.metadata["python"], "bfcl_overlap", problem)
        else:
            kept.append(tool)
    return kept


def _probe_all(tools: list[Tool], report: LibraryReport, timeout_s: float) -> list[Tool]:
    """Call each tool with sample arguments in one sandbox; keep those that answered."""
    kept = []
    with Sandbox(timeout_s=timeout_s) as sandbox:
        for tool in tools:
            reason, detail = "", ""
            validator = Draft202012Validator(tool.parameters)
            for variant in range(VARIANTS):
                arguments = sample_arguments(tool.parameters, variant)
                if not validator.is_valid(arguments):  # the server would refuse them
                    reason, detail = "invalid_sample", json.dumps(arguments)[:200]
                    continue
                try:
                    result = sandbox.call(call_plan(tool.metadata), arguments)
                except CallFailed as failure:
                    reason, detail = failure.reason, str(failure)
                    if failure.reason == "timeout":
                        break  # a second slow try would only cost more time
                    continue
                problem = is_useful(result)
                if problem is None:
                    example = {"arguments": arguments, "result": result}
                    if len(json.dumps(example)) <= 600:
                        tool.metadata["python_example"] = example
                    kept.append(tool)
                    reason = ""
                    break
                reason, detail = problem, ""
            if reason:
                report.drop(tool.metadata["python"], f"probe_{reason}", detail)
    return kept


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # numpy is a dependency, but the stdlib part works without it
        return None
    return numpy


__all__ = [
    "DEFAULT_MODULES",
    "IGNORED",
    "PYLIB_PREFIX",
    "LibraryReport",
    "build_library",
    "parse_pylib_spec",
    "pylib_tools",
]
