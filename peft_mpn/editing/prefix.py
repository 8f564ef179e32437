"""Run the frozen blocks below the patched one once, then replay them.

The base model is frozen and patches live in one block's FFN, so for a fixed batch everything the blocks below
that one compute never changes while an edit trains. `PrefixCache` runs the model once up to the patched
block, keeps the hidden states entering it (and the FFN inputs there), and during training swaps the lower
blocks for stand-ins that return the cached states. Embeddings, masks and rotary tables are still built by the
model's own forward (they are cheap), so this works for any architecture whose blocks sit in a ModuleList.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import torch
from torch import nn

from ..tuners.ffn import locate_block
from ..tuners.mpn import MPNLayer


class _StopForward(Exception):
    pass


class _Replay(nn.Module):
    """Stands in for a lower block: returns the cached output and ignores its input."""

    def __init__(self, original: nn.Module, output: torch.Tensor) -> None:
        super().__init__()
        self.__dict__["original"] = original
        self.__dict__["output"] = output

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.output

    def __getattr__(self, name: str) -> Any:  # models read attributes such as `attention_type` off their blocks
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["original"], name)


def run_until(model: nn.Module, stop_after: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
    """Run ``model`` on ``inputs`` without gradients and stop right after ``stop_after`` has run."""

    def stop(module: nn.Module, args: Any, output: Any) -> None:
        raise _StopForward

    handle = stop_after.register_forward_hook(stop)
    try:
        with torch.no_grad(), suppress(_StopForward):
            model(**inputs)
    finally:
        handle.remove()


def capture_ffn_inputs(model: nn.Module, layer: MPNLayer, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The FFN inputs ``h`` at ``layer`` for ``inputs`` ([B, S, d]); stops the forward right after that block."""
    with layer.record_inputs() as recorded:
        run_until(model, layer, inputs)
    if not recorded:
        raise RuntimeError("The patched FFN was not reached in the forward pass; is the adapter on this model?")
    return recorded[0]


class PrefixCache:
    """The hidden states entering one block for one fixed batch, replayed in later forward passes.

    Args:
        model: the (PEFT-wrapped) model to run.
        module_name: a module inside the first block that changes (e.g. the MPN layer), relative to ``root``.
        inputs: the batch (every tensor indexed by row on dim 0).
        root: the module ``module_name`` is relative to (default: ``model``).
        enabled: with False, nothing is replayed (same results, full cost: for measuring the speed-up).
        stop_after: the module after which the caching pass stops (default: that block); anything recorded
            by hooks up to there (e.g. `MPNLayer.record_inputs`) is available afterwards.
    """

    def __init__(
        self,
        model: nn.Module,
        module_name: str,
        inputs: dict[str, torch.Tensor],
        *,
        root: nn.Module | None = None,
        enabled: bool = True,
        stop_after: nn.Module | None = None,
    ) -> None:
        location = locate_block(module_name)
        self.stack = (root or model).get_submodule(location.stack)
        self.index = location.index
        self.enabled = enabled and self.index > 0
        block = self.stack[self.index]
        entering: list[torch.Tensor] = []

        def keep(module: nn.Module, args: tuple, kwargs: dict) -> None:
            entering.append(args[0] if args else kwargs["hidden_states"])

        handle = block.register_forward_pre_hook(keep, with_kwargs=True)
        try:
            run_until(model, stop_after or block, inputs)
        finally:
            handle.remove()
        if not entering:
            raise RuntimeError(f"Block {self.index} of {location.stack!r} was not reached in the forward pass.")
        self.entering = entering[0]

    @contextmanager
    def replay(self, rows: torch.Tensor | None = None) -> Iterator[None]:
        """Within the block, forward passes on ``inputs[rows]`` skip the lower blocks."""
        if not self.enabled:
            yield
            return
        cached = self.entering if rows is None else self.entering[rows]
        originals = [self.stack[i] for i in range(self.index)]
        try:
            for i, original in enumerate(originals):
                self.stack[i] = _Replay(original, cached)
            yield
        finally:
            for i, original in enumerate(originals):
                self.stack[i] = original
