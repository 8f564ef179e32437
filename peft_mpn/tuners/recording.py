"""Tensors collected from forward passes while a `record()` context is open (`MPNLayer.record_inputs`,
`SubjectGate.record_inputs`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class Recorders:
    """The lists open `record()` contexts collect into; falsy while none is open (so nothing is detached or kept)."""

    def __init__(self) -> None:
        self._lists: list[list[torch.Tensor]] = []

    def __bool__(self) -> bool:
        return bool(self._lists)

    def add(self, tensor: torch.Tensor) -> None:
        """Append `tensor` to every open context's list."""
        for recorded in self._lists:
            recorded.append(tensor)

    @contextmanager
    def record(self) -> Iterator[list[torch.Tensor]]:
        """A list that receives every tensor `add`ed while the context is open."""
        recorded: list[torch.Tensor] = []
        self._lists.append(recorded)
        try:
            yield recorded
        finally:
            self._lists.remove(recorded)


__all__ = ["Recorders"]
