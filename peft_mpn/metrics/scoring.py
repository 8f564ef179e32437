"""Teacher-forced scoring of (prompt, target) pairs: the predictions every metric is computed from."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..editing.common import eval_mode
from ..editing.encoding import TargetBatch, collate_targets, encode_target, pad_token_id, window_logits_at_targets


@dataclass(frozen=True)
class TargetScore:
    """How a model does on one target under teacher forcing."""

    predicted: tuple[int, ...]  # argmax token at each target position
    target: tuple[int, ...]

    @property
    def token_accuracy(self) -> float:
        return sum(p == t for p, t in zip(self.predicted, self.target)) / len(self.target)

    @property
    def exact(self) -> bool:
        """Every target token is the argmax: greedy decoding would produce the target."""
        return self.predicted == self.target


@torch.no_grad()
def score_targets(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 16,
) -> list[TargetScore]:
    """Teacher-forced predictions for each ``(prompt, target)``: ``prompt + " " + target``, argmax per target token."""
    base = getattr(model, "get_base_model", lambda: model)()
    keeps_logits = "logits_to_keep" in inspect.signature(base.forward).parameters
    head = getattr(base, "get_output_embeddings", lambda: None)() if keeps_logits else None
    pad = pad_token_id(tokenizer)
    encoded = [encode_target(tokenizer, p, t) for p, t in pairs]
    # Batches of similar length waste little compute on padding (about a third of the time on mixed probes).
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i].input_ids), len(encoded[i].target_ids)))
    scores: list[TargetScore | None] = [None] * len(encoded)
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            encodings = [encoded[i] for i in indices]
            batch = collate_targets(encodings, pad)
            inputs = batch.model_inputs()
            if keeps_logits:
                inputs["logits_to_keep"] = batch.window
            for index, encoding, tokens in zip(indices, encodings, _predicted_targets(model, inputs, batch, head)):
                scores[index] = TargetScore(tuple(tokens.tolist()), encoding.target_ids)
    return scores  # type: ignore[return-value]


def _predicted_targets(
    model: nn.Module, inputs: dict[str, Any], batch: TargetBatch, head: nn.Module | None
) -> list[torch.Tensor]:
    """Each row's argmax tokens at its target positions.

    With a 262k vocabulary (Gemma 3) the output layer costs more than the rest of the model on the
    ``logits_to_keep`` window, and about half of the window's rows are left padding of shorter targets; so while
    the model runs, ``head`` sees only the positions that predict a target token. A model whose head gets
    something other than the ``[B, window, H]`` tail keeps its own logits, read from the window.
    """
    widths = [len(encoding.target_ids) for encoding in batch.encodings]
    window = batch.window
    positions = batch.decision_positions()
    rows, slots = (positions >= 0).nonzero(as_tuple=True)  # row by row, each row's slots in order
    columns = positions[rows, slots] - (batch.input_ids.shape[1] - window)  # absolute -> within the window
    gathered: list[bool] = []

    def gather(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        hidden = args[0]
        gathered.append(not gathered and hidden.dim() == 3 and tuple(hidden.shape[:2]) == (len(widths), window))
        return (hidden[rows, columns].unsqueeze(0), *args[1:]) if gathered == [True] else None

    handle = head.register_forward_pre_hook(gather) if head is not None else None
    try:
        logits = model(**inputs).logits
    finally:
        if handle is not None:
            handle.remove()
    if gathered == [True]:
        return list(logits[0].argmax(-1).split(widths))
    if gathered[:1] == [True]:  # the head ran again after gathering: these logits are not the window's
        logits = model(**inputs).logits
    window_predictions = window_logits_at_targets(logits, batch.target_ids).argmax(-1)
    return [window_predictions[row, -width:] for row, width in enumerate(widths)]
