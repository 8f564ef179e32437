"""MPN's `transformers.Trainer` objective: patches planned for the training cases, trained with T-Patcher's losses."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from ...data.requests import EditRequest
from ...tuners.mpn import PatchSet

if TYPE_CHECKING:  # the editor builds this objective; only its type is needed here
    from .editor import MPNEditor


class MPNTrainerObjective:
    """Patches for the training cases (`MPNEditor.plan_patches`), trained with the editor's T-Patcher losses.

    The values get `amplifier_init` times the Trainer's learning rate: the editor trains v = z ⊙ a (both by
    Adam), so v moves about that much faster than a directly trained tensor; the adapter stores v itself.
    """

    rephrases = False

    def __init__(self, editor: MPNEditor, requests: Sequence[EditRequest]) -> None:
        if editor.is_classifier:
            raise ValueError("EditTrainer edits causal LMs; use MPNEditor.edit_batch for classifiers.")
        self.editor = editor
        tuner, name = editor.tuner, editor.adapter_name
        self.first = tuner.num_patches(name)  # earlier edits' patches stay frozen
        self.requests = list(requests)
        self.plan = editor.plan_patches(self.requests)
        if len(self.plan):
            tuner.add_patches(editor.layer_name, self.plan.initial, name)
        self.patch_requests = torch.tensor(self.plan.requests, dtype=torch.long)

    @property
    def keeps_earlier_edits(self) -> bool:
        return self.first > 0

    @property
    def tensors(self) -> list[torch.nn.Parameter]:
        layer, name = self.editor.layer, self.editor.adapter_name
        return [layer.mpn_keys[name], layer.mpn_bias[name], layer.mpn_values[name]]

    @contextmanager
    def trainable(self) -> Iterator[list[torch.nn.Parameter]]:
        handles = []
        for param in self.tensors:
            param.requires_grad_(True)
            if self.first:
                handles.append(
                    param.register_hook(lambda grad: torch.cat([grad[: self.first] * 0, grad[self.first :]]))
                )
        try:
            yield self.tensors
        finally:
            for handle in handles:
                handle.remove()

    def learning_rate_scales(self) -> dict[torch.nn.Parameter, float]:
        return {self.tensors[2]: self.editor.config.amplifier_init}

    def edit_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.editor.edit_loss(logits, targets, reduction="sum")

    def regularizer(self, targets: torch.Tensor, cases: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Σ over the batch's patches of (tokens of its case / patches of its case) · (c_a·l_a + c_m·l_m)."""
        selected = torch.nonzero(torch.isin(self.patch_requests, cases.cpu())).flatten()
        if not len(selected):
            return targets.new_zeros((), dtype=torch.float), {}
        keys, bias, _ = self.tensors
        patches = [self.plan.patches[int(p)] for p in selected]
        rows = selected + self.first
        activation, memory, _ = self.editor.patch_losses(patches, keys[rows], bias[rows], self.plan.silent)
        tokens = (targets != -100).sum(-1)
        owners = self.patch_requests[selected]
        case_tokens = torch.stack([tokens[cases == owner].sum() for owner in owners.tolist()]).to(activation)
        case_patches = torch.stack([(owners == owner).sum() for owner in owners.tolist()]).to(activation)
        weight = case_tokens / case_patches
        config = self.editor.config
        total = (weight * (config.activation_weight * activation + self.editor.memory_weight * memory)).sum()
        return total, {"activation": activation.mean().item(), "memory": memory.mean().item()}

    def after_step(self) -> None:
        """Nothing: MPN's patches take no constraint between steps."""

    def finish(self) -> None:
        """Fit the trained patches' subject gates, as `MPNEditor.edit` does after training (until then they are
        open: a patch trains on its own prompts, where its gate would open anyway)."""
        editor, plan = self.editor, self.plan
        if editor.gates is None or not plan.patches or plan.rows is None:
            return
        state = editor.tuner.patch_state(editor.adapter_name)
        patches = state[editor.layer_name]
        trained = patches.map(lambda t: t[self.first :])
        gated = editor.gates.fit(
            PatchSet(trained.keys, trained.bias, trained.values), plan.patches, plan.rows, self.requests
        )
        earlier = patches.map(lambda t: t[: self.first]).tensors(True)
        state[editor.layer_name] = PatchSet(*(torch.cat([a, b]) for a, b in zip(earlier, gated.tensors(True))))
        editor.tuner.restore_patches(state, editor.adapter_name)

    def adapter_size(self, saved_config: dict[str, Any] | None = None) -> dict[str, Any]:
        if saved_config is not None:
            return {"num_patches": saved_config.get("num_patches")}
        return {"num_patches": self.editor.tuner.num_patches(self.editor.adapter_name)}
