"""Plumbing the editors share."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from peft import PeftModel
from torch import nn

from ..batching import eval_mode
from ..data.requests import EditRequest, EditRequestError


def fixed_languages(correct: Sequence[bool], row_languages: Sequence[str]) -> list[str]:
    """The languages (in first-row order) all of whose rows are right after an edit."""
    wrong = {lang for ok, lang in zip(correct, row_languages) if not ok}
    return [lang for lang in dict.fromkeys(row_languages) if lang not in wrong]


def check_generation_requests(requests: Sequence[EditRequest], editor: str) -> None:
    """Refuse an empty batch, or a classification request, for an editor of causal LMs."""
    if not requests:
        raise EditRequestError("No edit requests given.")
    if any(not request.is_generation for request in requests):
        raise EditRequestError(f"{editor} edits causal LMs: targets must be strings (the new answer), not labels.")


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients into the model's own (or earlier edits') parameters; restored afterwards."""
    flags = {p: p.requires_grad for p in model.parameters()}
    with eval_mode(model):
        for p in flags:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in model.parameters():
                p.requires_grad_(flags.get(p, False))


class CandidateVocabulary:
    """A candidate vocabulary for the edit loss: the targets plus each decision point's top-k tokens.

    The output layer dominates an edit's cost on large-vocabulary models (Gemma 3: 262k tokens); the softmax
    is taken over these candidates during training, and whether the edit holds is always checked on the full
    vocabulary (whose top tokens then join the candidates).
    """

    def __init__(self, targets: torch.Tensor, logits: torch.Tensor, k: int) -> None:
        self.k = k
        self.size = logits.shape[-1]
        self.ids = torch.unique(targets[targets >= 0])
        self.extend(logits)

    def extend(self, logits: torch.Tensor) -> None:
        top = logits.topk(min(self.k, logits.shape[-1]), dim=-1).indices
        self.ids = torch.unique(torch.cat([self.ids.to(top.device), top.flatten()]))
        self.index = torch.full((self.size,), -100, dtype=torch.long, device=self.ids.device)
        self.index[self.ids] = torch.arange(len(self.ids), device=self.ids.device)
        self._weights = None

    def map(self, targets: torch.Tensor) -> torch.Tensor:
        return torch.where(targets >= 0, self.index[targets.clamp(min=0)], targets)

    @contextmanager
    def restrict(self, model: PeftModel):
        head = model.get_base_model().get_output_embeddings()
        if self._weights is None:
            bias = getattr(head, "bias", None)
            self._weights = (head.weight[self.ids], None if bias is None else bias[self.ids])
        weight, bias = self._weights
        head.forward = lambda hidden: F.linear(hidden, weight, bias)
        try:
            yield
        finally:
            del head.forward
