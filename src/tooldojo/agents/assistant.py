"""The assistant: the policy model on any backend, one step at a time.

One step is one model answer: calls or text. The episode runner loops steps, sending the calls
through an MCP client to the tool server and appending the results, until the assistant answers
in text or runs out of steps. The tool-call constraint (on by default) makes every call the
backend emits name an offered tool with schema-valid arguments while still allowing a plain
text answer, which clarification and irrelevance need.
"""

from __future__ import annotations

import json
import re

from tooldojo.agents.guidance import (
    EXAMPLE_WORDS,
    WORD,
    Guidance,
    GuidanceStats,
    clarify_constraint,
    forced_completion,
    grounded_prose_constraint,
    matches_label,
    refuse_constraint,
    result_values,
    step_hint,
    text_problems,
)
from tooldojo.llm._shared import new_call_id
from tooldojo.llm.base import ChatModel, Completion, Constraint, SamplingParams
from tooldojo.model import Label, Message, Tool
from tooldojo.verify.content import since_last_user

ASSISTANT_SYSTEM_PROMPT = (
    "You are a helpful assistant that can call tools. When a tool fits the user's request, call "
    "it with the exact values the user gave. If a required value is missing, ask the user for "
    "it instead of guessing. If no tool fits, answer directly without calling any tool. After "
    "tool results arrive, use them: call another tool if needed, otherwise answer the user."
)


PROSE_CONSTRAINT = Constraint(
    kind="json_schema",
    schema={
        "type": "object",
        "properties": {"answer": {"type": "string", "pattern": f"^({WORD} ){{0,40}}{WORD}[?]?$"}},
        "required": ["answer"],
    },
)
"""A text answer decoded as ``{"answer": "..."}`` in plain prose characters (no digits: the
small model filled them with number dumps; see ``guidance.WORD``)."""


TEXT_TEMPERATURE = 0.7
TEXT_REPEAT_PENALTY = 1.3
"""Sampling of every text try under guidance (a final answer, a clarifying question, a
refusal): this temperature, and this repetition penalty unless the role's sampling sets a
penalty of its own (any of the three). Why: the 135M model's answers looped ("ire: ire:
ire:", "izad, izad, ..."): greedy first tries without a penalty passed the turn checks on 29
of 40 recorded text steps (final answers 4 of 13) at 451 generated tokens per passing step;
with these, 37 of 40 (final answers 10 of 13) at 236 (``bench/assistant_text.py``, same 40
steps)."""


ANSWER_VIEW_LEAD = "The tools you called for it returned:"
"""The line that introduces the results in :func:`answer_view`."""


def copies_prompt(text: str, messages: list[Message]) -> str | None:
    """How a final answer copies its prompt rather than answering, or ``None``: the lead line
    of :func:`answer_view` (the 135M model did, 6 times in 48 replayed answers), or a word of
    the instructions' example the conversation never used (:data:`guidance.EXAMPLE_WORDS`).
    Such an answer is tried again like one that fails the turn checks."""
    lowered = text.lower()
    if ANSWER_VIEW_LEAD.lower() in lowered:
        return "copies the answer view's lead line"
    said = " ".join(m.content or "" for m in messages).lower()
    copied = [w for w in EXAMPLE_WORDS if re.search(rf"\b{w}\b", lowered) and w not in said]
    return f"copies the instructions' example ({copied[0]})" if copied else None


def answer_problems(
    completion: Completion, label: Label, messages: list[Message], tools: list[Tool]
) -> list[str]:
    """Why a text try is not accepted (empty when it is): the turn checks
    (:func:`guidance.text_problems`) and, for a final answer, a copy of its prompt."""
    copied = copies_prompt(completion.text, messages) if label.kind == "text" else None
    copy = [f"copies_prompt: {copied}"] if copied else []
    return copy + text_problems(completion, label, messages, tools)


def answer_view(messages: list[Message], system: str) -> list[Message] | None:
    """What the model is shown to write a final answer from, when results came back since
    the last user message: the request and the results in one plain user message, under the
    step's instructions, with no tool list. ``None`` when there are no results.

    Why: under the full view (every offered tool's JSON schema, then the tool messages, a
    role SmolLM2's chat template never saw) the 135M model wrote word salad around a quoted
    value ("You can't have one ... on the 31 page of a database called management!"). The
    recorded conversation is unchanged: only the prompt of this step is. The answer is still
    checked against the real conversation, and one that copies the prompt is tried again
    (:func:`copies_prompt`). Replaying recorded final answers of the scale run with both views
    in one run (``bench/assistant_text.py --kinds text --variants repeat,full``, 2 busy
    cores): 24 steps passed the turn checks 19 against 18 in 163 s against 257 s; 48 others,
    42 against 40 in 297 s against 521 s, with made-up words 5.7 % against 7.1 %. The answers
    read no better: the gain is the time, since the prompt is a tenth as long. The results
    given in the system message, with the request as the user's, passed fewer (18 of 24)."""
    request, results = since_last_user(messages, len(messages))
    if not results or all(m.role != "user" for m in messages):
        return None
    called = {c.id: c.name for m in messages for c in (m.tool_calls or []) if c.id}
    lines = [
        f"- {m.name or called.get(m.tool_call_id or '', 'tool')}"
        f"{' (failed)' if m.is_error else ''}: {(m.content or '').strip()}"
        for m in results
    ]
    prompt = (
        f"My request: {request}\n\n{ANSWER_VIEW_LEAD}\n"
        + "\n".join(lines)
        + "\n\nAnswer my request from these results."
    )
    return [Message(role="system", content=system), Message(role="user", content=prompt)]


def _unwrap_prose(completion: Completion) -> Completion:
    """The ``answer`` of a :data:`PROSE_CONSTRAINT` completion as its plain text."""
    try:
        text = json.loads(completion.text)["answer"]
    except (ValueError, KeyError, TypeError):
        return completion
    return completion.model_copy(update={"text": str(text).strip()})


class AssistantAgent:
    """Asks ``model`` for the next assistant message given the conversation so far."""

    def __init__(
        self,
        model: ChatModel,
        *,
        system_prompt: str = ASSISTANT_SYSTEM_PROMPT,
        sampling: SamplingParams | None = None,
        constrain: bool = True,
        guidance: Guidance = "none",
        text_attempts: int = 4,
        focused_answers: bool = True,
    ):
        self.model = model
        self.system_prompt = system_prompt
        self.sampling = sampling or SamplingParams(temperature=0.0, max_tokens=384)
        self.constrain = constrain
        self.guidance = guidance
        self.text_attempts = text_attempts
        self.focused_answers = focused_answers
        self.stats = GuidanceStats()

    def system_message(self) -> Message:
        return Message(role="system", content=self.system_prompt)

    async def step(
        self, messages: list[Message], tools: list[Tool], seed: int, label: Label | None = None
    ) -> Completion:
        """The next answer; calls get ids if the backend gave none (results answer by id).

        ``label`` is the step's planned label; how much of it the model sees depends on
        :attr:`guidance` (see :mod:`tooldojo.agents.guidance`).
        """
        guided = self.guidance != "none" and label is not None
        if guided and label.kind != "call":
            return await self._text_step(messages, tools, seed, label)
        constraint = Constraint(kind="tool_calls", allow_text=True) if self.constrain else None
        if guided:
            # "label" guidance may also bound the number of calls (it knows the label anyway);
            # it stops a weak model from emitting calls until it runs out of tokens.
            most = len(label.calls) if self.guidance == "label" else None
            constraint = Constraint(kind="tool_calls", allow_text=False, max_calls=most)
        sampling = self.sampling.model_copy(update={"seed": seed})
        completion = await self.model.complete(
            messages, tools, sampling=sampling, constraint=constraint
        )
        if guided and self.guidance == "label":
            if matches_label(completion, label, messages, tools):
                self.stats.counts["own"] += 1
            else:
                self.stats.counts["forced"] += 1
                completion = forced_completion(label, messages, tools, self.model.name)
        for call in completion.tool_calls:
            if not call.id:
                call.id = new_call_id()
        return completion

    async def _text_step(
        self, messages: list[Message], tools: list[Tool], seed: int, label: Label
    ) -> Completion:
        """A text step under guidance: the model, told what the step is for, gets a few
        tries to write an answer that passes the turn checks; the last try is returned as
        it is otherwise (no template stands in for it), and verification drops it."""
        instructions = f"{self.system_prompt}\n\n{step_hint(label, tools)}"
        hinted = [
            Message(role="system", content=instructions),
            *(m for m in messages if m.role != "system"),
        ]
        shown_tools = tools
        focused = None
        if label.kind == "text" and self.focused_answers:
            focused = answer_view(messages, instructions)
        if focused is not None:
            hinted, shown_tools = focused, []
        completion = None
        # A final answer after results must quote one of the values they add: the retries of
        # such an answer are decoded under a grammar that requires one (each try another).
        values = result_values(messages) if label.kind == "text" else []
        penalties = {"repeat_penalty", "frequency_penalty", "presence_penalty"}
        own_penalty = bool(penalties & self.sampling.model_fields_set)
        for attempt in range(self.text_attempts):
            update: dict = {"seed": seed + attempt, "temperature": TEXT_TEMPERATURE}
            if not own_penalty:
                update["repeat_penalty"] = TEXT_REPEAT_PENALTY
            sampling = self.sampling.model_copy(update=update)
            # First free text; then prose under a grammar (no markup, braces or quotes), which
            # keeps a weak model from echoing the tool protocol instead of answering.
            constraint = None if attempt == 0 else PROSE_CONSTRAINT
            if attempt and values:
                constraint = grounded_prose_constraint(values[(attempt - 1) % len(values)])
            elif attempt and label.kind == "clarify":
                constraint = clarify_constraint(label) or PROSE_CONSTRAINT
            elif attempt and label.kind == "refuse":
                constraint = refuse_constraint()
            completion = await self.model.complete(
                hinted, shown_tools, sampling=sampling, constraint=constraint
            )
            if not completion.ok and not completion.text.strip():
                return completion  # the backend failed, not the model: the episode is retried
            if constraint is not None:
                completion = _unwrap_prose(completion)
            if not answer_problems(completion, label, messages, tools):
                if constraint is not None and constraint is not PROSE_CONSTRAINT:
                    # The model wrote it under a grammar that required a result value (a
                    # final answer), the missing parameter and a question mark (a clarifying
                    # turn) or words saying it cannot help (a refusal): marked so accounting
                    # can tell these answers apart.
                    tag = {"text": "grounded", "refuse": "refuses"}.get(label.kind, "asks")
                    self.stats.counts[f"{tag}_text"] += 1
                    completion = completion.model_copy(
                        update={"model": f"{tag}({completion.model})"}
                    )
                self.stats.counts["own_text"] += 1
                return completion
        self.stats.counts["failed_text"] += 1
        assert completion is not None
        return completion
