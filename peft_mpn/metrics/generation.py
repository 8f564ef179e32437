"""What a user sees: greedy generation, judged on the generated text.

Teacher forcing feeds the target and checks each next-token argmax; it cannot see what the model writes after
the answer, nor a continuation that drifts. This module reads the model the way `generate()` is used:

- [`generate_greedy`][peft_mpn.metrics.generation.generate_greedy]: batched greedy decoding, left-padded, only
  as many tokens as each batch needs, the same tokens batched or one prompt at a time;
- [`AnswerReading`][peft_mpn.metrics.generation.AnswerReading]: the generated answer against the target. The
  *answer* is the generated text up to its first line break (or the end of the sequence). It is an **exact
  match** when it equals the target after `normalise` (Unicode NFKC, case-folded, punctuation at either end
  and repeated spaces removed). It **stops** when the model ends it on its own: a line break or the
  end-of-sequence token comes within `len(target tokens) + stop_slack` generated tokens, and the answer holds
  the target at most once. `"Airbus Airbus Airbus…"` is neither;
- generation locality: the first `locality_tokens` generated tokens of an unrelated prompt, before and after an
  edit, equal or not.

"Stops" is only meaningful in a prompt format the model answers on one line (`peft_mpn.data.prompts`);
[`GenerationSettings`][peft_mpn.metrics.generation.GenerationSettings] holds the two lengths, which the results
record.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from ..batching import (
    check_length,
    eval_mode,
    left_pad,
    left_padded_positions,
    pad_token_id,
    position_limit,
    short_repr,
)
from ..devices import input_device
from ..shared_prefix import SharedPrefix


@dataclass(frozen=True)
class GenerationSettings:
    """How generation is read (recorded with every result that uses it).

    Args:
        locality_tokens: how many generated tokens of an unrelated prompt must be unchanged by the edit.
        stop_slack: how many tokens past the target's length the answer may take before it has to end.
        batch_size: rows decoded together. Each greedy step reads the whole output layer (Gemma's 262k rows) and
            every weight once, whatever the batch, so on a CPU more rows per step cost little: a case's answers
            decode in one batch (`benchmarks/generation_batch.py`). The readings do not depend on it.
    """

    locality_tokens: int = 16
    stop_slack: int = 4
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.locality_tokens, int) or self.locality_tokens < 1:
            raise ValueError(f"locality_tokens must be a positive int, got {self.locality_tokens!r}.")
        if not isinstance(self.stop_slack, int) or self.stop_slack < 0:
            raise ValueError(f"stop_slack must be an int >= 0, got {self.stop_slack!r}.")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}.")


def normalise(text: str) -> str:
    """Text compared for exact match: NFKC, case-folded, outer punctuation and repeated whitespace removed."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(text)
    while start < end and (text[start] == " " or unicodedata.category(text[start]).startswith("P")):
        start += 1
    while end > start and (text[end - 1] == " " or unicodedata.category(text[end - 1]).startswith("P")):
        end -= 1
    return text[start:end]


@dataclass(frozen=True)
class AnswerReading:
    """A generated answer judged against its target (see the module docstring for the definitions)."""

    text: str  # everything generated, decoded
    answer: str  # the text up to the first line break
    exact: bool  # normalise(answer) == normalise(target)
    stops: bool  # ended by a line break / EOS in time, with the target at most once
    repeats: bool  # the target more than once in the answer (a patch still firing after it)


def generate_greedy(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int | Sequence[int],
    *,
    batch_size: int = 16,
    stop_at_line_break: bool | Sequence[bool] = False,
) -> list[tuple[int, ...]]:
    """Greedy continuations of `prompts` (token ids; up to `max_new_tokens[i]` each, stopping at EOS, and at a
    line break where `stop_at_line_break[i]`: the end of a generated answer).

    Prompts are batched by length with left padding, whatever their budgets and stops; a batch decodes until each
    of its rows has ended (its stop or its budget). Every step reads every weight once whatever the rows, so
    answers and unrelated continuations decode together. The model's own `generate` is used when it has one (with
    its key-value cache); a module without it is decoded step by step on the whole sequence.
    """
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    at_breaks = (
        [stop_at_line_break] * len(prompts) if isinstance(stop_at_line_break, bool) else list(stop_at_line_break)
    )
    if len(budgets) != len(prompts) or len(at_breaks) != len(prompts):
        raise ValueError(
            f"{len(budgets)} token budgets and {len(at_breaks)} line-break flags for {len(prompts)} prompts."
        )
    encoded = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    limit = position_limit(model)
    for prompt, ids, budget in zip(prompts, encoded, budgets):
        check_length(
            limit,
            len(ids) + budget,
            f"The prompt {short_repr(prompt)} ({len(ids)} tokens) with the {budget} tokens generated after it",
            "Shorten the prompt or the target: an answer may take the target's length plus "
            "GenerationSettings.stop_slack tokens, an unrelated prompt's continuation locality_tokens.",
        )
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), budgets[i]))
    out: list[tuple[int, ...]] = [()] * len(encoded)
    pad = pad_token_id(tokenizer)
    eos = frozenset() if tokenizer.eos_token_id is None else frozenset([tokenizer.eos_token_id])
    breaks = line_break_tokens(tokenizer) if any(at_breaks) else frozenset()
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            stops = [eos | breaks if at_breaks[i] else eos for i in indices]
            generated = _decode(model, [encoded[i] for i in indices], [budgets[i] for i in indices], pad, stops)
            for index, tokens, row_stops in zip(indices, generated, stops):
                tokens = tokens[: budgets[index]]
                end = next((position for position, token in enumerate(tokens) if token in row_stops), None)
                out[index] = tuple(tokens if end is None else tokens[: end + 1])
    return out


_LINE_BREAKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def line_break_tokens(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """The ids of the tokens whose text holds a line break (decoded once per tokenizer, about 2 s for 262k)."""
    try:
        return _LINE_BREAKS[tokenizer]
    except (KeyError, TypeError):
        pass
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    found = frozenset(i for i, text in enumerate(texts) if "\n" in text)
    with contextlib.suppress(TypeError):
        _LINE_BREAKS[tokenizer] = found
    return found


class _RowsEnded(StoppingCriteria):
    """Per row: ended once it has written one of its stop tokens or its budget of new tokens (called once per
    generated token, so a wrapper that lengthens the prompt, `InContextModel`, counts the same)."""

    def __init__(self, budgets: Sequence[int], stops: Sequence[frozenset[int]]) -> None:
        self.budgets, self.stops = list(budgets), list(stops)
        self.ended = [False] * len(self.budgets)
        self.written = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object) -> torch.Tensor:
        self.written += 1
        for row, (token, budget, stops) in enumerate(zip(input_ids[:, -1].tolist(), self.budgets, self.stops)):
            self.ended[row] = self.ended[row] or token in stops or self.written >= budget
        return torch.tensor(self.ended, dtype=torch.bool, device=input_ids.device)


def _decode(
    model: nn.Module,
    rows: Sequence[Sequence[int]],
    budgets: Sequence[int],
    pad: int,
    stops: Sequence[frozenset[int]],
) -> list[list[int]]:
    """Greedy tokens after each row (left-padded), `budgets[i]` at most, a row ended at any of `stops[i]`."""
    steps = max(budgets)
    generate = getattr(model, "generate", None)
    if callable(generate):
        # a prompt format's answered questions run once (`SharedPrefix`)
        inputs = SharedPrefix(rows, pad).inputs(model, full_ids=True, new_tokens=steps)
        output = generate(
            **inputs,
            max_new_tokens=steps,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=sorted(frozenset.intersection(*stops)) or None,  # the stops every row has (EOS)
            stopping_criteria=StoppingCriteriaList([_RowsEnded(budgets, stops)]),
            num_beams=1,
        )
        return [row.tolist() for row in output[:, inputs["input_ids"].shape[1] :]]
    device = input_device(model)
    ids, mask = (tensor.to(device) for tensor in left_pad(rows, pad))
    ended = _RowsEnded(budgets, stops)
    done = torch.zeros(len(rows), dtype=torch.bool, device=ids.device)
    new: list[torch.Tensor] = []
    for _ in range(steps):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=left_padded_positions(mask)).logits
        token = logits[:, -1].argmax(-1)
        token = torch.where(done, torch.full_like(token, pad), token)
        new.append(token)
        ids = torch.cat([ids, token[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        done = ended(ids, logits).to(done.device)
        if bool(done.all()):
            break
    return torch.stack(new, dim=1).tolist() if new else [[] for _ in rows]


def read_answer(
    tokenizer: PreTrainedTokenizerBase, generated: Sequence[int], target: str, *, stop_slack: int = 4
) -> AnswerReading:
    """Judge one generated continuation against `target` (see the module docstring)."""
    eos = tokenizer.eos_token_id
    ended_by_eos = eos is not None and eos in generated
    tokens = list(generated[: generated.index(eos)]) if ended_by_eos else list(generated)
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    stripped = text.lstrip(" ")
    line_break = re.search(r"\r?\n", stripped)
    answer = stripped[: line_break.start()] if line_break else stripped
    budget = target_length(tokenizer, target) + stop_slack
    stop = _stop_position(tokenizer, tokens, ended_by_eos)
    ended_in_time = stop is not None and stop <= budget
    repeats = bool(normalise(target)) and normalise(answer).count(normalise(target)) > 1
    return AnswerReading(text, answer, normalise(answer) == normalise(target), ended_in_time and not repeats, repeats)


def target_length(tokenizer: PreTrainedTokenizerBase, target: str) -> int:
    """How many tokens `target` takes after a prompt (as teacher forcing scores it)."""
    return len(tokenizer(" " + target.lstrip(" "), add_special_tokens=False)["input_ids"])


def answer_budget(tokenizer: PreTrainedTokenizerBase, target: str, settings: GenerationSettings) -> int:
    """How many tokens an answer to `target` is generated for: the target's length plus `stop_slack`."""
    return target_length(tokenizer, target) + settings.stop_slack


def answer_readings(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    settings: GenerationSettings,
    *,
    batch_size: int = 16,
) -> list[AnswerReading]:
    """Greedy answers to `(prompt, target)` pairs, each generated for `answer_budget` tokens, judged."""
    budgets = [answer_budget(tokenizer, target, settings) for _, target in pairs]
    prompts = [prompt for prompt, _ in pairs]
    generated = generate_greedy(model, tokenizer, prompts, budgets, batch_size=batch_size, stop_at_line_break=True)
    return [
        read_answer(tokenizer, tokens, target, stop_slack=settings.stop_slack)
        for tokens, (_, target) in zip(generated, pairs)
    ]


def _stop_position(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[int], ended_by_eos: bool) -> int | None:
    """How many generated tokens it took to end the answer (line break or EOS), or None if it never ended."""
    for position in range(1, len(tokens) + 1):
        if "\n" in tokenizer.decode(tokens[:position], skip_special_tokens=True).lstrip(" "):
            return position
    return len(tokens) + 1 if ended_by_eos else None


__all__ = [
    "AnswerReading",
    "GenerationSettings",
    "answer_budget",
    "answer_readings",
    "generate_greedy",
    "normalise",
    "read_answer",
]
