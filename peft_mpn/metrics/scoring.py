"""Teacher-forced scoring of (prompt, target) pairs: the predictions every metric is computed from."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..editing.common import eval_mode
from ..editing.encoding import collate_targets, encode_target, pad_token_id, window_logits_at_targets


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
    forward = getattr(model, "get_base_model", lambda: model)().forward
    keeps_logits = "logits_to_keep" in inspect.signature(forward).parameters
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
            logits = window_logits_at_targets(model(**inputs).logits, batch.target_ids)
            predicted = logits.argmax(-1)
            for row, (index, encoding) in enumerate(zip(indices, encodings)):
                width = len(encoding.target_ids)
                scores[index] = TargetScore(tuple(predicted[row, -width:].tolist()), encoding.target_ids)
    return scores  # type: ignore[return-value]
