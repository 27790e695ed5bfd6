"""The turns gate: what the assistant *says* must be right, not merely present.

The format and label gates see whether a turn called the right tool; a text turn used to pass
whenever it was not empty. This gate reads the text turns:

- ``filler``: boilerplate that stands in for an answer ("Done. Here is what I found: ...");
- ``prose_code``: prose carrying code or tool-call syntax (fences, ``<tool_call>``, JSON
  objects, ``name(arg=...)``, JavaScript/Python statements): a model trained on it learns to
  write calls as text;
- ``ungrounded_answer``: a final answer after tool results that repeats none of their values;
- ``off_request``: a final answer that shares nothing with the request it answers;
- ``ignores_error``: an answer after a failed result that does not say the call failed;
- ``claims_failure``: an answer after results that all succeeded which says a call failed
  ("the function is not implemented", "an error occurred"): it contradicts the data;
- ``contradicts_result``: an answer after results that all succeeded which says the request
  cannot be done or the thing does not exist ("you can't delete it", "no longer available",
  "not found", "no such", "no information"), where no result says so (no ``false`` flag,
  not in the result's text);
- ``clarify_missing``: a clarifying turn that does not ask (no question) for the missing
  parameter, by its name or the words of its description;
- ``refuse_no_reason``: a refusal that does not say why;
- ``empty_text``: a text turn with no text;
- ``degenerate``: not prose: mostly digits and symbols (a value dump), fewer than three
  words, the same phrase looping, or not English (:func:`not_english`).
- ``repeated_answer``: a text turn that mostly repeats an earlier assistant message of the
  same conversation (half of its four-word runs, :func:`echoes`): the 135M model answered a
  new request with its last answer, word for word, and such turns passed every other check;
- ``echoes_request``: a text turn that mostly repeats the user's message it answers (the same
  measure): 7 of the 915 text turns the scale run of 27 Nov passed ("Hello, I'm excited to
  create a new EMM-managed user. Can you help me get started with enterprise id?").
- ``made_up_words``: at least ``MADE_UP_LIMIT`` distinct words, and a tenth of the text's, are
  in no English word list and nowhere in the conversation (:mod:`tooldojo.verify.words`):
  "erdzbabmjh is the same as you are trying to do, vxgfccc...".

Each finding is one line in ``reason`` and its code in ``details["reasons"]``, so failures can
be counted by cause.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tooldojo.mcp.executors.result_checks import scalar_leaves
from tooldojo.model import Message, Tool, Trajectory, Verdict, problem_details
from tooldojo.verify.grounding import normalize, value_in
from tooldojo.verify.turns import Turn
from tooldojo.verify.words import allowed_words, shown, too_many_made_up

FILLER = re.compile(
    r"(?i)(here is what i found|^\s*(done|ok|okay|sure)[.!]?\s*$|^\s*done[.!:]\s"
    r"|i can do that\. could you tell me the|none of the tools i have can help"
    r"|^\s*(result|response|output)\s*:)"
)
"""Phrases the old label-forcing wrote in place of an answer, and their bare relatives."""

CODE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("code fence", re.compile(r"```")),
    ("tool-call markup", re.compile(r"</?(tool_call|tool_response|function_call|tools?)>")),
    ("JSON object", re.compile(r"\{\s*\"[^\"\n]{1,60}\"\s*:")),
    ("call with keyword arguments", re.compile(r"\b[A-Za-z_][\w.]*\(\s*\w+\s*=")),
    ("snake_case call", re.compile(r"\b[a-z]+_[a-z0-9_]+\([^)]*\)")),
    (
        "code statement",
        re.compile(
            r"(?m)(^\s*(def|class|import|from \S+ import|return|const|let|var|function)\b"
            r"|\bconsole\.log\(|=>|\bprint\(|;\s*$|\bfunction\s+\w*\s*\("
            r"|\{[^{}]*;\s*\}|\b(const|let|var)\s+\w+\s*=)"
        ),
    ),
    ("method call", re.compile(r"\b[a-z]\w*\.[a-z]\w*\([^)]*\)")),
)

REASON_WORDS = re.compile(
    r"(?i)\b(can ?not|can't|cannot|unable|not able|don't have|do not have|no tool|no access"
    r"|not available|isn't available|outside|beyond|only (help|handle|do)|not (possible|"
    r"supported|something i)|doesn't (support|cover)|does not (support|cover)|lack"
    r"|none of (my|the) tools|not designed|not equipped|out of scope)\b"
)
ERROR_WORDS = re.compile(
    r"(?i)\b(error|fail|failed|failure|not found|could ?n[o']t|unable|denied|permission"
    r"|not allowed|rate limit|too many|try again|later|unavailable|problem|issue|sorry)\b"
)
FAILURE_CLAIM = re.compile(
    r"(?i)\b(error|errors|fail|fails|failed|failure|not implemented|went wrong|exception"
    r"|could ?n[o']t (be )?(run|complete|compute|find|process)|unable to (run|complete|compute"
    r"|find|process)|did ?n[o']t work|does ?n[o']t work|is not available|unavailable)\b"
)
"""What an answer says when it claims a call failed (stricter than ``ERROR_WORDS``, which
also holds polite words such as "sorry" that a sound answer may use)."""
DENIAL = re.compile(
    r"(?i)\b(can ?not|can't|cannot|unable|not able|not (possible|allowed|permitted|supported)"
    r"|impossible|no longer|not found|does ?n[o']t exist|does not exist|not exist|no such"
    r"|(is ?n't|is not|was ?n't|was not|not) available|no (information|data|matching))\b"
)
"""What an answer says when it denies the request: that it cannot be done, is not allowed,
or that the thing asked about does not exist. Why: in the scale run's passed data, 66 of 718
final answers after successful results said so ("No, you can't delete a list.", "maria.lopez
is no longer enabled on your server"): the 135M model's word salad, which every other check
passed because it quoted a value of the result."""
NOTHING_WORDS = re.compile(
    r"(?i)\b(no|none|nothing|zero|empty|not any|no one|nobody|could ?n[o']t find"
    r"|did ?n[o']t find|found no|not find)\b"
)
"""What an answer to an empty result says: that nothing was found."""
QUESTION = re.compile(
    r"\?|(?i:\b(please (tell|provide|share|give|let me know)|which|what is"
    r"|could you (tell|provide|share|give)|can you (tell|provide|share|give)"
    r"|let me know)\b)"
)

STOPWORDS = set(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "for",
        "in",
        "on",
        "at",
        "by",
        "with",
        "from",
        "into",
        "about",
        "this",
        "that",
        "these",
        "those",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "as",
        "if",
        "then",
        "than",
        "so",
        "such",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "please",
        "thanks",
        "thank",
        "you",
        "your",
        "my",
        "me",
        "i",
        "we",
        "our",
        "us",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "some",
        "each",
        "every",
        "there",
        "here",
        "also",
        "just",
        "want",
        "need",
        "like",
        "get",
        "give",
        "tell",
        "show",
        "find",
        "make",
        "let",
        "know",
        "help",
    ]
)


def content_words(text: str) -> set[str]:
    """Words of 4+ letters that are not stopwords, cut to 5 letters (a crude stem)."""
    return {word[:5] for word in re.findall(r"[a-z]{4,}", normalize(text)) if word not in STOPWORDS}


FUNCTION_WORDS = frozenset(
    (  # noqa: SIM905 (a word list reads better as text)
        "the a an of to in for on at by with from and or but is are was were be been it its"
        " this that these those i you he she we they me my your our their what which who how"
        " when where can could would should will please not no yes if as so do does did have"
        " has had there here all any some about into than then also just need want like get"
        " give tell show find make let know help i'm it's don't can't i'd i'll"
    ).split()
)
"""English function words: every English sentence is full of them (about half its words),
other languages and word salad have few."""


def not_english(text: str) -> bool:
    """Whether ``text`` (six words or more) is not English: under 15% of its words are
    :data:`FUNCTION_WORDS`. Why: under grammars the 135M model drifted into German, French
    or word salad ("Premiert, ik ausfalter, ik kann zusammenfassen"), which no other check
    reads; a terse English request ("Skewness of 172.91?") has at least one in a few words."""
    # Tokens of letters and digits, those with a digit left out: an id is a value, not a word
    # of any language, and read letter by letter "2382-0003-52A1-0A37-5A11" made five
    # non-English words ("a", "a", ...) out of one planned value.
    tokens = re.findall(r"[a-z0-9']*[a-z][a-z0-9']*", text.lower())
    found = [token for token in tokens if not any(c.isdigit() for c in token)]
    if len(found) < 6:
        return False
    return sum(w in FUNCTION_WORDS for w in found) / len(found) < 0.15


def degenerate(text: str) -> str | None:
    """Why ``text`` is not prose (a value dump, a fragment, a loop), or ``None``."""
    visible = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    if visible and letters / len(visible) < 0.5:
        return "mostly digits and symbols"
    words = re.findall(r"[A-Za-z']+", text.lower())
    if len(words) < 3:
        return "fewer than three words"
    grams = Counter(tuple(words[i : i + 3]) for i in range(len(words) - 2))
    longer = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    if (grams and grams.most_common(1)[0][1] >= 3) or (longer and longer.most_common(1)[0][1] >= 2):
        return "the same phrase repeats"
    if not_english(text):
        return "not English"
    return None


def code_in(text: str) -> str | None:
    """The kind of code or call syntax in ``text``, or ``None``."""
    for name, pattern in CODE_PATTERNS:
        if pattern.search(text):
            return name
    return None


def _result_value(message: Message) -> Any:
    try:
        return json.loads(message.content or "")
    except ValueError:
        return message.content or ""


def _meaningful(leaf: Any) -> bool:
    """A value whose presence in an answer says it was read: not "ok" or a one-digit count,
    which turn up in any text ("1 TOTALLY!" was grounded by a ``deactivation_reason_id`` of 1
    in the scale run's passed data)."""
    if isinstance(leaf, str):
        return len(leaf.strip()) >= 3 and leaf.strip().lower() not in {"ok", "yes", "no", "none"}
    if isinstance(leaf, int | float) and not isinstance(leaf, bool):
        return not (float(leaf).is_integer() and abs(leaf) < 10)
    return True


def grounding_leaves(leaves: list[Any]) -> list[Any]:
    """The result values that ground an answer: the meaningful ones; small counts and short
    words only when the results hold nothing else (flags never: they are read as yes/no)."""
    return [leaf for leaf in leaves if _meaningful(leaf)] or [
        leaf for leaf in leaves if not isinstance(leaf, bool)
    ]


def _flags(value: Any) -> list[bool]:
    """The booleans inside a JSON value."""
    if isinstance(value, dict):
        return [flag for item in value.values() for flag in _flags(item)]
    if isinstance(value, list):
        return [flag for item in value for flag in _flags(item)]
    return [value] if isinstance(value, bool) else []


FLAG_WORDS = {True: re.compile(r"(?i)\b(yes|true)\b"), False: re.compile(r"(?i)\b(no|not|false)\b")}


def _says(text: str, flag: bool) -> bool:
    return FLAG_WORDS[flag].search(text) is not None


def since_last_user(messages: Sequence[Message], index: int) -> tuple[str, list[Message]]:
    """The last user message before ``index`` and the tool messages after it."""
    tools: list[Message] = []
    for message in reversed(messages[:index]):
        if message.role == "user":
            return message.content or "", list(reversed(tools))
        if message.role == "tool":
            tools.append(message)
    return "", list(reversed(tools))


def _parameter_words(name: str, tools: Sequence[Tool]) -> tuple[set[str], set[str]]:
    """(name words, description words) of parameter ``name`` in any offered tool."""
    names = {w for w in normalize(name).split() if len(w) >= 3} | {normalize(name)}
    described: set[str] = set()
    for tool in tools:
        schema = tool.properties.get(name)
        if isinstance(schema, dict):
            described |= content_words(str(schema.get("description", "")))
    return names, described


def _mentions_any(text: str, words: set[str]) -> bool:
    plain = normalize(text)
    return any(re.search(rf"\b{re.escape(w)}", plain) for w in words if w)


WORD = re.compile(r"[a-z0-9']*[a-z][a-z0-9']*")
"""A word as :func:`echoes` and :func:`~tooldojo.verify.requests.loops` count it: letters and
digits together, at least one letter. An id is one word ("52a1"), not the letters inside it:
read letter by letter, the planned id "2382-0003-52A1-0A37-5A11" held "a a a" (a loop) and
sank every request carrying it."""

ECHO_RUN = 4
"""Words in a run that counts as repeated (three-word runs are common phrases: "I would like")."""


def echoes(text: str, before: str) -> bool:
    """Whether half or more of ``text``'s four-word runs (at least three) are in ``before``."""

    def runs(words: list[str]) -> set[tuple[str, ...]]:
        return {tuple(words[i : i + ECHO_RUN]) for i in range(len(words) - ECHO_RUN + 1)}

    mine = runs(WORD.findall(text.lower()))
    if len(mine) < 3 or not before:
        return False
    return 2 * len(mine & runs(WORD.findall(before.lower()))) >= len(mine)


def conversation_words(trajectory: Trajectory, upto: int) -> set[str]:
    """Words any text turn before message ``upto`` may use: the tools offered (names,
    descriptions, parameters), and every message and call so far."""
    parts = [json.dumps([t.to_openai() for t in trajectory.tools], ensure_ascii=False)]
    for message in trajectory.messages[:upto]:
        parts.append(message.content or "")
        for call in message.tool_calls or []:
            parts.append(f"{call.name} {json.dumps(call.arguments, ensure_ascii=False)}")
    return allowed_words(" ".join(parts))


def turn_content_errors(turn: Turn, trajectory: Trajectory) -> list[tuple[str, str]]:
    """(code, message) for everything wrong with one text turn's content."""
    if turn.calls or turn.parse_error is not None:
        return []
    where = f"turn {turn.index}"
    text = turn.text.strip()
    kind = turn.label.kind if turn.label is not None else "text"
    if kind == "call":
        return []  # the format gate already fails text where a call was due
    if not text:
        return [("empty_text", f"{where}: empty answer")]
    found: list[tuple[str, str]] = []
    earlier = [
        m.content
        for m in trajectory.messages[: turn.message_index]
        if m.role == "assistant" and m.content
    ]
    if any(echoes(text, before) for before in earlier):
        found.append(("repeated_answer", f"{where}: repeats an earlier answer of the conversation"))
    request, results = since_last_user(trajectory.messages, turn.message_index)
    if echoes(text, request):
        found.append(("echoes_request", f"{where}: repeats the user's message"))
    if FILLER.search(text):
        found.append(("filler", f"{where}: template filler instead of an answer"))
    code = code_in(text)
    if code is not None:
        found.append(("prose_code", f"{where}: prose carries {code}"))
    broken = degenerate(text)
    if broken is not None and code is None:
        found.append(("degenerate", f"{where}: not prose ({broken})"))
    invented = too_many_made_up(text, lambda: conversation_words(trajectory, turn.message_index))
    if invented is not None and broken is None:
        count = len(invented)
        found.append(("made_up_words", f"{where}: {count} made-up words ({shown(invented)})"))
    if kind == "clarify":
        missing = turn.label.missing if turn.label is not None else []
        words: set[str] = set()
        for name in missing:
            names, described = _parameter_words(name, trajectory.tools)
            words |= names | described
        if not QUESTION.search(text):
            found.append(("clarify_missing", f"{where}: clarifying turn asks no question"))
        elif missing and not _mentions_any(text, words):
            found.append(("clarify_missing", f"{where}: does not ask for {', '.join(missing)}"))
        return found
    if kind == "refuse":
        if not REASON_WORDS.search(text):
            found.append(("refuse_no_reason", f"{where}: refusal does not say why"))
        return found
    if not results:
        return found
    failed = [m for m in results if m.is_error]
    if failed:
        if not ERROR_WORDS.search(text):
            found.append(("ignores_error", f"{where}: answer does not say the call failed"))
        return found
    arguments = [
        leaf
        for message in trajectory.messages[: turn.message_index]
        for call in (message.tool_calls or [])
        for leaf in scalar_leaves(call.arguments)
    ]
    values = [_result_value(m) for m in results]
    leaves = grounding_leaves([leaf for value in values for leaf in scalar_leaves(value)])
    flags = {flag for value in values for flag in _flags(value)}
    empty = not flags and not any(scalar_leaves(value) for value in values)
    if empty:
        # Nothing came back (``{"messages": []}``): the answer must say so. Without this no
        # answer to an empty result could pass, and "I couldn't find any" is no failure claim.
        if not NOTHING_WORDS.search(text):
            found.append(("ungrounded_answer", f"{where}: answer does not say nothing was found"))
    else:
        claim = FAILURE_CLAIM.search(text)
        denial = DENIAL.search(text)
        if claim:
            found.append(
                ("claims_failure", f"{where}: says {claim.group(0)!r} though every call succeeded")
            )
        # A result may support a denial itself: a ``false`` flag (``{"allowed": false}`` may
        # be answered "you are not allowed to"), or the phrase in its own text.
        elif (
            denial
            and False not in flags
            and not any(normalize(denial.group(0)) in normalize(m.content or "") for m in results)
        ):
            found.append(
                (
                    "contradicts_result",
                    f"{where}: says {denial.group(0)!r} though every call succeeded",
                )
            )
    # What the result *adds*: values the user and the call did not already say (an answer
    # that only repeats the id it was asked about is not grounded in the result).
    new = [
        leaf
        for leaf in leaves
        if not value_in(request, leaf) and not any(leaf == a for a in arguments)
    ]
    if not leaves and flags:
        # Only yes/no in the results (``true``, ``[false, false]``): the answer must say it,
        # and not the opposite; without this no answer to a flag could ever be grounded.
        if not all(_says(text, flag) and not _says(text, not flag) for flag in flags):
            found.append(("ungrounded_answer", f"{where}: answer does not say {sorted(flags)}"))
    # A computed number may be quoted rounded ("2.33" for 2.3333333333333335).
    elif not empty and not any(value_in(text, leaf, rounded=True) for leaf in (new or leaves)):
        found.append(("ungrounded_answer", f"{where}: answer repeats no value of the result"))
    overlaps = content_words(request) & content_words(text)
    if not overlaps and not any(value_in(text, leaf) for leaf in arguments if _meaningful(leaf)):
        found.append(("off_request", f"{where}: answer shares nothing with the request"))
    return found


def turns_gate(turns: list[Turn], trajectory: Trajectory) -> Verdict:
    """Pass when every text turn is a real answer of the kind its label asks for."""
    found = [item for turn in turns for item in turn_content_errors(turn, trajectory)]
    text_turns = sum(1 for turn in turns if not turn.calls)
    return Verdict(
        gate="turns",
        passed=not found,
        score=max(0.0, 1.0 - len(found) / max(text_turns, 1)),
        reason="; ".join(m for _, m in found) if found else f"{text_turns} text turn(s) sound",
        details=problem_details(found),
    )
