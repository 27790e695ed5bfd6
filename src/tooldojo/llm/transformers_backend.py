"""A local Hugging Face checkpoint (folder or GGUF file) on CPU, for probing a model in training.

No server, no conversion: the checkpoint the trainer just wrote is loaded with
``AutoModelForCausalLM`` and answers through the same protocol as every other backend. Tools are
rendered into the system prompt with a codec (as for the embedded model) and calls are parsed
from the text. This backend does no constrained decoding: a ``tool_calls`` constraint is
accepted but not enforced, because what a probe measures is what the checkpoint does on its own.
Requests are served one at a time (one model, one lock).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
)

from tooldojo.errors import ToolDojoError
from tooldojo.llm._shared import (
    base_fields,
    completion_from_text,
    failed,
    render_chat,
    run_stoppable,
)
from tooldojo.llm.base import Completion, Constraint, SamplingParams
from tooldojo.llm.codecs import DEFAULT_CODEC, get_codec
from tooldojo.model import Message, Tool


class _StopFlag(StoppingCriteria):
    """Ends generation when the request was cancelled (checked after every token)."""

    def __init__(self, flag: threading.Event):
        self.flag = flag

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> bool:
        return self.flag.is_set()


class TransformersChatModel:
    """A causal LM checkpoint behind the async ``ChatModel`` protocol."""

    def __init__(
        self,
        path: str | Path,
        *,
        gguf_file: str | None = None,
        codec: str = DEFAULT_CODEC,
        n_threads: int = 1,
        name: str | None = None,
    ):
        path = Path(path).expanduser()
        if path.suffix == ".gguf" and gguf_file is None:
            path, gguf_file = path.parent, path.name
        if not path.is_dir():
            raise ToolDojoError(f"{path}: checkpoint folder not found")
        if gguf_file and not (path / gguf_file).is_file():
            raise ToolDojoError(f"{path / gguf_file}: GGUF file not found")
        if not gguf_file and not (path / "config.json").is_file():
            raise ToolDojoError(f"{path}: not a Hugging Face checkpoint (no config.json)")
        self.name = name or (Path(gguf_file).stem if gguf_file else path.name)
        self.codec = get_codec(codec)
        torch.set_num_threads(n_threads)
        extra = {"gguf_file": gguf_file} if gguf_file else {}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), **extra)
            self.model = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=torch.float32, **extra
            )
        except (OSError, ValueError) as error:
            raise ToolDojoError(f"{path}: transformers cannot load it ({error})") from None
        self.model.eval()
        if not self.tokenizer.chat_template:
            raise ToolDojoError(f"{path}: the tokenizer has no chat template")
        self._lock = threading.Lock()

    def render_prompt(self, messages: list[Message], tools: list[Tool] | None) -> str:
        chat = render_chat(messages, tools, self.codec)
        return self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)

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
        text, prompt_tokens, new_tokens, finish = await run_stoppable(
            lambda flag: self._generate(prompt, sampling, flag)
        )
        base = base_fields(
            model=self.name,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=new_tokens,
            latency_s=time.perf_counter() - started,
        )
        if constraint is not None and constraint.kind != "tool_calls":
            try:
                json.loads(text)
            except json.JSONDecodeError as error:
                return failed(text, f"answer is not JSON ({error.msg})", base)
            return Completion(text=text, **base)
        return completion_from_text(text, tools, self.codec, base=base)

    def _generate(
        self, prompt: str, sampling: SamplingParams, stop_flag: threading.Event
    ) -> tuple[str, int, int, str]:
        """(text, prompt tokens, new tokens, finish reason); runs in a worker thread."""
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        prompt_tokens = int(encoded["input_ids"].shape[1])
        options: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "do_sample": sampling.temperature > 0,
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            "stopping_criteria": StoppingCriteriaList([_StopFlag(stop_flag)]),
        }
        if sampling.temperature > 0:
            options.update(temperature=sampling.temperature, top_p=sampling.top_p)
        if sampling.stop:
            options.update(stop_strings=sampling.stop, tokenizer=self.tokenizer)
        with self._lock, torch.inference_mode():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            output = self.model.generate(**encoded, **options)
        new = output[0, prompt_tokens:]
        eos = self.tokenizer.eos_token_id
        ended = len(new) > 0 and int(new[-1]) == eos
        finish = "length" if len(new) >= sampling.max_tokens and not ended else "stop"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        for stop in sampling.stop or []:
            text = text.split(stop, 1)[0]
        return text, prompt_tokens, len(new), finish
