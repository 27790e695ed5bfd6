"""One spec file → its usable tools, drop counts and graph edges (runs in a worker process).

Each operation is converted on its own, so one broken operation costs that operation, not
the API. The converter's document-wide meta-schema pass is skipped here: most operations
are dropped anyway, so only the parameter schemas of the tools we keep are checked (that
is the cost the whole-corpus budget cannot afford to pay ~100k times). Request bodies over
the schema budget are dropped before inlining, and responses are kept shallow
(:mod:`.shallow`): both full inlinings explode on specs like Microsoft Graph.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tooldojo.errors import SpecError
from tooldojo.model import Tool
from tooldojo.specs._schema import pointer, sanitize_name
from tooldojo.specs.loader import read_document
from tooldojo.specs.openapi import HTTP_METHODS, OpenAPIConverter, _pick_media
from tooldojo.specs.refine.clean import (
    clean_description,
    clean_parameter_descriptions,
    readable_name,
)
from tooldojo.specs.refine.domains import spec_category
from tooldojo.specs.refine.filters import (
    credential_names,
    drop_reason,
    is_health_or_auth,
    strip_parameters,
)
from tooldojo.specs.refine.graph import build_graph
from tooldojo.specs.refine.schemas import SCHEMA_CHECKED, drop_bad_patterns, server_valid
from tooldojo.specs.refine.shallow import shallow_schema, too_big

MAX_TOOLS_PER_API = 200
"""A few giant APIs (Microsoft Graph: 11k operations, 10k usable) would otherwise be half
the pool; past this many kept tools, an API's remaining operations count as ``api_cap``."""
MAX_OUTPUT_SCHEMA_CHARS = 8000
"""Response schemas larger than this are not stored (the graph still used them)."""


@dataclass
class FileResult:
    """What one spec file gave; plain data so it crosses the process boundary cheaply."""

    file: str
    error: str | None = None
    seen: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    credentials_stripped: int = 0
    plumbing_stripped: int = 0
    tools: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)
    """One example per drop reason (``name``: detail) so the report can show what it means."""


class _LenientConverter(OpenAPIConverter):
    """The project's converter, minus the document-wide meta-schema pass (see module doc),
    and reading percent-encoded ``$ref`` pointers (``~1%7Bid%7D``), which APIs.guru writes
    as RFC 6901 allows in URI fragments."""

    def _check_schemas(self) -> None:
        return None

    def _lookup(self, ref: str, where: str) -> Any:
        return super()._lookup(unquote(ref) if "%" in ref else ref, where)


def _body_media(converter: OpenAPIConverter, op: dict[str, Any], where: str) -> str | None:
    if "requestBody" not in op:
        return None
    body, _ = converter._deref(op["requestBody"], f"{where}/requestBody")
    content = body.get("content") if isinstance(body, dict) else None
    return _pick_media(content) if isinstance(content, dict) and content else None


def extract_file(
    path: str, label: str, max_bytes: int, max_per_api: int = MAX_TOOLS_PER_API
) -> FileResult:
    """Refine the operations of one OpenAPI file; never raises for bad input."""
    result = FileResult(file=label)
    started = time.perf_counter()
    try:
        document = read_document(path, max_bytes=max_bytes)
        if not isinstance(document, dict) or not ("openapi" in document or "swagger" in document):
            raise SpecError(label, None, "not an OpenAPI document")
        if "swagger" in document and "openapi" not in document:
            raise SpecError(label, "/swagger", "Swagger 2.0 is not supported (OpenAPI 3 only)")
        converter = _LenientConverter(document, label)
        paths = document.get("paths") or {}
        if not isinstance(paths, dict):
            raise SpecError(label, "/paths", "paths must be an object")
    except SpecError as error:
        result.error = _one_line(str(error).replace(path, label))
        return result
    except (RecursionError, ValueError, TypeError) as error:
        result.error = _one_line(f"{label}: {type(error).__name__}: {error}")
        return result
    result.seconds["read"] = time.perf_counter() - started
    started = time.perf_counter()
    info = document.get("info") if isinstance(document.get("info"), dict) else {}
    category = spec_category(info)
    api = _api_id(info, label)
    declared = credential_names(document)
    kept: list[Tool] = []
    pending: list[tuple[Tool, Any, str]] = []
    servers = [
        s["url"] for s in document.get("servers") or [] if isinstance(s, dict) and "url" in s
    ]
    candidates: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = []
    for raw_path, item in paths.items():
        item_where = pointer("paths", raw_path)
        try:
            item, item_where = converter._deref(item, item_where)
        except SpecError:
            continue
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            result.seen += 1
            early = "deprecated" if op.get("deprecated") else None
            if early is None and is_health_or_auth(str(raw_path), str(op.get("operationId") or "")):
                early = "health_or_auth"
            if early:
                result.dropped[early] += 1
                result.samples.setdefault(early, f"{method.upper()} {raw_path}")
                continue
            candidates.append((str(raw_path), method, op, item, item_where))
    # A fixed-seed shuffle, so an API over its cap contributes a sample of all its
    # operations rather than its alphabetically first paths.
    random.Random(f"refine|{label}").shuffle(candidates)
    for position, (raw_path, method, op, item, item_where) in enumerate(candidates):
        if len(kept) >= max_per_api:
            result.dropped["api_cap"] += len(candidates) - position
            result.samples.setdefault("api_cap", f"{len(candidates) - position} not examined")
            break
        where = f"{item_where}/{method}"
        op_id = op.get("operationId")
        try:
            media = _body_media(converter, op, where)
            if media and _body_too_big(converter, op, where, media):
                result.dropped["schema_too_large"] += 1
                result.samples.setdefault("schema_too_large", f"{method.upper()} {raw_path}")
                continue
            tool = _convert(converter, raw_path, method, op, item, item_where, servers)
        except (SpecError, RecursionError, ValueError, TypeError, AttributeError) as error:
            result.dropped["unconvertible"] += 1
            result.samples.setdefault("unconvertible", _one_line(str(error))[:200])
            continue
        tool, credentials, plumbing = strip_parameters(tool, declared)
        result.credentials_stripped += len(credentials)
        result.plumbing_stripped += len(plumbing)
        summary = op.get("summary") if isinstance(op.get("summary"), str) else ""
        details = op.get("description") if isinstance(op.get("description"), str) else ""
        had_description = bool(summary.strip() or details.strip())
        description = clean_description(tool.description)
        reason = drop_reason(
            tool, had_description=had_description, body_media=media, description=description
        )
        if reason is None:
            parameters, _ = drop_bad_patterns(tool.parameters)
            if server_valid(parameters):
                tool = tool.model_copy(update={"parameters": parameters})
            else:
                reason = "invalid_schema"
        if reason:
            result.dropped[reason] += 1
            result.samples.setdefault(reason, f"{tool.original_name or tool.name}")
            continue
        name = sanitize_name(str(op_id)) if op_id else readable_name(method, str(raw_path))
        metadata = {
            **tool.metadata,
            "source": f"openapi:{label}",
            "api": api,
            "domain": category,
            "domain_from": "apisguru" if category else None,
        }
        tool = tool.model_copy(
            update={
                "name": name,
                "description": description,
                "parameters": clean_parameter_descriptions(tool.parameters),
                "source": f"openapi:{label}",
                "original_name": str(op_id) if op_id else f"{method.upper()} {raw_path}",
                "metadata": metadata,
            }
        )
        kept.append(tool)
        pending.append((tool, op.get("responses"), f"{where}/responses"))
    result.seconds["convert_filter"] = time.perf_counter() - started
    started = time.perf_counter()
    kept = _unique_names([_with_output(converter, *entry) for entry in pending])
    graph = build_graph(kept)
    for tool in kept:
        data = tool.model_dump(mode="json", exclude_none=True)
        out = data.get("output_schema")
        # Shallow response schemas are valid by construction (see .shallow); only size counts.
        if out is not None and len(json.dumps(out, ensure_ascii=False)) > MAX_OUTPUT_SCHEMA_CHARS:
            del data["output_schema"]
            data["metadata"]["output_schema_dropped"] = True
        data["metadata"]["schema_checked"] = SCHEMA_CHECKED
        data["metadata"]["graph"] = {"feeds": graph.get(tool.name, [])}
        result.tools.append(data)
    result.seconds["graph"] = time.perf_counter() - started
    return result


def _convert(
    converter: OpenAPIConverter,
    raw_path: str,
    method: str,
    op: dict[str, Any],
    item: dict[str, Any],
    item_where: str,
    servers: list[str],
) -> Tool:
    """One operation through the project's converter, its response left for later."""
    original = converter._output_schema
    converter._output_schema = lambda *_args: None  # type: ignore[method-assign]
    try:
        return converter._operation(
            raw_path,
            method,
            op,
            (item.get("parameters", []), f"{item_where}/parameters"),
            f"{item_where}/{method}",
            servers,
        )
    finally:
        converter._output_schema = original  # type: ignore[method-assign]


def _body_too_big(converter: OpenAPIConverter, op: dict[str, Any], where: str, media: str) -> bool:
    """A request body over the schema budget, judged before the costly full inlining."""
    body, _ = converter._deref(op["requestBody"], f"{where}/requestBody")
    schema = (
        body["content"][media].get("schema") if isinstance(body["content"][media], dict) else None
    )
    return schema is not None and too_big(schema, converter._lookup)


def _with_output(converter: OpenAPIConverter, tool: Tool, responses: Any, where: str) -> Tool:
    """The tool with a shallow response schema (see :mod:`.shallow` for why not the full one)."""
    if not isinstance(responses, dict):
        return tool
    by_code = {str(code): value for code, value in responses.items()}
    for code in [*sorted(c for c in by_code if c.startswith("2")), "default"]:
        if code not in by_code:
            continue
        try:
            response, _ = converter._deref(by_code[code], f"{where}/{code}")
        except SpecError:
            return tool
        content = response.get("content") if isinstance(response, dict) else None
        if not isinstance(content, dict) or not content:
            continue
        media_obj = content[_pick_media(content)]
        if not isinstance(media_obj, dict) or "schema" not in media_obj:
            continue
        output = shallow_schema(media_obj["schema"], converter._lookup)
        if isinstance(output, dict) and output:
            return tool.model_copy(update={"output_schema": output})
        return tool
    return tool


def _unique_names(tools: list[Tool]) -> list[Tool]:
    """Within one API two operations can sanitize to one name: number the later ones."""
    seen: Counter[str] = Counter()
    out = []
    for tool in tools:
        seen[tool.name] += 1
        if seen[tool.name] > 1:
            tool = tool.model_copy(update={"name": sanitize_name(f"{tool.name}_{seen[tool.name]}")})
        out.append(tool)
    return out


def _api_id(info: dict[str, Any], label: str) -> str:
    provider = info.get("x-providerName")
    service = info.get("x-serviceName")
    if isinstance(provider, str):
        return f"{provider}:{service}" if isinstance(service, str) else provider
    return Path(label).with_suffix("").as_posix()


def _one_line(text: str) -> str:
    return " ".join(text.split())
