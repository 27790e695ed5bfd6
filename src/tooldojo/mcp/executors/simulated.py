"""The ``simulated`` executor: an LLM plays the API (the InfTool "MCP server" agent).

Given the tool's spec, the call and the episode's log of earlier calls, the model answers
with the JSON the real API would return, decoded under a JSON-schema grammar built from the
tool's response schema (OpenAPI ``responses``, MCP ``outputSchema``; a generic result when
there is none). The schema is first bounded (:mod:`.response_schema`): short ASCII strings,
few array items, arguments echoed as constants, so the answer is valid JSON on the first try
and its longest form fits a *token* budget; the work of a call is bounded by tokens, not by a
wall-clock guess that fails under load.

Consistency within an episode comes from the log being in the prompt (so writes are
remembered), from read results being cached per (episode, call) until the next write, and
from identifying arguments pinned in the grammar. A configurable share of calls fails
realistically (not found, permission, rate limit); such injected failures are marked
(``ToolOutcome.injected``) so verification can tell them from failures nobody planned.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tooldojo.llm.base import ChatModel, Constraint, SamplingParams
from tooldojo.mcp.episodes import Episode
from tooldojo.mcp.executors.base import ToolExecutionError, ToolOutcome
from tooldojo.mcp.executors.response_schema import (
    LADDER,
    Bounds,
    ResponsePlan,
    UnboundedSchema,
    plan_response,
)
from tooldojo.mcp.executors.result_checks import invented, runaway_piece
from tooldojo.mcp.registry import compile_validator, describe_errors
from tooldojo.model import Message, Tool

_READ_VERBS = {
    "get", "list", "search", "find", "fetch", "read", "lookup", "query", "check", "count",
    "describe", "show", "view", "retrieve", "estimate", "calculate", "compute", "convert",
    "validate", "preview", "browse", "is", "has",
}  # fmt: skip
_READ_METHODS = {"GET", "HEAD", "OPTIONS"}

SYSTEM_PROMPT = """You are the backend of a real API. You receive one call of one endpoint and \
reply with ONLY the JSON response body that the real service would return: no prose, no \
markdown. Invent specific, plausible values (ids, names, dates, amounts), never placeholders. \
Stay consistent with the call's arguments and with the earlier calls of this session: data \
that was read stays the same, and every change made by an earlier successful call is \
reflected. Keep every text value short."""

WORKED_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Endpoint: get_user\nDescription: Look up a user account by id.\nParameters:\n"
        "- user_id (string, required): The account id.\n"
        'Call: get_user({"user_id": "u_4821"})\nReply with the JSON response body only.',
        '{"id": "u_4821", "name": "Maria Lopez", "email": "maria.lopez@example.com", '
        '"plan": "pro", "created_at": "2023-04-18T09:12:00Z"}',
    ),
    (
        "Endpoint: list_orders\nDescription: List a customer's recent orders.\nParameters:\n"
        "- customer_id (integer, required): The customer.\n"
        "- limit (integer): Most orders to return.\n"
        'Call: list_orders({"customer_id": 3307, "limit": 2})\n'
        "Reply with the JSON response body only.",
        '{"customer_id": 3307, "orders": [{"order_id": "ORD-88412", "total": 54.2, "status": '
        '"shipped"}, {"order_id": "ORD-88107", "total": 12.99, "status": "delivered"}]}',
    ),
    (
        "Endpoint: create_ticket\nDescription: Open a support ticket.\nParameters:\n"
        "- subject (string, required): Short title.\n- priority (string): low, normal or high.\n"
        'Call: create_ticket({"subject": "Printer offline", "priority": "high"})\n'
        "Reply with the JSON response body only.",
        '{"ticket_id": 90215, "subject": "Printer offline", "priority": "high", "status": '
        '"open", "assignee": "Kenji Watanabe", "opened_at": "2024-11-02T16:45:10Z"}',
    ),
    (
        "Endpoint: get_station_reading\nDescription: Latest reading of a weather station.\n"
        "Parameters:\n- station (string, required): Station code.\n"
        'Call: get_station_reading({"station": "NL-ROT-07"})\n'
        "Reply with the JSON response body only.",
        '{"station": "NL-ROT-07", "temperature_c": 11.4, "humidity_pct": 82, "wind_kph": 23, '
        '"observed_at": "2025-03-09T07:30:00Z"}',
    ),
    (
        "Endpoint: delete_file\nDescription: Delete a stored file.\nParameters:\n"
        "- path (string, required): The file's path.\n"
        'Call: delete_file({"path": "/reports/q3-draft.pdf"})\n'
        "Reply with the JSON response body only.",
        '{"path": "/reports/q3-draft.pdf", "deleted": true, "freed_bytes": 482113}',
    ),
    (
        "Endpoint: search_books\nDescription: Search the catalogue by title words.\n"
        "Parameters:\n- query (string, required): Words of the title.\n"
        'Call: search_books({"query": "night watch"})\nReply with the JSON response body only.',
        '{"query": "night watch", "count": 2, "results": [{"isbn": "9780060572983", "title": '
        '"Night Watch", "author": "Terry Pratchett"}, {"isbn": "9781401309695", "title": '
        '"The Night Watch", "author": "Sarah Waters"}]}',
    ),
)
"""Worked exchanges shown before the call (small models copy the spec back instead of
answering unless shown how), one per tool: :func:`worked_example`. Why several: the 135M
server copies the example's values into unrelated results; with one example, 84 of the
scale3 run's first 651 trajectories held its "Maria Lopez" and 110 its timestamp, in 13 %
and 19 % of the passed ones. Written for this project (none from BFCL)."""


def worked_example(tool_name: str) -> tuple[str, str]:
    """The worked (request, reply) shown for ``tool_name``: the same for every call of a tool
    (stable across runs: crc32, not Python's salted hash), spread over the tools."""
    return WORKED_EXAMPLES[zlib.crc32(tool_name.encode()) % len(WORKED_EXAMPLES)]


FAILURES: dict[str, tuple[int, str]] = {
    "not_found": (404, "The requested resource was not found."),
    "permission_denied": (403, "The caller is not allowed to perform this operation."),
    "rate_limited": (429, "Too many requests: rate limit exceeded, retry later."),
}

DEFAULT_BUDGET_TOKENS = 768
"""Tokens one simulated answer may take; the response schema is narrowed until it fits.
At 512 the bookstore's book and order schemas were narrowed to 16-character strings, and
the server model's titles ("The Left Hand of...") were cut there and the call failed; at
768 they keep 24-32 characters. The bound is a ceiling: answers are as long as written."""
TOKENS_PER_SECOND_FLOOR = 2.0
"""The slowest decoding we still wait for (a loaded CPU decodes ~20x faster): the server's
wall-clock limit for a call is derived from its token budget, not guessed."""


def is_read_only(tool: Tool) -> bool:
    """Whether calling ``tool`` only reads: OpenAPI method, MCP hint, else the name's verb."""
    http = tool.metadata.get("http")
    if isinstance(http, dict) and http.get("method"):
        return str(http["method"]).upper() in _READ_METHODS
    annotations = tool.metadata.get("annotations")
    if isinstance(annotations, dict) and "readOnlyHint" in annotations:
        return bool(annotations["readOnlyHint"])
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", tool.name).lower().split("_")
    return words[0] in _READ_VERBS


@dataclass
class _SimulationState:
    """What the simulator remembers about one episode."""

    writes: int = 0
    """Successful writes so far: a read's cache entry is valid until the next write."""
    cache: dict[tuple[str, str, int], ToolOutcome] = field(default_factory=dict)


SERVER_FREQUENCY_PENALTY = 0.4
"""The server role's frequency penalty (a token's logit drops by this much each time it was
generated among the last 64) unless its sampling sets a penalty; it acts only when the role
samples (temperature above 0). Why: the 135M server's failed results were mostly runaways cut
at the string bound ("123456789012345678901234...", "john.john.john.john"), the same loops the
user role's frequency penalty cured (see ``agents.user.USER_FREQUENCY_PENALTY``)."""


TIGHTEN_ON_RETRY = True
"""After a runaway or a string cut at its bound, the retry is decoded at the next rung of
``response_schema.LADDER`` (fewer optional fields and items, then shorter strings). Why: a
third try of the same grammar rescued none of 40 failed calls, while replaying 90 that had
failed, the tighter retry gave 78 valid results against 72, with fewer tokens
(``bench/server_results.py --tighten``)."""


def _tighter(
    plan: ResponsePlan, tool: Tool, arguments: dict[str, Any], budget: int, episode: Episode
) -> ResponsePlan:
    """``plan`` at the rung after its own (the last rung stays), strings no longer than its."""
    chars = plan.bounds.string_chars
    rungs = [replace(rung, string_chars=min(rung.string_chars, chars)) for rung in LADDER]
    index = next((i for i, rung in enumerate(rungs) if rung == plan.bounds), len(LADDER) - 1)
    start = rungs[min(index + 1, len(LADDER) - 1)]
    return plan_response(
        tool.output_schema, arguments, budget, start=start, keep=episode.result_fields
    )


class SimulatedExecutor:
    """Plays any tool set with a :class:`~tooldojo.llm.base.ChatModel`.

    ``failure_rate``: share of calls answered with an injected realistic failure, decided
    deterministically from ``seed``, the episode and the call (so a re-run fails the same
    way). ``max_retries``: how often the model is re-asked when its answer is not JSON or
    breaks the tool's output schema. ``history``: how many earlier calls the prompt shows.
    """

    simulated = True
    """Its results are written by a model, not by the tool (see ``SIMULATED_META_KEY``)."""

    name = "simulated"

    def __init__(
        self,
        model: ChatModel,
        *,
        failure_rate: float = 0.0,
        seed: int = 0,
        max_retries: int = 1,
        history: int = 20,
        sampling: SamplingParams | None = None,
        budget_tokens: int = DEFAULT_BUDGET_TOKENS,
        bounds: Bounds = LADDER[0],
    ):
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        self.model = model
        self.failure_rate = failure_rate
        self.seed = seed
        self.max_retries = max_retries
        self.history = history
        sampling = sampling or SamplingParams(temperature=0.0)
        if not {"repeat_penalty", "frequency_penalty", "presence_penalty"} & (
            sampling.model_fields_set
        ):
            sampling = sampling.model_copy(update={"frequency_penalty": SERVER_FREQUENCY_PENALTY})
        self.sampling = sampling
        self.budget_tokens = budget_tokens
        self.bounds = bounds
        """The loosest narrowing tried first (see :func:`.response_schema.plan_response`)."""
        self.min_tokens_per_s = TOKENS_PER_SECOND_FLOOR
        self.prompt_allowance_s = 60.0
        """Seconds allowed for reading the prompt (and waiting for a model slot) per attempt."""
        self._output_validators: dict[str, Any] = {}

    @property
    def min_timeout_s(self) -> float:
        """The wall-clock limit the server should allow one call (read by ``ToolServer``):
        every attempt's full token budget at :data:`TOKENS_PER_SECOND_FLOOR`, plus prompt."""
        per_attempt = self.budget_tokens / self.min_tokens_per_s + self.prompt_allowance_s
        return (self.max_retries + 1) * per_attempt

    def timeout_cause(self, seconds: float) -> str:
        """Why a call that the token budget bounds still ran out of wall-clock time."""
        return (
            f"the server model decoded under {self.min_tokens_per_s:g} tokens/s for a "
            f"response bounded at {self.budget_tokens} tokens (model {self.model.name!r} "
            "overloaded, or waiting behind other calls for a slot)"
        )

    async def execute(self, tool: Tool, arguments: dict[str, Any], episode: Episode) -> ToolOutcome:
        state: _SimulationState = episode.state.setdefault(
            (self.name, id(self)), _SimulationState()
        )
        canonical = json.dumps(arguments, sort_keys=True, ensure_ascii=False)
        key = (tool.name, canonical, state.writes)
        if key in state.cache:
            return state.cache[key]
        read = is_read_only(tool)
        failure = self._injected_failure(tool, canonical, episode, state.writes)
        if failure is not None:
            kind = failure.value["error"]["type"]
            if kind != "rate_limited":  # a retry after a rate limit may succeed
                state.cache[key] = failure
            return failure
        value = await self._simulate(tool, arguments, episode)
        outcome = ToolOutcome(value)
        if read or outcome.is_error:
            state.cache[key] = outcome
        else:
            state.writes += 1
        return outcome

    def _injected_failure(
        self, tool: Tool, canonical: str, episode: Episode, writes: int
    ) -> ToolOutcome | None:
        if self.failure_rate <= 0.0:
            return None
        rng = random.Random(f"{self.seed}|{episode.id}|{tool.name}|{canonical}|{writes}")
        if rng.random() >= self.failure_rate:
            return None
        kind = rng.choice(sorted(FAILURES))
        status, message = FAILURES[kind]
        error: dict[str, Any] = {"type": kind, "status": status, "message": message}
        if kind == "rate_limited":
            error["retry_after_s"] = rng.choice([1, 2, 5, 10])
        return ToolOutcome({"error": error}, is_error=True, injected=True)

    async def _simulate(self, tool: Tool, arguments: dict[str, Any], episode: Episode) -> Any:
        try:
            plan = plan_response(
                tool.output_schema,
                arguments,
                self.budget_tokens,
                start=self.bounds,
                keep=episode.result_fields,
            )
        except UnboundedSchema as error:
            raise ToolExecutionError(
                f"the simulated {tool.name!r} cannot answer: {error}"
            ) from None
        messages = [Message(role="system", content=SYSTEM_PROMPT)]
        if tool.output_schema:
            example_request, example_reply = worked_example(tool.name)
            messages += [
                Message(role="user", content=example_request),
                Message(role="assistant", content=example_reply),
            ]
        # A tool without a response schema gets no example: the generic result's grammar
        # fixes its shape, and the small model copied an example's names and values into
        # unrelated tools' results (a weather alert answered with "high tide").
        messages.append(Message(role="user", content=self.render_request(tool, arguments, episode)))
        constraint = Constraint(kind="json_schema", schema=plan.schema)
        problem = ""
        tighten = False  # the last try failed on a runaway or a cut string
        for attempt in range(self.max_retries + 1):
            if tighten:
                plan = _tighter(plan, tool, arguments, self.budget_tokens, episode)
                constraint = Constraint(kind="json_schema", schema=plan.schema)
                tighten = False
            # Each try its own draw: with one seed the 135M model wrote the same runaway again
            # and again, correction or not.
            seed = self.sampling.seed if not attempt else (self.sampling.seed or 0) + attempt
            sampling = self.sampling.model_copy(
                update={"max_tokens": plan.max_tokens, "seed": seed}
            )
            completion = await self.model.complete(
                messages, sampling=sampling, constraint=constraint
            )
            text = completion.text.strip()
            if completion.finish_reason == "length":
                problem = (
                    f"the reply hit its budget of {plan.max_tokens} tokens (the bounded schema "
                    "should make that impossible: the backend ignored the grammar)"
                )
            else:
                try:
                    value = json.loads(_strip_fences(text))
                except ValueError as error:
                    problem = f"the reply is not JSON ({error}); backend said: {completion.error}"
                else:
                    value = _end_at_sentence(value, plan.bounds.string_chars)
                    in_strings = _cut_text(value, plan.bounds.string_chars) or _runaway_text(value)
                    problem = (
                        self._output_problem(tool, value) or in_strings or _made_up_failure(value)
                    )
                    tighten = TIGHTEN_ON_RETRY and bool(in_strings) and problem == in_strings
                    if not problem:
                        return value
            messages += [
                Message(role="assistant", content=text),
                Message(
                    role="user",
                    content=f"That reply is invalid: {problem}. "
                    "Reply again with only the corrected JSON.",
                ),
            ]
        raise ToolExecutionError(
            f"the simulated {tool.name!r} gave no valid result after "
            f"{self.max_retries + 1} attempts: {problem}"
        )

    def _output_problem(self, tool: Tool, value: Any) -> str | None:
        if not tool.output_schema:
            return None if isinstance(value, dict | list) else "expected a JSON object or array"
        validator = self._output_validators.get(tool.name)
        if validator is None:
            validator = compile_validator(tool.output_schema, f"tool {tool.name!r} output schema")
            self._output_validators[tool.name] = validator
        problem = describe_errors(validator, value)
        return f"it breaks the output schema {problem}" if problem else None

    def render_request(self, tool: Tool, arguments: dict[str, Any], episode: Episode) -> str:
        """The user message: the tool's spec, the episode's earlier calls and this call."""
        parts = [f"Endpoint: {tool.name}"]
        if tool.description:
            parts.append(f"Description: {tool.description}")
        http = tool.metadata.get("http")
        if isinstance(http, dict) and http.get("method"):
            parts.append(f"HTTP: {http['method'].upper()} {http.get('path', '')}")
        parts.append("Parameters:")
        parts += _parameter_lines(tool) or ["- (none)"]
        if tool.output_schema:
            schema = json.dumps(tool.output_schema, ensure_ascii=False)
            parts.append(f"Response schema: {schema[:1500]}")
        earlier = episode.log[-self.history :] if self.history else []
        if earlier:
            parts.append("Earlier calls in this session (oldest first):")
            for number, record in enumerate(earlier, start=1):
                outcome = "ERROR " if record.is_error else ""
                result = json.dumps(record.result, ensure_ascii=False, default=str)
                args = json.dumps(record.arguments, ensure_ascii=False)
                parts.append(f"{number}. {record.tool}({args}) -> {outcome}{result}")
        parts.append(f"Call: {tool.name}({json.dumps(arguments, ensure_ascii=False)})")
        parts.append("Reply with the JSON response body only.")
        return "\n".join(parts)


def _parameter_lines(tool: Tool) -> list[str]:
    """One line per parameter: compact, and unlike raw JSON Schema not echoed back by models."""
    required = set(tool.required)
    lines = []
    for name, schema in tool.properties.items():
        kind = schema.get("type", "any") if isinstance(schema, dict) else "any"
        flags = ", required" if name in required else ""
        text = schema.get("description", "") if isinstance(schema, dict) else ""
        enum = schema.get("enum") if isinstance(schema, dict) else None
        if enum:
            text = f"{text} One of: {', '.join(map(str, enum))}.".strip()
        lines.append(f"- {name} ({kind}{flags}): {text}".rstrip(": "))
    return lines


def _cut_text(value: Any, chars: int) -> str:
    """Why ``value`` holds text the length bound cut off, or ``""``.

    A string at the bound was closed by the grammar, not by the model. That breaks prose (cut
    mid-sentence) and shows a runaway (a number counting on, a word over and over); a single
    token at the bound (an id, a URL, a dotted name) is still a usable value. Failing those
    too made about half of the execution failures on the refined corpus (6 of 11 among 30
    finished episodes: ids such as ``com.google.apps.vue.ComV``), after a retry that the 135M
    server model never used.
    """

    def cut(text: str) -> str:
        if (
            len(text) >= chars
            and not _timestamp(text)
            and (any(c.isspace() for c in text) or _RUNAWAY.search(text))
        ):
            return f"the text {text[:24]!r}... was cut at {chars} characters; write shorter values"
        return ""

    return _first_string_problem(value, cut)


def _first_string_problem(value: Any, problem: Callable[[str], str]) -> str:
    """``problem`` of the first string in ``value`` (nested dicts and lists, in order) that
    has one, or ``""``: one walk for the checks of an answer's strings."""
    if isinstance(value, str):
        return problem(value)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((p for item in items if (p := _first_string_problem(item, problem))), "")


def _runaway_text(value: Any) -> str:
    """Why ``value`` holds a runaway string at any length (see :func:`runaway_piece`), or
    ``""``. Checked before the answer is accepted, so the server gets another try: 21 of the
    scale3 run's first 651 trajectories held one below the string bound, where
    :func:`_cut_text` does not look."""

    def runaway(text: str) -> str:
        piece = runaway_piece(text)
        if piece is None:
            return ""
        return f"the text {text[:24]!r} repeats {piece[:12]!r} over and over; write real values"

    return _first_string_problem(value, runaway)


def _made_up_failure(value: Any) -> str:
    """Why ``value`` is not the success it should be, or ``""``: it reports a failure ("Error:
    not found", ``{"success": false}``) or holds filler (``");"``). The server is asked for a
    success (failures are injected on purpose, and labelled), so such an answer gets another
    try rather than reaching the execution gate, which fails the trajectory for it: in the
    scale3 run (2,361 played) 84 results read as a failure and 29 held filler, in 88
    trajectories that failed no other check."""
    found = invented(value)
    if found is None:
        return ""
    kind, what = found
    if kind == "failure":
        return f"the result reports a failure ({what!r}) but the call succeeded; write its success"
    return f"the value {what!r} says nothing; write real values"


def _end_at_sentence(value: Any, chars: int) -> Any:
    """``value`` with each prose string the bound cut ended at its last full sentence, when one
    of at least ``SENTENCE_MIN`` characters ends before the cut: "Deleted the note. It will
    be gone from all dev" becomes "Deleted the note.", as a stop at the sentence's end would
    have left it. A cut with no sentence end before it stays cut (and fails the call)."""
    if isinstance(value, dict):
        return {k: _end_at_sentence(v, chars) for k, v in value.items()}
    if isinstance(value, list):
        return [_end_at_sentence(v, chars) for v in value]
    if isinstance(value, str) and len(value) >= chars and any(c.isspace() for c in value):
        ends = [m.end() for m in _SENTENCE_END.finditer(value)]
        kept = value[: ends[-1]] if ends else ""
        if len(kept) >= SENTENCE_MIN and not _RUNAWAY.search(kept):
            return kept
    return value


SENTENCE_MIN = 12
_SENTENCE_END = re.compile(r"[a-z0-9)][.!?](?=\s)")
"""A sentence's end: a word, then a stop, then a space (not "e.g.x" or "v1.2")."""


_RUNAWAY = re.compile(r"\d{12}|(.{2,}?)\1{2,}")
"""Twelve digits in a row, or a piece repeated three times running (``john.john.john.``).
Broader than :func:`runaway_piece` (two-character pieces, digits alone) because it only reads
a string the bound cut, where such a run is what ran into the bound; below the bound
``1000000000`` or ``ababab`` can be a real value."""


def _timestamp(text: str) -> bool:
    """Whether ``text`` is a whole ISO date, time or date-time: its length is fixed by its
    format (bounded by the grammar's format rule, not by the string bound), so reaching the
    string bound does not mean it was cut (``2025-12-31T14:00:00Z`` is 20 characters)."""
    return bool(_TIMESTAMP.fullmatch(text))


_TIMESTAMP = re.compile(
    r"\d{4}-[01]\d-[0-3]\d([T ][0-2]\d:[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-][0-2]\d:?[0-5]\d)?)?"
    r"|[0-2]\d:[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
)


def _strip_fences(text: str) -> str:
    """Small models wrap JSON in markdown fences even when told not to."""
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    return match.group(1) if match else text
