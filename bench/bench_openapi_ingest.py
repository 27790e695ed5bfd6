"""Time ingestion of a generated 2,000-operation OpenAPI document (goal: under 5 s).

Prints the time for JSON and YAML files and the ratio against json.load of the same file
(run in the same process), so the figure can be read on any machine.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from tooldojo.specs import load_tools


def make_openapi(operations: int) -> dict[str, Any]:
    """A realistic large API: shared components, $refs, path/query/header params and bodies."""
    schemas = {
        "Money": {
            "type": "object",
            "required": ["amount", "currency"],
            "properties": {
                "amount": {"type": "number", "minimum": 0},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            },
        },
        "Address": {
            "type": "object",
            "properties": {
                "street": {"type": "string"},
                "city": {"type": "string"},
                "country": {"type": "string", "minLength": 2, "maxLength": 2},
            },
        },
        "Node": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
            },
        },
    }
    paths: dict[str, Any] = {}
    for i in range(operations // 2):
        resource = f"resource{i}"
        schemas[f"Item{i}"] = {
            "type": "object",
            "required": ["name"],
            "properties": {
                "id": {"type": "string", "readOnly": True},
                "name": {"type": "string", "description": f"Name of the {resource}"},
                "price": {"$ref": "#/components/schemas/Money"},
                "address": {"$ref": "#/components/schemas/Address"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "status": {"type": "string", "enum": ["active", "archived"]},
            },
        }
        item_ref = {"$ref": f"#/components/schemas/Item{i}"}
        paths[f"/{resource}/{{id}}"] = {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": {
                "operationId": f"get{resource}",
                "parameters": [
                    {"$ref": "#/components/parameters/Expand"},
                    {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {"application/json": {"schema": item_ref}},
                    }
                },
            },
            "put": {
                "operationId": f"update{resource}",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": item_ref}},
                },
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {"application/json": {"schema": item_ref}},
                    }
                },
            },
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Big", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": {
                "Expand": {
                    "name": "expand",
                    "in": "query",
                    "schema": {"type": "array", "items": {"type": "string"}},
                }
            },
        },
    }


def main() -> None:
    operations = 2000
    document = make_openapi(operations)
    with tempfile.TemporaryDirectory() as folder:
        for suffix, dump in (("json", json.dumps), ("yaml", yaml.safe_dump)):
            path = Path(folder) / f"big.{suffix}"
            path.write_text(dump(document))
            start = time.perf_counter()
            json.loads(path.read_text()) if suffix == "json" else yaml.load(
                path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            )
            parse_s = time.perf_counter() - start
            start = time.perf_counter()
            tools = load_tools([str(path)])
            total_s = time.perf_counter() - start
            assert len(tools) == operations
            size_mb = path.stat().st_size / 1e6
            print(
                f"{suffix}: {operations} operations ({size_mb:.1f} MB) ingested in "
                f"{total_s:.2f} s (goal < 5 s); parsing alone {parse_s:.2f} s, "
                f"ingest/parse ratio {total_s / parse_s:.1f}x"
            )


if __name__ == "__main__":
    main()
