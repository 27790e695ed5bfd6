"""A firewall by content: does a tool or a text come from BFCL, whatever path it took?

BFCL is our test set. Checking input *paths* (``synth.environment.refuse_bfcl_inputs``) misses
the three easy ways BFCL data slips in: a ``python:bfcl_eval...`` executor, a live MCP server
that serves BFCL's environments, and a renamed copy of a BFCL file. So the guard fingerprints
the *content* of the installed ``bfcl_eval`` data, every category and file under its ``data/``
folder (answers excluded, which hold no docs or questions):

- **function docs** (the ``function`` lists of every entry, and the multi-turn docs under
  ``data/multi_turn_func_doc/``): a tool hits when its normalized name equals a BFCL function's
  and their docs are somewhat alike, or, under any name, when their docs are nearly the same.
  A doc is the description plus every parameter's name and description, cut into word
  3-grams; likeness is the exact Jaccard index of those sets.
- **questions** (every user message of every entry, multi-turn turns and memory prerequisite
  conversations included): a text hits when it shares enough word 8-grams (numbers masked)
  with one question: at least half of the question's, or half of its own, and at least two.

Jaccard is computed exactly through an inverted index (shingle hash → documents) rather than
estimated with MinHash LSH: the data is small (some ten thousand docs), exact scores have no
false negatives from banding, and the thresholds below then mean what they say.

Hashes are 64-bit BLAKE2b (Python's ``hash`` is salted per process), so the fingerprints can
be cached on disk, keyed by the ``bfcl-eval`` version, the data files' sizes and this module's
source; a warm load takes a fraction of a second, a cold build a few seconds.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import pickle
import re
import tempfile
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tooldojo.cache_dir import cache_path
from tooldojo.errors import ToolDojoError

log = logging.getLogger(__name__)

DOC_SHINGLE = 3
QUESTION_SHINGLE = 8
SAME_NAME_DOC_JACCARD = 0.3
"""Same normalized name: docs this alike are a copy (renamed parameters, trimmed description)."""
RENAMED_DOC_JACCARD = 0.45
"""Different name: docs this alike are a renamed copy. Chosen on a seeded sample of 600 BFCL
docs (the tests check another): a renamed copy scores 1.0; renamed with one parameter dropped,
538 of 550 reach 0.45; renamed with the description's last sentence cut, 89 of 101. The
example specs' 21 JSON tools score at most 0.23 against any BFCL doc."""
QUESTION_CONTAINMENT = 0.5
QUESTION_MIN_SHARED = 2
SHORT_QUESTION_MIN_TOKENS = 6
"""Questions shorter than one 8-gram are matched whole, but only from this many tokens: "What
is my name?" is no fingerprint of anything."""

GuardMode = Literal["refuse", "warn"]
GuardKind = Literal["tool_source", "tool_name", "tool_doc", "question"]

# Multi-turn docs open with their class's blurb ("This tool belongs to the Math API, which
# provides ... Tool description: Add two numbers."); the method docstrings a live server
# serves do not, so the blurb is left out of the fingerprint.
_MULTI_TURN_BLURB = re.compile(r"^This tool belongs to .*?Tool description:\s*", re.S)
# CJK scripts have no spaces: each character is a token there, a word elsewhere.
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W_]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class GuardHit:
    """Why a tool or text was recognised as BFCL's: which check, which BFCL item, the evidence."""

    kind: GuardKind
    bfcl_id: str
    detail: str
    subject: str = ""
    """What was checked: the tool's name, or the training row's id."""

    def __str__(self) -> str:
        return f"BFCL {self.kind} match with {self.bfcl_id}: {self.detail}"

    def to_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "bfcl_id": self.bfcl_id,
            "detail": self.detail,
            "subject": self.subject,
        }


def normalize_name(name: str) -> str:
    """``math.factorial``, ``math_factorial`` and ``MathFactorial`` all become ``mathfactorial``."""
    return re.sub(r"[^0-9a-z]", "", unicodedata.normalize("NFKC", name).casefold())


def tokens(text: str) -> list[str]:
    """Case-folded word tokens (camelCase and snake_case split), CJK characters one by one."""
    text = _CAMEL.sub(" ", unicodedata.normalize("NFKC", text))
    return _TOKEN.findall(text.casefold())


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def shingles(words: list[str], size: int) -> set[int]:
    """Hashed word ``size``-grams; a text shorter than one shingle is one shingle of itself."""
    if not words:
        return set()
    if len(words) < size:
        return {stable_hash(" ".join(words))}
    return {stable_hash(" ".join(words[i : i + size])) for i in range(len(words) - size + 1)}


def doc_text(description: str, properties: dict[str, Any] | None) -> str:
    """The text a tool's fingerprint is cut from: description, then each parameter's doc."""
    parts = [_MULTI_TURN_BLURB.sub("", description or "")]
    for name, schema in sorted((properties or {}).items()):
        parts.append(name)
        if isinstance(schema, dict):
            parts.append(str(schema.get("description", "")))
    return " ".join(parts)


def doc_shingles(description: str, properties: dict[str, Any] | None) -> set[int]:
    return shingles(tokens(doc_text(description, properties)), DOC_SHINGLE)


def question_shingles(text: str) -> set[int]:
    # Numbers are masked: a copy with other values ("12 units" for "10 units") is still a copy.
    words = ["#" if word.isdigit() else word for word in tokens(text)]
    if len(words) < QUESTION_SHINGLE and len(words) < SHORT_QUESTION_MIN_TOKENS:
        return set()
    return shingles(words, QUESTION_SHINGLE)


@dataclass
class _Index:
    """Items (BFCL ids with their shingle counts) and shingle hash → item numbers."""

    ids: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    postings: dict[int, list[int]] = field(default_factory=dict)

    def add(self, bfcl_id: str, fingerprint: set[int]) -> int:
        number = len(self.ids)
        self.ids.append(bfcl_id)
        self.sizes.append(len(fingerprint))
        for value in fingerprint:
            self.postings.setdefault(value, []).append(number)
        return number

    def shared(self, fingerprint: set[int]) -> Counter[int]:
        """How many shingles each indexed item shares with ``fingerprint``."""
        counts: Counter[int] = Counter()
        for value in fingerprint:
            counts.update(self.postings.get(value, ()))
        return counts


class BfclGuard:
    """Fingerprints of BFCL's function docs and questions, and the checks against them."""

    def __init__(self, version: str | None) -> None:
        self.version = version
        """The ``bfcl-eval`` version fingerprinted; ``None``: not installed, nothing to check."""
        self._docs = _Index()
        self._names: dict[str, list[int]] = {}
        self._questions = _Index()
        self._seen_docs: set[tuple[str, frozenset[int]]] = set()
        self._seen_questions: set[frozenset[int]] = set()

    def __getstate__(self) -> dict[str, Any]:
        # The duplicate filters only matter while building; the cache need not carry them.
        return {**self.__dict__, "_seen_docs": set(), "_seen_questions": set()}

    # ----- building ---------------------------------------------------------------------
    def add_function(self, bfcl_id: str, function: dict[str, Any]) -> None:
        """Fingerprint one BFCL function doc (duplicates across entries are kept once)."""
        name = str(function.get("name", ""))
        parameters = function.get("parameters") or {}
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        fingerprint = doc_shingles(str(function.get("description", "")), properties)
        key = (normalize_name(name), frozenset(fingerprint))
        if key in self._seen_docs:
            return
        self._seen_docs.add(key)
        number = self._docs.add(f"{bfcl_id}:{name}", fingerprint)
        if key[0]:
            self._names.setdefault(key[0], []).append(number)

    def add_question(self, bfcl_id: str, text: str) -> None:
        fingerprint = question_shingles(text)
        if not fingerprint or frozenset(fingerprint) in self._seen_questions:
            return
        self._seen_questions.add(frozenset(fingerprint))
        self._questions.add(bfcl_id, fingerprint)

    @property
    def size(self) -> tuple[int, int]:
        """(function docs, questions) fingerprinted."""
        return len(self._docs.ids), len(self._questions.ids)

    # ----- checks -----------------------------------------------------------------------
    def tool_hit(self, tool: Any) -> GuardHit | None:
        """A BFCL function this tool copies (by source, name and doc, or doc alone), if any.

        ``tool`` is a :class:`tooldojo.model.Tool` (or anything with ``name``,
        ``description``, ``parameters`` and optionally ``source`` / ``original_name``).
        """
        source = str(getattr(tool, "source", "") or "")
        # "bfcl:FILE" only names the doc *format* of a file; a bfcl_eval module is BFCL's own.
        if "bfcl_eval" in source:
            detail = f"tool {tool.name!r} comes from {source}"
            return GuardHit("tool_source", source, detail, tool.name)
        parameters = getattr(tool, "parameters", None) or {}
        fingerprint = doc_shingles(
            str(getattr(tool, "description", "") or ""), parameters.get("properties")
        )
        if not fingerprint:
            return None
        names = {normalize_name(tool.name)}
        if getattr(tool, "original_name", None):
            names.add(normalize_name(tool.original_name))
        best: tuple[float, int] | None = None
        for number, count in self._docs.shared(fingerprint).items():
            jaccard = count / (len(fingerprint) + self._docs.sizes[number] - count)
            if best is None or jaccard > best[0]:
                best = (jaccard, number)
            same_name = any(number in self._names.get(name, ()) for name in names if name)
            if same_name and jaccard >= SAME_NAME_DOC_JACCARD:
                return GuardHit(
                    "tool_name",
                    self._docs.ids[number],
                    f"tool {tool.name!r} has a BFCL function's name and a doc "
                    f"{jaccard:.0%} alike (3-gram Jaccard)",
                    tool.name,
                )
        if best is not None and best[0] >= RENAMED_DOC_JACCARD:
            return GuardHit(
                "tool_doc",
                self._docs.ids[best[1]],
                f"tool {tool.name!r} has a doc {best[0]:.0%} alike a BFCL function's "
                "(3-gram Jaccard)",
                tool.name,
            )
        return None

    def doc_similarity(self, tool: Any) -> tuple[float, str | None]:
        """The highest doc Jaccard of ``tool`` with any BFCL function, and that function's id."""
        parameters = getattr(tool, "parameters", None) or {}
        fingerprint = doc_shingles(
            str(getattr(tool, "description", "") or ""), parameters.get("properties")
        )
        best: tuple[float, str | None] = (0.0, None)
        for number, count in self._docs.shared(fingerprint).items():
            jaccard = count / (len(fingerprint) + self._docs.sizes[number] - count)
            if jaccard > best[0]:
                best = (jaccard, self._docs.ids[number])
        return best

    def text_hit(self, text: str) -> GuardHit | None:
        """The BFCL question ``text`` copies (whole, inside a longer text, or half of it)."""
        fingerprint = question_shingles(text)
        if not fingerprint:
            return None
        for number, count in self._questions.shared(fingerprint).most_common(5):
            size = self._questions.sizes[number]
            if count < min(QUESTION_MIN_SHARED, size, len(fingerprint)):
                continue
            if count / size >= QUESTION_CONTAINMENT or count / len(fingerprint) >= (
                QUESTION_CONTAINMENT
            ):
                return GuardHit(
                    "question",
                    self._questions.ids[number],
                    f"text shares {count} of the question's {size} word 8-grams: "
                    f"{_preview(text)!r}",
                )
        return None

    # ----- loading ----------------------------------------------------------------------
    @classmethod
    def load(cls) -> BfclGuard:
        """The guard over the installed ``bfcl-eval`` data (built once, cached on disk)."""
        return _load_cached()

    @classmethod
    def build(cls, data_root: Path, version: str | None) -> BfclGuard:
        """Fingerprint every doc and question under ``data_root`` (BFCL's ``data/`` folder)."""
        guard = cls(version)
        for path in sorted(data_root.rglob("*.json")):
            relative = path.relative_to(data_root)
            if "possible_answer" in relative.parts or "sanity_check" in str(relative):
                continue
            for number, record in enumerate(_records(path)):
                guard._add_record(str(relative.with_suffix("")), number, record)
        return guard

    def _add_record(self, file_id: str, number: int, record: Any) -> None:
        if not isinstance(record, dict):
            return
        entry_id = str(record.get("id") or f"{file_id}#{number}")
        if "name" in record and "description" in record:  # a multi_turn_func_doc line
            self.add_function(f"{file_id}#{number}", record)
        for function in _as_list(record.get("function")):
            if isinstance(function, dict):
                self.add_function(entry_id, function)
        for turn_number, turn in enumerate(_as_list(record.get("question"))):
            for message in _as_list(turn):
                if isinstance(message, dict) and message.get("role") == "user":
                    self.add_question(f"{entry_id}#{turn_number}", str(message.get("content")))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _preview(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _records(path: Path) -> Iterator[Any]:
    """BFCL's ``.json`` files are JSON Lines, except a few plain JSON documents."""
    text = path.read_text(encoding="utf-8")
    try:
        yield from (json.loads(line) for line in text.splitlines() if line.strip())
    except json.JSONDecodeError:
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            log.warning("bfcl guard: %s is neither JSON Lines nor JSON; skipped", path)
            return
        yield from document if isinstance(document, list) else [document]


def bfcl_data_dir() -> tuple[Path | None, str | None]:
    """BFCL's ``data/`` folder and the ``bfcl-eval`` version, found without importing it."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    try:
        version = importlib.metadata.version("bfcl-eval")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return (root if root.is_dir() else None), version


def _cache_dir() -> Path:
    """tooldojo's cache folder (:func:`tooldojo.cache_dir.cache_path`): ``$TOOLDOJO_CACHE``,
    not the ``$TOOLDOJO_CACHE_DIR`` this module alone used to read."""
    return cache_path()


def _data_digest(data_root: Path) -> str:
    """Cheap identity of the data files (names and sizes), so an edited install rebuilds."""
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(data_root.rglob("*.json")):
        digest.update(f"{path.relative_to(data_root)}:{path.stat().st_size};".encode())
    return digest.hexdigest()


def _recipe_digest() -> str:
    """This module's source: any change to the fingerprint recipe invalidates old caches."""
    return hashlib.blake2b(Path(__file__).read_bytes(), digest_size=4).hexdigest()


_lock = threading.Lock()


@functools.cache
def _load_cached() -> BfclGuard:
    with _lock:
        data_root, version = bfcl_data_dir()
        if data_root is None:
            log.warning("bfcl-eval is not installed: the BFCL content guard has nothing to check")
            return BfclGuard(None)
        key = f"bfcl_guard-{version}-{_data_digest(data_root)}-{_recipe_digest()}.pickle"
        cache = _cache_dir() / key
        try:
            with cache.open("rb") as handle:
                guard = pickle.load(handle)
            if isinstance(guard, BfclGuard):
                return guard
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            pass
        guard = BfclGuard.build(data_root, version)
        _write_atomically(cache, guard)
        return guard


def _write_atomically(path: Path, guard: BfclGuard) -> None:
    """A cache file is whole or absent: written aside, then renamed (a failure only warns)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as handle:
            pickle.dump(guard, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(handle.name, path)
    except OSError as error:
        log.warning("bfcl guard: could not cache fingerprints at %s (%s)", path, error)


def check_tools(tools: Iterable[Any], guard: BfclGuard | None = None) -> list[GuardHit]:
    """Every BFCL hit among ``tools`` (one per tool at most)."""
    guard = guard or BfclGuard.load()
    return [hit for tool in tools if (hit := guard.tool_hit(tool)) is not None]


# ----- enforcement: what the stages call ---------------------------------------------------


class BfclRefused(ToolDojoError):
    """BFCL content reached an input where ``bfcl_guard: refuse`` (the default) forbids it."""

    def __init__(self, where: str, hits: list[GuardHit]) -> None:
        self.hits = hits
        listed = "; ".join(str(hit) for hit in hits[:3])
        more = f" (and {len(hits) - 3} more)" if len(hits) > 3 else ""
        super().__init__(
            f"{where}: BFCL is the test set and may not feed synthesis or training: "
            f"{listed}{more} (set `bfcl_guard: warn` in tooldojo.yaml to only warn)"
        )


def guard_mode(config_path: str | Path | None = "tooldojo.yaml") -> GuardMode:
    """``bfcl_guard:`` of ``tooldojo.yaml`` (``refuse`` when the file or the key is absent)."""
    if config_path is None or not Path(config_path).is_file():
        return "refuse"
    import yaml

    try:
        data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return "refuse"  # load_config reports the syntax error with its line
    mode = data.get("bfcl_guard", "refuse") if isinstance(data, dict) else "refuse"
    if mode not in ("refuse", "warn"):
        raise ToolDojoError(f"{config_path} at bfcl_guard: must be refuse or warn, not {mode!r}")
    return mode


def enforce_tools(tools: Iterable[Any], mode: GuardMode, where: str) -> list[GuardHit]:
    """Check tools at load time: raise :class:`BfclRefused` on a hit, or warn and list them."""
    hits = check_tools(tools)
    if hits and mode == "refuse":
        raise BfclRefused(where, hits)
    for hit in hits:
        log.warning("%s: %s", where, hit)
    return hits


def message_hits(messages: Iterable[Any]) -> list[GuardHit]:
    """BFCL questions among the user messages (``Message`` objects or OpenAI dicts)."""
    guard = BfclGuard.load()
    hits = []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else message.role
        content = message.get("content") if isinstance(message, dict) else message.content
        if role == "user" and isinstance(content, str):
            hit = guard.text_hit(content)
            if hit is not None:
                hits.append(hit)
    return hits


def check_training_rows(rows: Iterable[Any]) -> list[GuardHit]:
    """BFCL content in training samples: their tools (by doc) and user messages (by question).

    ``rows`` are :class:`~tooldojo.model.Trajectory` objects or dicts with ``messages`` and
    ``tools`` (OpenAI or tooldojo form, or a JSON string of them, as TRL rows store tools).
    Each hit's ``detail`` starts with the row's id, so a caller can drop exactly those rows.
    """
    guard = BfclGuard.load()
    hits: list[GuardHit] = []
    for number, row in enumerate(rows):
        data = row if isinstance(row, dict) else row.model_dump()
        row_id = str(data.get("id") or f"row {number}")
        tools = data.get("tools") or []
        if isinstance(tools, str):
            tools = json.loads(tools)
        found = [guard.tool_hit(_ToolView.of(tool)) for tool in tools]
        found += message_hits(data.get("messages") or [])
        hits += [
            GuardHit(hit.kind, hit.bfcl_id, f"{row_id}: {hit.detail}", row_id)
            for hit in found
            if hit
        ]
    return hits


def row_id_of(hit: GuardHit) -> str:
    """The training row a :func:`check_training_rows` hit is about."""
    return hit.subject or hit.detail.split(": ", 1)[0]


@dataclass(frozen=True)
class _ToolView:
    """The fields the guard reads, from a tool in OpenAI or tooldojo dict form."""

    name: str
    description: str
    parameters: dict[str, Any]
    source: str = ""
    original_name: str | None = None

    @classmethod
    def of(cls, tool: Any) -> Any:
        if not isinstance(tool, dict):
            return tool
        function = tool.get("function", tool)
        return cls(
            name=str(function.get("name", "")),
            description=str(function.get("description") or ""),
            parameters=function.get("parameters") or {},
            source=str(tool.get("source") or ""),
            original_name=tool.get("original_name"),
        )
