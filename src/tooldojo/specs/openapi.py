"""OpenAPI 3.0 / 3.1 → one :class:`Tool` per operation.

Path, query, header, cookie and body parameters are merged into one object
schema. Local ``$ref``s are inlined; a schema that refers back to itself (a
legal recursive tree) is kept once in the tool's ``$defs`` and referenced, so
nothing expands forever. Where each argument goes on the wire is recorded in
``metadata["http"]`` for the HTTP executor.

Schemas are checked against their meta-schema where they are written (draft-07
for 3.0 after its ``nullable``/boolean-``exclusiveMinimum`` quirks are
translated, 2020-12 for 3.1), all in one pass per document: inlining valid
schemas into the object wrapper built here keeps them valid, and checking at
the source gives errors a pointer into the user's file.

Hand-written rather than via an OpenAPI library because what we need is the
merge of parameters into a single function schema plus cycle-aware inlining,
which the parsers on PyPI leave to the caller.
"""

from __future__ import annotations

import copy
from typing import Any

from tooldojo.errors import SpecError
from tooldojo.model import Tool
from tooldojo.specs._schema import check_schema, pointer, sanitize_name

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# OpenAPI says these header parameters are ignored: the client sets them itself.
IGNORED_HEADERS = {"accept", "content-type", "authorization"}
BODY_MEDIA_PREFERENCE = (
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
)
# Keywords whose value is a schema, a list of schemas or a map of schemas.
_SCHEMA_KEYS = (
    "items",
    "not",
    "additionalProperties",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_SCHEMA_LIST_KEYS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_MAP_KEYS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
# OpenAPI-only keywords with no JSON Schema meaning for a function signature.
_DROPPED_KEYS = ("discriminator", "xml", "externalDocs", "example", "nullable")


class OpenAPIConverter:
    """Converts one parsed OpenAPI document; create one per file."""

    def __init__(self, document: dict[str, Any], source: str):
        self.doc = document
        self.source = source
        version = str(document.get("openapi", ""))
        if version.startswith("3.0"):
            self.v30 = True
        elif version.startswith("3.1"):
            self.v30 = False
        else:
            raise SpecError(
                source,
                "/openapi",
                f"unsupported OpenAPI version {version!r} "
                "(3.0.x and 3.1.x are supported; convert Swagger 2.0 first)",
            )
        self.dialect = "draft-07" if self.v30 else "2020-12"
        # Local (phase-1) conversions keyed by JSON pointer: translated keywords, refs kept.
        self._local: dict[str, Any] = {}
        # Fully inlined conversions of referenced schemas that needed no $defs, per mode.
        self._inlined: dict[tuple[str, str], Any] = {}

    # ----------------------------------------------------------------- references
    def _lookup(self, ref: str, where: str) -> Any:
        if not ref.startswith("#"):
            raise SpecError(self.source, where, f"only local $refs are supported, not {ref!r}")
        node: Any = self.doc
        for raw in ref[1:].split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SpecError(self.source, where, f"unresolvable $ref {ref!r}")
        return node

    def _deref(self, node: Any, where: str) -> tuple[Any, str]:
        """Follow a chain of ``$ref``s to a non-ref object (parameters, bodies, responses)."""
        seen: list[str] = []
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str):
                raise SpecError(self.source, where, "$ref must be a string")
            if ref in seen:
                raise SpecError(self.source, where, f"cyclic $ref {' -> '.join([*seen, ref])}")
            seen.append(ref)
            node = self._lookup(ref, where)
            where = ref[1:]
        return node, where

    # ------------------------------------------------------- phase 1: local form
    def _local_schema(self, node: Any, where: str) -> Any:
        """Translate OpenAPI's schema dialect to plain JSON Schema, keeping ``$ref``s."""
        if where in self._local:
            return self._local[where]
        converted = self._translate(node, where)
        self._local[where] = converted
        return converted

    def _translate(self, node: Any, where: str) -> Any:
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            raise SpecError(self.source, where, "a schema must be an object")
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key.startswith("x-") or key in _DROPPED_KEYS:
                continue
            here = f"{where}/{pointer(key)[1:]}"
            if key in _SCHEMA_KEYS and isinstance(value, (dict, bool)):
                out[key] = self._translate(value, here)
            elif key in _SCHEMA_LIST_KEYS and isinstance(value, list):
                out[key] = [self._translate(v, f"{here}/{i}") for i, v in enumerate(value)]
            elif key in _SCHEMA_MAP_KEYS and isinstance(value, dict):
                out[key] = {
                    name: self._translate(v, f"{here}{pointer(name)}") for name, v in value.items()
                }
            else:
                out[key] = value
        if "example" in node and "examples" not in out:
            out["examples"] = [node["example"]]
        if self.v30:
            self._translate_v30(node, out)
        return out

    @staticmethod
    def _translate_v30(node: dict[str, Any], out: dict[str, Any]) -> None:
        for bound in ("Minimum", "Maximum"):
            flag = node.get(f"exclusive{bound}")
            if isinstance(flag, bool):
                del out[f"exclusive{bound}"]
                limit = bound.lower()
                if flag and limit in out:
                    out[f"exclusive{bound}"] = out.pop(limit)
        if node.get("nullable") is True:
            if isinstance(out.get("type"), str):
                out["type"] = [out["type"], "null"]
                if isinstance(out.get("enum"), list) and None not in out["enum"]:
                    out["enum"] = [*out["enum"], None]
            elif "type" not in out:
                inner = dict(out)
                out.clear()
                out["anyOf"] = [inner, {"type": "null"}]

    # --------------------------------------------------- phase 2: inline the refs
    def _inline(self, node: Any, where: str, mode: str, state: _InlineState) -> Any:
        """Return ``node`` with refs inlined; recursive refs become ``#/$defs/...``."""
        if isinstance(node, bool) or not isinstance(node, dict):
            return node
        if "$ref" in node:
            return self._inline_ref(node, where, mode, state)
        out: dict[str, Any] = {}
        for key, value in node.items():
            here = f"{where}/{pointer(key)[1:]}"
            if key in _SCHEMA_KEYS:
                out[key] = self._inline(value, here, mode, state)
            elif key in _SCHEMA_LIST_KEYS and isinstance(value, list):
                out[key] = [
                    self._inline(v, f"{here}/{i}", mode, state) for i, v in enumerate(value)
                ]
            elif key in _SCHEMA_MAP_KEYS and isinstance(value, dict):
                out[key] = {
                    n: self._inline(v, f"{here}{pointer(n)}", mode, state) for n, v in value.items()
                }
            else:
                out[key] = value
        hidden = "readOnly" if mode == "request" else "writeOnly"
        props = out.get("properties")
        if isinstance(props, dict):
            dropped = [n for n, s in props.items() if isinstance(s, dict) and s.get(hidden)]
            if dropped:
                out["properties"] = {n: s for n, s in props.items() if n not in dropped}
                if isinstance(out.get("required"), list):
                    out["required"] = [n for n in out["required"] if n not in dropped]
        return out

    def _inline_ref(self, node: dict[str, Any], where: str, mode: str, state: _InlineState) -> Any:
        ref = node["$ref"]
        if not isinstance(ref, str):
            raise SpecError(self.source, where, "$ref must be a string")
        target_where = ref[1:] if ref.startswith("#") else ref
        if ref in state.stack:
            # A legal recursive schema: point at its single copy in $defs.
            state.recursive.add(ref)
            return {"$ref": f"#/$defs/{state.def_name(ref)}"}
        cached = self._inlined.get((ref, mode))
        if cached is not None:
            return copy.deepcopy(cached)
        target = self._lookup(ref, where)
        if isinstance(target, dict) and set(target) == {"$ref"}:
            # A bare alias: follow it, refusing pure cycles (A -> B -> A) which describe nothing.
            chain = [ref]
            while isinstance(target, dict) and set(target) == {"$ref"}:
                nxt = target["$ref"]
                if nxt in chain:
                    raise SpecError(self.source, where, f"cyclic $ref {' -> '.join([*chain, nxt])}")
                chain.append(nxt)
                target = self._lookup(nxt, where)
            ref = chain[-1]
            target_where = ref[1:]
            if ref in state.stack:
                state.recursive.add(ref)
                return {"$ref": f"#/$defs/{state.def_name(ref)}"}
        local = self._local_schema(target, target_where)
        defs_before = len(state.recursive)
        state.stack.append(ref)
        try:
            result = self._inline(local, target_where, mode, state)
        finally:
            state.stack.pop()
        if ref in state.recursive:
            state.defs[state.def_name(ref)] = result
            return {"$ref": f"#/$defs/{state.def_name(ref)}"}
        if len(state.recursive) == defs_before and not state.touches_defs(result):
            self._inlined[(ref, mode)] = result
            return copy.deepcopy(result)
        return result

    # ------------------------------------------------------------------ operations
    def convert(self) -> list[tuple[Tool, str]]:
        """All operations as tools, each with the JSON pointer of its operation."""
        paths = self.doc.get("paths")
        if paths is None:
            paths = {}
        if not isinstance(paths, dict):
            raise SpecError(self.source, "/paths", "paths must be an object")
        servers = _server_urls(self.doc.get("servers"))
        tools: list[tuple[Tool, str]] = []
        for path, item in paths.items():
            item_where = pointer("paths", path)
            item, item_where = self._deref(item, item_where)
            if not isinstance(item, dict):
                raise SpecError(self.source, item_where, "a path item must be an object")
            shared = item.get("parameters", [])
            path_servers = _server_urls(item.get("servers")) or servers
            for method in HTTP_METHODS:
                operation = item.get(method)
                if operation is None:
                    continue
                op_where = f"{item_where}/{method}"
                if not isinstance(operation, dict):
                    raise SpecError(self.source, op_where, "an operation must be an object")
                tool = self._operation(
                    path,
                    method,
                    operation,
                    (shared, f"{item_where}/parameters"),
                    op_where,
                    path_servers,
                )
                tools.append((tool, op_where))
        self._check_schemas()
        return tools

    def _check_schemas(self) -> None:
        """One meta-schema pass over every schema written in the document, at its source."""
        if not self._local:
            return
        keys = list(self._local)
        bag = "definitions" if self.v30 else "$defs"
        container = {bag: {str(i): self._local[k] for i, k in enumerate(keys)}}
        try:
            check_schema(container, source=self.source, where="", dialect=self.dialect)
        except SpecError as error:
            # Map "/$defs/<i>/rest" back to the schema's own pointer in the document.
            place = (error.where or "").split("/")
            if len(place) >= 3 and place[2].isdigit():
                error.where = keys[int(place[2])] + "/".join(["", *place[3:]]).rstrip("/")
                if not error.where.startswith("/"):
                    error.where = "/" + error.where
            raise SpecError(error.source, error.where, error.message) from None

    def _operation(
        self,
        path: str,
        method: str,
        op: dict[str, Any],
        shared_params: tuple[Any, str],
        where: str,
        servers: list[str],
    ) -> Tool:
        state = _InlineState()
        properties: dict[str, Any] = {}
        required: list[str] = []
        locations: dict[str, str] = {}
        wire_names: dict[str, str] = {}

        own_params = (op.get("parameters", []), f"{where}/parameters")
        for param, param_where in self._parameters(shared_params, own_params):
            location = param["in"]
            wire = param["name"]
            if location == "header" and wire.lower() in IGNORED_HEADERS:
                continue
            schema = self._parameter_schema(param, param_where, state)
            arg = wire if wire not in properties else f"{location}_{wire}"
            if arg in properties:
                raise SpecError(self.source, param_where, f"parameter {wire!r} clashes twice")
            properties[arg] = schema
            locations[arg] = location
            if arg != wire:
                wire_names[arg] = wire
            if param.get("required") or location == "path":
                required.append(arg)

        body_mode = None
        if "requestBody" in op:
            body_mode = self._request_body(
                op["requestBody"], f"{where}/requestBody", state, properties, required, locations
            )

        parameters: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            parameters["required"] = required
        if state.defs:
            parameters["$defs"] = state.defs
        # Responses get their own $defs: a recursive schema may differ by mode (readOnly fields).
        out_state = _InlineState()
        output_schema = self._output_schema(op.get("responses"), f"{where}/responses", out_state)
        if out_state.defs and isinstance(output_schema, dict):
            output_schema = {**output_schema, "$defs": out_state.defs}

        original = op.get("operationId") or f"{method}_{path}"
        summary = (op.get("summary") or "").strip()
        details = (op.get("description") or "").strip()
        description = " ".join(
            p
            for p in (summary if summary.endswith(".") or not summary else summary + ".", details)
            if p
        )
        http: dict[str, Any] = {
            "method": method.upper(),
            "path": path,
            "servers": _server_urls(op.get("servers")) or servers,
            "params": locations,
            "body_mode": body_mode,
        }
        if wire_names:
            http["wire_names"] = wire_names
        metadata: dict[str, Any] = {"http": http}
        if op.get("tags"):
            metadata["tags"] = op["tags"]
        if op.get("deprecated"):
            metadata["deprecated"] = True
        return Tool(
            name=sanitize_name(str(original)),
            description=description or f"{method.upper()} {path}",
            parameters=parameters,
            output_schema=output_schema,
            source=f"openapi:{self.source}",
            original_name=str(original),
            metadata=metadata,
        )

    def _parameters(
        self, shared: tuple[Any, str], own: tuple[Any, str]
    ) -> list[tuple[dict[str, Any], str]]:
        """Path-level parameters overridden by operation-level ones with the same name+in."""
        merged: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        for group, group_where in (shared, own):
            if not isinstance(group, list):
                raise SpecError(self.source, group_where, "parameters must be a list")
            for index, raw in enumerate(group):
                param, param_where = self._deref(raw, f"{group_where}/{index}")
                if not isinstance(param, dict) or "name" not in param or "in" not in param:
                    raise SpecError(self.source, param_where, "a parameter needs 'name' and 'in'")
                if param["in"] not in ("path", "query", "header", "cookie"):
                    raise SpecError(
                        self.source,
                        f"{param_where}/in",
                        f"unknown parameter location {param['in']!r}",
                    )
                merged[(param["name"], param["in"])] = (param, param_where)
        return list(merged.values())

    def _parameter_schema(
        self, param: dict[str, Any], where: str, state: _InlineState
    ) -> dict[str, Any]:
        if "schema" in param:
            raw, raw_where = param["schema"], f"{where}/schema"
        elif isinstance(param.get("content"), dict) and param["content"]:
            media, media_obj = next(iter(param["content"].items()))
            raw, raw_where = media_obj.get("schema", {}), f"{where}/content{pointer(media)}/schema"
        else:
            raw, raw_where = {"type": "string"}, where
        schema = self._inline(self._local_schema(raw, raw_where), raw_where, "request", state)
        if not isinstance(schema, dict):
            schema = {}
        if param.get("description") and "description" not in schema:
            schema = {**schema, "description": param["description"]}
        if param.get("deprecated"):
            schema = {**schema, "deprecated": True}
        return schema

    def _request_body(
        self,
        raw_body: Any,
        where: str,
        state: _InlineState,
        properties: dict[str, Any],
        required: list[str],
        locations: dict[str, str],
    ) -> str:
        body, where = self._deref(raw_body, where)
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, dict) or not content:
            raise SpecError(self.source, where, "requestBody needs a non-empty 'content'")
        media = _pick_media(content)
        schema_where = f"{where}/content{pointer(media)}/schema"
        raw_schema = content[media].get("schema", {}) if isinstance(content[media], dict) else {}
        schema = self._inline(
            self._local_schema(raw_schema, schema_where), schema_where, "request", state
        )
        body_required = bool(body.get("required"))
        body_props = schema.get("properties") if isinstance(schema, dict) else None
        mergeable = (
            isinstance(body_props, dict)
            and schema.get("type", "object") == "object"
            and not any(k in schema for k in ("allOf", "anyOf", "oneOf", "$ref"))
            and not set(body_props) & set(properties)
        )
        if mergeable:
            for name, sub in body_props.items():
                properties[name] = sub
                locations[name] = "body"
            if body_required:
                required.extend(n for n in schema.get("required", []) if n in body_props)
            return "merged"
        name = "body" if "body" not in properties else "request_body"
        if body.get("description") and isinstance(schema, dict) and "description" not in schema:
            schema = {**schema, "description": body["description"]}
        properties[name] = schema
        locations[name] = "body"
        if body_required:
            required.append(name)
        return "whole"

    def _output_schema(self, responses: Any, where: str, state: _InlineState) -> Any:
        if not isinstance(responses, dict):
            return None
        # YAML reads unquoted status codes as integers.
        by_code = {str(code): value for code, value in responses.items()}
        codes = sorted(c for c in by_code if c.startswith("2"))
        for code in [*codes, "default"]:
            if code not in by_code:
                continue
            response, response_where = self._deref(by_code[code], f"{where}/{code}")
            content = response.get("content") if isinstance(response, dict) else None
            if not isinstance(content, dict) or not content:
                continue
            media = _pick_media(content)
            media_obj = content[media]
            if not isinstance(media_obj, dict) or "schema" not in media_obj:
                continue
            schema_where = f"{response_where}/content{pointer(media)}/schema"
            local = self._local_schema(media_obj["schema"], schema_where)
            return self._inline(local, schema_where, "response", state)
        return None


class _InlineState:
    """Per-tool bookkeeping while inlining: the ref stack and the recursive ``$defs``."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.recursive: set[str] = set()
        self.defs: dict[str, Any] = {}
        self._names: dict[str, str] = {}

    def def_name(self, ref: str) -> str:
        if ref not in self._names:
            base = sanitize_name(ref.rsplit("/", 1)[-1])
            name, n = base, 2
            while name in self._names.values():
                name, n = f"{base}_{n}", n + 1
            self._names[ref] = name
        return self._names[ref]

    def touches_defs(self, schema: Any) -> bool:
        """Whether ``schema`` mentions ``#/$defs/`` (then it cannot be cached or shared)."""
        if not self._names:
            return False
        if isinstance(schema, dict):
            ref = schema.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return True
            return any(self.touches_defs(v) for v in schema.values())
        if isinstance(schema, list):
            return any(self.touches_defs(v) for v in schema)
        return False


def _pick_media(content: dict[str, Any]) -> str:
    for media in BODY_MEDIA_PREFERENCE:
        if media in content:
            return media
    for media in content:
        if media.endswith("+json"):
            return media
    return next(iter(content))


def _server_urls(servers: Any) -> list[str]:
    if not isinstance(servers, list):
        return []
    return [s["url"] for s in servers if isinstance(s, dict) and isinstance(s.get("url"), str)]


def convert_openapi(document: dict[str, Any], source: str) -> list[tuple[Tool, str]]:
    """Tools of an OpenAPI document, each with the pointer of its operation."""
    return OpenAPIConverter(document, source).convert()
