"""Which model answers for which role: backend configs, compact spec strings and ``tooldojo.yaml``.

A backend is written either as a mapping (:class:`BackendConfig`) or as a spec string, handy on
command lines:

``llamacpp`` / ``embedded``            the embedded SmolLM2-135M-Instruct
``llamacpp:/path/model.gguf``           any GGUF file
``openai:MODEL@URL[,URL...]``           an OpenAI-compatible endpoint (several URLs: load-balanced)
``transformers:/path/checkpoint``       a Hugging Face checkpoint folder
``transformers:/path/model.gguf``       a GGUF file loaded by transformers

``tooldojo.yaml`` maps the roles (``user``, ``assistant``, ``server``, ``judge``) to backends::

    backends:
      local: llamacpp
      vllm: {kind: openai, model: Qwen/Qwen3-8B, base_urls: [http://10.0.0.5:8000/v1]}
    roles:
      assistant: local
      user: {backend: vllm, sampling: {temperature: 0.8}}
      server: vllm
      judge: openai:gpt-4.1@https://api.openai.com/v1

Roles that share a backend name share one model instance (one pool, one connection limit).
Configuration mistakes raise :class:`~tooldojo.errors.ToolDojoError` at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tooldojo.errors import ToolDojoError
from tooldojo.llm.base import ChatModel, SamplingParams
from tooldojo.llm.codecs import CODEC_NAMES, DEFAULT_CODEC
from tooldojo.llm.faults import FaultConfig, with_faults

BackendKind = Literal["llamacpp", "openai", "transformers"]
AgentRole = Literal["user", "assistant", "server", "judge"]
ROLES: tuple[str, ...] = AgentRole.__args__  # type: ignore[attr-defined]
DEFAULT_SPEC = "llamacpp"


class BackendConfig(BaseModel):
    """One model backend. Fields that do not apply to ``kind`` are ignored."""

    model_config = ConfigDict(extra="forbid")

    kind: BackendKind
    model: str | None = None
    """llamacpp: GGUF path (``None``: the embedded model); openai: model name;
    transformers: checkpoint folder or GGUF file."""
    base_urls: list[str] = Field(default_factory=list)
    """openai: one or more base URLs (``http://host:port/v1``), load-balanced."""
    api_key_env: str | None = None
    """openai: name of the environment variable holding the API key (the key is never logged)."""
    codec: str = DEFAULT_CODEC
    """How tools are written into prompts and calls read from text (non-native backends)."""
    pool_size: int = Field(default=2, ge=1)
    """llamacpp: batching engines (llama.cpp contexts sharing the weights); requests go to the
    one whose cache shares the longest prompt prefix. Two engines of one thread each beat one
    engine of two threads on a busy 2-core machine (bench/embedded_throughput.py)."""
    n_threads: int = Field(default=1, ge=1)
    """llamacpp / transformers: CPU threads per instance (engine)."""
    n_threads_batch: int | None = Field(default=None, ge=1)
    """llamacpp: threads for passes that read prompt tokens (``None``: ``n_threads``)."""
    max_batch: int = Field(default=8, ge=1)
    """llamacpp: sequences one engine decodes together in each forward pass (each engine keeps
    ``max_batch + warm_streams`` KV streams of ``n_ctx`` cells: 23 KB per cell for SmolLM2-135M, so
    about 1.9 GB per engine at the defaults)."""
    warm_streams: int = Field(default=2, ge=0)
    """llamacpp: idle KV streams per engine beside the ``max_batch`` busy ones, each keeping a
    finished request's tokens so the next prompt that starts with them (the next turn of an
    episode, another try at the same message) reuses their state. Each costs ``n_ctx`` cells."""
    weights: Literal["auto", "file", "f16", "q8_0", "bf16"] = "f16"
    """llamacpp: ``f16`` (default) converts a quantized GGUF's weights to 16-bit floats once
    (cached): llama.cpp has batched matrix kernels for them, not for SmolLM2's 4-bit blocks, so
    prompts and batched generation run about twice as fast as from the file on CPUs without AMX,
    and greedy answers come out alike batched or alone; ``file`` loads the file as it is (faster
    for a single stream); ``q8_0`` is in between without AMX; ``auto`` is ``q8_0`` where
    llama.cpp has AMX_INT8 kernels (prompts and batched generation about 2 x faster than f16
    there, for synthesis: a batch rounds a little differently) and ``f16`` elsewhere (what the
    roles run unless their backend sets weights: :func:`role_backend`); ``bf16``
    reads prompts about 1.3 x faster than f16 on CPUs with AVX512_BF16, with coarser rounding
    (``tooldojo.llm.llamacpp.WEIGHTS``)."""
    prefix_store: bool = False
    """llamacpp: keep the KV state of long system prompts on disk for the next process
    (``tooldojo call`` turns it on: a fresh process per question)."""
    draft_tokens: int = Field(default=0, ge=0)
    """llamacpp: tokens guessed per greedy sequence and step from its own prompt and answer
    (prompt lookup) and checked in the same forward pass (4 is a good value; 0, the default,
    turns guessing off: see ``tooldojo.llm.llamacpp.DRAFT_TOKENS``)."""
    flash_attn: bool = True
    """llamacpp: flash attention (prompts 8 % and 16 batched streams 13 % faster on the 2-core
    machine of 27 Nov; batched greedy answers part from unbatched ones a little more often in
    long prose without it: docs/llm.md). Its CPU kernel slows generation at long contexts
    (2.8-4.1 x at 1,400-2,400 tokens on the AMX Xeon), so the roles run without it unless
    their backend sets it (:func:`role_backend`). ``false`` for the other trade, or a build
    whose kernels lack it."""
    kv_cache: Literal["f16", "q8_0"] = "f16"
    """llamacpp: how the KV cache stores keys and values; ``q8_0`` halves the bytes every
    generated token reads back (16 batched streams 1.45 x faster on the AMX Xeon) but llama.cpp
    reads prompts 4.4 x slower into it, and rounds coarser; needs ``flash_attn`` (docs/llm.md).
    For workloads that mostly generate; synthesis mostly reads prompts."""
    gpu_layers: int | None = Field(default=None, ge=-1)
    """llamacpp: layers whose weights and KV cache live on a GPU, for a llama.cpp built with one
    (``CMAKE_ARGS=-DGGML_CUDA=on``); -1: all of them, 0: none. ``None`` (the default) is
    llama.cpp's own default: all of them when it was built for a GPU, the CPU otherwise."""
    n_ctx: int = Field(default=8192, ge=256)
    """llamacpp / transformers: context window (8192 is what SmolLM2 was trained with)."""
    max_in_flight: int = Field(default=64, ge=1)
    max_retries: int = Field(default=4, ge=0)
    timeout_s: float = Field(default=120.0, gt=0)
    constrain_with: Literal["tool_choice", "response_format"] = "tool_choice"
    """openai: how a tool-call constraint is sent (``response_format`` for vLLM/SGLang)."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """openai: fields added to every request, for a server's own sampling options (vLLM's
    ``top_k``, llama.cpp's ``repeat_penalty``, which its server defaults to 1.1)."""
    faults: FaultConfig | None = None
    """Fault injection for soak tests (``{rate: 0.1, seed: 0}``): see :mod:`tooldojo.llm.faults`."""

    @model_validator(mode="after")
    def _check(self) -> BackendConfig:
        if self.codec not in CODEC_NAMES:
            raise ValueError(f"codec must be one of {', '.join(CODEC_NAMES)}, not {self.codec!r}")
        if self.kind == "openai" and (not self.model or not self.base_urls):
            raise ValueError("an openai backend needs 'model' and at least one of 'base_urls'")
        if self.kind == "transformers" and not self.model:
            raise ValueError("a transformers backend needs 'model' (checkpoint folder or GGUF)")
        return self


def parse_spec(spec: str) -> BackendConfig:
    """A :class:`BackendConfig` from a compact spec string (see the module docstring)."""
    kind, _, rest = spec.strip().partition(":")
    kind = {"embedded": "llamacpp"}.get(kind, kind)
    try:
        if kind == "llamacpp":
            return BackendConfig(kind="llamacpp", model=rest or None)
        if kind == "openai":
            model, at, urls = rest.rpartition("@")
            if not at or not model or not urls:
                raise ToolDojoError(f"model spec {spec!r}: write openai:MODEL@URL[,URL...]")
            return BackendConfig(kind="openai", model=model, base_urls=urls.split(","))
        if kind == "transformers":
            return BackendConfig(kind="transformers", model=rest or None)
    except ValidationError as error:
        raise ToolDojoError(f"model spec {spec!r}: {_first_error(error)}") from None
    raise ToolDojoError(
        f"model spec {spec!r}: unknown backend {kind!r}; use llamacpp[:GGUF], "
        "openai:MODEL@URL or transformers:PATH"
    )


def load_model(spec: str | BackendConfig) -> ChatModel:
    """Build the backend (wrapped in fault injection when its config asks for it)."""
    config = parse_spec(spec) if isinstance(spec, str) else spec
    return with_faults(_load_backend(config), config.faults)


def _load_backend(config: BackendConfig) -> ChatModel:
    """Heavy libraries are imported here, only for the backend asked for."""
    if config.kind == "llamacpp":
        from tooldojo.llm.llamacpp import LlamaCppChatModel

        return LlamaCppChatModel(
            config.model,
            pool_size=config.pool_size,
            n_threads=config.n_threads,
            n_threads_batch=config.n_threads_batch,
            n_ctx=config.n_ctx,
            codec=config.codec,
            max_batch=config.max_batch,
            warm_streams=config.warm_streams,
            weights=config.weights,
            prefix_store=config.prefix_store,
            draft_tokens=config.draft_tokens,
            flash_attn=config.flash_attn,
            kv_cache=config.kv_cache,
            gpu_layers=config.gpu_layers,
        )
    if config.kind == "openai":
        from tooldojo.llm.openai_compat import OpenAIChatModel

        return OpenAIChatModel(
            config.model or "",
            config.base_urls,
            api_key_env=config.api_key_env,
            max_in_flight=config.max_in_flight,
            max_retries=config.max_retries,
            timeout_s=config.timeout_s,
            constrain_with=config.constrain_with,
            extra_body=config.extra_body,
        )
    from tooldojo.llm.transformers_backend import TransformersChatModel

    return TransformersChatModel(config.model or "", codec=config.codec, n_threads=config.n_threads)


class RoleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str
    """A name from ``backends`` or a spec string."""
    sampling: SamplingParams = Field(default_factory=SamplingParams)


class LLMConfig(BaseModel):
    """The ``backends`` and ``roles`` sections of ``tooldojo.yaml``."""

    model_config = ConfigDict(extra="allow")

    backends: dict[str, BackendConfig | str] = Field(default_factory=dict)
    roles: dict[AgentRole, RoleConfig | str] = Field(default_factory=dict)

    def role(self, role: str) -> RoleConfig:
        """The role's backend and sampling; roles not listed use the embedded default."""
        entry = self.roles.get(role, DEFAULT_SPEC)  # type: ignore[call-overload]
        return RoleConfig(backend=entry) if isinstance(entry, str) else entry

    def backend(self, name_or_spec: str) -> BackendConfig:
        entry = self.backends.get(name_or_spec, name_or_spec)
        return parse_spec(entry) if isinstance(entry, str) else entry


def load_config(path: str | Path | None = "tooldojo.yaml") -> LLMConfig:
    """Read ``tooldojo.yaml`` (a missing default file means: every role on the embedded model)."""
    if path is None:
        return LLMConfig()
    path = Path(path)
    if not path.exists():
        if str(path) == "tooldojo.yaml":
            return LLMConfig()
        raise ToolDojoError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ToolDojoError(f"{path}{where}: invalid YAML") from None
    if not isinstance(data, dict):
        raise ToolDojoError(f"{path}: expected a mapping at the top level")
    try:
        config = LLMConfig.model_validate(data)
    except ValidationError as error:
        raise ToolDojoError(f"{path}: {_first_error(error)}") from None
    for role in ROLES:  # resolve now so a bad spec is a start-up error
        try:
            config.backend(config.role(role).backend)
        except ToolDojoError as error:
            raise ToolDojoError(f"{path} at roles.{role}: {error}") from None
    return config


def role_backend(config: BackendConfig) -> BackendConfig:
    """``config`` as the role-playing agents run it: for llama.cpp, flash attention off and the
    weights ``auto`` picks, each unless the config sets it.

    Why: the roles sample at a temperature, so the batch rounding that keeps f16 and flash
    attention the defaults for greedy evaluations (batched answers equal to unbatched ones) does
    not matter to them; and their contexts (a tool schema and the conversation so far, 1,000 to
    3,000 tokens) are where llama.cpp's CPU flash-attention kernel, which walks the cache one
    position at a time, is slowest: generation 2.8-4.1 x slower at 1,400-2,400 tokens, and
    ``tooldojo synth --n 40`` on examples/specs made 3.3 trajectories a minute with it and 6.0
    without (q8_0, the AMX Xeon of 28 Nov; docs/llm.md). An 8-bit KV cache needs it, so keeps it.
    """
    if config.kind != "llamacpp":
        return config
    update: dict[str, object] = {}
    if "flash_attn" not in config.model_fields_set and config.kv_cache == "f16":
        update["flash_attn"] = False
    if "weights" not in config.model_fields_set:
        update["weights"] = "auto"
    return config.model_copy(update=update) if update else config


def load_role_models(config: LLMConfig, roles: tuple[str, ...] = ROLES) -> dict[str, ChatModel]:
    """One model per role (:func:`role_backend`); roles naming the same backend share one
    instance."""
    built: dict[str, ChatModel] = {}
    models: dict[str, ChatModel] = {}
    for role in roles:
        key = config.role(role).backend
        if key not in built:
            built[key] = load_model(role_backend(config.backend(key)))
        models[role] = built[key]
    return models


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def describe(config: BackendConfig) -> dict[str, Any]:
    """The config as printed in logs and manifests (never a key: only the variable's name)."""
    return config.model_dump(exclude_defaults=True)
