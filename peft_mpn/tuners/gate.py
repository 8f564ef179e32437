"""Subject gates: a gated patch (MPN) or neuron delta (LAFN) acts only in a text that has mentioned its subject.

A patch's key reads the patched block's FFN input at the position where an answer is written. There, a question
about a nearby subject with the same relation ("What language do they understand in Kemijärvi?" beside the edited
"… in Sweden?") looks as much like the edit as the edit's own rephrase does, so no key there fires on one and not
the other. A few blocks up from the embeddings the subject's own last token is far more distinct: a linear key on
that position told the edit's subject from every other subject with the same relation far better than any key at
the answer position (`docs/mpn_patch_plans.md`, "Subject gates").

So each patch may carry a *gate*: a key `g` and bias `c` on the FFN input of an earlier block (`gate_layer`). At a
position `t` the gate is open once `g·x_s + c > 0` at some position `s ≤ t` of the text so far; the patch adds its
value only where its gate is open. `SubjectGate` watches that block, remembers which gates have opened in the text
so far (across `generate()`'s decoding steps, which reuse one key/value cache), and answers the MPN layers. An
ungated patch has `g = 0, c = 1`: always open. Padding never opens a gate: in a left-padded batch the pad positions'
FFN inputs are no text, and a gate that fired on them would open for the whole row (the model's `attention_mask`
says which positions are padding).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import Cache

from .ffn import _block_stack, base_model, ffn_spec, num_layers
from .recording import Recorders

#: The gate bias of a patch that has no gate: with a zero key the gate is open everywhere.
OPEN = 1.0


class SubjectGate:
    """Watches one block's FFN input and tells, per position and patch, whether each patch's gate is open.

    A forward pass through the model starts a new text unless it passes the same key/value cache object as the
    previous pass (a decoding step of `generate()`), which continues it.

    Args:
        block: the transformer block whose FFN input the gates read.
        ffn: that block's FFN module (its forward's first argument, or `input_kwarg`, is the FFN input).
        input_kwarg: the FFN input's keyword name.
        model: the model whose forward receives the `attention_mask` (padding is read from it); None: every
            position is text.
    """

    def __init__(self, block: nn.Module, ffn: nn.Module, input_kwarg: str, model: nn.Module | None = None) -> None:
        self._input_kwarg = input_kwarg
        self._inputs: torch.Tensor | None = None  # [B, T, d]: this text's FFN inputs so far
        self._text: torch.Tensor | None = None  # [B, T] bool: which of them are text (not padding)
        self._mask: torch.Tensor | None = None  # the model's 2-D attention mask, until the gate's block reads it
        self._new = 0  # how many of them the current forward pass added
        self._cache: Any = None  # a weak reference to the key/value cache the text is decoded with
        # id of a gate-key tensor -> (that tensor, its version, positions seen, [B, P] opened so far)
        self._opened: dict[int, tuple[Any, int, int, torch.Tensor]] = {}
        self._suspended = 0
        self._replayed: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self._recorders = Recorders()
        self.ffn = ffn
        self._handles = [
            block.register_forward_pre_hook(self._start, with_kwargs=True),
            ffn.register_forward_pre_hook(self._record, with_kwargs=True),
        ]
        if model is not None:
            self._handles.append(model.register_forward_pre_hook(self._take_mask, with_kwargs=True))

    def remove(self) -> None:
        """Detach the hooks (the gated patches then cannot run)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._inputs = self._text = self._mask = None

    def _take_mask(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        self._mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None

    def _start(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        # the key/value cache, however the model passes it (GPT-2 positionally, Llama by keyword)
        cache = next((value for value in (*args, *kwargs.values()) if isinstance(value, Cache)), None)
        continues = cache is not None and self._cache is not None and self._cache() is cache
        if not continues:
            self._inputs, self._text, self._opened = None, None, {}
            self._cache = weakref.ref(cache) if cache is not None else None

    def _record(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        h = (args[0] if args else kwargs[self._input_kwarg]).detach()
        if self._inputs is not None and self._inputs.shape[0] != h.shape[0]:
            self._inputs, self._text, self._opened = None, None, {}
        # a mask is used by the one pass it came with: a pass that does not start at the model (an editor's pass
        # from a block up) must not read a stale one
        mask, self._mask = self._mask, None
        if mask is not None and mask.shape[0] == h.shape[0] and mask.shape[1] >= h.shape[1]:
            text = mask[:, -h.shape[1] :].to(device=h.device, dtype=torch.bool)
        else:
            text = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        self._inputs = h if self._inputs is None else torch.cat([self._inputs, h], dim=1)
        self._text = text if self._text is None else torch.cat([self._text, text], dim=1)
        self._new = h.shape[1]
        self._recorders.add(h)

    def record_inputs(self) -> AbstractContextManager[list[torch.Tensor]]:
        """Collect the gate block's FFN input (detached, [B, T, d]) of every forward pass, like
        `MPNLayer.record_inputs`."""
        return self._recorders.record()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Every gate open: for forward passes that start above the gate's block (an editor's prefix cache), where
        the gate cannot see the text; the editor trains its patches only where their gates are open."""
        self._suspended += 1
        try:
            yield
        finally:
            self._suspended -= 1

    @contextmanager
    def replaying(
        self, inputs: torch.Tensor, text: torch.Tensor, positions: torch.Tensor | None = None
    ) -> Iterator[None]:
        """Gates read `inputs` ([B, T, d], this block's FFN inputs recorded in an earlier full pass; `text`
        [B, T]: which positions are not padding) instead of the pass itself: for passes that start above the gate's
        block on those rows (an editor's prefix cache), so that patches already in the model open and shut as they
        will at inference. `positions` ([B, T'], -1 for none): the pass runs on those positions only."""
        previous, self._replayed = self._replayed, (inputs, text.to(torch.bool), positions)
        try:
            yield
        finally:
            self._replayed = previous

    def _open_replayed(self, keys: torch.Tensor, bias: torch.Tensor, count: int) -> torch.Tensor:
        inputs, text, positions = self._replayed
        fires = _opened(inputs, text.to(inputs.device), keys, bias)
        if positions is not None:
            index = positions.clamp(min=0).to(fires.device)
            fires = fires.gather(1, index[..., None].expand(-1, -1, fires.shape[-1]))
        if fires.shape[1] < count:
            raise RuntimeError(f"The replayed gate inputs cover {fires.shape[1]} positions, the pass {count}.")
        return fires[:, -count:].to(keys.dtype)

    def open(self, keys: torch.Tensor, bias: torch.Tensor, positions: int) -> torch.Tensor | None:
        """[B, positions, P]: 1 where each patch's gate is open at the current pass's last `positions` positions
        (None: all open). Raises when the gate's block did not run in this pass."""
        if self._suspended or bool((bias >= OPEN).all() and not keys.any()):
            return None
        if self._replayed is not None:
            return self._open_replayed(keys, bias, positions)
        if self._inputs is None or positions != self._new:
            raise RuntimeError(
                "A gated MPN patch ran in a forward pass that did not run the gate's block (e.g. a pass that starts "
                "above it): run the whole model, or wrap the pass in `SubjectGate.suspended()`."
            )
        total = self._inputs.shape[1]
        ref, version, seen, opened = self._opened.get(id(keys), (None, -1, 0, None))
        if ref is None or ref() is not keys or version != keys._version or seen >= total:
            seen, opened = 0, None  # a gate not seen in this text yet (or changed since): from its first position
        fires = _opened(self._inputs[:, seen:], self._text[:, seen:], keys, bias, opened)  # [B, T_fresh, P]
        self._opened[id(keys)] = (weakref.ref(keys), keys._version, total, fires[:, -1])
        return fires[:, -positions:].to(keys.dtype)


def _opened(
    inputs: torch.Tensor,
    text: torch.Tensor,
    keys: torch.Tensor,
    bias: torch.Tensor,
    before: torch.Tensor | None = None,
) -> torch.Tensor:
    """[B, T, P] bool: whether each gate has fired at a text position up to each of `inputs`' positions (`before`:
    [B, P], already open before the first of them)."""
    fires = ((inputs.to(keys.dtype) @ keys.T + bias) > 0) & text[..., None]
    if before is not None:
        fires[:, 0] |= before
    return fires.cummax(dim=1).values


class SubjectGatedTuner:
    """What a tuner whose adapter layers can carry subject gates shares: one `SubjectGate` per gate block, attached
    to the adapter's layers, read at the config's `gate_layer`.

    A tuner using it implements `_gated_blocks(config)` (the block indices the adapter changes, which the gate must
    come before) and `_gated_layers(adapter_name)` (its layers, each with `attach_gate(name, gate)` and
    `add_gates(name)`).
    """

    def _gated_blocks(self, peft_config: Any) -> list[int] | None:
        raise NotImplementedError

    def _gated_layers(self, adapter_name: str) -> dict[str, Any]:
        raise NotImplementedError

    def _gate_layer(self, peft_config: Any, gate_layer: int, total: int) -> int:
        """`gate_layer` as a block index, checked to come before every block the adapter changes."""
        if not -total <= gate_layer < total:
            raise ValueError(f"gate_layer {gate_layer} out of range for a {total}-layer model.")
        changed = self._gated_blocks(peft_config)
        if not changed or gate_layer % total >= min(changed):
            raise ValueError(
                f"gate_layer {gate_layer} must come before the adapted block(s) {changed}: a gate reads an earlier "
                "block. Choose a smaller gate_layer."
            )
        return gate_layer % total

    def inject_adapter(self, model, adapter_name: str, *args, **kwargs) -> None:  # noqa: ANN001
        super().inject_adapter(model, adapter_name, *args, **kwargs)
        if self.peft_config[adapter_name].gate_layer is not None:
            self._attach_gate(adapter_name)

    def _unload_and_optionally_merge(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        model = super()._unload_and_optionally_merge(*args, **kwargs)
        for gate in self.__dict__.pop("_subject_gates", {}).values():  # the base model keeps no hook of ours
            gate.remove()
        return model

    def _attach_gate(self, adapter_name: str) -> SubjectGate:
        layer_index = self.peft_config[adapter_name].gate_layer
        gates: dict[int, SubjectGate] = self.__dict__.setdefault("_subject_gates", {})
        if layer_index not in gates:
            spec = ffn_spec(self.model)
            block = _block_stack(base_model(self.model), spec)[layer_index]
            gates[layer_index] = SubjectGate(block, block.get_submodule(spec.block), spec.input_kwarg, self.model)
        for layer in self._gated_layers(adapter_name).values():
            layer.attach_gate(adapter_name, gates[layer_index])
        return gates[layer_index]

    def subject_gate(self, adapter_name: str | None = None) -> SubjectGate | None:
        """The `SubjectGate` of `adapter_name` (None when it has no gates)."""
        adapter_name = self.resolve_adapter(adapter_name)
        layer_index = self.peft_config[adapter_name].gate_layer
        return None if layer_index is None else self.__dict__["_subject_gates"][layer_index]

    def enable_subject_gates(self, gate_layer: int, adapter_name: str | None = None) -> SubjectGate:
        """Give `adapter_name` subject gates read at block `gate_layer` (what it holds so far gets open gates)."""
        adapter_name = self.resolve_adapter(adapter_name)
        config = self.peft_config[adapter_name]
        if config.gate_layer is not None:
            if config.gate_layer != self._gate_layer(config, gate_layer, num_layers(self.model.config)):
                raise ValueError(f"Adapter {adapter_name!r} already has gates at block {config.gate_layer}.")
            return self.subject_gate(adapter_name)
        config.gate_layer = self._gate_layer(config, gate_layer, num_layers(self.model.config))
        for layer in self._gated_layers(adapter_name).values():
            layer.add_gates(adapter_name)
        return self._attach_gate(adapter_name)


__all__ = ["OPEN", "SubjectGate", "SubjectGatedTuner"]
