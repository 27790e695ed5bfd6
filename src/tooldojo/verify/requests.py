"""The request gate: user turns a person would write, carrying what the labels need.

Checked independently of the user simulator (which has its own, weaker check):

- ``ungrounded_request``: an argument value the label expects is neither stated nor derivable
  (see :mod:`tooldojo.verify.grounding`) from the user's messages before the call;
- ``form_request``: the request lists parameter names as key/value pairs ("city: Paris",
  ``units=metric``, or two or more "name value" pairs such as "numbers 2.5, 3, skip nan no");
- ``user_code``: a user turn carrying code or tool-call syntax (a weak user model repeating
  the assistant's);
- ``clarify_unneeded``: the value a clarifying turn asks for was already given;
- ``off_goal``: the user's words share nothing with the tools the label calls (their names
  and descriptions): whatever was asked, it was not this;
- ``no_ask``: the opening message asks for nothing (no question, no request verb): a
  statement or an equation is not a request;
- ``loop_request``: a user message that loops: one word three times in a row ("x, x, x"),
  one three-word phrase four times ("a total of a total of ...") or one content word five
  times; a parallel request may repeat its phrase once per planned call, at least three times
  ("the log of 2, the log of 5 and the log of 9"; four times for four calls);
- ``echo_request``: a later user message that mostly repeats the assistant's message before it
  (half or more of its four-word runs, at least three of them, are the assistant's): a weak
  user model parroting, not a person answering;
- ``not_english``: a user message that is not English (``content.not_english``: under 15%
  function words in six words or more: German, French or word salad);
- ``assistant_voice``: a user message that speaks as the assistant ("I'm here to assist",
  "How can I help you?", "anything else I can do"): the 135M user model slipping into the
  role it was trained for; 16 of the 552 trajectories the scale run of 27 Nov passed held one;
- ``number_dump``: a message opening a turn that holds far more numbers than the labels
  need (more than twice their count plus three): a dump that happens to contain the planned
  values ("199.23, 45.88, 408.72, 10.23, 10.23, ..."), not something a person types. A request
  that needs many numbers may be mostly numbers; answers to a clarifying question are exempt;
- ``made_up_request``: a user message with two or more made-up words that are also a tenth of
  its words (``words.too_many_made_up``, as the turns gate's ``made_up_words``): in no English
  word list and nowhere in the tools, the plan (labels, persona) or the conversation so far
  ("Theresntwicety-noinscred?").
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tooldojo.model import (
    RESULT_REF_KEY,
    Label,
    Message,
    Tool,
    Trajectory,
    Verdict,
    problem_details,
)
from tooldojo.verify.content import (
    FUNCTION_WORDS,
    WORD,
    code_in,
    content_words,
    conversation_words,
    echoes,
    not_english,
)
from tooldojo.verify.grounding import normalize, value_in
from tooldojo.verify.turns import Turn
from tooldojo.verify.words import allowed_words, shown, too_many_made_up


def _has_reference(value: Any) -> bool:
    if isinstance(value, dict):
        return RESULT_REF_KEY in value or any(_has_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_reference(v) for v in value)
    return False


def _acceptable(possible: list[Any]) -> list[Any]:
    """The values of a BFCL possible-answer list (nested maps reduced to their values)."""
    out = []
    for value in possible:
        if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
            out.append([v[0] for v in value.values() if v and v[0] != ""])
        else:
            out.append(value)
    return out


def ungrounded_values(label: Label, user_text: str) -> list[tuple[str, Any]]:
    """(argument, value) pairs of ``label`` that ``user_text`` neither states nor implies."""
    missing = []
    for call in label.calls:
        for name, possible in call.arguments.items():
            if not isinstance(possible, list) or "" in possible or _has_reference(possible):
                continue  # optional, or taken from an earlier result
            verdicts = [value_in(user_text, value) for value in _acceptable(possible)]
            if any(v is None or v for v in verdicts):
                continue
            missing.append((name, possible[0] if possible else None))
    return missing


def _stated(label: Label, name: str, text: str) -> bool:
    """Whether ``text`` definitely states the value ``label`` expects for ``name``."""
    for call in label.calls:
        possible = call.arguments.get(name)
        if (
            isinstance(possible, list)
            and possible
            and not _has_reference(possible)
            and any(value_in(text, value) is True for value in _acceptable(possible))
        ):
            return True
    return False


def _names(tools: Sequence[Tool]) -> set[str]:
    return {name for tool in tools for name in tool.properties}


def form_pairs(text: str, tools: Sequence[Tool], labels: Sequence[Label]) -> list[str]:
    """Parameter names written as keys in ``text`` (empty when it reads like prose)."""
    lowered = text.lower()
    keyed, adjacent = [], []
    values: dict[str, list[Any]] = {}
    for label in labels:
        for call in label.calls:
            for name, possible in call.arguments.items():
                values.setdefault(name, []).extend(p for p in possible if p != "")
    for name in _names(tools):
        spellings = {name.lower(), normalize(name)}
        for spelling in spellings:
            if len(spelling) < 2:
                continue
            keyed_here = re.search(rf"(?<![\w-]){re.escape(spelling)}\s*[:=]\s*\S", lowered)
            if keyed_here or f"({spelling})" in lowered:  # "name: value", or "value (name)"
                keyed.append(name)
                break
            for value in values.get(name, []):
                if isinstance(value, bool | dict) or value is None:
                    continue
                shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
                pattern = rf"(?<![\w-]){re.escape(spelling)}\s+{re.escape(shown.lower()[:20])}"
                if re.search(pattern, lowered):
                    adjacent.append(name)
                    break
    if re.findall(r"\b\w+=\S+", text)[1:]:  # two or more key=value tokens
        keyed.append("key=value")
    return keyed + (adjacent if len(set(adjacent)) >= 2 else [])


ASSISTANT_VOICE = re.compile(
    r"(?i)\b(how (can|may) i (help|assist) you|what can i do for you"
    r"|i('m| am) (here|happy|glad|ready) to (help|assist)"
    r"|(can't|cannot|can not) help you|i('m| am) (just )?an? (ai|assistant|language model)"
    r"|as an ai|i('d| would) be (happy|glad) to (help|assist)|anything else i can)\b"
)
"""What an assistant says and a person asking for something does not."""


def assistant_voice(text: str) -> str | None:
    """The phrase of ``text`` that speaks as the assistant, or ``None``."""
    found = ASSISTANT_VOICE.search(text)
    return found.group(0) if found else None


ASK = re.compile(
    r"(?i)\?|\b(please|pls|could|can|would|will|need|want|wanna|like|help|let me know|tell"
    r"|show|give|get|find|look|search|check|list|calculate|compute|work out|convert|book"
    r"|add|create|make|put|update|change|set|delete|remove|cancel|send|schedule|move|rename"
    r"|fetch|pull|run|resolve|translate|report|arrange|extend|renew|what|how|which|when"
    r"|where|who|why|order|ship|buy|pay|reserve|start|stop|open|close|turn|play|sort|count"
    r"|download|upload|share|invite|mark|archive|copy|sum|average|estimate|plan|post|save"
    r"|print|read|write|compare|analy[sz]e|summari[sz]e|track|draft|sign|register|apply"
    r"|transfer|withdraw|deposit|refund|return|assign|approve|reject|submit|upgrade)\b"
)
"""A request asks: a question mark or a verb of asking or doing."""


def loops(text: str, parallel: int = 1) -> bool:
    """Whether ``text`` loops (see ``loop_request``).

    ``parallel``: the calls the request plans side by side. Each may name its value with the
    same phrase ("the log of 2, the log of 3, the log of 4, the log of 5" for four calls), so
    a phrase may come that many times (at least three) and a content word as often (at least
    four); a fixed three rejected every four-call request written that way.
    """
    phrases = max(3, parallel)
    words = WORD.findall(text.lower())
    if any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2)):
        return True
    counts = Counter(w for w in words if w not in FUNCTION_WORDS and len(w) > 1)
    if counts and counts.most_common(1)[0][1] > max(4, parallel):  # "Scale; Loc; Scale; ..."
        return True
    grams = Counter(tuple(words[i : i + 3]) for i in range(len(words) - 2))
    return bool(grams) and grams.most_common(1)[0][1] > phrases


def assistant_text_before(messages: Sequence[Message], index: int | None = None) -> str:
    """The assistant's last prose before message ``index`` (the end when ``None``; "" when
    none): what a user message must not parrot."""
    return next(
        (
            m.content or ""
            for m in reversed(messages[:index])
            if m.role == "assistant" and m.content
        ),
        "",
    )


NUMBER = re.compile(r"(?<![\w.])-?\d+(?:[.,]\d+)*")


def number_dump(text: str, expected: int) -> bool:
    """Whether ``text`` holds far more numbers than the ``expected`` ones it must state."""
    return len(NUMBER.findall(text)) > 2 * expected + 3


def numbers_in(value: Any) -> int:
    """How many numbers a value holds as a person writes it ("2024-03-05" holds three)."""
    if isinstance(value, dict):
        return sum(numbers_in(v) for v in value.values())
    if isinstance(value, list):
        return sum(numbers_in(v) for v in value)
    if isinstance(value, bool) or value is None:
        return 0
    return len(NUMBER.findall(str(value)))


def numbers_needed(labels: Sequence[Label]) -> int:
    """How many numbers the labels' first acceptable values hold (what a request states)."""
    return sum(
        numbers_in(possible[0])
        for label in labels
        for call in label.calls
        for possible in call.arguments.values()
        if isinstance(possible, list) and possible and possible[0] != ""
    )


def _user_text_before(messages: Sequence[Message], index: int) -> str:
    return "\n".join(m.content or "" for m in messages[:index] if m.role == "user")


def _first_user(messages: Sequence[Message]) -> int:
    return next((i for i, m in enumerate(messages) if m.role == "user"), -1)


def parallel_calls(turns: Sequence[Turn], messages: Sequence[Message], position: int) -> int:
    """The most calls one label plans between user message ``position`` and the next user
    message (1 when none): how many values that message may name with one phrase."""
    end = next(
        (i for i in range(position + 1, len(messages)) if messages[i].role == "user"),
        len(messages),
    )
    return max(
        (
            len(turn.label.calls)
            for turn in turns
            if position < turn.message_index < end
            and turn.label is not None
            and turn.label.kind == "call"
        ),
        default=1,
    )


def plan_words(trajectory: Trajectory) -> set[str]:
    """Words a user message may use beyond the conversation: the labels' values and the
    persona, which the plan gave the user simulator."""
    return allowed_words(
        json.dumps([label.model_dump(mode="json") for label in trajectory.labels])
        + f" {trajectory.metadata.get('persona') or ''}"
    )


def request_gate(turns: list[Turn], trajectory: Trajectory) -> Verdict:
    """Pass when every user turn reads like a person's and grounds the labels after it."""
    found: list[tuple[str, str]] = []
    needed = numbers_needed(trajectory.labels)
    answers = {  # user messages that answer a clarifying question
        turn.message_index + 1
        for turn in turns
        if turn.label is not None and turn.label.kind == "clarify"
    }
    planned = functools.cache(lambda: plan_words(trajectory))  # only for a text over the line
    for position, message in enumerate(trajectory.messages):
        if message.role != "user":
            continue
        text = message.content or ""
        invented = too_many_made_up(
            text, lambda at=position: planned() | conversation_words(trajectory, at)
        )
        if invented is not None:
            found.append(
                (
                    "made_up_request",
                    f"user message {position}: {len(invented)} made-up words ({shown(invented)})",
                )
            )
        code = code_in(text)
        if code is not None:
            found.append(("user_code", f"user message {position}: carries {code}"))
        if loops(text, parallel_calls(turns, trajectory.messages, position)):
            found.append(("loop_request", f"user message {position}: loops"))
        if echoes(text, assistant_text_before(trajectory.messages, position)):
            found.append(("echo_request", f"user message {position}: repeats the assistant"))
        if not_english(text):
            found.append(("not_english", f"user message {position}: not English"))
        voice = assistant_voice(text)
        if voice is not None:
            found.append(
                ("assistant_voice", f"user message {position}: speaks as the assistant ({voice!r})")
            )
        if position not in answers and number_dump(text, needed):
            found.append(("number_dump", f"user message {position}: a dump of numbers"))
        if position == _first_user(trajectory.messages) and not ASK.search(text):
            found.append(("no_ask", f"user message {position}: asks for nothing"))
        pairs = form_pairs(text, trajectory.tools, trajectory.labels)
        if pairs:
            found.append(
                ("form_request", f"user message {position}: lists {', '.join(pairs)} as fields")
            )
    for turn in turns:
        label = turn.label
        if label is None:
            continue
        said = _user_text_before(trajectory.messages, turn.message_index)
        if label.kind == "call":
            topic: set[str] = set()
            for call in label.calls:
                tool = next((t for t in trajectory.tools if t.name == call.name), None)
                topic |= content_words(f"{normalize(call.name)} {tool.description if tool else ''}")
            if topic and not topic & content_words(said):
                found.append(
                    ("off_goal", f"turn {turn.index}: the user never asked about {call.name}")
                )
            for name, value in ungrounded_values(label, said):
                found.append(
                    (
                        "ungrounded_request",
                        f"turn {turn.index}: {name}={value!r} is not in the user's words",
                    )
                )
        elif label.kind == "clarify":
            later = next((t.label for t in turns[turn.index + 1 :] if t.label), None)
            if later is not None and later.kind == "call":
                told = [name for name in label.missing if _stated(later, name, said)]
                if label.missing and len(told) == len(label.missing):
                    found.append(
                        (
                            "clarify_unneeded",
                            f"turn {turn.index}: {', '.join(told)} was already given",
                        )
                    )
    return Verdict(
        gate="request",
        passed=not found,
        score=1.0 if not found else 0.0,
        reason="; ".join(m for _, m in found) if found else "requests grounded and natural",
        details=problem_details(found),
    )
