"""A content-addressed store of BFCL answers, so a model is never asked the same entry twice.

The starting model's full BFCL pass (1,240 entries x 2 modes, about an hour here) does not
depend on the loop at all; every ``make reproduce`` used to pay it again. Its answers — and any
other model's — are kept under ``$TOOLDOJO_CACHE/bfcl/`` (default ``~/.cache/tooldojo/bfcl/``;
``$TOOLDOJO_BFCL_CACHE`` names another folder for this store alone), keyed by everything that
decides an answer:

* the model: the content hash of the file or folder actually loaded (the GGUF, embedded or
  exported; a checkpoint's weights) with the backend settings that change answers (llama.cpp's
  ``weights`` conversion, ``n_ctx``, the codec) and the backend library's version; for an
  OpenAI-compatible endpoint, which holds no file, its spec (model name, URLs, request fields);
* the mode and tool format, the sampling parameters (greedy, ``max_tokens``), the multi-turn
  step limit and the ``bfcl-eval`` version (its system prompt, decoders and data);
* the source of the tooldojo code that turns an entry into the model's prompt and its output
  into an answer (:data:`PROMPT_SOURCES`, plus the backend's own module): an edit there starts
  a new store rather than mixing two prompt formats;
* per entry: its id and the hash of what the model is shown (question, function docs).

Settings that only schedule work — ``concurrency``, llama.cpp's ``pool_size``, ``max_batch`` and
threads — are not in the key. They can still flip a near-tied token (batched matrix products
sum in another order: 38 of 40 answers identical in ``bench/bfcl_batched_agreement.py``), so a
stored answer is as good a draw as a fresh one, not a bit-exact replay of it.

What is stored is the model's *raw answer* (with its tokens and latency), never the verdict:
a reused answer is scored again by BFCL's checkers, exactly as a fresh one. Answers that
failed at inference time (a timeout, a prompt past the context) are not stored; they may not
fail again. A model without an identity (the oracle, a scripted model, fault injection) is
never cached.

One JSON Lines file per key (``<key>.jsonl``) with the whole key beside it (``<key>.key.json``):
appended one complete, fsynced line at a time under a file lock, after re-reading what other
processes appended meanwhile, so a kill leaves at most a cut-off last line (ignored, then
dropped by the next append) and no entry is stored twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tooldojo.cache_dir import cache_path
from tooldojo.hashing import content_hash
from tooldojo.jsonl import drop_partial_tail

FORMAT = 1
"""The stored line's layout; bump when its fields change."""

_PACKAGE = Path(__file__).resolve().parents[1]  # src/tooldojo

PROMPT_SOURCES = (
    "eval/bfcl_modes.py",  # BFCL's prompts, tools and raw FC results
    "eval/bfcl_multi_turn.py",  # the multi-turn loop: what goes back to the model
    "mcp/bfcl_pack.py",  # BFCL's environments behind MCP: the tool results it sees
    "llm/codecs.py",  # how tools are written into a local model's prompt, calls read back
    "llm/_shared.py",  # render_chat and the constrained-output schemas
)
BACKEND_SOURCES = {
    "llamacpp": ("llm/llamacpp.py", "llm/llamacpp_engine.py"),
    "transformers": ("llm/transformers_backend.py",),
    "openai": ("llm/openai_compat.py",),
}
BACKEND_DISTRIBUTIONS = {
    "llamacpp": ("llama-cpp-python",),
    "transformers": ("transformers", "torch"),
    "openai": ("openai",),
}


def cache_dir() -> Path:
    """``$TOOLDOJO_BFCL_CACHE``, else ``$TOOLDOJO_CACHE/bfcl``, else ``~/.cache/tooldojo/bfcl``."""
    own = os.environ.get("TOOLDOJO_BFCL_CACHE")
    if own:
        return Path(own)
    return cache_path("bfcl")


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _sources_digest(names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in names:
        path = _PACKAGE / name
        digest.update(f"{name}\0".encode())
        digest.update(path.read_bytes() if path.is_file() else b"(absent)")
    return digest.hexdigest()


def backend_identity(config: Any) -> dict[str, Any] | None:
    """What a backend's answers depend on (a :class:`~tooldojo.llm.config.BackendConfig`);
    ``None`` when they cannot be pinned down (fault injection, a model that is not a local
    file or folder)."""
    if config.faults is not None:
        return None
    kind = config.kind
    identity: dict[str, Any] = {"kind": kind}
    if kind == "openai":
        identity |= {
            "model": config.model,
            "base_urls": list(config.base_urls),
            "constrain_with": config.constrain_with,
            "extra_body": config.extra_body,
        }
    else:
        if config.model:
            path = Path(config.model).expanduser()
        else:
            from tooldojo.llm.embedded import embedded_gguf_path

            path = embedded_gguf_path()
        if not path.exists():
            return None  # e.g. a Hugging Face hub name: no file here to pin its weights down
        identity |= {"sha256": content_hash(path), "codec": config.codec, "n_ctx": config.n_ctx}
        if kind == "llamacpp":
            from tooldojo.llm.llamacpp import resolved_weights, system_info

            identity["weights"] = resolved_weights(config.weights, config.gpu_layers)
            identity["llama_cpp_system"] = system_info()  # AMX kernels or not: other rounding
            identity["flash_attn"], identity["kv_cache"] = config.flash_attn, config.kv_cache
    identity["versions"] = {name: _version(name) for name in BACKEND_DISTRIBUTIONS[kind]}
    identity["sources"] = _sources_digest(BACKEND_SOURCES[kind])
    return identity


def answer_key(
    identity: dict[str, Any],
    *,
    mode: str,
    tool_format: str,
    sampling: dict[str, Any],
    max_steps: int | None,
) -> dict[str, Any]:
    """The whole key of one store: the model, the evaluation's settings and the code."""
    return {
        "format": FORMAT,
        "model": identity,
        "mode": mode,
        "tool_format": tool_format,
        "sampling": sampling,
        "max_steps": max_steps,
        "bfcl_eval": _version("bfcl-eval"),
        "prompt_sources": _sources_digest(PROMPT_SOURCES),
    }


def entry_digest(inference: dict[str, Any]) -> str:
    """Hash of what the model is shown for an entry (its question turns and function docs)."""
    text = json.dumps(inference, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class AnswerCache:
    """The stored answers under one key; :meth:`get` and :meth:`put` per entry."""

    key: dict[str, Any]
    folder: Path = field(default_factory=cache_dir)

    def __post_init__(self) -> None:
        text = json.dumps(self.key, sort_keys=True, default=str, separators=(",", ":"))
        self.digest = hashlib.sha256(text.encode()).hexdigest()
        self.name = self.digest[:24]
        self.path = self.folder / f"{self.name}.jsonl"
        self._rows: dict[str, dict[str, Any]] = {}
        self._offset = 0
        self._read_new()

    def _read_new(self) -> None:
        """Take in the complete lines appended since the last read (by any process)."""
        if not self.path.is_file():
            return
        if self.path.stat().st_size < self._offset:  # replaced or cut by hand: read it again
            self._rows, self._offset = {}, 0
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # a cut-off last line: not data (dropped by the next append)
                self._offset += len(line)
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a damaged line can only make the cache miss
                if isinstance(row, dict) and row.get("key") == self.digest:
                    self._rows.setdefault(str(row.get("id")), row)

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, entry_id: str, inference: dict[str, Any]) -> dict[str, Any] | None:
        """The stored answer to this entry as the model was shown it, or ``None``."""
        row = self._rows.get(entry_id)
        if row is None or row.get("entry") != entry_digest(inference):
            return None
        return row

    def put(self, entry_id: str, inference: dict[str, Any], answer: dict[str, Any]) -> bool:
        """Store one answer (``raw``, tokens, latency, ``origin``); False when already there."""
        from filelock import FileLock

        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / f"{self.name}.key.json"
        with FileLock(str(self.folder / f"{self.name}.lock")):
            if not key_file.is_file():
                tmp = key_file.with_name(f".{key_file.name}.tmp-{os.getpid()}")
                tmp.write_text(json.dumps(self.key, indent=1, default=str) + "\n")
                os.replace(tmp, key_file)
            self._read_new()
            if entry_id in self._rows:
                return False
            row = {"key": self.digest, "id": entry_id, "entry": entry_digest(inference), **answer}
            drop_partial_tail(self.path)  # safe under the lock: only a killed writer leaves one
            line = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
            with self.path.open("ab") as handle:
                handle.write(line.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
                self._offset = handle.tell()
            self._rows[entry_id] = row
            return True
