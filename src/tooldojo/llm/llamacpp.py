"""The embedded default backend: llama-cpp-python running a GGUF model with batched decoding.

Requests from all coroutines are gathered by :mod:`tooldojo.llm.llamacpp_engine` into shared
forward passes (continuous batching in a background thread), and prompt prefixes already in
the KV cache (the system prompt with its tools block) are reused instead of recomputed; the
event loop keeps serving MCP servers and other agents meanwhile.

Tools are rendered into the system prompt with a codec (SmolLM2's chat template has no tool
support). Under a ``tool_calls`` constraint the output is restricted by a llama.cpp grammar
built from the tools' JSON Schemas:

* codec ``hermes`` (default): the answer is either free text that does not start with ``<`` or
  one or more ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>`` blocks whose JSON
  matches one offered tool's schema. The constraint enforces the very format the model is
  prompted (and later trained) with, so constrained and unconstrained answers read the same.
* other codecs: the answer is the JSON document ``{"tool_calls": [...]}`` or ``{"answer": "..."}``
  (the schema of :func:`~tooldojo.llm._shared.tool_calls_document_schema`, what
  ``response_format={"type": "json_object", "schema": ...}`` would pass), mapped back to calls or
  text.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import time
import weakref
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import jsonschema
import llama_cpp
from llama_cpp._internals import LlamaModel
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import SchemaConverter

from tooldojo.cache_dir import cache_path
from tooldojo.errors import ToolDojoError
from tooldojo.llm._shared import (
    base_fields,
    call_schema,
    completion_from_document,
    completion_from_text,
    failed,
    render_chat,
    tool_calls_document_schema,
)
from tooldojo.llm.base import Completion, Constraint, SamplingParams
from tooldojo.llm.codecs import DEFAULT_CODEC, HermesCodec, ParseError, get_codec
from tooldojo.llm.embedded import EMBEDDED_NAME, check_gguf, embedded_gguf_path
from tooldojo.llm.llamacpp_engine import (
    BatchEngine,
    EngineStats,
    GenerationParams,
    PrefixStore,
    generate,
    grammar_too_deep,
    load_llama_model,
)
from tooldojo.model import Message, Tool

DRAFT_TOKENS = 0
"""Tokens guessed per greedy sequence and step by prompt lookup (``BatchEngine._draft``) and
checked in the same pass; 0 (default) decodes one token per pass. Off by default because on
BFCL traffic they saved passes but no CPU (0.96 x per entry) while the larger passes round
differently: 36/40 answers of the batched-agreement bench matched the unbatched path with
them, against the 95 % the engine promises. ``tooldojo call`` (one stream) turns them on."""

GRAMMAR_MAX_LENGTH = 64
"""Longer ``maxLength`` bounds are dropped from grammars: llama.cpp's converter unrolls them into
one nested rule per character, which makes the grammar slow to build and to run."""


_CLASS_ESCAPES = {"d": "0-9", "w": "A-Za-z0-9_", "s": " \\t"}


def _plain_pattern(pattern: str) -> str | None:
    """``pattern`` with ``\\d``, ``\\w``, ``\\s`` spelled as character classes, which the
    converter reads correctly; ``None`` for constructs it cannot handle (other escapes, groups
    with alternation or look-arounds), in which case the pattern is left to the check after."""
    if not (pattern.startswith("^") and pattern.endswith("$")) or any(
        token in pattern for token in ("(?", "|", "\\b", "\\p", "\\u")
    ):
        return None
    if any(int(bound) > GRAMMAR_MAX_LENGTH for bound in re.findall(r"\{(?:\d+,)?(\d+)\}", pattern)):
        # As with maxLength: the converter unrolls a repetition into one nested rule per count,
        # and "^.{0,262144}$" (a refined OpenAPI tool's) made a 15 MB grammar nested 262,144
        # deep, whose parsing overflowed the engine thread's stack and killed the process.
        return None
    out, in_class, index = [], False, 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            nxt = pattern[index + 1]
            if nxt in _CLASS_ESCAPES:
                body = _CLASS_ESCAPES[nxt]
                out.append(body if in_class else f"[{body}]")
            elif nxt in ".-+*?()[]{}^$/\\":
                # The converter copies a class's body into the grammar verbatim, and GBNF knows
                # no "\\." or "\\-" escape (llama.cpp rejects the whole grammar), so the
                # literal is written as a hex escape, inside a class or as a one-character one.
                literal = f"\\x{ord(nxt):02X}"
                out.append(literal if in_class else f"[{literal}]")
            else:
                return None
            index += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        out.append(char)
        index += 1
    return "".join(out)


_SHAPE_KEYS = {"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "properties", "items"}
_ANY_VALUE = [{"type": name} for name in ("string", "number", "boolean", "object", "array", "null")]


GRAMMAR_MAX_ENUM = 400
"""Integer ranges up to this size are enforced by listing their values."""


def grammar_friendly(schema: Any) -> Any:
    """``schema`` without the keywords llama.cpp's JSON-Schema converter gets wrong.

    ``pattern`` is rewritten without ``\\d``-style escapes, or dropped when it uses more than
    the converter understands (it mistranslates escapes, and llama.cpp crashes on the resulting
    grammar); long ``maxLength`` bounds are dropped; numeric bounds are
    ignored by the converter except small integer ranges, rewritten as enums here. Decoded calls
    are therefore checked against the full schema afterwards (see ``_check_arguments``).
    """
    if isinstance(schema, list):
        return [grammar_friendly(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if not _SHAPE_KEYS & schema.keys():
        return {"anyOf": _ANY_VALUE}  # the converter rejects (or makes an object of) "any value"
    low, high = schema.get("minimum"), schema.get("maximum")
    if (
        schema.get("type") == "integer"
        and isinstance(low, int)
        and isinstance(high, int)
        and 0 <= high - low <= GRAMMAR_MAX_ENUM
    ):
        # The converter ignores numeric bounds; a small integer range is exact as an enum.
        return {"enum": list(range(low, high + 1))}
    out = {}
    for key, value in schema.items():
        if key == "pattern" and isinstance(value, str):
            translated = _plain_pattern(value)
            if translated is not None:
                out[key] = translated
            continue
        if key == "maxLength" and isinstance(value, int) and value > GRAMMAR_MAX_LENGTH:
            continue
        if key in {"properties", "$defs", "definitions", "patternProperties"} and isinstance(
            value, dict
        ):
            out[key] = {name: grammar_friendly(sub) for name, sub in value.items()}
        elif key in {"const", "enum", "default", "examples"}:
            out[key] = value
        else:
            out[key] = grammar_friendly(value)
    return out


_LITERAL_ESCAPES = {"\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}
_LITERAL_ESCAPE_RE = re.compile(r'[\r\n"\\]')


class _SchemaConverter(SchemaConverter):
    """llama-cpp-python's JSON-Schema converter with literals escaped the way GBNF reads them.

    Why: its ``_format_literal`` (0.3.36) escapes quotes and line breaks but not backslashes,
    so the JSON text of a value holding a quote, ``"\\"Latency\\""`` (an enum of Telnyx's and
    Vercel's OpenAPI specs), became ``"\\"\\\\"Latency..."``: the bare backslash escaped the
    next one and the quote after it closed the literal early. llama.cpp rejected the whole
    grammar, so every constrained request offering such a tool failed (``grammar_rejected``).
    Upstream llama.cpp's converter escapes backslashes too.
    """

    def _format_literal(self, literal: str) -> str:
        return '"' + _LITERAL_ESCAPE_RE.sub(lambda m: _LITERAL_ESCAPES[m.group(0)], literal) + '"'

    def _generate_constant_rule(self, value: Any) -> str:
        # Non-ASCII stays raw: with backslashes now kept, json.dumps's "\\u00e9" would make the
        # model spell the six characters out, where the literal admitted "é" before.
        return self._format_literal(json.dumps(value, ensure_ascii=False))


def schema_grammar(schema: dict[str, Any]) -> str:
    """GBNF admitting the JSON documents valid under ``schema`` (as far as it can express)."""
    # A copy through JSON, as llama-cpp-python's json_schema_to_gbnf makes: resolve_refs
    # rewrites "$ref"s in place, and enum values are shared with the tool's own schema.
    friendly = json.loads(json.dumps(grammar_friendly(schema)))
    converter = _SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(friendly, "stdin"), "")
    return converter.format_grammar()


def _grammar_safe(tool: Tool) -> Tool:
    """``tool`` with a schema llama.cpp can turn into a grammar; any object if it cannot."""
    try:
        schema_grammar(tool.parameters)
    except Exception:  # the converter signals unsupported schemas with assorted exceptions
        return tool.model_copy(update={"parameters": {"type": "object"}})
    return tool


@lru_cache(maxsize=256)
def hermes_grammar(call_schema_json: str, allow_text: bool, max_calls: int | None) -> str:
    """GBNF for "free text OR ``<tool_call>`` blocks of schema-valid calls" (cached per tool set).

    llama.cpp's own JSON-Schema converter writes the rules for one call; we rename its root and
    wrap it in the Hermes tags. Hand-written wrapper because ``response_format`` can only express
    a JSON document, not JSON inside tags.
    """
    call_rules = schema_grammar(json.loads(call_schema_json))
    call_rules = call_rules.replace("root ::=", "tool-call-json ::=")
    block = r'"<tool_call>\n" tool-call-json "\n</tool_call>"'
    more = "*" if max_calls is None else f"{{0,{max_calls - 1}}}"
    rules = [
        "root ::= calls" + (" | text" if allow_text else ""),
        rf'calls ::= {block} ("\n" {block}){more}' if max_calls != 1 else f"calls ::= {block}",
    ]
    if allow_text:
        rules.append(r"text ::= [^<] [^\x00]*")
    return "\n".join(rules) + "\n" + call_rules


def _check_arguments(completion: Completion, tools: list[Tool]) -> Completion:
    """A constrained completion whose calls break a part of the schema the grammar could not
    express (patterns, numeric bounds) becomes a typed failure rather than passing as valid."""
    by_name = {tool.name: tool for tool in tools}
    for call in completion.tool_calls:
        validator = _validator(json.dumps(by_name[call.name].parameters, sort_keys=True))
        error = next(iter(validator.iter_errors(call.arguments)), None)
        if error is not None:
            where = "/" + "/".join(str(part) for part in error.absolute_path)
            raw = json.dumps(
                [{"name": c.name, "arguments": c.arguments} for c in completion.tool_calls]
            )
            reason = f"arguments of {call.name!r} break its schema at {where}: {error.message}"
            return completion.model_copy(
                update={"text": raw, "tool_calls": [], "finish_reason": "error", "error": reason}
            )
    return completion


def end_of_calls(codec: HermesCodec, text: str) -> int | None:
    """Where an answer that made its calls and then went on with something else ends.

    Why: a model trained to call writes ``<tool_call>...</tool_call>`` and then its
    end-of-turn token; one that instead goes on (prose, another question) runs to
    ``max_tokens``, several times the call's length, for text the parser ignores anyway.
    Another ``<tool_call>`` block (parallel calls) and blank lines go on; the cut is taken only
    when the text up to it parses as calls (a close tag inside an argument string does not
    count).
    """
    close = text.rfind(codec.CLOSE)
    if close < 0:
        return None
    end = close + len(codec.CLOSE)
    tail = text[end:].lstrip()
    if not tail or tail.startswith(codec.OPEN) or codec.OPEN.startswith(tail):
        return None
    try:
        calls = codec.parse(text[:end])
    except ParseError:
        return None
    return end if calls else None


@lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


class LlamaCppChatModel:
    """One GGUF model behind the async ``ChatModel`` protocol, served by batching engines.

    ``pool_size`` engines (llama.cpp contexts sharing the weights) each step up to
    ``max_batch`` sequences together on ``n_threads`` threads; a request goes to the engine whose
    cache shares the longest prefix with its prompt (ties: the least loaded), so episodes with
    the same tools block keep hitting the same warm prefix. ``stats`` and ``hit_rate`` count
    prompt tokens computed vs reused.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        pool_size: int = 2,
        n_threads: int = 1,
        n_threads_batch: int | None = None,
        n_ctx: int = 8192,
        codec: str = DEFAULT_CODEC,
        name: str | None = None,
        max_batch: int = 8,
        warm_streams: int = 2,
        n_batch: int = 512,
        weights: str = "f16",
        prefix_store: bool = False,
        reuse_prefixes: bool = True,
        draft_tokens: int = DRAFT_TOKENS,
        flash_attn: bool = True,
        gpu_layers: int | None = None,
        kv_cache: str = "f16",
    ):
        if pool_size < 1 or n_threads < 1 or max_batch < 1:
            raise ToolDojoError("llamacpp: pool_size, n_threads and max_batch must be at least 1")
        if warm_streams < 0:
            raise ToolDojoError("llamacpp: warm_streams must be at least 0")
        if kv_cache not in KV_CACHES:
            raise ToolDojoError(f"llamacpp: kv_cache must be one of {', '.join(KV_CACHES)}")
        if kv_cache != "f16" and not flash_attn:
            raise ToolDojoError("llamacpp: an 8-bit kv_cache needs flash_attn (llama.cpp)")
        self.model_path = check_gguf(model_path) if model_path else embedded_gguf_path()
        self.name = name or (EMBEDDED_NAME if model_path is None else self.model_path.stem)
        self.codec = get_codec(codec)
        self._hermes = isinstance(self.codec, HermesCodec)
        self._n_ctx = n_ctx
        self.weights = resolved_weights(weights, gpu_layers)
        path = self.weights_path = weights_file(self.model_path, self.weights)
        try:
            self._model = load_llama_model(str(path), gpu_layers)
        except (ValueError, RuntimeError) as error:
            raise ToolDojoError(f"{self.model_path}: llama.cpp cannot load it ({error})") from None
        self._formatter = self._chat_formatter(self._model)
        self._eog_text = self._formatter.eos_token
        store = None
        if prefix_store:
            stat = path.stat()  # a retrained file at the same path gets other states
            identity = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
            # llama.cpp reads a state back only into a context with as many KV streams.
            digest = hashlib.sha256(identity).hexdigest()[:12]
            # The KV layout differs with flash attention (V is not transposed), so each
            # setting keeps its own states.
            fa = ("-fa" if flash_attn else "") + ("" if kv_cache == "f16" else f"-kv{kv_cache}")
            key = f"{self.model_path.stem}-{digest}-{_streams(max_batch, warm_streams)}{fa}"
            store = PrefixStore(_cache_folder() / "kv" / key)
        self._engines = [
            BatchEngine(
                self._model,
                n_threads=n_threads,
                n_threads_batch=n_threads_batch,
                n_ctx=n_ctx,
                n_slots=_streams(max_batch, warm_streams),
                max_active=max_batch,
                n_batch=n_batch,
                prefix_store=store,
                reuse_prefixes=reuse_prefixes,
                draft_tokens=draft_tokens,
                flash_attn=flash_attn,
                kv_cache=kv_cache,
            )
            for _ in range(pool_size)
        ]
        weakref.finalize(self, _close_engines, list(self._engines))

    @property
    def pool_size(self) -> int:
        return len(self._engines)

    @property
    def stats(self) -> EngineStats:
        """Counters summed over the engines (prompt tokens, reused tokens, decode time...)."""
        total = EngineStats()
        for engine in self._engines:
            total = total.merged(engine.stats)
        return total

    @property
    def hit_rate(self) -> float:
        """Prompt tokens whose KV state was reused / prompt tokens, since start."""
        return self.stats.hit_rate

    def close(self) -> None:
        _close_engines(self._engines)

    def grammar_accepted(self, grammar: str) -> bool:
        """Whether llama.cpp parses ``grammar`` (the engine answers an unparsable one with a
        failed completion; llama-cpp-python's own path would crash on it)."""
        if grammar_too_deep(grammar):  # its parser would overflow this thread's stack
            return False
        sampler = llama_cpp.llama_sampler_init_grammar(
            self._model.vocab, grammar.encode("utf-8"), b"root"
        )
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
        return bool(sampler)

    @staticmethod
    def _chat_formatter(model: LlamaModel) -> Jinja2ChatFormatter:
        template = model.metadata().get("tokenizer.chat_template")
        if not template:
            raise ToolDojoError("llamacpp: the GGUF file has no chat template")
        eos, bos = model.token_eos(), model.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    def render_prompt(self, messages: list[Message], tools: list[Tool] | None) -> str:
        """The exact prompt string the model sees (tools in the system prompt)."""
        chat = render_chat(messages, tools, self.codec)
        return self._formatter(messages=chat).prompt  # type: ignore[arg-type]

    def tokenize(self, prompt: str) -> list[int]:
        """Tokens of ``prompt`` as ``Llama.create_completion`` would read it (BOS, specials)."""
        return self._model.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def _grammar(
        self, tools: list[Tool] | None, constraint: Constraint | None
    ) -> tuple[str | None, bool]:
        """(GBNF or None, whether the answer is a JSON document to map back)."""
        if constraint is None:
            return None, False
        if constraint.kind == "json":
            return schema_grammar({"type": "object"}), False
        if constraint.kind == "json_schema":
            if constraint.json_schema is None:
                raise ToolDojoError("a json_schema constraint needs a schema")
            return schema_grammar(constraint.json_schema), False
        if not tools:
            return None, False
        tools = [_grammar_safe(tool) for tool in tools]
        if self.codec.name == "hermes":
            schema_json = json.dumps(call_schema(tools))  # key order = prompt order
            return hermes_grammar(schema_json, constraint.allow_text, constraint.max_calls), False
        schema = tool_calls_document_schema(
            tools, allow_text=constraint.allow_text, max_calls=constraint.max_calls
        )
        return schema_grammar(schema), True

    def _engine_for(self, tokens: list[int]) -> BatchEngine:
        """An engine with a free place in its batch; among those, the most cached prefix
        tokens less ``LOAD_TOKENS`` per request it already holds.

        Why not simply the longest prefix: prompts sharing only the chat template's first few
        dozen tokens would then all queue on the engine that served first while the other core
        idles (what held aggregate generation at a quarter of the limit). A long shared prefix
        (a tools block) still wins; it is computed once on a second engine when the first is
        full, and reused there too.
        """
        if len(self._engines) == 1:
            return self._engines[0]
        return max(
            self._engines,
            key=lambda engine: (
                engine.load < engine.max_active,
                engine.table.best_prefix(tokens)[1] - LOAD_TOKENS * engine.load,
            ),
        )

    async def complete(
        self,
        messages: list[Message],
        tools: list[Tool] | None = None,
        *,
        sampling: SamplingParams | None = None,
        constraint: Constraint | None = None,
    ) -> Completion:
        sampling = sampling or SamplingParams()
        started = time.perf_counter()
        prompt = self.render_prompt(messages, tools)
        grammar, is_document = self._grammar(tools, constraint)
        tokens = self.tokenize(prompt)
        if len(tokens) >= self._n_ctx:
            why = f"Requested tokens ({len(tokens)}) exceed context window of {self._n_ctx}"
            return self._failed(f"{why} (n_ctx={self._n_ctx}; raise n_ctx)", started)
        params = GenerationParams(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            repeat_penalty=sampling.repeat_penalty,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
            seed=sampling.seed,
            stop=[stop for stop in [self._eog_text, *(sampling.stop or [])] if stop],
            grammar=grammar,
            end_of_answer=partial(end_of_calls, self.codec) if tools and self._hermes else None,
        )
        result = await generate(self._engine_for(tokens), tokens, params)
        if result.error == "grammar_rejected":
            return self._failed("llama.cpp rejected the grammar built from the constraint", started)
        if result.error:
            return self._failed(result.error, started)
        base = base_fields(
            model=self.name,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            latency_s=time.perf_counter() - started,
        )
        text = result.text
        if constraint is not None and constraint.kind != "tool_calls":
            try:
                json.loads(text)
            except json.JSONDecodeError as error:
                return failed(text, f"constrained answer is not JSON ({error.msg})", base)
            return Completion(text=text, **base)
        if is_document:
            completion = completion_from_document(text, tools, base=base)
        else:
            completion = completion_from_text(text, tools, self.codec, base=base)
        if constraint is not None and completion.tool_calls and tools:
            return _check_arguments(completion, tools)
        return completion

    def _failed(self, why: str, started: float) -> Completion:
        base = base_fields(
            model=self.name,
            finish_reason="error",
            prompt_tokens=0,
            completion_tokens=0,
            latency_s=time.perf_counter() - started,
        )
        return failed("", why, base)


LOAD_TOKENS = 128
"""Routing: a request already on an engine weighs as much as this many cached prefix tokens
(about a second of prompt reading on one core), so short common prefixes spread over engines
and long tools blocks keep their engine."""


def _streams(max_batch: int, warm: int = 2) -> int:
    """KV streams of an engine: ``warm`` idle ones beside the busy ones keep other prompts'
    prefixes for reuse; a one-at-a-time model (``tooldojo call``) keeps one stream, reused in
    place."""
    return max_batch + warm if max_batch > 1 else 1


def _close_engines(engines: list[BatchEngine]) -> None:
    for engine in engines:
        engine.close()


KV_CACHES = ("f16", "q8_0")
"""How the KV cache stores keys and values (``BackendConfig.kv_cache``)."""

WEIGHTS = ("auto", "file", "f16", "q8_0", "bf16")
"""``f16`` (default): a quantized file's weights converted once to 16-bit floats (cached under
``$TOOLDOJO_CACHE`` or ``~/.cache/tooldojo``, about 3 s); ``q8_0``: converted to 8-bit blocks;
``file``: the GGUF as it is; ``auto``: ``q8_0`` where llama.cpp multiplies 8-bit blocks on AMX
tiles, ``f16`` elsewhere (:func:`resolved_weights`).
Why f16: llama.cpp multiplies a batch of tokens by f16 (and q8_0) weights with its tiled matrix
kernels (llamafile sgemm), but without AMX has no such kernel for SmolLM2's Q4_1 blocks, which it
multiplies one token at a time. So with Q4_1 a batch of 16 sequences costs almost 16 lone
tokens, and with f16 about 6 (``bench/embedded_throughput.py``, on AVX-512 and AVX2 machines). A
single stream is faster from the file (less memory to read per token), which ``weights: file``
keeps. And f16 answers alike batched or alone (19 or 20 of 20 greedy answers, not 17 as q8_0 on
AMX: tests/test_llm_llamacpp_batched.py), so evaluations do not move with the machine's load.
Answers differ slightly between the settings (other rounding): compare models on one setting.
Why ``auto`` for synthesis: llama.cpp's AMX_INT8 kernels (built by ``make install`` with our fix
to their tile configuration) read prompts 2.0 x and decode 16 streams 2.0 x faster from q8_0
than from f16 (810 against 408 and 271 against 138 tokens/s, AMX Xeon of 28 Nov, docs/llm.md);
a role played at a temperature need not answer alike batched or alone.
``bf16``: 16-bit brain floats, which AVX512_BF16 CPUs multiply natively: prompts ran 1.28 x
faster than f16 on an earlier AVX-512 machine (528 against 412 tokens per CPU-second, 1,573-token
prompt, one thread), not on the AMX Xeon (357 against 381 tokens/s), and activations are rounded
to bf16 as well, so answers differ from f16 sooner.
"""


@lru_cache(maxsize=1)
def system_info() -> str:
    """The CPU features llama.cpp was built for and uses ("AVX512 = 1 | AMX_INT8 = 1 | ..."):
    two builds of one version on one machine answer differently when these differ."""
    return llama_cpp.llama_print_system_info().decode(errors="replace")


def resolved_weights(weights: str, gpu_layers: int | None = None) -> str:
    """``weights`` with ``auto`` decided for this build and machine: ``q8_0`` where llama.cpp
    runs on the CPU with AMX_INT8 kernels, ``f16`` elsewhere (GPU offload included)."""
    if weights not in WEIGHTS:
        raise ToolDojoError(f"llamacpp: weights must be one of {', '.join(WEIGHTS)}")
    if weights != "auto":
        return weights
    on_gpu = gpu_layers != 0 and llama_cpp.llama_supports_gpu_offload()
    return "q8_0" if "AMX_INT8 = 1" in system_info() and not on_gpu else "f16"


def _cache_folder() -> Path:
    return cache_path()


_FILE_TYPES = {
    "f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
    "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "bf16": llama_cpp.LLAMA_FTYPE_MOSTLY_BF16,
}
_FLOAT_FILE_TYPES = {0, 1, 32}  # llama_ftype: all f32, mostly f16, mostly bf16


def _file_type(path: Path) -> int | None:
    """``general.file_type`` of a GGUF, read with a vocabulary-only load (no weights: ~0.1 s)."""
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        return None
    try:
        buffer = ctypes.create_string_buffer(32)
        size = llama_cpp.llama_model_meta_val_str(model, b"general.file_type", buffer, 32)
        return int(buffer.value) if size > 0 else None
    except ValueError:
        return None
    finally:
        llama_cpp.llama_model_free(model)


def weights_file(path: Path, weights: str) -> Path:
    """The GGUF to load for ``weights``; a converted copy is written once, atomically."""
    weights = resolved_weights(weights)
    if weights == "file":
        return path
    cache = _cache_folder() / "gguf"
    stat = path.stat()
    target = cache / f"{path.stem}.{stat.st_size}.{int(stat.st_mtime)}.{weights}.gguf"
    if target.is_file():
        return target
    file_type = _file_type(path)
    if (
        (weights == "f16" and file_type in _FLOAT_FILE_TYPES)
        or (weights == "bf16" and file_type == llama_cpp.LLAMA_FTYPE_MOSTLY_BF16)
        or (weights == "q8_0" and file_type == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0)
    ):
        return path
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # the conversion logs every tensor otherwise
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _FILE_TYPES[weights]
    params.allow_requantize = True
    code = llama_cpp.llama_model_quantize(
        str(path).encode(), str(partial).encode(), ctypes.byref(params)
    )
    if code != 0:
        partial.unlink(missing_ok=True)
        raise ToolDojoError(f"{path}: llama.cpp could not convert it to {weights} (code {code})")
    partial.replace(target)
    return target
