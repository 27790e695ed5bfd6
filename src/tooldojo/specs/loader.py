"""Read spec files (size-limited, JSON/YAML/JSON Lines) and route them to the right parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tooldojo.errors import SpecError
from tooldojo.model import Tool
from tooldojo.specs._schema import ensure_unique
from tooldojo.specs.functions import function_list_tools, function_tool, item_kind
from tooldojo.specs.mcp_live import is_live_target, live_mcp_tools
from tooldojo.specs.openapi import convert_openapi

DEFAULT_MAX_BYTES = 50 * 1024 * 1024

# libyaml's C loader parses large specs several times faster than the pure-Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_document(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse a JSON, YAML or JSON Lines file; errors name the file and the line."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise SpecError(source, None, "no such file" if not path.exists() else "not a file")
    size = path.stat().st_size
    if size > max_bytes:
        raise SpecError(
            source,
            None,
            f"file is {size:,} bytes, over the limit of {max_bytes:,} (raise it with --max-mb)",
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise SpecError(source, f"byte {error.start}", "not UTF-8 text") from None
    if not text.strip():
        raise SpecError(source, None, "empty file")
    if path.suffix.lower() in (".yaml", ".yml"):
        return _parse_yaml(text, source)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":
            return _parse_json_lines(text, source)
        if path.suffix.lower() in (".json", ".jsonl"):
            raise SpecError(
                source, f"line {error.lineno}:{error.colno}", f"invalid JSON: {error.msg}"
            ) from None
    return _parse_yaml(text, source)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_YAML_LOADER)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}:{mark.column + 1}" if mark else None
        problem = error.problem or error.context or "malformed"
        raise SpecError(source, where, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise SpecError(source, None, f"invalid YAML: {error}") from None


def _parse_json_lines(text: str, source: str) -> list[Any]:
    """BFCL ships JSON Lines under .json names: one object per line."""
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise SpecError(
                source, f"line {number}:{error.colno}", f"invalid JSON: {error.msg}"
            ) from None
    return items


def tools_from_document(document: Any, source: str) -> list[tuple[Tool, str]]:
    """Detect the format of a parsed document and convert it; each tool comes with its pointer."""
    if isinstance(document, dict):
        if "openapi" in document:
            return convert_openapi(document, source)
        if "swagger" in document:
            raise SpecError(
                source,
                "/swagger",
                "Swagger 2.0 is not supported; convert it to "
                "OpenAPI 3 first (e.g. with swagger2openapi)",
            )
        if isinstance(document.get("result"), dict) and "tools" in document["result"]:
            return _tools_list(document["result"]["tools"], source, "/result/tools")
        if "tools" in document:
            return _tools_list(document["tools"], source, "/tools")
        if "function" in document and isinstance(document["function"], list):
            return _bfcl_entries([document], source)
        kind = item_kind(document)
        if kind is not None:  # a single function object
            return [(function_tool(document, kind, source=source, where=""), "")]
        raise SpecError(
            source,
            None,
            "unrecognized spec: expected an OpenAPI document, a list "
            "of functions/tools, BFCL function docs or an MCP tools/list result",
        )
    if isinstance(document, list):
        if not document:
            raise SpecError(source, None, "the list of tools is empty")
        if all(isinstance(e, dict) and isinstance(e.get("function"), list) for e in document):
            return _bfcl_entries(document, source)
        return function_list_tools(document, source=source)
    raise SpecError(source, None, f"unrecognized spec: top level is a {type(document).__name__}")


def _tools_list(items: Any, source: str, where: str) -> list[tuple[Tool, str]]:
    if not isinstance(items, list):
        raise SpecError(source, where, "'tools' must be a list")
    return function_list_tools(items, source=source, base=where)


def _bfcl_entries(entries: list[dict[str, Any]], source: str) -> list[tuple[Tool, str]]:
    """BFCL data lines (``{"id", "question", "function": [...]}``): their function docs, once each.

    The same function appears on many lines; identical repeats collapse, differing ones clash.
    """
    seen: dict[str, dict[str, Any]] = {}
    tools: list[tuple[Tool, str]] = []
    for line, entry in enumerate(entries):
        for tool, where in function_list_tools(
            entry["function"], source=source, base=f"/{line}/function"
        ):
            previous = seen.get(tool.name)
            if previous is not None and previous == tool.parameters:
                continue
            seen[tool.name] = tool.parameters
            tools.append((tool, where))
    return tools


def is_registry(target: str) -> bool:
    """A refined registry (``tooldojo specs refine``): JSONL whose first line is a tool record
    with ``metadata.domain``, as written by :mod:`tooldojo.specs.refine`."""
    if not target.endswith(".jsonl") or not Path(target).is_file():
        return False
    with open(target, encoding="utf-8") as handle:
        first = handle.readline()
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return (
        isinstance(record, dict)
        and isinstance(record.get("metadata"), dict)
        and "domain" in record["metadata"]
        and "parameters" in record
    )


def load_registry(target: str) -> list[tuple[Tool, str]]:
    """Tools of a refined registry, one per line, validated by the model only.

    Their schemas were meta-schema checked when the registry was refined; checking 10k of
    them again on every load would cost seconds for nothing.
    """
    pairs = []
    with open(target, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                pairs.append((Tool.model_validate_json(line), f"line {number}"))
            except ValueError as error:
                message = " ".join(str(error).split())[:300]
                raise SpecError(target, f"line {number}", f"not a tool record: {message}") from None
    if not pairs:
        raise SpecError(target, None, "the registry is empty")
    return pairs


def load_tools(
    paths: list[str] | tuple[str, ...] | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = 20.0,
) -> list[Tool]:
    """Ingest spec files and live MCP servers into one list of uniquely named tools.

    ``paths`` entries are files (OpenAPI 3.0/3.1 JSON or YAML, OpenAI tools, BFCL docs,
    MCP ``tools/list`` results, tooldojo's own JSON), ``http(s)://`` streamable-HTTP MCP
    URLs, or ``stdio:COMMAND ARGS``. Raises :class:`SpecError` naming the file and place.
    """
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise SpecError("(arguments)", None, "no spec files given")
    found: list[tuple[Tool, str]] = []
    sources: list[str] = []
    for target in paths:
        target = str(target)
        if is_live_target(target):
            pairs = live_mcp_tools(target, timeout_s=timeout_s)
        elif is_registry(target):
            pairs = load_registry(target)
        elif target.startswith("pylib:"):  # pylib:default, pylib:math,statistics (specs.pytools)
            from tooldojo.specs.pytools import pylib_tools

            pairs = [(tool, f"/{tool.name}") for tool in pylib_tools(target)]
        else:
            pairs = tools_from_document(read_document(target, max_bytes=max_bytes), target)
        found.extend(pairs)
        sources.extend([target] * len(pairs))
    tools = [tool for tool, _ in found]
    ensure_unique(tools, [(src, where) for src, (_, where) in zip(sources, found, strict=True)])
    return tools
