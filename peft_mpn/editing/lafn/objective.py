"""LAFN's `transformers.Trainer` objective: located neurons for the training cases, trained with LAFN's loss."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ...data.requests import EditRequest
from .preserve import project

if TYPE_CHECKING:  # the editor builds this objective; only its type is needed here
    from .editor import LAFNEditor


def delta_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """The squared norm of the delta tensors: LAFN's norm penalty."""
    return sum(p.pow(2).sum() for p in params)


class LAFNTrainerObjective:
    """Located neurons for the training cases, trained with LAFN's NLL + KL locality + norm penalty."""

    def __init__(self, editor: LAFNEditor, requests: Sequence[EditRequest]) -> None:
        self.editor = editor
        self.rephrases = editor.config.use_rephrases
        located = editor.located(requests)
        if not located:
            raise ValueError("No neurons were located for the training cases; nothing for LAFN to train.")
        self.trained, self.collisions = editor.add_neurons(located)
        if not any(self.trained.values()):
            raise ValueError(f"Every located neuron already belongs to an earlier edit ({self.collisions}).")
        if editor.gates is not None:
            editor.gates.fit(requests, self.trained)
        self.locality = editor.locality_reference()
        self.projections = editor.preservation(self.trained)

    def after_step(self) -> None:
        """Keep the new deltas off the unrelated texts' activations (`LAFNEditorConfig.preserved_energy`)."""
        project(self.projections)

    @property
    def keeps_earlier_edits(self) -> bool:
        held = self.editor.tuner.neuron_sets(self.editor.adapter_name)
        return any(set(indices) - set(self.trained.get(layer, [])) for layer, indices in held.items())

    @contextmanager
    def trainable(self) -> Iterator[list[torch.nn.Parameter]]:
        with self.editor.trainable_deltas(self.trained) as params:
            yield params

    def learning_rate_scales(self) -> dict[torch.nn.Parameter, float]:
        return {}

    def edit_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
        )

    def regularizer(self, targets: torch.Tensor, cases: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch's share (its target tokens) of λ_loc·KL + λ_norm·‖δ‖² (whole-model terms, once per step)."""
        config = self.editor.config
        locality = self.editor.locality_loss(self.locality)
        norm = delta_norm(self.editor.tuner.delta_parameters(self.editor.adapter_name))
        tokens = (targets != -100).sum()
        total = tokens * (config.locality_weight * locality + config.norm_weight * norm)
        return total, {"locality": locality.item(), "norm": norm.item()}

    def finish(self) -> None:
        """Nothing: a LAFN edit is complete when its deltas are trained."""

    def adapter_size(self, saved_config: dict[str, Any] | None = None) -> dict[str, Any]:
        neurons = (
            self.editor.tuner.neuron_sets(self.editor.adapter_name)
            if saved_config is None
            else saved_config.get("neurons") or {}
        )
        return {"neurons": {str(k): len(v) for k, v in neurons.items()}}
