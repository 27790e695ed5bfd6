"""The embedded default backend: llama-cpp-python running a GGUF model in worker threads.

Each instance of ``llama_cpp.Llama`` is single-threaded state (its KV cache), so a pool of
``pool_size`` instances serves that many requests at once; every blocking decode runs in a
worker thread so the event loop keeps serving MCP servers and other agents meanwhile.

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

import json
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import llama_cpp
from llama_cpp import Llama, LlamaGrammar, StoppingCriteriaList
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import json_schema_to_gbnf

from tooldojo.errors import ToolDojoError
from tooldojo.llm._shared import (
    base_fields,
    call_schema,
    completion_from_document,
    completion_from_text,
    failed,
    render_chat,
    run_stoppable,
    tool_calls_document_schema,
)
from tooldojo.llm.base import Completion, Constraint, SamplingParams
from tooldojo.llm.codecs import DEFAULT_CODEC, get_codec
from tooldojo.llm.embedded import EMBEDDED_NAME, check_gguf, embedded_gguf_path
from tooldojo.model import Message, Tool

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
    out, in_class, index = [], False, 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            nxt = pattern[index + 1]
            if nxt in _CLASS_ESCAPES:
                body = _CLASS_ESCAPES[nxt]
                out.append(body if in_class else f"[{body}]")
            elif nxt in ".-+*?()[]{}^$/\\":
                # A one-character class: the converter copies "\\." into the grammar verbatim,
                # where it is not a valid escape.
                literal = f"\\{nxt}" if nxt in "^]\\-" else nxt
                out.append(char + nxt if in_class else f"[{literal}]")
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


def schema_grammar(schema: dict[str, Any]) -> str:
    return json_schema_to_gbnf(json.dumps(grammar_friendly(schema)))


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


@lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


_GRAMMAR_CHECKS: dict[str, bool] = {}


def _grammar_accepted(llm: Llama, grammar: str) -> bool:
    """Whether llama.cpp parses ``grammar``; checked first because it crashes on a bad one.

    llama-cpp-python adds the grammar sampler without checking for NULL, so an unparsable
    grammar is a segmentation fault of the whole process, not an exception.
    """
    if grammar not in _GRAMMAR_CHECKS:
        sampler = llama_cpp.llama_sampler_init_grammar(
            llm._model.vocab, grammar.encode("utf-8"), b"root"
        )
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
        _GRAMMAR_CHECKS[grammar] = bool(sampler)
    return _GRAMMAR_CHECKS[grammar]


class LlamaCppChatModel:
    """A pool of llama.cpp instances of one GGUF model behind the async ``ChatModel`` protocol."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        pool_size: int = 1,
        n_threads: int = 1,
        n_ctx: int = 8192,
        codec: str = DEFAULT_CODEC,
        name: str | None = None,
    ):
        if pool_size < 1 or n_threads < 1:
            raise ToolDojoError("llamacpp: pool_size and n_threads must be at least 1")
        self.model_path = check_gguf(model_path) if model_path else embedded_gguf_path()
        self.name = name or (EMBEDDED_NAME if model_path is None else self.model_path.stem)
        self.codec = get_codec(codec)
        self._n_threads = n_threads
        self._n_ctx = n_ctx
        self._instances: list[Llama | None] = [None] * pool_size
        # The first instance loads now so a broken file is a start-up error, not a mid-run one.
        self._instances[0] = self._load()
        self._formatter = self._chat_formatter(self._instances[0])
        self._free = list(range(pool_size))
        self._slots: anyio.Semaphore | None = None

    @property
    def pool_size(self) -> int:
        return len(self._instances)

    def _load(self) -> Llama:
        try:
            return Llama(
                model_path=str(self.model_path),
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                n_threads_batch=self._n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as error:
            raise ToolDojoError(f"{self.model_path}: llama.cpp cannot load it ({error})") from None

    @staticmethod
    def _chat_formatter(llm: Llama) -> Jinja2ChatFormatter:
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ToolDojoError("llamacpp: the GGUF file has no chat template")
        eos, bos = llm.token_eos(), llm.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    def render_prompt(self, messages: list[Message], tools: list[Tool] | None) -> str:
        """The exact prompt string the model sees (tools in the system prompt)."""
        chat = render_chat(messages, tools, self.codec)
        return self._formatter(messages=chat).prompt  # type: ignore[arg-type]

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
        if self._slots is None:
            self._slots = anyio.Semaphore(self.pool_size)
        async with self._slots:
            index = self._free.pop()
            try:
                result = await self._generate_in_thread(index, prompt, grammar, sampling)
            finally:
                self._free.append(index)
        if result.get("grammar_rejected"):
            return self._failed("llama.cpp rejected the grammar built from the constraint", started)
        if result.get("too_long"):
            return self._failed(f"{result['too_long']} (n_ctx={self._n_ctx}; raise n_ctx)", started)
        choice = result["choices"][0]
        usage = result.get("usage", {})
        base = base_fields(
            model=self.name,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            latency_s=time.perf_counter() - started,
        )
        text = choice["text"]
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

    async def _generate_in_thread(
        self, index: int, prompt: str, grammar: str | None, sampling: SamplingParams
    ) -> dict[str, Any]:
        """Decode on instance ``index`` in a worker thread; cancellation stops it within a token."""

        def work(stop_flag: threading.Event) -> dict[str, Any]:
            llm = self._instances[index]
            if llm is None:
                llm = self._instances[index] = self._load()
            if grammar and not _grammar_accepted(llm, grammar):
                return {"grammar_rejected": True}
            eos = self._formatter.eos_token
            stop = [eos, *(sampling.stop or [])] if eos else sampling.stop
            try:
                return llm.create_completion(  # type: ignore[return-value]
                    prompt,
                    max_tokens=sampling.max_tokens,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    seed=sampling.seed,
                    stop=stop,
                    grammar=LlamaGrammar.from_string(grammar, verbose=False) if grammar else None,
                    stopping_criteria=StoppingCriteriaList([lambda *_: stop_flag.is_set()]),
                )
            except ValueError as error:  # "Requested tokens (N) exceed context window of M"
                if "context window" not in str(error):
                    raise
                return {"too_long": str(error)}

        return await run_stoppable(work)
