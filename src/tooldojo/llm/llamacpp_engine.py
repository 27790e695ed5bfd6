"""Continuous batching for llama.cpp: many sequences in one forward pass, shared prompt prefixes.

Why hand-written: llama-cpp-python's ``Llama`` decodes one sequence per context, so a pool of
instances runs one small matrix-vector product per token and recomputes the long, shared system
prompt (tools block) whenever a request lands on an instance that last served another prompt.
Here one llama.cpp context serves every request through its low-level batch API:

* **Batching.** A background thread steps all active sequences together: each step is one
  ``llama_decode`` holding the next token of every generating sequence plus chunks of the
  prompts still being read (chunked prefill), up to ``n_batch`` tokens.
* **Prefix reuse.** The KV cache is *unified* (one buffer for all sequence ids), so copying a
  prefix from one sequence to another (``llama_memory_seq_cp``) only tags the existing cells with
  the new id: nothing is recomputed or duplicated. A finished sequence stays in the cache as an
  idle slot; a new prompt starts from the longest common prefix found in any slot (busy or idle)
  and idle slots are evicted least-recently-used when cells run out.
* **Grammars per sequence.** Each request has its own sampler chain and, when constrained, its
  own llama.cpp grammar sampler. As in llama.cpp's ``common_sampler``, the token is first chosen
  without the grammar and only checked against it; the (expensive) grammar pass over the whole
  vocabulary runs only when that token is rejected. For greedy decoding this picks exactly the
  token the grammar-first order would.

The pure bookkeeping (which slot holds which tokens, where a prompt starts, who may be admitted)
lives in :class:`SlotTable` so it can be tested without a model.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaContext, LlamaModel

# ----------------------------------------------------------------------------- bookkeeping


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists.

    Binary search over C-level slice comparisons: a few dozen list comparisons instead of a
    Python loop over thousands of tokens (this runs for every slot on every admission).
    """
    limit = min(len(a), len(b))
    if limit == 0:
        return 0
    a_list = a if isinstance(a, list) else list(a)
    b_list = b if isinstance(b, list) else list(b)
    if a_list[:limit] == b_list[:limit]:
        return limit
    low, high = 0, limit  # a[:low] == b[:low] and a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a_list[low:middle] == b_list[low:middle]:
            low = middle
        else:
            high = middle
    return low


@dataclass
class Slot:
    """One sequence id of the KV cache and the tokens whose state it holds (positions 0..n-1)."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    busy: bool = False
    last_used: float = 0.0
    reserved: int = 0
    """Cells a busy slot may still need in the worst case (prompt plus max_tokens)."""


@dataclass(frozen=True)
class Claim:
    """Where a prompt goes: slot ``target``, its first ``reuse`` tokens copied from ``source``."""

    target: int
    source: int
    reuse: int


MIN_COPY_TOKENS = 64
"""A cached prefix shorter than this is recomputed rather than copied to another slot:
llama.cpp copies a sequence across KV streams as the whole stream (n_ctx cells)."""


class SlotTable:
    """Which KV sequence holds which tokens; decides where a new prompt starts.

    ``capacity`` is the number of KV cells. A request is admitted only while the worst case of
    all busy requests (each one's full prompt plus ``max_tokens``, as if nothing were shared)
    fits, so evicting idle slots always makes room for the busy ones.
    """

    def __init__(self, n_slots: int, capacity: int, *, reuse_prefixes: bool = True):
        if n_slots < 1:
            raise ValueError("n_slots must be at least 1")
        self.slots = [Slot(seq_id=index) for index in range(n_slots)]
        self.capacity = capacity
        self.reuse_prefixes = reuse_prefixes
        """``False``: every prompt is computed from scratch (the uncached reference path)."""
        self._clock = 0.0

    def _tick(self) -> float:
        self._clock += 1.0
        return self._clock

    def best_prefix(self, tokens: Sequence[int]) -> tuple[int, int]:
        """(slot index, common prefix length) of the slot sharing the longest prefix."""
        best, best_length = 0, -1
        for index, slot in enumerate(self.slots):
            length = common_prefix_length(slot.tokens, tokens)
            # Ties go to an idle slot (no copy needed), then to the most recently used.
            key = (length, not slot.busy, slot.last_used)
            if best_length < 0 or key > (
                best_length,
                not self.slots[best].busy,
                self.slots[best].last_used,
            ):
                best, best_length = index, length
        return best, max(best_length, 0)

    def busy_runs(self, also: int | None = None) -> int:
        """Runs of consecutive busy sequence ids (counting slot ``also`` as busy).

        Why it matters: with one KV stream per sequence llama.cpp splits a batch into one
        forward pass per run of consecutive sequence ids, and each pass reads all the weights,
        so busy slots 0-3 cost one pass per step and busy slots 0, 2, 4, 6 cost four.
        """
        runs, previous = 0, False
        for index, slot in enumerate(self.slots):
            busy = slot.busy or index == also
            runs += busy and not previous
            previous = busy
        return runs

    def reserved(self) -> int:
        return sum(slot.reserved for slot in self.slots if slot.busy)

    def can_admit(self, need: int) -> bool:
        return any(not slot.busy for slot in self.slots) and self.reserved() + need <= self.capacity

    def claim(self, tokens: Sequence[int], need: int) -> Claim | None:
        """Reserve a slot for a prompt; ``None`` when no slot or not enough cells are free.

        At least the last prompt token is always decoded again (its logits give the first
        generated token), so ``reuse`` is at most ``len(tokens) - 1``.
        """
        if not self.can_admit(need):
            return None
        source, length = self.best_prefix(tokens)
        reuse = min(length, max(len(tokens) - 1, 0)) if self.reuse_prefixes else 0
        idle = [index for index, slot in enumerate(self.slots) if not slot.busy]
        runs = self.busy_runs()
        joining = [index for index in idle if self.busy_runs(also=index) <= max(runs, 1)]
        in_place = not self.slots[source].busy and (source in joining or not joining)
        if reuse < MIN_COPY_TOKENS and not in_place:
            reuse = 0  # a copy moves a whole KV stream: dearer than a few tokens
        if reuse > 0 and in_place:
            target = source  # continue the cached sequence in place: nothing to copy
        elif reuse > 0 and not self.slots[source].busy:
            # In place the sequence would add a forward pass to every step of its life (see
            # ``busy_runs``); one copy of its cells next to the busy slots costs less.
            target = min(
                [index for index in joining if index != source],
                key=lambda index: (bool(self.slots[index].tokens), self.slots[index].last_used),
            )
        else:
            # Next to the busy slots first (see ``busy_runs``: a sequence placed apart adds a
            # forward pass to every step of its life, what held BFCL traffic at 1.7 passes
            # per step); between those an empty slot, else the least recently used idle one
            # (keeping warm prefixes of other tool sets for the prompts that will want them).
            target = min(
                idle,
                key=lambda index: (
                    self.busy_runs(also=index),
                    bool(self.slots[index].tokens),
                    self.slots[index].last_used,
                ),
            )
        slot = self.slots[target]
        slot.busy, slot.reserved, slot.last_used = True, need, self._tick()
        if reuse == 0:
            source = target
        return Claim(target=target, source=source, reuse=reuse)

    def apply(self, claim: Claim, tokens: Sequence[int]) -> None:
        """Record that the target slot now holds the reused prefix (the caller moved the cells)."""
        self.slots[claim.target].tokens = list(tokens[: claim.reuse])

    def release(self, index: int) -> None:
        """The request on ``index`` ended; its tokens stay cached until the slot is evicted."""
        slot = self.slots[index]
        slot.busy, slot.reserved, slot.last_used = False, 0, self._tick()

    def evictable(self) -> int | None:
        """The least recently used idle slot that still holds tokens, or ``None``."""
        idle = [i for i, slot in enumerate(self.slots) if not slot.busy and slot.tokens]
        return min(idle, key=lambda i: self.slots[i].last_used) if idle else None


# ----------------------------------------------------------------------------- requests


@dataclass
class GenerationParams:
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    """Repetition penalty over the last ``penalty_last_n`` generated tokens (1.0: none), and
    the OpenAI-style ``frequency_penalty`` / ``presence_penalty`` beside it; applied only when
    sampling (``temperature > 0``), after top-k (see :meth:`BatchEngine._sampler_chain`)."""
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None
    end_of_answer: Callable[[str], int | None] | None = None
    """Called with the text so far after each token: where to cut it and stop (a model that
    made its calls and went on writing something else), or ``None`` to go on."""


@dataclass
class GenerationResult:
    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reused_tokens: int = 0
    error: str | None = None


@dataclass
class _Request:
    tokens: list[int]
    params: GenerationParams
    deliver: Any  # callable(GenerationResult), called once from the engine thread
    cancelled: threading.Event = field(default_factory=threading.Event)
    slot: int = -1
    position: int = 0  # tokens of this sequence already in the KV cache
    next_token: int | None = None  # sampled, not yet decoded
    generated: list[int] = field(default_factory=list)
    output: bytearray = field(default_factory=bytearray)
    chain: Any = None
    grammar: Any = None
    reused: int = 0
    order: int = 0
    save_prefix: Path | None = None  # where to store the system prompt's state once it is read
    prefix_end: int = 0
    drafts: list[int] = field(default_factory=list)  # guessed tokens after next_token, in KV
    ngrams: dict[tuple[int, ...], int] = field(default_factory=dict)  # n-gram -> end position
    indexed: int = 0  # n-grams ending before this position are in ``ngrams``


@dataclass
class EngineStats:
    """Counters an engine keeps; ``prompt_tokens - reused_tokens`` is what was computed."""

    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    decode_calls: int = 0
    decoded_tokens: int = 0
    decode_seconds: float = 0.0
    grammar_full_passes: int = 0
    """Tokens where the unconstrained choice broke the grammar, so the full-vocabulary grammar
    pass ran (the slow path; counted so its cost is visible)."""
    grammar_rejected: int = 0
    """Requests whose grammar llama.cpp could not parse (answered with an error)."""
    evictions: int = 0
    id_runs: int = 0
    """Runs of consecutive sequence ids over all steps: llama.cpp makes at least one pass
    over the weights per run, so ``id_runs / decode_calls`` near 1 means the batching works."""
    requests: int = 0
    length_stops: int = 0
    """Requests that ran to ``max_tokens`` (or the context's end) instead of a stop."""
    draft_tokens: int = 0
    """Tokens guessed by prompt lookup and checked in the same pass (greedy requests only)."""
    accepted_draft_tokens: int = 0
    """Guessed tokens the model's own greedy choice confirmed: passes saved."""
    loop_stops: int = 0
    """Requests cut because their last ``LOOP_TOKENS`` tokens repeat a short cycle (reported
    as ``length``: the answer was cut off, as ``max_tokens`` would have cut it later)."""
    answer_end_stops: int = 0
    """Requests stopped by ``GenerationParams.end_of_answer`` (calls made, then other text)."""
    stored_prefix_tokens: int = 0
    """Prompt tokens whose state was read from the on-disk :class:`PrefixStore` (part of
    ``reused_tokens``)."""

    @property
    def hit_rate(self) -> float:
        return self.reused_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def merged(self, other: EngineStats) -> EngineStats:
        return EngineStats(
            **{name: getattr(self, name) + getattr(other, name) for name in self.__annotations__}
        )


class PrefixStore:
    """KV state of long system prompts (tools blocks) on disk, for one-shot processes.

    ``tooldojo call`` starts a fresh process per question, so nothing in RAM survives between
    calls; the state of a system prompt of at least ``min_tokens`` tokens is written once
    (``llama_state_seq_save_file``, atomically) and read back by the next process with the same
    tools instead of recomputing it. At most ``max_files`` states are kept (oldest dropped).
    """

    def __init__(self, folder: Path, *, min_tokens: int = 256, max_files: int = 16):
        self.folder = folder
        self.min_tokens = min_tokens
        self.max_files = max_files

    def path_for(self, tokens: Sequence[int]) -> Path:
        digest = hashlib.sha256(np.asarray(tokens, dtype=np.int32).tobytes()).hexdigest()[:32]
        return self.folder / f"{digest}.kv"

    def prune(self) -> None:
        files = sorted(self.folder.glob("*.kv"), key=lambda path: path.stat().st_mtime)
        for path in files[: max(0, len(files) - self.max_files)]:
            path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- engine


def load_llama_model(path: str, gpu_layers: int | None = None) -> LlamaModel:
    """Load a GGUF once; every engine (context) built on it shares the weights.

    ``gpu_layers`` (-1: all) are offloaded when llama.cpp was built for a GPU; ``None`` keeps
    llama.cpp's default (all of them; on a CPU build that changes nothing, and setting 0 there
    changed greedy answers, since the CPU then handles the weights as host memory of no
    device)."""
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    if gpu_layers is not None:
        params.n_gpu_layers = gpu_layers
    return LlamaModel(path_model=path, params=params, verbose=False)


class BatchEngine:
    """One llama.cpp context stepping up to ``max_active`` sequences together in a thread."""

    def __init__(
        self,
        model: LlamaModel,
        *,
        n_threads: int = 2,
        n_threads_batch: int | None = None,
        n_ctx: int = 8192,
        n_slots: int = 6,
        max_active: int = 4,
        n_batch: int = 512,
        prefix_store: PrefixStore | None = None,
        reuse_prefixes: bool = True,
        draft_tokens: int = 0,
        flash_attn: bool = True,
        kv_cache: str = "f16",
    ):
        self.model = model
        self.draft_tokens = draft_tokens
        self.prefix_store = prefix_store
        self._system_end = model.token_eos()
        self.n_ctx = n_ctx
        self.max_active = min(max_active, n_slots)
        self.n_batch = n_batch
        params = llama_cpp.llama_context_default_params()
        # One KV stream per sequence (not unified): each sequence's cells sit exactly where an
        # unbatched context would put them, so batched greedy decoding reproduces the unbatched
        # answers bit for bit (with a unified cache the attention rows are longer and rounding
        # flipped near-tied tokens of this small model on 4 prompts of 6).
        params.n_ctx = n_slots * n_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = n_slots
        params.kv_unified = False
        # Flash attention: on this 2-core machine it read prompts 8 % faster and decoded 16
        # streams 13 % faster (bench/embedded_throughput.py). The price: more near-tied tokens
        # part between batched and unbatched greedy decoding, in long prose (base model,
        # BFCL prompting mode: 35-36 of 40 answers identical, 39 without; scores equal).
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        if kv_cache == "q8_0":
            # 8-bit keys and values: half the bytes each generated token reads back (batched
            # decoding here is bound by that traffic); llama.cpp needs flash attention for it.
            params.type_k = params.type_v = llama_cpp.GGML_TYPE_Q8_0
        params.n_threads = params.n_threads_batch = n_threads
        self._threads = n_threads
        self._prompt_threads = n_threads_batch or n_threads
        """Threads for a pass that reads prompt tokens (set per pass: llama.cpp would use its
        batch threads for any pass of several tokens, generation with guesses included)."""
        self._batch_threads = n_threads
        self.context = LlamaContext(model=model, params=params, verbose=False)
        self._ctx, self._memory, self._vocab = self.context.ctx, self.context.memory, model.vocab
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.table = SlotTable(n_slots, capacity=n_slots * n_ctx, reuse_prefixes=reuse_prefixes)
        self.stats = EngineStats()
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._candidates = (llama_cpp.llama_token_data * self.n_vocab)()
        self._candidate_view = np.ctypeslib.as_array(self._candidates)
        self._ids = np.arange(self.n_vocab, dtype=np.int32)
        self._single = (llama_cpp.llama_token_data * 1)()
        self._pending: deque[_Request] = deque()
        self._active: list[_Request] = []
        self._wake = threading.Condition()
        self._closed = False
        self._order = 0
        self._thread = threading.Thread(target=self._run, name="llamacpp-batch", daemon=True)
        self._thread.start()

    # -- public, any thread

    @property
    def load(self) -> int:
        return len(self._pending) + len(self._active)

    def submit(self, tokens: list[int], params: GenerationParams, deliver: Any) -> _Request:
        request = _Request(tokens=list(tokens), params=params, deliver=deliver)
        with self._wake:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._order += 1
            request.order = self._order
            self._pending.append(request)
            self._wake.notify()
        return request

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self.context.close()

    # -- engine thread

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._pending and not self._active:
                    self._wake.wait()
                if self._closed:
                    pending, self._pending = list(self._pending), deque()
                    break
            try:
                self._admit()
                if self._active:
                    self._step()
            except Exception as error:  # keep serving: fail the requests in flight, not the process
                for request in [*self._active]:
                    self._finish(request, "error", error=f"llama.cpp engine: {error!r}")
        for request in [*pending, *self._active]:
            request.deliver(GenerationResult(finish_reason="error", error="engine closed"))

    def _admit(self) -> None:
        while True:
            with self._wake:
                if not self._pending or len(self._active) >= self.max_active:
                    return
                request = self._pending[0]
                if request.cancelled.is_set():
                    self._pending.popleft()
                    continue
                need = min(len(request.tokens) + request.params.max_tokens, self.n_ctx)
                if need > self.table.capacity:
                    self._pending.popleft()
                    request.deliver(
                        GenerationResult(
                            finish_reason="error",
                            error=f"prompt of {len(request.tokens)} tokens plus max_tokens "
                            f"does not fit the KV cache ({self.table.capacity} cells)",
                        )
                    )
                    continue
                claim = self.table.claim(request.tokens, need)
                if claim is None:
                    return
                self._pending.popleft()
            if not self._start(request, claim):
                self.table.release(claim.target)

    def _start(self, request: _Request, claim: Claim) -> bool:
        """Move the reused prefix into the target sequence and set up the samplers."""
        params = request.params
        if params.grammar:
            grammar = None
            if not grammar_too_deep(params.grammar):
                grammar = llama_cpp.llama_sampler_init_grammar(
                    self._vocab, params.grammar.encode("utf-8"), b"root"
                )
            if not grammar:  # llama.cpp could not parse it (NULL, not an exception)
                self.stats.grammar_rejected += 1
                request.deliver(GenerationResult(finish_reason="error", error="grammar_rejected"))
                return False
            request.grammar = grammar
        request.chain = self._sampler_chain(params)
        target = self.table.slots[claim.target].seq_id
        if claim.source != claim.target:
            # Across streams llama.cpp copies a whole sequence (one memory copy of its cells,
            # far cheaper than recomputing them); the tail past the shared prefix is cut below.
            source = self.table.slots[claim.source].seq_id
            llama_cpp.llama_memory_seq_rm(self._memory, target, -1, -1)
            llama_cpp.llama_memory_seq_cp(self._memory, source, target, -1, -1)
        llama_cpp.llama_memory_seq_rm(self._memory, target, claim.reuse, -1)
        self.table.apply(claim, request.tokens)
        reuse = self._from_store(request, claim.target, claim.reuse)
        request.slot, request.position, request.reused = claim.target, reuse, reuse
        self.stats.requests += 1
        self.stats.prompt_tokens += len(request.tokens)
        self.stats.reused_tokens += reuse
        self._active.append(request)
        return True

    def _from_store(self, request: _Request, slot_index: int, reuse: int) -> int:
        """Read the system prompt's state from disk when RAM holds less of it; the new reuse."""
        store = self.prefix_store
        if store is None:
            return reuse
        tokens = request.tokens
        try:
            end = tokens.index(self._system_end) + 1
        except ValueError:
            return reuse
        if end < store.min_tokens or end >= len(tokens) or reuse >= end:
            return reuse
        path = store.path_for(tokens[:end])
        seq_id = self.table.slots[slot_index].seq_id
        if not path.is_file():
            request.save_prefix, request.prefix_end = path, end
            return reuse
        buffer = (llama_cpp.llama_token * self.n_ctx)()
        count = ctypes.c_size_t(0)
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        read = llama_cpp.llama_state_seq_load_file(
            self._ctx, str(path).encode(), seq_id, buffer, self.n_ctx, ctypes.byref(count)
        )
        loaded = list(buffer[: count.value]) if read else []
        new_reuse = min(common_prefix_length(loaded, tokens), len(tokens) - 1)
        if new_reuse < reuse:  # unreadable or stale file: fall back to nothing cached
            new_reuse = 0
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, new_reuse, -1)
        self.table.slots[slot_index].tokens = list(tokens[:new_reuse])
        self.stats.stored_prefix_tokens += new_reuse
        return new_reuse

    def _save_prefix(self, request: _Request) -> None:
        """Write the sequence's state (its system prompt is now computed) for later processes."""
        path, request.save_prefix = request.save_prefix, None
        if path is None or self.prefix_store is None:
            return
        tokens = self.table.slots[request.slot].tokens
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        seq_id = self.table.slots[request.slot].seq_id
        if llama_cpp.llama_state_seq_save_file(
            self._ctx, str(partial).encode(), seq_id, array, len(tokens)
        ):
            partial.replace(path)
            self.prefix_store.prune()
        else:
            partial.unlink(missing_ok=True)

    @staticmethod
    def _sampler_chain(params: GenerationParams) -> Any:
        """The same chain ``Llama.create_completion`` builds (without its no-op penalties)."""
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        if params.temperature <= 0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
            if penalized(params):
                # After top-k (llama.cpp puts it first): it then only reweighs the k candidates,
                # so _choose's top-k shortcut still draws what the whole vocabulary would. The
                # binding's first argument (n_vocab) is unused by the library.
                penalties = llama_cpp.llama_sampler_init_penalties(
                    0,
                    params.penalty_last_n,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                )
                add(chain, penalties)
            add(chain, llama_cpp.llama_sampler_init_typical(1.0, 1))
            add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
            seed = params.seed if params.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
            add(chain, llama_cpp.llama_sampler_init_dist(seed))
        return chain

    def _step(self) -> None:
        """One forward pass over the next token of every sequence plus prompt chunks."""
        for request in [r for r in self._active if r.cancelled.is_set()]:
            self._finish(request, None)
        if not self._active:
            return
        items: list[tuple[_Request, list[int], bool]] = []  # request, tokens, wants logits
        generating = [request for request in self._active if request.next_token is not None]
        budget = self.n_batch - len(generating)
        for request in sorted(self._active, key=lambda r: r.order):
            if request.next_token is None and budget > 0:
                chunk = request.tokens[request.position : request.position + budget]
                last = request.position + len(chunk) == len(request.tokens)
                items.append((request, chunk, last))
                budget -= len(chunk)
        prompt_tokens = self.n_batch - len(generating) - budget
        self._assign_drafts(generating, self.n_batch - budget)
        for request in generating:
            items.append((request, [request.next_token, *request.drafts], True))
        # In increasing sequence ids: llama.cpp (one KV stream per sequence) starts a new
        # forward pass whenever the next token's sequence id is not the previous one's + 1, so
        # an unsorted batch of 8 sequences could cost 8 passes instead of one.
        items.sort(key=lambda item: self.table.slots[item[0].slot].seq_id)
        self.stats.id_runs += _id_runs(
            [self.table.slots[request.slot].seq_id for request, _, _ in items]
        )
        batch = self._batch
        index = 0
        outputs: list[tuple[_Request, list[int]]] = []
        for request, tokens, wants_logits in items:
            seq_id = self.table.slots[request.slot].seq_id
            for offset, token in enumerate(tokens):
                batch.token[index] = token
                batch.pos[index] = request.position + offset
                batch.n_seq_id[index] = 1
                batch.seq_id[index][0] = seq_id
                # A generating sequence wants logits after every token (its guesses are checked
                # one by one); a prompt chunk only after its last, when the prompt ends there.
                decoding = request.next_token is not None
                wanted = wants_logits and (decoding or offset == len(tokens) - 1)
                batch.logits[index] = wanted
                if wanted:
                    if offset == 0 or not decoding:
                        outputs.append((request, []))
                    outputs[-1][1].append(index)
                index += 1
        batch.n_tokens = index
        # A few prompt tokens (a new turn after a cached prefix) do not repay waking threads.
        threads = self._prompt_threads if prompt_tokens >= PROMPT_THREADS_MIN else self._threads
        if threads != self._batch_threads:
            llama_cpp.llama_set_n_threads(self._ctx, self._threads, threads)
            self._batch_threads = threads
        started = time.perf_counter()
        while (code := llama_cpp.llama_decode(self._ctx, batch)) == 1:
            # No free cells: drop the least recently used idle cache and try again.
            victim = self.table.evictable()
            if victim is None:
                raise RuntimeError("KV cache full with no idle sequence to evict")
            llama_cpp.llama_memory_seq_rm(self._memory, self.table.slots[victim].seq_id, -1, -1)
            self.table.slots[victim].tokens = []
            self.stats.evictions += 1
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        self.stats.decode_seconds += time.perf_counter() - started
        self.stats.decode_calls += 1
        self.stats.decoded_tokens += index
        for request, tokens, _ in items:
            request.position += len(tokens)
            self.table.slots[request.slot].tokens.extend(tokens)
            request.next_token = None
            if request.save_prefix is not None and request.position >= request.prefix_end:
                self._save_prefix(request)
        for request, indices in outputs:
            self._verify(request, indices)

    def _assign_drafts(self, generating: list[_Request], tokens: int) -> None:
        """Give the generating sequences guessed tokens, round-robin, up to the pass size
        that costs no more than ``tokens`` already do (see ``PASS_TILE``)."""
        room = draft_room(tokens, self.n_batch)
        proposals = [self._draft(request) if room > 0 else [] for request in generating]
        taken = [0] * len(generating)
        while room > 0:
            grew = False
            for index, proposal in enumerate(proposals):
                if room > 0 and taken[index] < len(proposal):
                    taken[index] += 1
                    room -= 1
                    grew = True
            if not grew:
                break
        for request, proposal, count in zip(generating, proposals, taken, strict=True):
            request.drafts = proposal[:count]

    def _draft(self, request: _Request) -> list[int]:
        """Tokens that followed the sequence's last few tokens where they occurred before
        (prompt lookup); checked against the model's greedy choice in the same pass.

        Why: a tool call copies much of its prompt (the tool's name, argument names, values
        from the question, the call format shown in the system prompt). A guessed token costs
        little inside a pass that reads all the weights anyway, and each confirmed one saves a
        whole pass; a wrong guess is dropped, so greedy answers stay those of plain decoding (up
        to the rounding of a larger pass, as with batching).
        Sampled requests get no guesses (acceptance would need the probabilities).
        """
        limit = min(
            self.draft_tokens,
            request.params.max_tokens - len(request.generated),
            self.n_ctx - request.position - 2,
        )
        if limit <= 0 or request.params.temperature > 0:
            return []
        sequence = request.tokens + request.generated  # ends with next_token
        draft = lookup_draft(sequence, request.ngrams, request.indexed, limit)
        request.indexed = len(sequence)
        return draft

    def _verify(self, request: _Request, indices: list[int]) -> None:
        """Sample from each output row in turn while the guesses match, then drop the
        guessed tokens the model did not confirm from the KV cache."""
        drafts, request.drafts = request.drafts, []
        request.position -= len(drafts)  # only next_token is surely part of the sequence
        accepted = 0
        for offset, index in enumerate(indices):
            alive = self._sample_and_check(request, index)
            if not alive or offset == len(drafts) or request.next_token != drafts[offset]:
                break
            request.next_token = None  # the guess is already in the KV cache
            request.position += 1
            accepted += 1
        if drafts:
            self.stats.draft_tokens += len(drafts)
            self.stats.accepted_draft_tokens += accepted
            slot = self.table.slots[request.slot]
            del slot.tokens[request.position :]
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, request.position, -1)

    def _sample_and_check(self, request: _Request, output_index: int) -> bool:
        """Sample the next token; ``False`` when it ended the request."""
        token = self._sample(request, output_index)
        params = request.params
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._finish(request, "stop")
            return False
        request.generated.append(token)
        self.stats.generated_tokens += 1
        if penalized(params):  # the penalties count what the chain was told was chosen
            llama_cpp.llama_sampler_accept(request.chain, token)
        before = len(request.output)
        request.output += self._piece(token)
        if params.stop or params.end_of_answer:
            text = request.output.decode("utf-8", errors="ignore")
            window = max(0, len(request.output[:before].decode("utf-8", errors="ignore")) - 64)
            hits = [text.find(stop, window) for stop in params.stop if stop]
            hits = [hit for hit in hits if hit >= 0]
            if params.end_of_answer is not None:
                end = params.end_of_answer(text)
                if end is not None:
                    hits.append(end)
                    self.stats.answer_end_stops += 1
            if hits:
                cut = min(hits)
                request.output = bytearray(text[:cut].encode("utf-8"))
                self._finish(request, "stop")
                return False
        if len(request.generated) >= params.max_tokens or request.position + 1 >= self.n_ctx:
            self.stats.length_stops += 1
            self._finish(request, "length")
            return False
        if len(request.generated) % 4 == 0 and is_looping(request.generated):
            self.stats.loop_stops += 1
            self._finish(request, "length")
            return False
        request.next_token = token
        return True

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, 64, 0, False)
        return buffer.raw[: max(size, 0)]

    def _logits(self, output_index: int) -> np.ndarray:
        pointer = llama_cpp.llama_get_logits_ith(self._ctx, output_index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def _choose(self, request: _Request, logits: np.ndarray, grammar: Any = None) -> int:
        """Run the request's chain (and ``grammar`` first, if given) over the whole vocabulary.

        Hand-built candidates rather than ``llama_sampler_sample``: in this llama.cpp build that
        call returned another sequence's token when several sequences had logits in one batch.
        """
        if grammar is None and request.params.temperature <= 0:
            return int(logits.argmax())  # greedy: the first maximum, as llama.cpp's sampler
        view = self._candidate_view
        top_k = request.params.top_k
        if grammar is None and 0 < top_k < self.n_vocab:
            # The chain starts with top-k, so only the k best tokens can ever be drawn: handing
            # it those k (numpy's partition) instead of the whole 49k vocabulary gives the same
            # draw and skips filling and scanning 49k candidates per token, which took more of
            # the engine thread than the batched forward pass itself at 16 sampled streams.
            best = np.argpartition(logits, -top_k)[-top_k:]
            size = top_k
            view["id"][:size] = best
            view["logit"][:size] = logits[best]
        else:
            size = self.n_vocab
            view["id"] = self._ids
            view["logit"] = logits
        view["p"][:size] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._candidates, llama_cpp.llama_token_data_p),
            size=size,
            selected=-1,
            sorted=False,
        )
        if grammar is not None:
            llama_cpp.llama_sampler_apply(grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(request.chain, ctypes.byref(array))
        return int(array.data[array.selected].id)

    def _sample(self, request: _Request, output_index: int) -> int:
        logits = self._logits(output_index)
        token = self._choose(request, logits)
        grammar = request.grammar
        if grammar is None:
            return token
        single = self._single
        single[0].id, single[0].logit, single[0].p = token, float(logits[token]), 0.0
        array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(single, llama_cpp.llama_token_data_p),
            size=1,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(array))
        if single[0].logit == float("-inf"):
            # The free choice breaks the grammar: mask the whole vocabulary, then choose again.
            self.stats.grammar_full_passes += 1
            token = self._choose(request, logits, grammar)
        llama_cpp.llama_sampler_accept(grammar, token)
        return token

    def _finish(self, request: _Request, reason: str | None, error: str | None = None) -> None:
        """End a request (``reason=None``: it was cancelled, nobody waits for a result)."""
        if request in self._active:
            self._active.remove(request)
        if request.slot >= 0:
            self.table.release(request.slot)
        for sampler in (request.chain, request.grammar):
            if sampler:
                llama_cpp.llama_sampler_free(sampler)
        request.chain = request.grammar = None
        if reason is None:
            return
        request.deliver(
            GenerationResult(
                text=request.output.decode("utf-8", errors="ignore"),
                finish_reason=reason,
                prompt_tokens=len(request.tokens),
                completion_tokens=len(request.generated),
                reused_tokens=request.reused,
                error=error,
            )
        )


PROMPT_THREADS_MIN = 64
"""Prompt tokens a pass must read before it runs on the prompt threads (``n_threads_batch``)."""

PASS_TILE = 16
"""Tokens per llama.cpp pass that cost about as much as fewer: with f16 weights a pass of 8
tokens (8 sequences x 1) took 47 ms of CPU here, one of 16 (8 x 2, or 16 x 1) 49-55 ms, one of
24 74 ms (AVX-512, one thread; the tiled sgemm kernels work in blocks of this size), and a lone
token 16.5 ms against 27 ms for 5. So each pass is topped up with guessed tokens to the next
multiple of 16 (at least 16), where they are nearly free."""


MAX_GRAMMAR_DEPTH = 1_000
MAX_GRAMMAR_CHARS = 2_000_000


def grammar_too_deep(grammar: str) -> bool:
    """Whether ``grammar`` (GBNF) is too long or nests groups too deep for llama.cpp's parser,
    which recurses once per level of parentheses on the calling thread's stack.

    Why: a refined OpenAPI tool's ``pattern: "^.{0,262144}$"`` became a grammar nested
    262,144 deep, and parsing it overflowed the engine thread's stack: a segmentation fault
    that killed a synthesis run twice. Such a grammar is refused like an unparsable one.
    Parentheses inside quoted literals and character classes are not groups."""
    return len(grammar) > MAX_GRAMMAR_CHARS or _nests_too_deep(grammar)


@lru_cache(maxsize=256)
def _nests_too_deep(grammar: str) -> bool:
    """The depth scan of :func:`grammar_too_deep`, remembered per grammar text.

    Why cached: every constrained request is checked, and a tool set's grammar (the same text
    turn after turn, episode after episode) took 0.9 ms to scan at 15k characters and 3.6 ms
    at 58k, in Python, per request; a hit costs the string's hash, which CPython keeps on the
    object. 256 entries like ``hermes_grammar``'s cache, whose strings these mostly are, so the
    cache holds little text of its own; over-long grammars never get here."""
    depth = 0
    quoted = in_class = escaped = False
    for char in grammar:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif in_class:
            in_class = char != "]"
        elif char == '"':
            quoted = True
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
            if depth > MAX_GRAMMAR_DEPTH:
                return True
        elif char == ")":
            depth -= 1
    return False


def penalized(params: GenerationParams) -> bool:
    """Whether ``params`` sample with a repetition, frequency or presence penalty."""
    return params.temperature > 0 and (
        params.repeat_penalty != 1.0
        or params.frequency_penalty != 0.0
        or params.presence_penalty != 0.0
    )


LOOP_TOKENS = 64
LOOP_PERIOD = 16


def is_looping(generated: Sequence[int]) -> bool:
    """Whether the last ``LOOP_TOKENS`` tokens are one cycle of at most ``LOOP_PERIOD`` tokens
    over and over (``"week-goals": {"week-goals": {...``, ``_to_x_to_y_to_x...``).

    Why: greedy decoding of a small model that enters such a cycle never leaves it; it runs to
    ``max_tokens`` (in BFCL traffic 6 answers of 40 did, two thirds of all generated tokens)
    and the answer is cut off either way. Cutting it here ends it the same, sooner.
    """
    if len(generated) < LOOP_TOKENS:
        return False
    tail = list(generated[-LOOP_TOKENS:])
    return any(tail[period:] == tail[:-period] for period in range(1, LOOP_PERIOD + 1))


def draft_room(tokens: int, n_batch: int) -> int:
    """Guessed tokens a pass of ``tokens`` can take for free: up to the next ``PASS_TILE``."""
    return max(0, min(max(PASS_TILE, -(-tokens // PASS_TILE) * PASS_TILE), n_batch) - tokens)


def lookup_draft(
    sequence: list[int], ngrams: dict[tuple[int, ...], int], indexed: int, limit: int
) -> list[int]:
    """Prompt lookup: the tokens that followed the last 3 (else 2) tokens of ``sequence``
    where they last occurred before, at most ``limit``.

    ``ngrams`` maps each 2- and 3-gram to the position after its latest occurrence; the
    n-grams ending before ``indexed`` are in it already, so each step indexes only the new
    tokens (the caller stores ``len(sequence)`` as the new ``indexed``).
    """
    length = len(sequence)
    for end in range(max(indexed, 2), length):
        ngrams[tuple(sequence[end - 2 : end])] = end
        if end >= 3:
            ngrams[tuple(sequence[end - 3 : end])] = end
    for size in (3, 2):
        start = ngrams.get(tuple(sequence[length - size :])) if length >= size else None
        if start is not None:
            return sequence[start : start + limit]
    return []


def _id_runs(ids: Sequence[int]) -> int:
    """Runs of consecutive ids in a sorted list: ``[0, 1, 2, 5, 6]`` has 2."""
    return sum(1 for index, value in enumerate(ids) if index == 0 or value != ids[index - 1] + 1)


async def generate(
    engine: BatchEngine, tokens: list[int], params: GenerationParams
) -> GenerationResult:
    """Submit to ``engine`` and await the result; cancelling drops the sequence at its next step."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[GenerationResult] = loop.create_future()

    def deliver(result: GenerationResult) -> None:
        def settle() -> None:
            if not future.done():
                future.set_result(result)

        # RuntimeError: the caller's event loop has ended, nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle)

    request = engine.submit(tokens, params, deliver)
    try:
        return await future
    finally:
        if not future.done():
            request.cancelled.set()
            with engine._wake:
                engine._wake.notify()
