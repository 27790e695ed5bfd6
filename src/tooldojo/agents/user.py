"""The user simulator: turns a planned goal into what a person would type.

The planner has already fixed the target calls; the user's job is to ask for them naturally,
carrying every planned value (so the label is reachable) without naming the tool (so the
assistant has to pick it). A model writes the request in the scenario's persona and style,
few-shot from a pool of style examples written for this project
(:mod:`tooldojo.agents.request_examples`); the text is checked (every planned value present,
no withheld value, no tool name, no ``name: value`` fields) and, when the model cannot satisfy
the check, a style-aware template may write it instead, but only while templated episodes
stay under ``template_cap`` of all episodes: above it :class:`TemplateCapReached` is raised and
the episode is dropped, not templated. The source of every message is recorded so data
quality can be measured per source.

The tries (the first free, the others under :func:`values_constraint`) may run in rounds of
``parallel`` at once; the first acceptable one in try order is kept, so a seed picks the same
message however the backend schedules them. A frequency penalty keeps the small model out of
the loops that used to sink half the requests. ``bench/user_requests.py`` measures it.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from tooldojo.agents.personas import Style, style_of
from tooldojo.agents.request_examples import details_text, draw_examples
from tooldojo.llm.base import ChatModel, Constraint, SamplingParams, Usage
from tooldojo.mcp.executors.result_checks import scalar_leaves
from tooldojo.model import Message, Scenario
from tooldojo.verify.content import STOPWORDS, content_words, not_english
from tooldojo.verify.grounding import normalize
from tooldojo.verify.requests import (
    ASK,
    assistant_voice,
    echoes,
    loops,
    number_dump,
    numbers_in,
)
from tooldojo.verify.words import allowed_words, shown, too_many_made_up


class TemplateCapReached(Exception):
    """The model could not write a message and templates already fill their share."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])
        """What was wrong with each failed try (for counting failures by reason)."""


DEFAULT_TEMPLATE_CAP = 0.10
"""Largest share of episodes that may carry a templated user message."""

USER_FREQUENCY_PENALTY = 0.4
"""The user role's frequency penalty (each time a token was generated among the last 64, its
logit drops by this much) unless its sampling sets a penalty. Without one the 135M model looped
in most failed requests ("ia ia ia ia", "xtd. xtd. xtd.", "no problem - no problem - ..."):
loops were the first reason of a drop. On 64 planned scenarios (bench/user_requests.py, seed
0) the model wrote 40 requests without a penalty, 45 with this one, 48 with a repeat penalty
of 1.1 and 51 with 1.3; but the repeat penalty, which hits every token seen once, pushed the
model into invented words ("firewman", "noocamping"): 4.4 % and 7.5 % of the accepted
requests' words against 2.7 % without and 3.9 % with this. It is also OpenAI's own field,
so an OpenAI-compatible backend gets the same setting."""

PARALLEL_CANDIDATES = 1
"""Tries of one message decoded at once (see ``UserSimulator.parallel``). One, because in
synthesis the engines' batches are already full (16 episodes in flight, two engines of 8
sequences): on 64 scenarios at 16 in flight, rounds of two took as long per request as single
tries (35.9 s against 31.8 s, noise) and 5 % more tokens per accepted request (a try that
would not have run); with 4 in flight (32 scenarios) no faster either (8.9 s against 8.2 s):
on these CPUs a pass over more sequences costs more. Worth raising for a backend with idle
parallel capacity (a GPU server with many slots)."""


@dataclass
class UserText:
    """One user message and how it was made (``model`` or ``template``)."""

    text: str
    source: str
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    problems: list[str] = field(default_factory=list)
    constrained: bool = False
    """Written by the model under a grammar that required the planned values (see
    :func:`values_constraint`); still the model's words, marked so it can be counted."""


def words(name: str) -> str:
    """``bookId`` / ``start_date`` → ``book id`` / ``start date``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ")
    return re.sub(r"\s+", " ", spaced).strip().lower()


def render_value(value: Any) -> str:
    """A value as a person would write it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else str(value)
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(render_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{words(k)} {render_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(render_value(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


def leaves(value: Any) -> list[Any]:
    """Scalar values a request must carry (booleans are phrased, not quoted: not checked;
    blank strings say nothing)."""
    return [leaf for leaf in scalar_leaves(value) if not isinstance(leaf, str) or leaf.strip()]


def carried(hidden: list[Any], shown: list[Any]) -> list[Any]:
    """The values of ``hidden`` that a value of ``shown``, written out, contains: a request
    must carry the shown values, so it cannot leave these out."""
    texts = [render_value(v) for v in shown]
    return [v for v in hidden if any(mentions(text, v) for text in texts)]


def mentions(text: str, value: Any) -> bool:
    """Whether ``text`` carries ``value`` (case-insensitive; numbers in common spellings; a
    value of up to three characters only as a word of its own)."""
    lowered = text.lower()
    if isinstance(value, str):
        size = len(value.strip())
        if size > 3:
            return value.lower() in lowered
        # A short value ("A", "eu", "on") is inside nearly any text: it counts only as a word of
        # its own, and one letter in its own case (seat "A" is not the article "a"), or a
        # clarify turn withholding "A" could never be written without it.
        haystack, needle = (text, value) if size == 1 else (lowered, value.lower())
        return bool(re.search(rf"(?<![^\W_]){re.escape(needle)}(?![^\W_])", haystack))
    spellings = {str(value)}
    if isinstance(value, float) and value.is_integer():
        spellings |= {str(int(value)), f"{int(value):,}"}
    elif isinstance(value, int | float):
        spellings.add(f"{value:,}")
    return any(re.search(rf"(?<![\d.]){re.escape(s)}(?![\d])", lowered) for s in spellings)


@dataclass
class RequestCheck:
    """What a request for one scenario turn must and must not contain."""

    required: list[Any]
    forbidden: list[Any]
    tool_names: list[str]
    keys: list[str] = field(default_factory=list)
    """Parameter names that must not appear as ``name: value`` fields."""
    must_ask: bool = False
    """An opening message must ask for something (a question or a verb of asking or doing),
    as the request gate demands: a bare statement is retried, not kept to fail there."""
    topics: list[set[str]] = field(default_factory=list)
    """Per asked tool, the content words of its name and description: the message must share
    one with each, as the request gate's ``off_goal`` demands (the echo "Please provide the
    x" asked for nothing the tool does)."""
    topic_word: str | None = None
    """The start of the first asked tool's most telling word (see :func:`topic_word`), which
    the values grammar requires."""
    echo_of: str = ""
    """The assistant's message before this one: a message that mostly repeats it (the request
    gate's ``echo_request``) is retried, not kept to fail there."""
    opens: bool = False
    """The message opens a turn, so it may not be a dump of numbers (the request gate's
    ``number_dump``); an answer to a clarifying question may be just the value."""
    parallel: int = 1
    """The most calls one planned step of the turn makes: a parallel request may say its
    phrase once per call, as the request gate's ``loop_request`` allows."""
    vocabulary: set[str] = field(default_factory=set)
    """Words the message may use though no dictionary has them (the tools, values, persona and
    the assistant's message): more than a stray made-up word is retried, not kept to fail the
    request gate's ``made_up_request``, which allows all of these and the rest of the
    conversation."""

    def unwritable(self) -> list[str]:
        """Problems every message carrying the required values has (the plan's, not the
        writer's): a required value that holds a withheld one or a tool's name, or that loops
        by itself. No try can pass, so none is made."""
        out = []
        shown = [render_value(v) for v in self.required]
        withheld = carried(self.forbidden, self.required)
        if withheld:
            out.append("a planned value holds withheld " + ", ".join(map(render_value, withheld)))
        named = [n for n in self.tool_names if n and any(n.lower() in t.lower() for t in shown)]
        if named:
            out.append("a planned value names the tool " + ", ".join(named))
        looping = [text for text in shown if loops(text)]
        if looping:
            out.append("a planned value loops: " + looping[0][:60])
        return out

    def problems(self, text: str) -> list[str]:
        out = []
        if not text.strip():
            return ["empty message"]
        missing = [v for v in self.required if not mentions(text, v)]
        if missing:
            out.append("missing " + ", ".join(render_value(v) for v in missing[:4]))
        leaked = [v for v in self.forbidden if mentions(text, v)]
        if leaked:
            out.append("mentions withheld " + ", ".join(render_value(v) for v in leaked))
        named = [n for n in self.tool_names if n and n.lower() in text.lower()]
        if named:
            out.append("names the tool " + ", ".join(named))
        if _ECHO.search(text):
            out.append("repeats the instructions instead of writing the message")
        fields = [
            k
            for k in self.keys
            if re.search(rf"(?i)\b{re.escape(words(k))}\s*[:=]", text)
            or f"({words(k)})" in text.lower()  # "DE (region)": the prompt's form, copied
        ]
        if fields:
            out.append("lists " + ", ".join(fields) + " as fields")
        if re.search(r"```|</?tool_|\{\s*\"", text):
            out.append("carries code or markup")
        expected = numbers_in(self.required)
        if loops(text, self.parallel):
            out.append("loops (a word or phrase over and over)")
        if not_english(text):
            out.append("not English")
        if assistant_voice(text):
            out.append("speaks as the assistant, not as the user")
        if self.echo_of and echoes(text, self.echo_of):
            out.append("repeats the assistant's message")
        if self.opens and number_dump(text, expected):
            out.append("not a message: mostly numbers and symbols")
        said = content_words(text)
        if any(topic and not topic & said for topic in self.topics):
            out.append("does not say what it wants done")
        if self.must_ask and not ASK.search(text):
            out.append("asks for nothing (no question, no request)")
        invented = too_many_made_up(text, self.vocabulary)
        if invented is not None:
            out.append("made-up words: " + shown(invented))
        return out


_ECHO = re.compile(
    r"(?i)\bcase \d+:|do not name any|include these details|write only the message|^goal:"
    r"|\bdetails:|you say it later|leave out:|say it later|will be asked for it"
    r"|the assistant asked (you|me)|answer it in your own words|giving exactly these"
)


USER_PROSE = "A-Za-z0-9 .,:;'!?%$&/@#+_-"
"""Characters of a typed message without quotes, braces, parentheses or markup: no code, and
not the prompt's "value (name)" form, which the small model copied into its messages."""

USER_WORD = "[A-Za-z][a-z']{0,13}([-][a-z]{1,9})?[.,:;!]?"
"""One word of the model's own around the planned values: a letter, then lower-case letters
(one hyphen at most), perhaps punctuation; no digits, no ``#@+/_``, no capitals inside. Under
the values grammar with free character classes the 135M model filled every free span with more
numbers ("199.23, 45.88, 408.72, 10.23, 10.23, ...") or punctuation runs ("- - - -",
".m.m.m"); with any letters and hyphens, with chains and capitals ("vu-vu-vu-vu-vu",
"ZA-Z-I-C-I-A-M-", "ik-I, ik-I"). The planned values are the only numbers, ids and odd
spellings a request needs, and they are written as literals."""

USER_BARE_WORD = "[A-Za-z][a-z']{0,13}([-][a-z]{1,9})?"
""":data:`USER_WORD` without the punctuation after it: the word before a question mark."""

OPENING_WORDS = (6, 8)
"""Free words the values grammar admits before and after the topic word."""
BETWEEN_WORDS = 5
"""Free words between two planned values (and up to ``OPENING_WORDS[1]`` after the last one).
The model does not know which value the grammar requires next, so long free spans between
them filled with babble; shorter spans bring it to the next value sooner."""


def topic_word(ask: dict[str, Any]) -> str | None:
    """The first five letters of the longest content word of the asked tool's description
    (else of its name): the most telling one ("reciprocal" of "Return the reciprocal of the
    argument") and a stem the request gate's ``off_goal`` reads as the topic."""
    for text in (str(ask.get("description") or ""), normalize(str(ask.get("tool") or ""))):
        found = [w for w in re.findall(r"[a-z]{4,}", normalize(text)) if w not in STOPWORDS]
        if found:
            return max(found, key=len)[:5]
    return None


def values_constraint(
    values: list[Any],
    *,
    most: int = 10,
    question: bool = False,
    topic: str | None = None,
) -> Constraint | None:
    """A message in plain characters that must carry ``values`` in the given order, each
    written exactly; the model writes every word around them. ``None`` when a value holds
    characters outside :data:`USER_PROSE` or there are more than ``most`` of them, or when
    there is neither a value nor a topic to require.

    ``topic``: the start of a telling word of the asked tool ("recip" of "reciprocal"); the
    message must use it (the model ends the word) before the values, so it says what it
    wants done (the request gate's ``off_goal``). Under the grammar without it, the 135M
    model wrote the values inside unrelated words. One word only: the llama.cpp backend
    drops patterns with alternation.

    Why: a small model paraphrases or drops odd values (ids such as ``bk_7f3a9c``), and such
    a request is rejected; asked under this grammar it keeps its own sentence and the value.
    Non-alphanumeric characters are one-character classes, since llama.cpp's pattern
    converter mistranslates regex escapes.
    """
    texts = list(dict.fromkeys(render_value(v).strip() for v in values))
    if len(texts) > most:
        return None
    if any(not t or not re.fullmatch(f"[{USER_PROSE}]+", t) for t in texts):
        return None
    stem = topic if topic and re.fullmatch("[a-z]{3,}", topic) else None
    if not texts and not stem:
        return None
    w = USER_WORD
    literals = ["".join(c if c.isalnum() or c == " " else f"[{c}]" for c in t) for t in texts]
    before, after = OPENING_WORDS
    # The end, after the topic word or the last value: up to ``after`` words. An opening
    # request asks, so it ends in a question mark, right after a word without punctuation
    # or after the value: the free ending put one after a comma ("nothing to do,?") in 238
    # of the 868 user messages of the scale run's passed data.
    if question:
        tail = f"([.,;:!]?( {w}){{0,{after - 1}}} {USER_BARE_WORD})?[?]$"
    else:
        tail = f"[.,;:!?]?( {w}){{0,{after}}}$"
    if stem:
        said = f"({w} ){{0,{before}}}[{stem[0].upper()}{stem[0]}]{stem[1:]}[a-z]*"
        opening = f"{said}[.,:;!]?( {w}){{0,{after}}}"
    else:
        said, opening = "", f"{w}( {w}){{0,{after}}}"
    # Each value stands as its own word: a space before it, a space or punctuation after it
    # (else the model glues it to its words: "alsocal_8d2e41").
    between = f"[.,;:!?]?( {w}){{0,{BETWEEN_WORDS}}} "
    # no value means a topic: the topic word, then the end
    pattern = f"^{opening} " + between.join(literals) + tail if texts else f"^{said}{tail}"
    return Constraint(
        kind="json_schema",
        schema={
            "type": "object",
            "properties": {"message": {"type": "string", "pattern": pattern}},
            "required": ["message"],
        },
    )


def _longest_message(values: list[Any]) -> int:
    """Tokens a full message under :func:`values_constraint` may take: each value's characters
    (at most one token each) and a few tokens per free word. Not a strict bound (a free word
    may spell out in more), but far above what a message that does not loop needs."""
    texts = list(dict.fromkeys(render_value(v).strip() for v in values))
    word = 4  # tokens of a free word with its space and punctuation (most take one or two)
    opening = 16 + word * (sum(OPENING_WORDS) + 1)  # the JSON wrapper, the opening words
    return opening + sum(map(len, texts)) + (word * BETWEEN_WORDS + 2) * len(texts)


FREE_MESSAGE_TOKENS = 64
"""Tokens a free try may take besides the planned values' characters. The free tries the
checks accepted took 6 to 60 tokens (bench/user_requests.py, 3 x 64 scenarios); those that
ran to the role's 160 were the model answering as an assistant or rambling (5 to 14 in 64,
a third of all free-try tokens), rejected every time."""


def _free_message(values: list[Any]) -> int:
    """Token limit of a free try: :data:`FREE_MESSAGE_TOKENS` and room for every value."""
    return FREE_MESSAGE_TOKENS + sum(len(render_value(v)) for v in values)


def _unwrap_message(text: str) -> str:
    try:
        return str(json.loads(text)["message"])
    except (ValueError, KeyError, TypeError):
        return text


class UserSimulator:
    """Writes user messages for scenarios with ``model`` (``None``: templates only)."""

    def __init__(
        self,
        model: ChatModel | None,
        *,
        sampling: SamplingParams | None = None,
        attempts: int = 4,
        template_cap: float = DEFAULT_TEMPLATE_CAP,
        parallel: int = PARALLEL_CANDIDATES,
    ):
        if not 0.0 <= template_cap <= 1.0:
            raise ValueError("template_cap must be between 0 and 1")
        if attempts < 1 or parallel < 1:
            raise ValueError("attempts and parallel must be at least 1")
        self.model = model
        sampling = sampling or SamplingParams(temperature=0.8, max_tokens=160)
        if not {"repeat_penalty", "frequency_penalty", "presence_penalty"} & (
            sampling.model_fields_set
        ):
            sampling = sampling.model_copy(update={"frequency_penalty": USER_FREQUENCY_PENALTY})
        self.sampling = sampling
        self.attempts = attempts
        self.parallel = parallel
        """Tries decoded at once: a batching backend steps them together, so a round of
        ``parallel`` costs about the latency of one; the first acceptable in attempt order
        wins (the same choice for a seed whatever finishes first) and later ones are
        cancelled."""
        self.template_cap = template_cap if model is not None else 1.0
        self.accepted: set[str] = set()
        """Episodes whose opening request was written (by the model or a template)."""
        self.templated: set[str] = set()

    def _may_template(self, scenario: Scenario) -> bool:
        """Charge ``scenario`` a template if the cap allows it (once per episode)."""
        if scenario.id in self.templated:
            return True
        # Counted over episodes that yield a trajectory, so the cap bounds the share of
        # templated samples in the output, not of attempts (dropped ones do not dilute it).
        if len(self.templated) + 1 > self.template_cap * (len(self.accepted | {scenario.id})):
            return False
        self.templated.add(scenario.id)
        return True

    async def request(
        self, scenario: Scenario, turn_index: int, rng: random.Random, after: str = ""
    ) -> UserText:
        """The user message opening ``turn_index`` of ``scenario``; ``after``: the assistant's
        last message, which it must not parrot."""
        asks = _asks(scenario, turn_index)
        turn = scenario.turns[turn_index]
        withheld = list(turn.withheld)
        check = RequestCheck(
            required=[
                leaf
                for ask in asks
                for key, value in ask.get("values", {}).items()
                if key not in withheld
                for leaf in leaves(value)
            ],
            forbidden=[leaf for value in turn.withheld.values() for leaf in leaves(value)],
            tool_names=[ask["tool"] for ask in asks if ask.get("tool") and len(ask["tool"]) > 3],
        )
        check.keys = [k for ask in asks for k in ask.get("values", {})]
        check.must_ask = turn_index == 0
        check.echo_of = after
        check.vocabulary = allowed_words(
            " ".join([scenario.persona, json.dumps(asks, default=str), *scenario.tools, after])
        )
        check.opens = True
        check.parallel = max(
            (len(step.calls) for step in turn.steps if step.kind == "call"), default=1
        )
        first = next((ask for ask in asks if ask.get("tool")), None)
        check.topic_word = topic_word(first) if first else None
        check.topics = [
            content_words(f"{normalize(ask['tool'])} {ask.get('description') or ''}")
            for ask in asks
            if ask.get("tool")
        ]
        style = style_of(scenario.style)
        task = request_task(scenario, turn_index, asks, withheld)
        shown = [
            {words(k): v for k, v in ask.get("values", {}).items() if k not in withheld}
            for ask in asks
        ]
        shown = [values for values in shown if values]
        if len(shown) > 1:
            details = "\n".join(
                f"Details ({number}): {details_text(values)}"
                for number, values in enumerate(shown, start=1)
            )
        else:
            details = f"Details: {details_text(shown[0]) if shown else '(none)'}"
        goal = f"Goal: {task}\n{details}"
        if withheld:
            # Said as a plan, not as words to copy: the model echoed "(you say it later)".
            goal += (
                f"\nDo not mention the {', '.join(words(w) for w in withheld)}: "
                "you will be asked for it."
            )
        if turn_index:
            goal += "\n(This continues the same conversation.)"
        shots: list[tuple[str, str]] = [
            (f"Goal: {e.goal}\nDetails: {details_text(e.details)}", e.request)
            for e in draw_examples(style.name, rng)
        ]
        text = await self._write(
            scenario,
            goal,
            check,
            rng,
            lambda: template_request(scenario, turn_index, asks, withheld, style, rng),
            shots=shots,
        )
        self.accepted.add(scenario.id)
        return text

    async def clarification(
        self, scenario: Scenario, turn_index: int, question: str, rng: random.Random
    ) -> UserText:
        """The user's answer to the assistant's question: the withheld values."""
        withheld = scenario.turns[turn_index].withheld
        check = RequestCheck(
            required=[leaf for v in withheld.values() for leaf in leaves(v)],
            forbidden=[],
            tool_names=[],
            keys=list(withheld),
            echo_of=question,
            vocabulary=allowed_words(
                " ".join([scenario.persona, json.dumps(withheld, default=str), question])
            ),
        )
        details = details_text({words(k): v for k, v in withheld.items()})
        prompt = (
            f'The assistant asked you: "{question.strip()[:400]}"\n'
            f"Answer it in your own words, giving exactly these details: {details}"
        )
        style = style_of(scenario.style)

        def fallback() -> str:
            parts = [f"the {words(k)} is {render_value(v)}" for k, v in withheld.items()]
            text = " and ".join(parts)
            if style.name == "terse":
                return ", ".join(f"{render_value(v)}" for v in withheld.values()) + "."
            return f"Sorry, {text}." if style.name != "expert" else f"{text[0].upper()}{text[1:]}."

        return await self._write(scenario, prompt, check, rng, fallback)

    async def _write(
        self,
        scenario: Scenario,
        prompt: str,
        check: RequestCheck,
        rng: random.Random,
        fallback,
        shots: list[tuple[str, str]] | None = None,
    ) -> UserText:
        usage = Usage()
        problems: list[str] = check.unwritable()
        tried = 0
        if self.model is not None and not problems:
            model = self.model
            style = style_of(scenario.style)
            system = Message(
                role="system",
                content=f"You are {scenario.persona or 'a user'}, chatting with an AI "
                f"assistant. {style.instruction} Write the message you would send for the "
                "goal, with every detail woven into your own words; never list them as "
                "fields. Reply with only your own message.",
            )

            def conversation(as_json: bool) -> list[Message]:
                # Under the values grammar the answer is {"message": ...}: the examples show
                # that form too, so the forced opening is the one the model has just seen.
                messages = [system]
                for shown, answer in shots or []:
                    text = json.dumps({"message": answer}) if as_json else answer
                    messages += [
                        Message(role="user", content=shown),
                        Message(role="assistant", content=text),
                    ]
                return [*messages, Message(role="user", content=prompt)]

            grammar = values_constraint(
                check.required, question=check.must_ask, topic=check.topic_word
            )
            # Drawn up front: the episode's rng moves the same whichever try is taken.
            seeds = [rng.randrange(2**31) for _ in range(self.attempts)]

            def attempt(number: int) -> Callable[[], Awaitable[tuple[UserText | None, list[str]]]]:
                # The first try is free; later ones, in case the free text misses something,
                # must carry the planned values (the model still writes the sentence).
                constraint = grammar if number > 1 else None
                update: dict[str, Any] = {"seed": seeds[number - 1]}
                if constraint is not None:  # room for the longest message (no cut JSON)
                    # Cooler under the grammar: at 0.8 the 135M model filled the free spans
                    # with tags and other languages ("#Premium #Lambda", "Cette S'il Va");
                    # at 0.3 it looped ("xtd. xtd. xtd.").
                    update["temperature"] = min(self.sampling.temperature, 0.6)
                    update["max_tokens"] = max(
                        self.sampling.max_tokens or 0, _longest_message(check.required) + 16
                    )
                else:
                    update["max_tokens"] = min(
                        self.sampling.max_tokens, _free_message(check.required)
                    )
                sampling = self.sampling.model_copy(update=update)
                messages = conversation(as_json=constraint is not None)

                async def run() -> tuple[UserText | None, list[str]]:
                    completion = await model.complete(
                        messages, sampling=sampling, constraint=constraint
                    )
                    usage.prompt_tokens += completion.usage.prompt_tokens
                    usage.completion_tokens += completion.usage.completion_tokens
                    raw = _unwrap_message(completion.text) if constraint else completion.text
                    text = _clean(raw)
                    found = check.problems(text) if completion.ok else [completion.error or "error"]
                    if completion.finish_reason == "length" and not found:
                        found = ["cut off at the token limit"]  # a sentence that never ended
                    if found:
                        return None, found
                    return UserText(text, "model", number, usage, constrained=bool(constraint)), []

                return run

            tries = [attempt(number) for number in range(1, self.attempts + 1)]
            for first in range(0, len(tries), self.parallel):
                for written, found in await first_acceptable(tries[first : first + self.parallel]):
                    tried += 1
                    problems.extend(found)
                    if written is not None:
                        written.problems = problems
                        return written
        if not self._may_template(scenario):
            raise TemplateCapReached(
                f"the user model could not write the message ({'; '.join(problems[-2:])}) and "
                f"templates already fill their share ({self.template_cap:.0%})",
                problems,
            )
        return UserText(fallback(), "template", tried, usage, problems)


Outcome = tuple[UserText | None, list[str]]


async def first_acceptable(tries: list[Callable[[], Awaitable[Outcome]]]) -> list[Outcome]:
    """Run ``tries`` at once; their outcomes in order, up to the first accepted one.

    Taken in the given order, not the order they finish in, so a seed gives the same message
    however the backend schedules them; the tries after an accepted one are cancelled (their
    text could not be chosen), so a round costs no more tokens than it must.
    """
    outcomes: list[Outcome | Exception | None] = [None] * len(tries)
    finished = [anyio.Event() for _ in tries]
    taken: list[Outcome] = []
    failure: Exception | None = None

    async def run(index: int) -> None:
        try:
            outcomes[index] = await tries[index]()
        except Exception as error:  # raised where it is reached in order (never if not)
            outcomes[index] = error
        finally:
            finished[index].set()

    async with anyio.create_task_group() as group:
        for index in range(len(tries)):
            group.start_soon(run, index)
        for index in range(len(tries)):
            await finished[index].wait()
            outcome = outcomes[index]
            if isinstance(outcome, Exception) or outcome is None:
                failure = outcome or RuntimeError("a try ended without an outcome")
                break
            taken.append(outcome)
            if outcome[0] is not None:
                break
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return taken


def _asks(scenario: Scenario, turn_index: int) -> list[dict[str, Any]]:
    asks = scenario.metadata.get("asks") or []
    if turn_index < len(asks):
        return list(asks[turn_index])
    return [{"tool": None, "description": scenario.turns[turn_index].intent, "values": {}}]


def _task_text(ask: dict[str, Any]) -> str:
    text = str(ask.get("description") or ask.get("tool") or "help me").strip()
    text = re.sub(r"\s*\([^()]*\)", "", text)
    text = re.split(r"(?<!e\.g)(?<!i\.e)(?<=[a-z0-9])\.\s", text)[0].rstrip(".:;, ")
    return text[:1].lower() + text[1:]


def request_task(
    scenario: Scenario, turn_index: int, asks: list[dict[str, Any]], withheld: list[str]
) -> str:
    """The goal in words, for the model's prompt."""
    tasks = [_task_text(ask) for ask in asks]
    if scenario.category == "multi_step" and len(asks) == 2:
        return (
            f"{tasks[0]}, and then, with the {words(asks[1]['from_result'])} from that, {tasks[1]}"
        )
    if len(set(tasks)) == 1 and len(asks) > 1:
        return f"{tasks[0]} for each of {len(asks)} different cases"
    return " and also ".join(dict.fromkeys(tasks))


def _details_block(asks: list[dict[str, Any]], withheld: list[str]) -> str:
    lines = []
    for number, ask in enumerate(asks, start=1):
        values = {k: v for k, v in ask.get("values", {}).items() if k not in withheld}
        if not values:
            continue
        head = f"Case {number}: " if len(asks) > 1 else ""
        shown = "; ".join(f"{words(k)}: {render_value(v)}" for k, v in values.items())
        lines.append(f"- {head}{shown}")
    if withheld:
        lines.append(f"Do NOT give the {', '.join(words(w) for w in withheld)} yet.")
    if not lines:
        return ""
    return "Include these details exactly as written:\n" + "\n".join(lines) + "\n"


def template_request(
    scenario: Scenario,
    turn_index: int,
    asks: list[dict[str, Any]],
    withheld: list[str],
    style: Style,
    rng: random.Random,
) -> str:
    """A deterministic request in the scenario's style that carries every planned value."""
    if asks and asks[0].get("tool") is None:  # off-domain irrelevance request
        return str(asks[0].get("description") or scenario.turns[turn_index].intent)

    def details(ask: dict[str, Any]) -> str:
        # Values first, what they are after: a template must not read like a form either.
        values = {k: v for k, v in ask.get("values", {}).items() if k not in withheld}
        return ", ".join(f"{render_value(v)} for the {words(k)}" for k, v in values.items())

    tasks = [_task_text(ask) for ask in asks]
    if scenario.category == "multi_step" and len(asks) == 2:
        second = details(asks[1])
        body = (
            f"{tasks[0]} ({details(asks[0])}), then take the {words(asks[1]['from_result'])} "
            f"from the result and {tasks[1]}" + (f" ({second})" if second else "")
        )
    elif len(set(tasks)) == 1 and len(asks) > 1:
        cases = "; ".join(f"({i}) {details(a)}" for i, a in enumerate(asks, start=1))
        body = f"{tasks[0]} for each of these: {cases}"
    else:
        parts = [
            f"{task} ({details(ask)})" if details(ask) else task
            for task, ask in zip(tasks, asks, strict=True)
        ]
        body = " and also ".join(parts)
    body = body.replace(" ()", "")
    if style.name == "terse":
        text = body[:1].upper() + body[1:] + "."
    elif style.name == "non-native":
        text = f"I want {body}. Is possible?"
    elif style.name == "expert":
        text = f"Please {body}."
    else:
        text = f"Could you {body}?"
    if turn_index > 0:
        text = rng.choice(("Thanks. Next: ", "Great, now ", "One more thing: ")) + text
    opener, closer = rng.choice(style.opener), rng.choice(style.closer)
    return " ".join(part for part in (opener, text, closer) if part)


def _clean(text: str) -> str:
    """Strip what small models wrap messages in: quotes, role prefixes, trailing chatter."""
    text = text.strip()
    text = re.sub(
        r"^(here'?s|here is) (the|my) (message|reply)[^:\n]*:\s*(-{3,}\s*)?", "", text, flags=re.I
    )
    text = re.sub(r"^(user|me|message)\s*:\s*", "", text, flags=re.IGNORECASE)
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text[:2000]
