"""Which model is evaluated, and in which BFCL mode (always recorded beside its score).

``--model`` takes a backend spec (``llamacpp``/``embedded``, ``llamacpp:/x.gguf``,
``openai:MODEL@URL``, ``transformers:/dir``), a checkpoint trained by tooldojo (a directory
with ``tooldojo_train.json``, or the ``model.gguf`` exported beside it), or ``oracle`` (BFCL's
ground truth fed back as answers: a check of the harness, not a model).

Default modes, the way BFCL's own handlers treat models:

* an OpenAI-compatible endpoint: ``fc`` through the API's native ``tools``;
* a plain local model (the embedded SmolLM2): ``prompting`` with BFCL's system prompt;
* a tooldojo checkpoint: ``fc`` in the tool format it was trained with (its codec, rendered by
  :func:`tooldojo.llm._shared.render_chat` exactly as at training time), like BFCL's
  model-specific handlers that use an open model's own tool-call template.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooldojo.errors import ToolDojoError
from tooldojo.eval.bfcl_modes import MODES, Mode
from tooldojo.llm.base import ChatModel
from tooldojo.llm.scripted import ScriptedChatModel

TRAIN_INFO_FILE = "tooldojo_train.json"  # written by tooldojo.train beside every checkpoint


@dataclass
class EvalModel:
    """A model plus the mode it is evaluated in and how tools reach it."""

    model: ChatModel
    mode: Mode
    tool_format: str
    """``bfcl-python`` (prompting), ``openai-tools`` (an API's native tools), ``codec:NAME``
    (a local model's text tool format) or ``oracle``."""
    name: str
    spec: str = ""
    per_entry: Callable[[Any], ChatModel] | None = None
    """For the oracle only: a model bound to the BFCL entry it answers."""
    identity: dict[str, Any] | None = None
    """What its answers depend on (:func:`tooldojo.eval.answer_cache.backend_identity`), the
    answer cache's model key; ``None``: never cached (the oracle, scripted models)."""

    def for_entry(self, entry: Any) -> ChatModel:
        return self.per_entry(entry) if self.per_entry is not None else self.model

    @property
    def description(self) -> str:
        if self.mode == "prompting":
            return "prompting (BFCL default system prompt, Python-call output)"
        if self.tool_format == "openai-tools":
            return "function calling (native tools of the OpenAI-compatible API)"
        if self.tool_format.startswith("codec:"):
            return f"function calling (the model's own tool format: {self.tool_format})"
        return f"function calling ({self.tool_format})"


def _train_info(path: Path) -> tuple[dict[str, object], Path] | None:
    """The training record of a checkpoint directory or of a ``model.gguf`` exported beside one."""
    candidates = [path / TRAIN_INFO_FILE] if path.is_dir() else []
    if path.is_file() and path.suffix == ".gguf":
        candidates += [path.parent / "checkpoint" / TRAIN_INFO_FILE, path.parent / TRAIN_INFO_FILE]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text(encoding="utf-8")), candidate
            except ValueError as error:
                raise ToolDojoError(f"{candidate}: not valid JSON ({error})") from None
    return None


def _checkpoint_model(
    path: Path, info: dict[str, object], n_ctx: int
) -> tuple[ChatModel, str, dict[str, Any] | None]:
    """Load a tooldojo checkpoint with its training codec: its GGUF if exported, else weights."""
    from tooldojo.eval.answer_cache import backend_identity
    from tooldojo.llm.config import BackendConfig, load_model

    codec = str(info.get("codec") or "hermes")
    if path.is_dir():
        gguf = next(
            (p for p in (path.parent / "model.gguf", path / "model.gguf") if p.is_file()), None
        )
        if gguf is None:
            config = BackendConfig(kind="transformers", model=str(path), codec=codec)
            return load_model(config), codec, backend_identity(config)
        path = gguf
    config = BackendConfig(kind="llamacpp", model=str(path), codec=codec, n_ctx=n_ctx)
    return load_model(config), codec, backend_identity(config)


def resolve_model(
    spec: str, mode: str | None = None, *, n_ctx: int = 8192, config: Any = None
) -> EvalModel:
    """Build the model named by ``spec`` and decide its mode (``mode`` overrides the default).

    With ``config`` (a :class:`~tooldojo.llm.config.LLMConfig` from ``tooldojo.yaml``), ``spec``
    may name one of its ``backends``: pool size, threads, URLs and server-specific request
    fields then come from the file. ``n_ctx`` applies to local backends that do not set it.
    """
    if mode is not None and mode not in MODES:
        raise ToolDojoError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    if spec == "oracle":
        from tooldojo.eval.oracle import bfcl_oracle

        factory = bfcl_oracle()
        chosen_mode: Mode = mode or "fc"  # type: ignore[assignment]
        return EvalModel(
            ScriptedChatModel([], name="bfcl-oracle"),
            chosen_mode,
            "oracle",
            "bfcl-oracle",
            spec,
            per_entry=factory,
        )
    path = Path(spec).expanduser()
    trained = _train_info(path) if path.exists() else None
    if trained is not None:
        info, _ = trained
        model, codec, identity = _checkpoint_model(path, info, n_ctx)
        chosen: Mode = mode or "fc"  # type: ignore[assignment]
        tool_format = f"codec:{codec}" if chosen == "fc" else "bfcl-python"
        return EvalModel(model, chosen, tool_format, model.name, spec, identity=identity)
    from tooldojo.eval.answer_cache import backend_identity
    from tooldojo.llm.config import load_model, parse_spec

    if path.is_file() and path.suffix == ".gguf":
        spec = f"llamacpp:{path}"
    backend = config.backend(spec) if config is not None else parse_spec(spec)
    if backend.kind in ("llamacpp", "transformers") and "n_ctx" not in backend.model_fields_set:
        backend = backend.model_copy(update={"n_ctx": n_ctx})
    model = load_model(backend)
    if backend.kind == "openai":
        chosen = mode or "fc"  # type: ignore[assignment]
        tool_format = "openai-tools" if chosen == "fc" else "bfcl-python"
    else:
        chosen = mode or "prompting"  # type: ignore[assignment]
        tool_format = f"codec:{backend.codec}" if chosen == "fc" else "bfcl-python"
    identity = backend_identity(backend)
    return EvalModel(model, chosen, tool_format, model.name, spec, identity=identity)
