"""The floor below editing, judging and locating: token batches built the same way for all of them.

(prompt, target) pairs become left-padded teacher-forced batches; texts become padded batches with the position
ids left padding needs; `decision_logits` runs the output layer only where a target token is predicted;
`eval_mode` switches dropout off and restores every module's own flag.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from .data.requests import EditRequestError


@dataclass(frozen=True)
class TargetEncoding:
    """``prompt + " " + target`` as token ids, with the target span marked."""

    input_ids: tuple[int, ...]
    prompt_length: int

    @property
    def target_ids(self) -> tuple[int, ...]:
        return self.input_ids[self.prompt_length :]

    @property
    def decision_positions(self) -> range:
        """Positions whose next-token prediction is a target token."""
        return range(self.prompt_length - 1, len(self.input_ids) - 1)


def join_target(prompt: str, target: str) -> str:
    return target if prompt.endswith((" ", "\n")) or target.startswith(" ") else " " + target


def encode_target(tokenizer: PreTrainedTokenizerBase, prompt: str, target: str) -> TargetEncoding:
    prompt_ids = tokenizer(prompt)["input_ids"]
    target_ids = tokenizer(join_target(prompt, target), add_special_tokens=False)["input_ids"]
    meaningless = set(tokenizer.all_special_ids)  # <bos>, <pad>, <unk>...: no text the model could key on
    if not target_ids or set(target_ids) <= meaningless:
        raise EditRequestError(
            f"The target {target!r} encodes to no text tokens (only {tokenizer.convert_ids_to_tokens(target_ids)}); "
            "give an answer written in characters the tokenizer knows."
        )
    if not prompt_ids or set(prompt_ids) <= meaningless:
        raise EditRequestError(
            f"The prompt {prompt!r} encodes to special tokens only ({tokenizer.convert_ids_to_tokens(prompt_ids)}); "
            "a patch would attach to them and fire on every input. Give a prompt with text the tokenizer knows."
        )
    return TargetEncoding(tuple(prompt_ids) + tuple(target_ids), len(prompt_ids))


def position_limit(model: nn.Module) -> int | None:
    """How many positions `model` reads: its config's ``max_position_embeddings`` (None when it has none).

    Models whose position ids start after the padding index (RoBERTa, XLM-R) read that many fewer.
    """
    base = getattr(model, "get_base_model", lambda: model)()
    limit = getattr(getattr(base, "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        return None
    for name, module in base.named_modules():
        offset = getattr(module, "padding_idx", None) if name.endswith("position_embeddings") else None
        if isinstance(module, nn.Embedding) and offset is not None:
            return min(limit, module.num_embeddings - offset - 1)
    return limit


def short_repr(text: str, keep: int = 60) -> str:
    """``repr(text)``, cut after `keep` characters: for messages about inputs that may be very long."""
    return repr(text) if len(text) <= keep else f"{text[:keep]!r}… ({len(text)} characters)"


def check_length(limit: int | None, length: int, what: str, fix: str) -> None:
    """A clear error, before the model sees it, for an input of `length` tokens past the model's `limit`
    (`position_limit`): `what` it is, and `fix`, how to make it fit. Past the limit, a model with a position table
    fails deep inside torch (an IndexError) and one with rotary positions reads positions it was never trained on."""
    if limit is not None and length > limit:
        raise EditRequestError(
            f"{what} is {length} tokens long, but the model reads at most {limit} positions (its config's "
            f"max_position_embeddings). {fix}"
        )


def encode_targets(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]]
) -> list[TargetEncoding]:
    """`encode_target` for each (prompt, target), each checked to fit in `model` (`check_length`): the one place
    editors and judging encode what they train or score, so a too-long case is refused before any training."""
    limit = position_limit(model)
    encodings = []
    for prompt, target in pairs:
        encoding = encode_target(tokenizer, prompt, target)
        check_length(
            limit,
            len(encoding.input_ids),
            f"The prompt {short_repr(prompt)} with its target {short_repr(target)} ({encoding.prompt_length} + "
            f"{len(encoding.target_ids)} tokens)",
            "Shorten the prompt or the target so that both fit, or leave this case out.",
        )
        encodings.append(encoding)
    return encodings


@dataclass
class TargetBatch:
    """Left-padded sequences: every target ends one token before the end, so one logits window covers all."""

    input_ids: torch.Tensor  # [B, S]
    attention_mask: torch.Tensor  # [B, S]
    position_ids: torch.Tensor  # [B, S]
    target_ids: torch.Tensor  # [B, T] (right-aligned, padded with -100 on the left)
    encodings: list[TargetEncoding]

    @property
    def window(self) -> int:
        """How many final positions hold every decision position (``logits_to_keep``)."""
        return self.target_ids.shape[1] + 1

    def model_inputs(self, rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        tensors = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }
        return tensors if rows is None else {k: v[rows] for k, v in tensors.items()}

    def targets(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        return self.target_ids if rows is None else self.target_ids[rows]

    def decision_slots(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, slots)`` of every target token (``target_ids[rows, slots]``), row by row, slots in order."""
        return (self.target_ids != -100).nonzero(as_tuple=True)

    def decision_positions(self) -> torch.Tensor:
        """[B, T] absolute positions (in the padded batch) predicting each target token; -1 where padding."""
        length = self.input_ids.shape[1]
        width = self.target_ids.shape[1]
        offsets = torch.arange(width, device=self.target_ids.device) - width  # -T .. -1
        positions = length - 1 + offsets  # last decision position is length - 2
        positions = positions.expand(len(self.encodings), -1).clone()
        positions[self.target_ids == -100] = -1
        return positions


def left_pad(
    rows: Sequence[Sequence[int]], pad_token_id: int, min_length: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows right-aligned in one batch: `(input_ids, attention_mask)`, each [B, longest row] (at least
    `min_length` wide)."""
    length = max(min_length, *(len(row) for row in rows))
    input_ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for r, row in enumerate(rows):
        input_ids[r, length - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[r, length - len(row) :] = 1
    return input_ids, attention_mask


def collate_targets(
    encodings: Sequence[TargetEncoding], pad_token_id: int, device: torch.device | str | None = None
) -> TargetBatch:
    """One left-padded `TargetBatch` of `encodings`, its tensors on `device` (the model's `input_device`)."""
    input_ids, attention_mask = left_pad([e.input_ids for e in encodings], pad_token_id)
    width = max(len(e.target_ids) for e in encodings)
    target_ids = torch.full((len(encodings), width), -100, dtype=torch.long)
    for row, encoding in enumerate(encodings):
        target_ids[row, width - len(encoding.target_ids) :] = torch.tensor(encoding.target_ids)
    position_ids = left_padded_positions(attention_mask)
    tensors = (t.to(device) for t in (input_ids, attention_mask, position_ids, target_ids))
    return TargetBatch(*tensors, list(encodings))


def left_padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding shifts them otherwise)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def window_logits_at_targets(logits: torch.Tensor, batch_targets: torch.Tensor) -> torch.Tensor:
    """Logits of a ``window``-wide tail ([B, T+1, V]) -> the logits predicting each target slot ([B, T, V])."""
    return logits[:, -batch_targets.shape[1] - 1 : -1]


def decision_logits(
    model: nn.Module, inputs: dict[str, Any], batch: TargetBatch, head: nn.Module | None
) -> torch.Tensor:
    """The logits predicting each target token of ``batch``, ``[N, V]`` in `TargetBatch.decision_slots` order.

    ``inputs``: ``batch.model_inputs()`` with ``logits_to_keep=batch.window``. With a 262k vocabulary (Gemma 3) the
    output layer costs more than the rest of the model on that window, and part of the window is left padding of
    shorter targets; so while the model runs, ``head`` (its output layer) sees only the positions that predict a
    target token. A model whose head gets something other than the ``[B, window, H]`` tail (or ``head=None``)
    keeps its own logits, read from the window: the same values at the full cost.
    """
    window = batch.window
    rows, slots = batch.decision_slots()
    positions = batch.decision_positions()
    columns = positions[rows, slots] - (batch.input_ids.shape[1] - window)  # absolute -> within the window
    gathered: list[bool] = []

    def gather(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        hidden = args[0]
        expected = hidden.dim() == 3 and tuple(hidden.shape[:2]) == (len(batch.encodings), window)
        gathered.append(not gathered and expected)
        return (hidden[rows, columns].unsqueeze(0), *args[1:]) if gathered == [True] else None

    handle = head.register_forward_pre_hook(gather) if head is not None else None
    try:
        logits = model(**inputs).logits
    finally:
        if handle is not None:
            handle.remove()
    if gathered == [True]:
        return logits[0]
    if gathered[:1] == [True]:  # the head ran again after gathering: these logits are not the window's
        logits = model(**inputs).logits
    return window_logits_at_targets(logits, batch.target_ids)[rows, slots]


def takes_logits_to_keep(model: nn.Module) -> bool:
    """Whether ``model.forward`` accepts ``logits_to_keep`` (the output layer on the kept positions only)."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode, then every module's own training flag back (``model.train(flag)`` would reset them all).

    Inside, the output layer also reads a contiguous input (`contiguous_output_head`).
    """
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with contiguous_output_head(model):
            yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def _contiguous_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if args and isinstance(args[0], torch.Tensor) and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


@contextmanager
def contiguous_output_head(model: nn.Module) -> Iterator[None]:
    """Feed the output layer a contiguous input while inside.

    Causal LMs apply the output layer to ``hidden[:, -k:]`` (``logits_to_keep``; 1 in every `generate()` step), a
    strided view that `torch.nn.functional.linear` on CPU multiplies batch by batch against the whole weight: with
    Gemma 3's 262k vocabulary that was 3-4x slower than on the same rows made contiguous (measured on 2 cores).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    getter = getattr(base, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if not isinstance(head, nn.Module):
        yield
        return
    handle = head.register_forward_pre_hook(_contiguous_input)
    try:
        yield
    finally:
        handle.remove()
