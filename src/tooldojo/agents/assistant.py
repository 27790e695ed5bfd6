"""The assistant: the policy model on any backend, one step at a time.

One step is one model answer: calls or text. The episode runner loops steps, sending the calls
through an MCP client to the tool server and appending the results, until the assistant answers
in text or runs out of steps. The tool-call constraint (on by default) makes every call the
backend emits name an offered tool with schema-valid arguments while still allowing a plain
text answer, which clarification and irrelevance need.
"""

from __future__ import annotations

import json

from tooldojo.agents.guidance import (
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
    ):
        self.model = model
        self.system_prompt = system_prompt
        self.sampling = sampling or SamplingParams(temperature=0.0, max_tokens=384)
        self.constrain = constrain
        self.guidance = guidance
        self.text_attempts = text_attempts
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
        hinted = [
            Message(role="system", content=f"{self.system_prompt}\n\n{step_hint(label, tools)}"),
            *(m for m in messages if m.role != "system"),
        ]
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
                hinted, tools, sampling=sampling, constraint=constraint
            )
            if not completion.ok and not completion.text.strip():
                return completion  # the backend failed, not the model: the episode is retried
            if constraint is not None:
                completion = _unwrap_prose(completion)
            if not text_problems(completion, label, messages, tools):
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
