"""Keeping a LAFN edit off unrelated text.

A LAFN delta lives on the down-projection rows of the located neurons, so it adds ``a_S · Δ`` wherever those
neurons are active, on the fact and on everything else. AlphaEdit (Fang et al. 2025) keeps a MEMIT update off
preserved knowledge by projecting it onto the null space of the preserved keys; here the keys are the located
neurons' activations ``a_S`` on unrelated text. With ``U`` the directions (in the space of the located neurons)
that carry a share ``preserved_energy`` of those activations' energy, every step's delta is replaced by
``(I − U Uᵀ) Δ``: unrelated text, whose ``a_S`` lies almost wholly along ``U``, gets almost nothing, and the fact
keeps the part of its own activation pattern that unrelated text does not share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ...devices import input_device
from ...tuners.lafn import LAFNLayer


class UnrelatedActivations:
    """Per block, the Gram matrix ``Σ aᵀa`` of the FFN's intermediate activations ``a`` over the positions of
    unrelated texts, on the model as given (call it with the adapter disabled). Each block is read once, the
    first time an edit locates neurons in it.

    A position counts once however many texts share the tokens up to it: a prompt format's answered questions
    begin every text, and counted in each they would fill the energy share with the same few directions.
    """

    def __init__(self, texts: Sequence[str], tokenizer: Any, batch_size: int = 16) -> None:
        self.texts, self.tokenizer, self.batch_size = list(texts), tokenizer, batch_size
        self._grams: dict[int, torch.Tensor] = {}

    def grams(self, model: Any, layers: Mapping[int, LAFNLayer]) -> dict[int, torch.Tensor]:
        """``{block index: [width, width] Gram matrix}`` for `layers` (``{block index: its LAFN layer}``)."""
        missing = {index: layer for index, layer in layers.items() if index not in self._grams}
        if missing and self.texts:
            self._collect(model, missing)
        return {index: self._grams[index] for index in layers if index in self._grams}

    def _collect(self, model: Any, layers: Mapping[int, LAFNLayer]) -> None:
        sums = {index: torch.zeros(layer.width, layer.width, dtype=torch.float64) for index, layer in layers.items()}
        mask: list[torch.Tensor] = []

        def reader(index: int):
            def hook(module: torch.nn.Module, args: tuple) -> None:
                a = args[0][mask[0].to(args[0].device)].detach().double().cpu()  # [positions, width]
                sums[index] += a.T @ a

            return hook

        handles = [layer.down_proj.register_forward_pre_hook(reader(index)) for index, layer in layers.items()]
        device = input_device(model)
        seen: set[tuple[int, ...]] = set()
        try:
            with torch.no_grad():
                for start in range(0, len(self.texts), self.batch_size):
                    encoded = self.tokenizer(
                        self.texts[start : start + self.batch_size],
                        return_tensors="pt",
                        padding=True,
                        padding_side="right",  # every real token at its own position
                    )
                    counted = encoded["attention_mask"].bool()
                    for row, ids in enumerate(encoded["input_ids"].tolist()):
                        for position in range(int(counted[row].sum())):
                            prefix = tuple(ids[: position + 1])
                            counted[row, position] = prefix not in seen
                            seen.add(prefix)
                    mask[:] = [counted.to(device)]
                    model(
                        input_ids=encoded["input_ids"].to(device), attention_mask=encoded["attention_mask"].to(device)
                    )
        finally:
            for handle in handles:
                handle.remove()
        self._grams.update(sums)


def preserving_projector(gram: torch.Tensor, energy: float) -> torch.Tensor:
    """``I − U Uᵀ`` for the fewest eigenvectors ``U`` of `gram` (``[n, n]``, positive semi-definite) that carry a
    share `energy` of its trace; the identity when the gram is zero (the neurons never fire on unrelated text)."""
    values, vectors = torch.linalg.eigh(gram.double())
    values, vectors = values.clamp(min=0).flip(0), vectors.flip(1)  # largest first
    identity = torch.eye(gram.shape[0], dtype=torch.float64)
    total = values.sum()
    if total <= 0:
        return identity.float()
    kept = int((values.cumsum(0) / total < energy - 1e-9).sum()) + 1
    directions = vectors[:, : min(kept, gram.shape[0])]
    return (identity - directions @ directions.T).float()


def edit_projections(
    layers: Mapping[int, LAFNLayer],
    adapter_name: str,
    trained: Mapping[int, Sequence[int]],
    grams: Mapping[int, torch.Tensor],
    energy: float,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(down delta, rows of this edit's neurons in it, projector)`` per block where the edit trains neurons."""
    projections = []
    for index, layer in layers.items():
        neurons = list(trained.get(index, ()))
        if not neurons or index not in grams:
            continue
        order = {neuron: row for row, neuron in enumerate(layer.neurons(adapter_name))}
        rows = torch.tensor([order[neuron] for neuron in neurons])
        located = torch.tensor(neurons)
        gram = grams[index].index_select(0, located).index_select(1, located)
        projections.append((layer.lafn_down[adapter_name], rows, preserving_projector(gram, energy)))
    return projections


def project(projections: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """Replace each edit's delta rows ``Δ`` by ``P Δ`` (in place, outside autograd)."""
    with torch.no_grad():
        for delta, rows, projector in projections:
            current = delta.index_select(0, rows.to(delta.device))
            delta.index_copy_(0, rows.to(delta.device), (projector.to(delta) @ current).to(delta.dtype))
