"""Clean what a model will read: names and descriptions without markup, within length caps.

Descriptions in the wild are HTML fragments and Markdown; a 135M-parameter model reading
``<p>Returns the <a href=...>pet</a>.</p>`` wastes its small context on tags. Stripping is
regex-based on purpose: we only need plain text, and a real HTML or Markdown renderer over
~100k descriptions costs tens of seconds for no gain in the result.
"""

from __future__ import annotations

import html
import re
from typing import Any

from tooldojo.specs._schema import sanitize_name

MAX_DESCRIPTION = 300
MAX_PARAM_DESCRIPTION = 160

_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HTML_BLOCK = re.compile(r"</?(p|div|br|li|ul|ol|h[1-6]|tr|table|pre)\b[^>]*>", re.I)
_HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(\s[^<>]*)?/?>")
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_MD_CODE_FENCE = re.compile(r"```.*?```", re.S)
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|`)(?=\S)(.+?)(?<=\S)\1")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.M)
_MD_BULLET = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+", re.M)
_MD_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}.*$", re.M)
_BARE_URL = re.compile(r"\(?https?://\S+\)?")
_SPACES = re.compile(r"\s+")


def strip_markup(text: str | None) -> str:
    """Plain one-paragraph text from HTML and/or Markdown."""
    if not text:
        return ""
    text = _HTML_COMMENT.sub(" ", str(text))
    text = _MD_CODE_FENCE.sub(" ", text)
    text = _HTML_BLOCK.sub(" ", text)
    text = _HTML_TAG.sub("", text)
    text = html.unescape(text)
    text = _MD_IMAGE.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_REF_LINK.sub(r"\1", text)
    text = _MD_TABLE_RULE.sub(" ", text)
    text = _MD_HEADING.sub("", text)
    text = _MD_BULLET.sub("", text)
    text = _MD_EMPHASIS.sub(r"\2", text)
    text = _BARE_URL.sub("", text)
    text = text.replace("|", " ")
    return _SPACES.sub(" ", text).strip()


def cap(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a sentence end if one is near, else a word."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    sentence = max(head.rfind(". "), head.rfind("! "), head.rfind("? "))
    if sentence >= limit // 2:
        return head[: sentence + 1]
    return head.rsplit(" ", 1)[0].rstrip(",;:") + "..."


def clean_description(text: str | None, limit: int = MAX_DESCRIPTION) -> str:
    return cap(strip_markup(text), limit)


_VERSION_SEGMENT = re.compile(r"^(v\d+(\.\d+)*|\d+(\.\d+)*|api|rest|latest)$", re.I)
_VERBS = {"get": "get", "post": "create", "put": "update", "patch": "update", "delete": "delete"}


def readable_name(method: str, path: str) -> str:
    """``GET /users/{id}/repos`` → ``list_users_repos_by_id`` (ops without an operationId).

    Static path segments give the nouns (version markers such as ``v1`` are skipped), the
    path parameters ``by_...``; GET on a collection (no parameter at the end) reads as ``list``.
    """
    segments = [s for s in path.strip("/").split("/") if s]
    nouns: list[str] = []
    params: list[str] = []
    for segment in segments:
        if segment.startswith("{") and segment.endswith("}"):
            params.append(segment[1:-1])
        elif not _VERSION_SEGMENT.match(segment):
            nouns.append(segment)
    ends_in_param = bool(segments) and segments[-1].startswith("{")
    verb = _VERBS.get(method.lower(), method.lower())
    if verb == "get" and not ends_in_param and nouns and nouns[-1].endswith("s"):
        verb = "list"
    parts = [verb, *nouns[-3:]]
    if params:
        parts.append("by_" + "_and_".join(params))
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", "_".join(parts)).lower()
    return sanitize_name(words)


def clean_parameter_descriptions(schema: dict[str, Any]) -> dict[str, Any]:
    """The top-level properties with their descriptions stripped and capped (copied)."""
    props = schema.get("properties")
    if not isinstance(props, dict):
        return schema
    cleaned = {}
    for name, sub in props.items():
        if isinstance(sub, dict) and isinstance(sub.get("description"), str):
            text = clean_description(sub["description"], MAX_PARAM_DESCRIPTION)
            sub = (
                {**sub, "description": text}
                if text
                else {k: v for k, v in sub.items() if k != "description"}
            )
        cleaned[name] = sub
    return {**schema, "properties": cleaned}
