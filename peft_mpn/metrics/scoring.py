"""Teacher-forced scoring of (prompt, target) pairs: the predictions every metric is computed from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..batching import (
    TargetBatch,
    collate_targets,
    decision_logits,
    encode_targets,
    eval_mode,
    pad_token_id,
    takes_logits_to_keep,
)
from ..devices import input_device
from ..shared_prefix import SharedPrefix


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
    keeps_logits = takes_logits_to_keep(base)
    head = getattr(base, "get_output_embeddings", lambda: None)() if keeps_logits else None
    pad = pad_token_id(tokenizer)
    encoded = encode_targets(model, tokenizer, pairs)
    # Batches of similar length waste little compute on padding (about a third of the time on mixed probes).
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i].input_ids), len(encoded[i].target_ids)))
    scores: list[TargetScore | None] = [None] * len(encoded)
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            encodings = [encoded[i] for i in indices]
            batch = collate_targets(encodings, pad, input_device(model))
            inputs = _inputs(model, batch, pad) if keeps_logits else batch.model_inputs()
            widths = [len(encoding.target_ids) for encoding in encodings]
            predicted = decision_logits(model, inputs, batch, head).argmax(-1).split(widths)
            for index, encoding, tokens in zip(indices, encodings, predicted):
                scores[index] = TargetScore(tuple(tokens.tolist()), encoding.target_ids)
    return scores  # type: ignore[return-value]


def _inputs(model: nn.Module, batch: TargetBatch, pad: int) -> dict[str, Any]:
    """The batch's model inputs with ``logits_to_keep`` (its window). The tokens every row starts with (a prompt
    format's answered questions: more than half of a short probe's) run once (`SharedPrefix`), where each row
    keeps all its decision positions after them."""
    rows = [encoding.input_ids for encoding in batch.encodings]
    shared = SharedPrefix(rows, pad)
    rests = [len(encoding.input_ids) - shared.length for encoding in batch.encodings]
    if shared.usable(model) and all(rest > len(e.target_ids) for rest, e in zip(rests, batch.encodings)):
        inputs = shared.inputs(model)
    else:
        inputs = batch.model_inputs()
    inputs["logits_to_keep"] = batch.window
    return inputs
