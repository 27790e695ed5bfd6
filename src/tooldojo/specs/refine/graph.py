"""The tool graph: A → B when a field of A's response can feed a parameter of B.

This is what lets the planner chain calls the way IBM fms-dgt's chain / fan-out / fan-in
samplers do (``listPets`` → ``getPet(petId)``). Edges stay within one API: a field called
``id`` in one vendor's response says nothing about another vendor's ``id``. A match is by
name and type: the same normalized name (``pet_id`` = ``petId``), or a response ``id`` of a
tool whose name or path mentions the parameter's entity (``id`` of ``listPets`` → ``petId``).
Generic knobs (``page``, ``limit``, ``sort``...) never make an edge: every list response has
them, and an edge through them would connect everything to everything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tooldojo.model import Tool
from tooldojo.names import alnum_key, name_words

MAX_FEEDS = 12
"""Edges kept per producer, most specific first: enough to chain, few enough to read."""

_GENERIC = {
    "page", "pagesize", "perpage", "limit", "offset", "cursor", "sort", "sortby", "order",
    "orderby", "format", "fields", "expand", "include", "lang", "language", "locale", "q",
    "query", "search", "count", "max", "min", "start", "end", "from", "to", "since", "until",
    "type", "status", "filter", "size", "version", "name", "description", "value", "enabled",
    "active", "nexttoken", "maxresults", "maxitems", "marker", "pagetoken", "skip", "top",
    "date", "time", "timestamp", "text", "title", "tag", "tags", "category", "key",
}  # fmt: skip
_SCALARS = {"string", "integer", "number", "boolean"}
_ID_SUFFIX = re.compile(r"(?i)(_id|id|_ids|ids|_key|_code|_uuid|uuid|_slug|slug)$")


def _words(text: str) -> set[str]:
    words = {w for w in name_words(text) if len(w) > 1}
    return words | {w[:-1] for w in words if w.endswith("s") and len(w) > 3}


def _scalar_type(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return kind if kind in _SCALARS else None


def response_fields(schema: Any, depth: int = 0) -> dict[str, str]:
    """Scalar fields of a response (normalized name → type), two object levels deep.

    Arrays are looked through (a list of pets yields the pet's fields); ``allOf`` members
    are merged. ``$ref``s into ``$defs`` (recursive schemas) are not followed.
    """
    fields: dict[str, str] = {}
    if not isinstance(schema, dict) or depth > 2:
        return fields
    if isinstance(schema.get("items"), dict):
        fields.update(response_fields(schema["items"], depth))
    for member in schema.get("allOf") or []:
        fields.update(response_fields(member, depth))
    props = schema.get("properties")
    if isinstance(props, dict):
        for name, sub in props.items():
            kind = _scalar_type(sub)
            if kind:
                fields.setdefault(alnum_key(name), kind)
            elif isinstance(sub, dict):
                fields.update({k: v for k, v in response_fields(sub, depth + 1).items()
                               if k not in fields})  # fmt: skip
    return fields


def _compatible(produced: str, wanted: str) -> bool:
    return produced == wanted or (produced == "integer" and wanted in ("number", "string"))


def _consumer_index(
    tools: Sequence[Tool],
) -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[tuple[str, str, frozenset[str]]]]]:
    """Who consumes what: ``by_name[alnum_key(param)] → [(tool, type)]`` for exact matches, and
    ``by_stem[word] → [(tool, type, stem words)]`` for ``<entity>Id`` parameters.

    Indexing consumers once keeps the graph near-linear: a 3,000-operation API (Microsoft
    Graph) would otherwise cost 9 million producer × consumer comparisons.
    """
    by_name: dict[str, list[tuple[str, str]]] = {}
    by_stem: dict[str, list[tuple[str, str, frozenset[str]]]] = {}
    for consumer in tools:
        for param, schema in consumer.properties.items():
            kind = _scalar_type(schema)
            key = alnum_key(param)
            if kind is None or key in _GENERIC:
                continue
            id_param = bool(_ID_SUFFIX.search(param))
            if id_param or param in consumer.required:
                by_name.setdefault(key, []).append((consumer.name, kind))
            if id_param:
                stem = frozenset(_words(_ID_SUFFIX.sub("", param)) - {"id"})
                if stem:
                    first = min(stem)
                    by_stem.setdefault(first, []).append((consumer.name, kind, stem))
    return by_name, by_stem


def build_graph(tools: Sequence[Tool]) -> dict[str, list[str]]:
    """``{producer name: [consumer names]}`` over the tools of one API (edges ranked).

    Score 2: a response field with the consumer parameter's normalized name and a compatible
    type (the parameter is id-like or required); score 1: a response ``id`` feeding
    ``<entity>Id`` where the producer's name or path mentions the entity.
    """
    by_name, by_stem = _consumer_index(tools)
    graph: dict[str, list[str]] = {}
    for producer in tools:
        fields = response_fields(producer.output_schema)
        if not fields:
            continue
        scores: dict[str, int] = {}
        for key, produced in fields.items():
            for consumer, wanted in by_name.get(key, ()):
                if _compatible(produced, wanted):
                    scores[consumer] = 2
        if "id" in fields:
            path = (producer.metadata.get("http") or {}).get("path", "")
            words = _words(producer.original_name or producer.name) | _words(path)
            for word in words:
                for consumer, wanted, stem in by_stem.get(word, ()):
                    if stem <= words and _compatible(fields["id"], wanted):
                        scores.setdefault(consumer, 1)
        scores.pop(producer.name, None)
        if scores:
            ranked = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
            graph[producer.name] = [name for name, _ in ranked[:MAX_FEEDS]]
    return graph
