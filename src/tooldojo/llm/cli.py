"""``tooldojo call``: ask a backend one question with tools; the smallest end-to-end check.

Prints the calls as a JSON list (``[{"name": ..., "arguments": {...}}]``) on stdout; a text
answer prints ``[]`` on stdout and the text on stderr; a failed completion (malformed call,
unknown tool, unreachable endpoint) prints its error and exits with status 1.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tooldojo.llm.config import BackendConfig

CALL_DRAFT_TOKENS = 4


def one_question_backend(config: BackendConfig, threads: int | None) -> BackendConfig:
    """``config`` set up for one question: as a role plays it (flash attention off and the
    weights ``auto`` picks, unless set: :func:`~tooldojo.llm.config.role_backend`), and for
    llama.cpp one small engine with the tools' state on disk and guessed tokens.

    Why: a lone question is never batched, so the batch rounding that keeps f16 and flash
    attention the defaults for greedy evaluations does not arise; q8_0 on AMX kernels reads the
    prompt twice as fast, and with the tools' 1,575 tokens of context the weather call's 42
    passes took 10 s with llama.cpp's CPU flash attention and 1.9-3.3 s without on the AMX Xeon
    of 28 Nov (the prompt itself, when not stored, reads 0.75-0.9 x as fast without it)."""
    from tooldojo.llm.config import role_backend

    if threads is not None:
        config = config.model_copy(update={"n_threads": threads})
    if config.kind != "llamacpp":
        return config
    config = role_backend(config)
    update: dict[str, object] = {"pool_size": 1, "max_batch": 1, "prefix_store": True}
    if threads is None and "n_threads_batch" not in config.model_fields_set:
        update["n_threads_batch"] = prompt_threads()
    if "draft_tokens" not in config.model_fields_set:
        # One stream: a pass of 5 tokens costs far less than 5 passes (66 -> 42 passes for
        # the 65 tokens of the weather call).
        update["draft_tokens"] = CALL_DRAFT_TOKENS
    return config.model_copy(update=update)


def prompt_threads() -> int:
    """Threads for reading the prompt: two when the last minute left about a core idle.

    Why: a call with new tools reads ~1,600 prompt tokens, 3.9 s on one thread and 2.3 s on
    two when a core is free (generation stays on one thread: a lone token gains nothing).
    When both cores are busy a second thread is slower (6.6 s against 5.2 s, with OpenMP's
    passive waiting; 19-21 s with its default spinning), so the load average decides.
    """
    cores = os.cpu_count() or 1
    return 2 if cores >= 2 and os.getloadavg()[0] < cores - 0.5 else 1


CONSTRAIN_HELP = (
    "Constrain decoding to schema-valid calls when the backend can: 'call' (a call is required), "
    "'any' (text or calls), 'none'."
)


def call_command(
    request: Annotated[str, typer.Argument(help="What the user asks.")],
    specs: Annotated[
        list[str], typer.Option("--specs", help="Tool spec file(s) (any format `specs` reads).")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Backend spec (llamacpp[:GGUF], openai:MODEL@URL, transformers:PATH); "
            "default: the role's backend in --config.",
        ),
    ] = None,
    role: Annotated[str, typer.Option("--role", help="Role whose backend to use.")] = "assistant",
    config: Annotated[str, typer.Option("--config", help="Roles config.")] = "tooldojo.yaml",
    constrain: Annotated[str, typer.Option("--constrain", help=CONSTRAIN_HELP)] = "call",
    max_tokens: Annotated[int, typer.Option("--max-tokens")] = 256,
    system: Annotated[str | None, typer.Option("--system", help="A system prompt.")] = None,
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="CPU threads for a local model (default: from config)."),
    ] = None,
) -> None:
    """Ask a model one request with tools and print the tool call(s) it makes as JSON."""
    # Before llama.cpp's OpenMP runtime loads: idle threads sleep instead of spinning, so a
    # second prompt thread that meets a busy core costs a little, not 4x (see below).
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    import anyio

    from tooldojo.errors import ToolDojoError
    from tooldojo.llm.base import Constraint, run_then_close
    from tooldojo.llm.config import ROLES, load_config, load_model, parse_spec
    from tooldojo.model import Message
    from tooldojo.specs import load_tools

    if constrain not in {"call", "any", "none"}:
        raise ToolDojoError(f"--constrain must be call, any or none, not {constrain!r}")
    if role not in ROLES:
        raise ToolDojoError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    tools = load_tools(specs)
    settings = load_config(config)
    role_config = settings.role(role)
    backend_config = parse_spec(model) if model else settings.backend(role_config.backend)
    backend = load_model(one_question_backend(backend_config, threads))
    sampling = role_config.sampling.model_copy(update={"max_tokens": max_tokens})
    constraint = None if constrain == "none" else Constraint(allow_text=constrain == "any")
    messages = [Message(role="system", content=system)] if system else []
    messages.append(Message(role="user", content=request))

    completion = anyio.run(
        run_then_close,
        lambda: backend.complete(messages, tools, sampling=sampling, constraint=constraint),
        [backend],
    )
    if not completion.ok:
        sys.stderr.write(f"error: {completion.error}\n")
        raise typer.Exit(1)
    calls = [{"name": c.name, "arguments": c.arguments} for c in completion.tool_calls]
    sys.stdout.write(json.dumps(calls, indent=2, ensure_ascii=False) + "\n")
    if completion.text:
        sys.stderr.write(completion.text + "\n")
    sys.stderr.write(
        f"{backend.name}: {completion.latency_s:.2f} s, {completion.usage.prompt_tokens} prompt + "
        f"{completion.usage.completion_tokens} completion tokens, {completion.finish_reason}\n"
    )
