"""Schema-driven argument values: the deterministic fallback of goal-conditioned labels.

The planner first asks a model for realistic argument values under a JSON-Schema constraint;
when the model fails (or no model is given) the values come from here: a seeded walk over the
tool's schema that prefers what the spec itself offers (``examples``, ``enum``, ``default``,
``e.g. "..."`` hints in descriptions), then formats (dates, e-mails, UUIDs), then patterns,
then plain typed values within the schema's bounds. Every result is checked with
``jsonschema``, so a weak model can never stall a run and a label is always schema-valid.
"""

from __future__ import annotations

import copy
import json
import random
import re
import string
import uuid
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

from tooldojo.names import alnum_key, name_words

MAX_DEPTH = 4
"""Recursive schemas (a category with subcategories) are cut here: optional parts are dropped."""

_EG = re.compile(r"e\.g\.?\s*[:,]?\s*(?:\"([^\"]+)\"|'([^']+)'|([^\s,;)]+))", re.IGNORECASE)

_WORD_POOLS: dict[str, list[str]] = {
    "location": ["Lisbon, Portugal", "Austin, TX", "Osaka, Japan", "Nairobi, Kenya", "Oslo"],
    "city": ["Lisbon", "Austin", "Osaka", "Nairobi", "Montreal", "Porto", "Krakow"],
    "country": ["Portugal", "Japan", "Kenya", "Canada", "Chile"],
    "name": ["Maria Lopez", "Kenji Ito", "Amara Okafor", "Lars Eriksen", "Priya Nair"],
    "title": ["Quarterly planning", "The Quiet Harbor", "Team offsite", "Budget review"],
    "query": ["dune", "quantum computing", "vegan recipes", "jazz history"],
    "email": ["maria.lopez@example.com", "k.ito@example.org", "amara@example.net"],
    "currency": ["EUR", "USD", "JPY", "GBP", "CHF"],
    "symbol": ["AAPL", "MSFT", "NVDA", "SAP"],
    "unit": ["m", "km", "cm", "ft"],
    "message": ["See you at noon", "Running ten minutes late", "Thanks for the update"],
}


def resolve_ref(schema: Any, root: dict[str, Any]) -> Any:
    """Follow a local ``$ref`` (``#/$defs/X``, ``#/definitions/X``) inside ``root``."""
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 16:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return {k: v for k, v in schema.items() if k != "$ref"}
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            return {}
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **siblings}
        seen += 1
    return schema


def _flatten(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with refs followed, ``allOf`` merged and one non-null branch of unions."""
    schema = resolve_ref(schema, root)
    if not isinstance(schema, dict):
        return {}
    if "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _flatten(part, root)
            for key, value in part.items():
                if key == "properties":
                    merged.setdefault("properties", {}).update(value)
                elif key == "required":
                    merged["required"] = sorted(set(merged.get("required", [])) | set(value))
                else:
                    merged.setdefault(key, value)
        schema = merged
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [_flatten(b, root) for b in schema[key]]
            usable = [b for b in branches if b.get("type") != "null"] or branches
            rest = {k: v for k, v in schema.items() if k != key}
            schema = {**usable[0], **rest} if usable else rest
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"] or ["null"]
        schema = {**schema, "type": non_null[0]}
    return schema


@lru_cache(maxsize=2048)
def _validator_for_json(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    return validator_for(schema, default=Draft202012Validator)(schema)


def schema_error(schema: dict[str, Any], value: Any) -> str | None:
    """The most relevant ``jsonschema`` error of ``value`` (``None`` when valid)."""
    validator = _validator_for_json(json.dumps(schema, sort_keys=True, default=str))
    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{'/' + where + ': ' if where else ''}{error.message}"


def _valid_for(sub: Any, value: Any, root: dict[str, Any]) -> bool:
    """Whether ``value`` satisfies a sub-schema (with the root's definitions for refs)."""
    if not isinstance(sub, dict):
        return True
    wrapped = dict(sub)
    for key in ("$defs", "definitions"):
        if key in root and key not in wrapped:
            wrapped[key] = root[key]
    try:
        return schema_error(wrapped, value) is None
    except Exception:  # an unsupported keyword must not stop drawing values
        return True


def hints_from_description(text: str) -> list[str]:
    """Example values a description offers (``e.g. "Lisbon, Portugal"`` → ``Lisbon, Portugal``)."""
    found = []
    for match in _EG.finditer(text or ""):
        value = next(group for group in match.groups() if group)
        found.append(value.strip().rstrip("."))
    return found


class ValueSampler:
    """Draws one schema-valid value per call from a seeded ``random.Random``."""

    def __init__(self, rng: random.Random, *, optional_rate: float = 0.3, use_hints: bool = True):
        self.rng = rng
        self.optional_rate = optional_rate
        self.use_hints = use_hints
        """``False``: ignore the spec's examples and hints (to get values different from them)."""

    def arguments(
        self, parameters: dict[str, Any], *, with_optional: bool = True
    ) -> dict[str, Any]:
        """Arguments for a tool: all required ones, some optional ones; validated."""
        value = self.value(parameters, parameters, name="", depth=0, with_optional=with_optional)
        return value if isinstance(value, dict) else {}

    def value(
        self,
        schema: Any,
        root: dict[str, Any],
        *,
        name: str = "",
        depth: int = 0,
        with_optional: bool = True,
    ) -> Any:
        raw = resolve_ref(schema, root) if isinstance(schema, dict) else {}
        flat = _flatten(schema, root)
        for candidate in self._offered(raw, flat):
            if _valid_for(schema, candidate, root):
                return copy.deepcopy(candidate)
        kind = flat.get("type")
        if kind is None:
            kind = "object" if "properties" in flat else "string"
        if kind == "object":
            return self._object(flat, root, depth, with_optional)
        if kind == "array":
            return self._array(flat, root, name, depth)
        if kind in ("integer", "number"):
            hints = hints_from_description(str(flat.get("description", "")))
            for hint in hints if self.use_hints else []:
                number = _as_number(hint, integer=kind == "integer")
                valid = number is not None and _valid_for(schema, number, root)
                if valid and self.rng.random() < 0.5:
                    return number
            return self._number(flat, name, integer=kind == "integer")
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(flat, root, name, schema)

    def _offered(self, raw: dict[str, Any], flat: dict[str, Any]) -> list[Any]:
        """Values the spec itself suggests, shuffled: const, enum, examples, default."""
        if not self.use_hints and "const" not in flat and "enum" not in flat:
            return []
        if "const" in flat:
            return [flat["const"]]
        if isinstance(flat.get("enum"), list) and flat["enum"]:
            options = [v for v in flat["enum"] if v is not None] or flat["enum"]
            return [self.rng.choice(options)]
        offered: list[Any] = []
        for source in (raw, flat):
            examples = source.get("examples")
            if isinstance(examples, list):
                offered += examples
            elif "example" in source:
                offered.append(source["example"])
        self.rng.shuffle(offered)
        if "default" in flat and flat["default"] is not None and self.rng.random() < 0.3:
            offered.append(flat["default"])
        return offered

    def _object(
        self, flat: dict[str, Any], root: dict[str, Any], depth: int, with_optional: bool
    ) -> dict[str, Any]:
        properties = flat.get("properties") or {}
        required = set(flat.get("required") or [])
        out: dict[str, Any] = {}
        for key, sub in properties.items():
            if key not in required:
                if not with_optional or depth >= MAX_DEPTH - 1:
                    continue
                if self.rng.random() >= self.optional_rate:
                    continue
            out[key] = self.value(sub, root, name=key, depth=depth + 1)
        return out

    def _array(self, flat: dict[str, Any], root: dict[str, Any], name: str, depth: int) -> list:
        low = int(flat.get("minItems", 1 if depth == 0 or depth < MAX_DEPTH else 0))
        high = int(flat.get("maxItems", max(low, 3)))
        if depth >= MAX_DEPTH - 1:
            high = low
        count = self.rng.randint(low, max(low, min(high, low + 2)))
        items = flat.get("items", {"type": "string"})
        out: list[Any] = []
        for _ in range(count * 4):
            if len(out) >= count:
                break
            item = self.value(items, root, name=name.rstrip("s"), depth=depth + 1)
            if flat.get("uniqueItems") and item in out:
                continue
            out.append(item)
        return out

    def _number(self, flat: dict[str, Any], name: str, *, integer: bool) -> int | float:
        low = flat.get("minimum")
        high = flat.get("maximum")
        ex_low = flat.get("exclusiveMinimum")
        ex_high = flat.get("exclusiveMaximum")
        if isinstance(ex_low, bool):  # draft 4 booleans
            ex_low = low if ex_low else None
        if isinstance(ex_high, bool):
            ex_high = high if ex_high else None
        lo = ex_low if ex_low is not None else low
        hi = ex_high if ex_high is not None else high
        if lo is None and hi is None:
            lo, hi = _range_for(name) or ((1, 100) if integer else (1.0, 500.0))
        elif lo is None:
            lo = min(0, hi - 100)
        elif hi is None:
            hi = lo + (100 if integer else 500.0)
        if integer:
            start = int(lo) + (1 if ex_low is not None and int(lo) == lo else 0)
            end = int(hi) - (1 if ex_high is not None and int(hi) == hi else 0)
            value: int | float = self.rng.randint(start, max(start, end))
        else:
            value = round(self.rng.uniform(float(lo), float(hi)), 2)
            if ex_low is not None and value <= ex_low:
                value = round(float(ex_low) + 0.5, 2)
        step = flat.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            value = round(round(value / step) * step, 6)
            if integer:
                value = int(value)
        return value

    def _string(self, flat: dict[str, Any], root: dict[str, Any], name: str, schema: Any) -> str:
        description = str(flat.get("description", ""))
        candidates = hints_from_description(description) if self.use_hints else []
        pool = _pool_for(name)
        if pool:
            candidates.append(self.rng.choice(pool))
        self.rng.shuffle(candidates)
        for candidate in candidates:
            if _valid_for(schema, candidate, root):
                return candidate
        fmt = flat.get("format")
        formatted = self._formatted(fmt) if isinstance(fmt, str) else None
        if formatted is not None:
            return formatted
        pattern = flat.get("pattern")
        if isinstance(pattern, str):
            shortest, longest = int(flat.get("minLength", 0)), flat.get("maxLength")
            for attempt in range(8):
                # Later tries stretch the pattern's repeats to the length bounds: a
                # ``^[0-9a-zA-Z]+$`` id of exactly 10 characters is out of reach of short repeats.
                stretch = attempt >= 4 and shortest > 0
                spread = 6
                if stretch and isinstance(longest, int):
                    spread = min(6, max(0, longest - shortest))
                try:
                    text = sample_regex(
                        pattern, self.rng, spread, min_repeat=shortest if stretch else 0
                    )
                except (re.error, ValueError):
                    break
                if _valid_for(schema, text, root):
                    return text
        low = int(flat.get("minLength", 1))
        high = int(flat.get("maxLength", max(low, 64)))
        text = realistic_text(name, self.rng)
        if len(text) < low:
            text += "".join(self.rng.choice(string.ascii_lowercase) for _ in range(low - len(text)))
        return text[: max(high, 1)].strip() or text[: max(high, 1)]

    def _formatted(self, fmt: str) -> str | None:
        day = date(2025, 1, 1) + timedelta(days=self.rng.randint(0, 364))
        if fmt == "date":
            return day.isoformat()
        if fmt == "date-time":
            moment = datetime(day.year, day.month, day.day, self.rng.choice([8, 9, 10, 14, 16]))
            return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
        if fmt == "time":
            return f"{self.rng.randint(7, 19):02d}:{self.rng.choice([0, 15, 30, 45]):02d}:00"
        if fmt == "email":
            return self.rng.choice(_WORD_POOLS["email"])
        if fmt == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if fmt in ("uri", "url"):
            return f"https://example.com/{self.rng.choice(['docs', 'item', 'page'])}"
        return None


_NAMED_RANGES = (
    (("lat", "latitude"), (-60.0, 70.0)),
    (("lon", "lng", "longitude"), (-170.0, 170.0)),
    (("percent", "percentile", "pct"), (1.0, 99.0)),
    (("year",), (1990, 2030)),
)


# What a string parameter with no format, pattern, example or pool gets, by the words of its
# name, drawn with Faker (seeded from the plan's rng, so plans stay reproducible). The fallback
# was ``<last word>-<3 digits>`` ("filter-401", "resourcegroupname-939"): a quarter of the call
# trajectories that passed in the headline run carried one, no person types such a value, and
# the user simulator had to copy it into the request.
# Faker method → the name words it serves (a space-separated list, split once below).
_FAKER_TABLE: dict[str, str] = {
    "url": "url uri link website href endpoint callback webhook",
    "email": "email mail",
    "phone_number": "phone mobile fax msisdn",
    "ipv4": "ip ipaddress",
    "domain_name": "domain host hostname",
    "user_name": "username login handle nickname user",
    "first_name": "firstname first given",
    "last_name": "lastname last surname family",
    "name": "author owner person contact customer assignee recipient",
    "company": "company organization organisation org vendor brand",
    "street_address": "street address line1 line2 addr",
    "city": "city town",
    "state": "state province region",
    "postcode": "zip postcode postal zipcode",
    "country": "country",
    "color_name": "color colour",
    "job": "job occupation profession",
    "file_name": "file filename attachment",
    "file_path": "path directory folder dir",
    "catch_phrase": "title subject headline summary label caption",
    "sentence": "description message text comment note notes body content reason details bio",
    "language_name": "language",
    "language_code": "lang locale",
    "word": "q query search keyword keywords term filter tag tags topic category genre type kind",
    "currency_code": "currency",
    "timezone": "timezone tz",
    "numerify:#.#.#": "version",
    "numerify:%#": "max limit count size page per offset skip top total quantity amount results",
    "iso8601": "time timestamp datetime since until expires expiry deadline created updated",
    "date": "date day birthday",
}
_FAKER_BY_WORD = {method: frozenset(words.split()) for method, words in _FAKER_TABLE.items()}
_ID_WORDS = frozenset(
    {
        "id",
        "ids",
        "key",
        "token",
        "code",
        "ref",
        "reference",
        "uuid",
        "guid",
        "number",
        "no",
        "num",
        "sku",
        "slug",
        "hash",
        "arn",
        "secret",
        "cursor",
    }
)


@lru_cache(maxsize=1)
def _faker() -> Any:
    from faker import Faker

    return Faker("en_US")


_FIRST_DAY, _LAST_DAY = date(2025, 1, 1), date(2025, 12, 31)


def _fake(fake: Any, method: str) -> str:
    """One Faker value, trimmed to what a person types (no final dot, a UTC stamp)."""
    if method.startswith("numerify:"):
        return fake.numerify(method.split(":", 1)[1])
    # Fixed bounds, as ``_formatted`` uses: relative ones ("-1y") would change with the day.
    if method == "iso8601":
        return f"{fake.date_between(_FIRST_DAY, _LAST_DAY).isoformat()}T{fake.time()}Z"
    if method == "date":
        return fake.date_between(_FIRST_DAY, _LAST_DAY).isoformat()
    text = str(getattr(fake, method)())
    return text.rstrip(".") if method in ("sentence", "catch_phrase") else text


def realistic_text(name: str, rng: random.Random) -> str:
    """A value a person could type for a string parameter called ``name``: an opaque id for
    id-like names, a Faker value matching a word of the name, else a plain English word."""
    words = name_words(name)
    fake = _faker()
    fake.seed_instance(rng.getrandbits(32))
    joined, last = "".join(words), (words[-1] if words else "")
    for method, keys in _FAKER_BY_WORD.items():
        if joined in keys or last in keys:
            return _fake(fake, method)
    if last in _ID_WORDS or re.fullmatch(r"[a-z]id", last):  # pid, uid, gid
        return fake.bothify(rng.choice(["########", "??######", "????-####", "#######"])).lower()
    for method, keys in _FAKER_BY_WORD.items():  # any word of the name, not only its last
        if keys.intersection(words):
            return _fake(fake, method)
    if _person_name(words):
        return fake.name()
    if last == "name":  # a thing's name: a resource group, a project, a bucket
        return f"{fake.word()}-{fake.word()}"
    # One word: two drawn apart read as a broken phrase ("work or", "paper official").
    return fake.word()


def echoes_name(name: str, value: str) -> bool:
    """Whether ``value`` spells out its parameter's name (``"ShortName"`` for ``shortName``,
    ``"example_store_id"`` for ``store_id``, ``"filter-401"`` for ``filter``): a small model
    copies the name from the prompt, and the request must then carry it as if it were a value.
    Names under five letters (``q``, ``id``, ``sort``) are too common inside real values."""
    key = alnum_key(name)
    return len(key) >= 5 and key in alnum_key(value)


def echoed_names(arguments: Any, parameters: dict[str, Any]) -> list[str]:
    """The parameters (at any depth) whose string value echoes the parameter's name, except a
    value the schema itself fixes (``enum``/``const``)."""
    found: list[str] = []

    def walk(value: Any, schema: Any, key: str) -> None:
        flat = _flatten(schema, parameters) if isinstance(schema, dict) else {}
        if isinstance(value, dict):
            properties = flat.get("properties") or {}
            for sub_key, sub in value.items():
                walk(sub, properties.get(sub_key, {}), sub_key)
        elif isinstance(value, list):
            for item in value:
                walk(item, flat.get("items", {}), key)
        elif isinstance(value, str):
            fixed = [*(flat.get("enum") or []), *([flat["const"]] if "const" in flat else [])]
            if value not in fixed and echoes_name(key, value):
                found.append(key)

    walk(arguments, parameters, "")
    return found


def _range_for(name: str) -> tuple[float, float] | None:
    """Plausible bounds a parameter's name implies when its schema states none."""
    words = name_words(name)
    for keys, bounds in _NAMED_RANGES:
        if any(word.rstrip("0123456789") in keys for word in words):
            return bounds
    return None


def _as_number(text: str, *, integer: bool) -> int | float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if integer:
        return int(value) if value.is_integer() else None
    return value


_PERSON_WORDS = frozenset(
    {
        "full",
        "display",
        "first",
        "last",
        "user",
        "contact",
        "customer",
        "author",
        "owner",
        "person",
        "sender",
        "recipient",
        "your",
        "my",
    }
)


def _person_name(words: list[str]) -> bool:
    """``name``/``displayName`` name a person; ``resourceGroupName``/``fileName`` do not."""
    return words[-1:] == ["name"] and (len(words) == 1 or words[-2] in _PERSON_WORDS)


def _pool_for(name: str) -> list[str]:
    """The pool of the name's last word (``userEmail`` → emails). Matched by word, not by
    substring: ``fileName`` holding "name" got a person's name."""
    words = name_words(name)
    if not words or words[-1] in _ID_WORDS:
        return []  # an id of a message is not a message
    if words[-1] == "name":
        return _WORD_POOLS["name"] if _person_name(words) else []
    return _WORD_POOLS.get(words[-1], [])


# --- a small regex sampler --------------------------------------------------------------------
# Hand-written over the standard library's regex parser: it is seeded by our own RNG (so plans
# are reproducible) and needs no test framework (hypothesis' from_regex is meant for tests).

try:  # Python 3.11+
    import re._constants as _sre_c  # type: ignore[import-not-found]
    import re._parser as _sre_parse  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants as _sre_c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

_CATEGORY_CHARS = {
    _sre_c.CATEGORY_DIGIT: string.digits,
    _sre_c.CATEGORY_WORD: string.ascii_letters + string.digits + "_",
    _sre_c.CATEGORY_SPACE: " ",
    _sre_c.CATEGORY_NOT_DIGIT: string.ascii_letters,
    _sre_c.CATEGORY_NOT_WORD: "-.",
    _sre_c.CATEGORY_NOT_SPACE: string.ascii_letters,
}
_ANY_CHARS = string.ascii_lowercase + string.digits


def sample_regex(pattern: str, rng: random.Random, max_repeat: int = 6, min_repeat: int = 0) -> str:
    """A string matching ``pattern`` (anchors respected; unbounded repeats kept short, each
    repeated at least ``min_repeat`` times where the pattern allows)."""
    return _emit(_sre_parse.parse(pattern), rng, max_repeat, min_repeat)


def _emit(parsed: Any, rng: random.Random, max_repeat: int, min_repeat: int = 0) -> str:
    out: list[str] = []
    for op, arg in parsed:
        if op is _sre_c.LITERAL:
            out.append(chr(arg))
        elif op is _sre_c.ANY:
            out.append(rng.choice(_ANY_CHARS))
        elif op is _sre_c.IN:
            out.append(_emit_class(arg, rng))
        elif op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT):
            low, high, body = arg
            high = low + max(max_repeat, min_repeat) if high is _sre_c.MAXREPEAT else high
            low = max(low, min(min_repeat, high))
            count = rng.randint(low, max(low, min(high, low + max_repeat)))
            out.extend(_emit(body, rng, max_repeat, min_repeat) for _ in range(count))
        elif op is _sre_c.SUBPATTERN:
            out.append(_emit(arg[-1], rng, max_repeat, min_repeat))
        elif op is _sre_c.BRANCH:
            out.append(_emit(rng.choice(arg[1]), rng, max_repeat, min_repeat))
        elif op is _sre_c.AT:
            continue
        elif op is _sre_c.CATEGORY:
            out.append(rng.choice(_CATEGORY_CHARS.get(arg, _ANY_CHARS)))
        else:
            raise ValueError(f"unsupported regex construct {op}")
    return "".join(out)


def _emit_class(items: list[tuple[Any, Any]], rng: random.Random) -> str:
    if items and items[0][0] is _sre_c.NEGATE:
        excluded = set()
        for op, arg in items[1:]:
            if op is _sre_c.LITERAL:
                excluded.add(chr(arg))
            elif op is _sre_c.RANGE:
                excluded.update(chr(c) for c in range(arg[0], arg[1] + 1))
        return rng.choice([c for c in _ANY_CHARS if c not in excluded] or ["x"])
    choices: list[str] = []
    for op, arg in items:
        if op is _sre_c.LITERAL:
            choices.append(chr(arg))
        elif op is _sre_c.RANGE:
            choices.extend(chr(c) for c in range(arg[0], arg[1] + 1))
        elif op is _sre_c.CATEGORY:
            choices.extend(_CATEGORY_CHARS.get(arg, _ANY_CHARS))
    return rng.choice(choices or ["x"])
