"""Run the frozen blocks below the patched one once, then replay them.

The base model is frozen and patches live in one block's FFN, so for a fixed batch everything the blocks below
that one compute never changes while an edit trains. `PrefixCache` runs the model once up to the patched
block, keeps the hidden states entering it (and the FFN inputs there), and during training swaps the lower
blocks for stand-ins that return the cached states. Embeddings, masks and rotary tables are still built by the
model's own forward (they are cheap), so this works for any architecture whose blocks sit in a ModuleList.

When the patched block is the last one and only a few positions' outputs are read (an edit reads the positions
that predict its target tokens), everything after the block's self-attention is position-wise: the cache also
keeps that attention's output, and later passes run the block, the final norm and the output layer on those
positions only (`positionwise`), which is most of an edit step's cost gone. The cache checks once that the
short pass reproduces the block's output and otherwise falls back to the full sequence.

A subject gate (`peft_mpn.tuners.gate.SubjectGate`) reads a block below the cached one, which replayed passes do
not run: given the gate, the cache also keeps that block's FFN inputs, and the gates of the patches already in
the model read them during replay, so those patches open and shut as they do at inference.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from typing import Any

import torch
from torch import nn

from ..batching import takes_logits_to_keep
from ..tuners.ffn import locate_block
from ..tuners.gate import SubjectGate
from ..tuners.mpn import MPNLayer


class _StopForward(Exception):
    pass


class _ReplayAttention(nn.Module):
    """Stands in for the patched block's self-attention: returns its cached output at the kept positions."""

    def __init__(self, original: nn.Module, output: torch.Tensor, extras: int) -> None:
        super().__init__()
        self.__dict__["original"] = original
        self.__dict__["output"] = output
        self.__dict__["extras"] = extras  # how many more items the original returned beside the output

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return (self.output, *([None] * self.extras)) if self.extras >= 0 else self.output

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["original"], name)


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
        positions: [B, T] the only positions whose outputs later passes read (-1: none). With ``attention`` too
            and the block last in its stack, later passes can run on those positions only (`positionwise`).
        attention: the block's self-attention module, relative to the block (`FFNSpec.attention`).
        gate: the subject gate of the patches in the model, if any; its block must lie below the cached one.
        continue_steps: with `positionwise` possible and `stop_after` an `MPNLayer`, also continue every row greedily
            past its end for this many tokens, as `generate()` would, on this pass's key/value cache (no second pass
            over the batch); `continued` then holds `stop_after`'s inputs at those tokens ([B, steps, d]), else None.
        pad_token_id: what a row writes once it has written an end-of-sequence token (with `continue_steps`).
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
        positions: torch.Tensor | None = None,
        attention: str | None = None,
        gate: SubjectGate | None = None,
        continue_steps: int = 0,
        pad_token_id: int = 0,
    ) -> None:
        location = locate_block(module_name)
        self.stack = (root or model).get_submodule(location.stack)
        self.index = location.index
        self.enabled = enabled and self.index > 0
        self.block = block = self.stack[self.index]
        self.positions = positions
        self.attention = attention
        self.positionwise = False
        short = self.enabled and positions is not None and attention is not None and self.index == len(self.stack) - 1
        entering: list[torch.Tensor] = []
        kept: dict[str, Any] = {}

        def keep(module: nn.Module, args: tuple, kwargs: dict) -> None:
            entering.append(args[0] if args else kwargs["hidden_states"])

        def keep_attention(module: nn.Module, args: tuple, output: Any) -> None:
            kept["attention"], kept["extras"] = (
                (output[0], len(output) - 1) if isinstance(output, tuple) else (output, -1)
            )

        handles = [block.register_forward_pre_hook(keep, with_kwargs=True)]
        if short:
            handles.append(block.get_submodule(attention).register_forward_hook(keep_attention))
            handles.append(block.register_forward_hook(lambda module, args, output: kept.update(block=_first(output))))
        self.gate, self.gate_inputs = gate if self.enabled else None, None
        decode = continue_steps > 0 and short and isinstance(stop_after, MPNLayer) and "position_ids" in inputs
        try:
            with self.gate.record_inputs() if self.gate is not None else nullcontext([]) as gate_inputs:
                if decode:  # the rest of the model too: its cache and last logits start the continuation
                    with torch.no_grad():
                        outputs = model(**{**inputs, "use_cache": True, **_last_logits(model)})
                else:
                    run_until(model, block if short else (stop_after or block), inputs)
        finally:
            for handle in handles:
                handle.remove()
        if self.gate is not None:
            if not gate_inputs:
                raise RuntimeError("The subject gate's block was not reached before the cached block.")
            mask = inputs.get("attention_mask")
            self.gate_inputs = gate_inputs[0]
            self.gate_text = torch.ones(self.gate_inputs.shape[:2], dtype=torch.bool) if mask is None else mask.bool()
        if not entering:
            raise RuntimeError(f"Block {self.index} of {location.stack!r} was not reached in the forward pass.")
        self.entering = entering[0]
        self.continued = None
        if decode:  # before any other pass over the whole model: the gates follow the text through its cache
            self.continued = _continue_greedily(model, stop_after, inputs, outputs, continue_steps, pad_token_id)
        if short and "attention" in kept and "block" in kept:
            self.attention_output, self.attention_extras = kept["attention"], kept["extras"]
            self.positionwise = self._reproduces(model, inputs, kept["block"])

    def at_positions(self, inputs: dict[str, torch.Tensor], rows: torch.Tensor | None = None) -> dict[str, Any]:
        """``inputs`` (for ``rows``) cut to the kept positions, for a pass under `replay` when `positionwise`;
        the model's outputs then hold those positions only ([B, T, ...])."""
        index = self._position_index(rows)
        cut: dict[str, Any] = {}
        for name, value in inputs.items():
            if name == "logits_to_keep":
                continue  # every position of the short pass is kept
            if name == "attention_mask":
                cut[name] = torch.ones_like(index, dtype=value.dtype)
            elif isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[1] == self.entering.shape[1]:
                cut[name] = value.gather(1, index.to(value.device))
            else:
                cut[name] = value
        return cut

    def _position_index(self, rows: torch.Tensor | None) -> torch.Tensor:
        positions = self.positions if rows is None else self.positions[rows]
        return positions.clamp(min=0)

    def _at(self, states: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        states = states if rows is None else states[rows]
        index = self._position_index(rows).to(states.device)
        return states.gather(1, index.unsqueeze(-1).expand(-1, -1, states.shape[-1]))

    def _reproduces(self, model: nn.Module, inputs: dict[str, torch.Tensor], block_output: torch.Tensor) -> bool:
        """Whether the short pass gives the block's output at the kept positions (else: full passes only)."""
        self.positionwise = True
        short: list[torch.Tensor] = []
        handle = self.block.register_forward_hook(lambda module, args, output: short.append(_first(output)))
        try:
            with self.replay():
                run_until(model, self.block, self.at_positions(inputs))
        except Exception:  # noqa: BLE001 - an architecture the short pass does not fit: use full passes
            short.clear()
        finally:
            handle.remove()
        self.positionwise = False
        if not short or short[0].shape[:2] != self.positions.shape:
            return False
        expected = self._at(block_output, None)
        tolerance = max(1e-4, 8 * torch.finfo(expected.dtype).eps) * float(expected.abs().max().clamp(min=1e-6))
        return bool(torch.allclose(short[0].float(), expected.float(), rtol=0.0, atol=tolerance))

    @contextmanager
    def replay(self, rows: torch.Tensor | None = None) -> Iterator[None]:
        """Within the block, forward passes on ``inputs[rows]`` skip the lower blocks (on
        ``at_positions(inputs[rows], rows)`` when `positionwise`: they also skip the block's self-attention)."""
        if not self.enabled:
            yield
            return
        gate = nullcontext()
        if self.gate is not None:
            pick = (lambda t: t) if rows is None else (lambda t: t[rows])
            positions = pick(self.positions) if self.positionwise else None
            gate = self.gate.replaying(pick(self.gate_inputs), pick(self.gate_text), positions)
        if self.positionwise:
            cached = self._at(self.entering, rows)
            parent_name, _, child = self.attention.rpartition(".")
            parent = self.block.get_submodule(parent_name) if parent_name else self.block
            original_attention = getattr(parent, child)
            stand_in = _ReplayAttention(
                original_attention, self._at(self.attention_output, rows), self.attention_extras
            )
        else:
            cached = self.entering if rows is None else self.entering[rows]
        originals = [self.stack[i] for i in range(self.index)]
        try:
            for i, original in enumerate(originals):
                self.stack[i] = _Replay(original, cached)
            if self.positionwise:
                setattr(parent, child, stand_in)
            with gate:
                yield
        finally:
            for i, original in enumerate(originals):
                self.stack[i] = original
            if self.positionwise:
                setattr(parent, child, original_attention)


def _last_logits(model: nn.Module) -> dict[str, int]:
    base = getattr(model, "get_base_model", lambda: model)()
    return {"logits_to_keep": 1} if takes_logits_to_keep(base) else {}


def _continue_greedily(
    model: nn.Module, layer: MPNLayer, inputs: dict[str, torch.Tensor], outputs: Any, steps: int, pad: int
) -> torch.Tensor:
    """`layer`'s inputs [B, steps, d] at the next `steps` tokens each row of `inputs` is continued with greedily
    (`outputs`: the model's on `inputs`, with its cache), as `generate()` writes them: a row that has written an
    end-of-sequence token writes `pad` from then on."""
    config = getattr(getattr(model, "get_base_model", lambda: model)(), "generation_config", None)
    ends = getattr(config, "eos_token_id", None)
    ends = torch.tensor([] if ends is None else [ends] if isinstance(ends, int) else list(ends), dtype=torch.long)
    cache, logits, keep = outputs.past_key_values, outputs.logits[:, -1], _last_logits(model)
    mask, position = inputs["attention_mask"], inputs["position_ids"][:, -1:]
    done = torch.zeros(len(mask), dtype=torch.bool, device=mask.device)
    written: list[torch.Tensor] = []
    for step in range(steps):
        token = torch.where(done, pad, logits.argmax(-1).to(mask.device))
        done |= torch.isin(token, ends.to(token.device))
        mask, position = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1), position + 1
        step_inputs = {"input_ids": token[:, None], "attention_mask": mask, "position_ids": position}
        step_inputs |= {"past_key_values": cache, "use_cache": True}
        with layer.record_inputs() as recorded, torch.no_grad():
            if step == steps - 1:  # the last token's input is all that is read: no output layer
                run_until(model, layer, step_inputs)
            else:
                logits = model(**step_inputs, **keep).logits[:, -1]
        written.append(recorded[0][:, -1])
    return torch.stack(written, dim=1)


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output
