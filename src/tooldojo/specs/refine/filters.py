"""Which operations make usable tools, and which parameters are configuration, not intent.

Every drop has a named reason (``DROP_REASONS``) so the report's funnel adds up. Credentials
(API keys, signatures, tokens) and transport plumbing (``api-version``, Google's standard
``alt``/``fields``/``prettyPrint`` ...) are stripped rather than dropped: a client sets them
once, a user never asks for them, and left in they would push honest tools past the
parameter cap.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tooldojo.model import Tool

MAX_PARAMETERS = 20
MAX_SCHEMA_CHARS = 6000
"""A tool's parameter schema as JSON; beyond this it crowds a small model's prompt."""
MIN_DESCRIPTION_CHARS = 12

DROP_REASONS = (
    "unconvertible",
    "deprecated",
    "health_or_auth",
    "no_description",
    "binary_body",
    "too_many_params",
    "nothing_to_ask",
    "schema_too_large",
    "invalid_schema",
    "api_cap",
)

_CREDENTIAL_NAME = re.compile(
    r"(?i)^(x-)?(api[-_]?key|apikey|key|access[-_]?token|auth[-_]?token|token|"
    r"authorization|auth|client[-_]?secret|client[-_]?id|app[-_]?key|app[-_]?id|"
    r"secret|signature|session[-_]?token|subscription[-_]?key|ocp-apim-subscription-key|"
    r"x-amz-(content-sha256|date|algorithm|credential|security-token|signature|signedheaders)|"
    r"oauth[-_]?token|bearer|password[-_]?hash|jwt|x-api-token|x-auth-.*|.*[-_]api[-_]?key)$"
)
_PLUMBING_NAME = re.compile(
    r"(?i)^(api-version|\$\.xgafv|alt|callback|fields|prettyprint|pretty|quotauser|userip|"
    r"upload_protocol|uploadtype|x-amz-user-agent|x-amz-target|x-ms-client-request-id|"
    r"x-request-id|x-correlation-id|user-agent|accept-language|accept-encoding|"
    r"if-match|if-none-match|cache-control|content-md5|jsonp|suppress_response_codes)$"
)
# Vendor headers carry keys under any prefix (X-API2CRM-USER-KEY, X-Shopify-Access-Token,
# X-Bunq-Client-Authentication).
_CREDENTIAL_HEADER = re.compile(
    r"(?i).*(key|token|secret|signature|password|credentials?|authentication|authorization)$"
)
# Any other ``X-`` header is the vendor's transport setting (X-Bunq-Region,
# X-Bunq-Client-Request-Id, x-apideck-consumer-id, X-API2CRM-DATA-ENABLE): a client sets it, no
# user's request states it, and a planned value for it makes the request read like a form.
_VENDOR_HEADER = re.compile(r"(?i)^x-")
_HEALTH_SEGMENTS = {
    "health", "healthz", "healthcheck", "health-check", "ping", "heartbeat", "alive",
    "liveness", "readiness", "ready", "status.json",
}  # fmt: skip
_AUTH_SEGMENTS = {
    "oauth", "oauth2", "auth", "authenticate", "authentication", "authorize", "login",
    "logout", "signin", "sign-in", "signout", "sign-out", "token", "tokens", "refresh-token",
    "refresh_token", "accesstoken", "access_token", "access-token", "session", "sessions",
    "apikey", "apikeys", "api-keys", "api_keys", "password", "reset-password",
}  # fmt: skip
_AUTH_NAME = re.compile(
    r"(?i)^(login|logout|log_?in|log_?out|sign_?in|sign_?out|authenticate|authorize|"
    r"(get|create|refresh|revoke|generate|request|issue|exchange)_?(access_?)?token|oauth.*|"
    r"(get_?)?health(_?check)?|ping|heartbeat)$"
)
_BINARY_FORMATS = {"binary", "byte", "base64"}
# Azure's thousands of ``*_ListNext`` operations take only the previous page's link: a client
# follows it, no user ever asks for it.
_CONTINUATION = re.compile(r"(?i)^(next_?link|next_?page_?link)$")


def credential_names(document: dict[str, Any]) -> set[str]:
    """Lower-cased names of the API-key parameters the spec's security schemes declare."""
    schemes = (document.get("components") or {}).get("securitySchemes") or {}
    names = set()
    if isinstance(schemes, dict):
        for scheme in schemes.values():
            if (
                isinstance(scheme, dict)
                and scheme.get("type") == "apiKey"
                and isinstance(scheme.get("name"), str)
            ):
                names.add(scheme["name"].lower())
    return names


def is_credential(name: str, location: str, declared: set[str]) -> bool:
    """An API key, token or signature: declared by a security scheme, or named like one.

    Name patterns only count in the query, headers and cookies: a body field called ``token``
    or a path segment called ``key`` (an S3 object key) is data.
    """
    if name.lower() in declared and location != "body":
        return True
    if location in ("header", "cookie") and _CREDENTIAL_HEADER.match(name):
        return True
    return location in ("query", "header", "cookie") and bool(_CREDENTIAL_NAME.match(name))


def is_plumbing(name: str, location: str) -> bool:
    if location in ("header", "cookie") and _VENDOR_HEADER.match(name):
        return True
    return location in ("query", "header", "cookie") and bool(_PLUMBING_NAME.match(name))


def _constant(schema: Any) -> tuple[bool, Any]:
    """A parameter with exactly one allowed value (AWS query APIs' ``Action``/``Version``)."""
    if not isinstance(schema, dict):
        return False, None
    if "const" in schema:
        return True, schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and len(enum) == 1:
        return True, enum[0]
    return False, None


def strip_parameters(tool: Tool, declared: set[str]) -> tuple[Tool, list[str], list[str]]:
    """The tool without credential and plumbing parameters, plus what was removed.

    Single-valued parameters count as plumbing too: there is nothing to ask, and their
    value is kept in ``metadata["http"]["constants"]`` for an executor that sends requests.
    """
    http = tool.metadata.get("http") or {}
    locations: dict[str, str] = http.get("params") or {}
    wire_names: dict[str, str] = http.get("wire_names") or {}
    credentials, plumbing = [], []
    constants: dict[str, Any] = {}
    for arg, schema in tool.properties.items():
        location = locations.get(arg, "body")
        wire = wire_names.get(arg, arg)
        fixed, value = _constant(schema)
        if is_credential(wire, location, declared):
            credentials.append(arg)
        elif is_plumbing(wire, location):
            plumbing.append(arg)
        elif fixed and arg in tool.required:
            plumbing.append(arg)
            constants[wire] = value
    removed = set(credentials) | set(plumbing)
    if not removed:
        return tool, [], []
    params = dict(tool.parameters)
    params["properties"] = {k: v for k, v in tool.properties.items() if k not in removed}
    required = [r for r in tool.required if r not in removed]
    if required:
        params["required"] = required
    else:
        params.pop("required", None)
    new_http = {
        **http,
        "params": {k: v for k, v in locations.items() if k not in removed},
        "wire_names": {k: v for k, v in wire_names.items() if k not in removed},
    }
    if credentials:
        new_http["stripped_credentials"] = sorted(wire_names.get(c, c) for c in credentials)
    if constants:
        new_http["constants"] = constants
    metadata = {**tool.metadata, "http": new_http}
    return (
        tool.model_copy(update={"parameters": params, "metadata": metadata}),
        credentials,
        plumbing,
    )


def is_health_or_auth(path: str, name: str) -> bool:
    """Health probes and log-in/token plumbing: infrastructure, not tasks a user asks for.

    Judged on the raw path and operation name so it can run before the costly conversion.
    """
    segments = [s.lower() for s in path.strip("/").split("/") if s and not s.startswith("{")]
    if segments and segments[-1] in _HEALTH_SEGMENTS:
        return True
    if any(s in _AUTH_SEGMENTS for s in segments):
        return True
    return bool(_AUTH_NAME.match(name))


def _is_binary(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("format") in _BINARY_FORMATS or schema.get("type") == "file":
        return True
    if "contentMediaType" in schema or "contentEncoding" in schema:
        return True
    items = schema.get("items")
    return isinstance(items, dict) and _is_binary(items)


def has_binary_body(tool: Tool, body_media: str | None) -> bool:
    """A file upload or raw byte body: nothing a user can type into a chat."""
    if body_media and not (
        body_media.endswith("json")
        or body_media in ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        return True
    return any(_is_binary(sub) for sub in tool.properties.values())


def drop_reason(
    tool: Tool, *, had_description: bool, body_media: str | None, description: str
) -> str | None:
    """Why this (stripped, cleaned) tool is unusable, or ``None`` to keep it.

    ``deprecated`` and ``health_or_auth`` are judged on the raw operation before conversion
    (see :func:`is_health_or_auth`); the rest need the converted schema.
    """
    if not had_description or len(description) < MIN_DESCRIPTION_CHARS:
        return "no_description"
    if has_binary_body(tool, body_media):
        return "binary_body"
    if len(tool.properties) > MAX_PARAMETERS:
        return "too_many_params"
    if not tool.properties or any(_CONTINUATION.match(name) for name in tool.required):
        return "nothing_to_ask"
    if len(json.dumps(tool.parameters, ensure_ascii=False)) > MAX_SCHEMA_CHARS:
        return "schema_too_large"
    return None
