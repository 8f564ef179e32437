"""The memory bank: FFN inputs of unrelated text on which a patch must stay silent."""

from __future__ import annotations

import torch


class MemoryBank:
    """FFN inputs at the patched layer: a bounded sample of unrelated text, plus the inputs of past edits.

    Args:
        max_size: most unrelated-text vectors kept (a uniform random subsample beyond that).
        seed: seed of that subsample.
    """

    def __init__(self, max_size: int = 20000, seed: int = 0) -> None:
        self.max_size = max_size
        self._generator = torch.Generator().manual_seed(seed)
        self._unrelated: torch.Tensor | None = None
        self._edits: list[torch.Tensor] = []
        self._joined: torch.Tensor | None = None

    def add_unrelated(self, vectors: torch.Tensor) -> None:
        vectors = vectors.detach().reshape(-1, vectors.shape[-1]).float()
        joined = vectors if self._unrelated is None else torch.cat([self._unrelated, vectors])
        if len(joined) > self.max_size:
            keep = torch.randperm(len(joined), generator=self._generator)[: self.max_size]
            joined = joined[keep.sort().values]
        self._unrelated = joined
        self._joined = None

    def add_edit(self, vectors: torch.Tensor) -> None:
        self._edits.append(vectors.detach().reshape(-1, vectors.shape[-1]).float())
        self._joined = None

    def clear_edits(self) -> None:
        """Forget the inputs of past edits (keep the unrelated text)."""
        self._edits = []
        self._joined = None

    @property
    def vectors(self) -> torch.Tensor | None:
        if self._joined is None:
            parts = ([self._unrelated] if self._unrelated is not None else []) + self._edits
            self._joined = torch.cat(parts) if parts else None
        return self._joined

    def __len__(self) -> int:
        vectors = self.vectors
        return 0 if vectors is None else len(vectors)
