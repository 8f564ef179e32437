from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import check_adapters_to_merge
from torch import nn
from transformers.activations import ACT2FN

from ..ffn import FFNSpec, neuron_dim, neuron_rows
from ..gate import OPEN, SubjectGate
from ..layer import FFNBlockLayer
from .config import LAFNConfig


class LAFNLayer(FFNBlockLayer):
    """Wraps an FFN block and adds learned deltas on a set of its neurons.

    While the wrapped block runs, a forward hook on its down projection reads the down projection's input (the
    FFN's intermediate activation `a`) and adds, for every active adapter, `a[..., S] · Δdown` to its output,
    so no FFN code is duplicated. With `update_input` the located neurons' up (and gate) rows get deltas too:
    their activations are recomputed from the FFN input `h` for the `n` located neurons only, with the FFN's
    own activation (this also covers BERT-likes, whose up projection runs outside the wrapped block), and the
    change `Δa_S` enters as `(a_S + Δa_S)·(W_down[S] + Δdown) − a_S·W_down[S]`. With `cached` the sum is
    masked per token by `activation_score > threshold` on the base activation.

    Deltas are stored neuron-major, `[n, d]` (`lafn_down`, `lafn_up`, `lafn_gate`); the neuron indices
    are a persistent int64 buffer (`lafn_indices`) so they travel with the saved weights. An adapter with a
    `gate_layer` also holds a subject gate per neuron (`lafn_subject_keys` `[n, d]`, `lafn_subject_bias` `[n]`, see
    `peft_mpn.tuners.gate`): a neuron's delta acts only where its gate is open (zero key, bias `OPEN`: always).
    """

    adapter_layer_names = ("lafn_down", "lafn_up", "lafn_gate", "lafn_subject_keys", "lafn_subject_bias")
    other_param_names = ("lafn_indices", "lafn_update_input", "lafn_threshold")

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: LAFNConfig,
        spec: FFNSpec,
        block: nn.Module,
        layer_index: int,
        ffn_activation: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_layer, spec, block, ffn_activation)
        self.layer_index = layer_index
        self.lafn_down = nn.ParameterDict({})
        self.lafn_up = nn.ParameterDict({})
        self.lafn_gate = nn.ParameterDict({})
        self.lafn_subject_keys = nn.ParameterDict({})  # only for adapters with a `gate_layer`
        self.lafn_subject_bias = nn.ParameterDict({})
        self.__dict__["_gates"] = {}  # adapter name -> its SubjectGate (set by the tuner; not a submodule)
        self.lafn_indices = BufferDict(persistent=True)  # peft's default (False) would not save them
        self.lafn_update_input: dict[str, bool] = {}
        self.lafn_threshold: dict[str, float | None] = {}
        self.__dict__["_merge_backup"] = {}
        self.update_layer(adapter_name, config)

    def neurons(self, adapter_name: str) -> list[int]:
        return self.lafn_indices[adapter_name].tolist()

    # -- adapters --------------------------------------------------------------------------------------------
    def _check_indices(self, indices: list[int]) -> None:
        bad = [i for i in indices if not 0 <= i < self.width]
        if bad:
            raise ValueError(
                f"LAFN neuron indices {bad[:10]} are out of range for layer {self.layer_index}, whose FFN has width "
                f"{self.width} (valid: 0..{self.width - 1})."
            )

    def _new_deltas(self, n: int, random: bool, scale: float) -> torch.Tensor:
        device, dtype = self.adapter_device_and_dtype()
        if random:
            return (torch.randn(n, self.hidden_size, device=device) * scale).to(dtype)
        return torch.zeros(n, self.hidden_size, device=device, dtype=dtype)

    def update_layer(self, adapter_name: str, config: LAFNConfig, **kwargs: Any) -> None:
        indices = config.neurons.get(self.layer_index)
        if not indices:
            raise ValueError(f"LAFN adapter {adapter_name!r} has no neurons for layer {self.layer_index}.")
        self._check_indices(indices)
        random = not config.init_lafn_weights
        self.lafn_indices[adapter_name] = torch.tensor(indices, dtype=torch.int64, device=self.down_proj.weight.device)
        self.lafn_down[adapter_name] = nn.Parameter(self._new_deltas(len(indices), random, 1.0))
        for store in (self.lafn_up, self.lafn_gate, self.lafn_subject_keys, self.lafn_subject_bias):
            if adapter_name in store:
                del store[adapter_name]
        if config.update_input:
            scale = self.hidden_size**-0.5
            self.lafn_up[adapter_name] = nn.Parameter(self._new_deltas(len(indices), random, scale))
            if self.spec.is_gated:
                self.lafn_gate[adapter_name] = nn.Parameter(self._new_deltas(len(indices), random, scale))
        self.lafn_update_input[adapter_name] = config.update_input
        self.lafn_threshold[adapter_name] = config.activation_threshold if config.cached else None
        if config.gate_layer is not None:
            self.add_gates(adapter_name)
        self.set_adapter(self.active_adapters)

    def gated(self, adapter_name: str) -> bool:
        return adapter_name in self.lafn_subject_keys

    def add_gates(self, adapter_name: str) -> None:
        """Give `adapter_name`'s neurons open subject gates (zero keys, bias `OPEN`) until an editor (or a saved
        adapter) sets them."""
        down = self.lafn_down[adapter_name]
        keys = down.detach().new_zeros(down.shape[0], self.hidden_size)
        self.lafn_subject_keys[adapter_name] = nn.Parameter(keys, requires_grad=False)
        self.lafn_subject_bias[adapter_name] = nn.Parameter(torch.full_like(keys[:, 0], OPEN), requires_grad=False)

    def attach_gate(self, adapter_name: str, gate: SubjectGate) -> None:
        """The `SubjectGate` that opens `adapter_name`'s gated neurons (the tuner attaches it)."""
        self._gates[adapter_name] = gate

    def set_gates(self, adapter_name: str, indices: list[int], key: torch.Tensor, bias: torch.Tensor) -> None:
        """Gate the neurons `indices` of `adapter_name` with one subject gate (`key` `[d]`, `bias` scalar)."""
        chosen = set(indices)
        rows = [i for i, neuron in enumerate(self.neurons(adapter_name)) if neuron in chosen]
        keys, biases = self.lafn_subject_keys[adapter_name], self.lafn_subject_bias[adapter_name]
        with torch.no_grad():
            keys[rows] = key.to(keys)
            biases[rows] = bias.to(biases)

    def add_neurons(self, adapter_name: str, indices: list[int]) -> None:
        """Append neurons (zero deltas) to `adapter_name`; existing deltas are kept, trainability follows them."""
        if self.merged:
            raise RuntimeError("Unmerge the adapter before adding neurons.")
        self._check_indices(indices)
        present = set(self.neurons(adapter_name))
        if present & set(indices):
            raise ValueError(f"Neurons {sorted(present & set(indices))[:10]} are already in adapter {adapter_name!r}.")
        old_idx = self.lafn_indices[adapter_name]
        self.lafn_indices[adapter_name] = torch.cat([old_idx, torch.tensor(indices, dtype=old_idx.dtype).to(old_idx)])
        for store in (self.lafn_down, self.lafn_up, self.lafn_gate, self.lafn_subject_keys):
            if adapter_name in store:
                old = store[adapter_name]
                zeros = old.new_zeros(len(indices), old.shape[1])
                store[adapter_name] = nn.Parameter(torch.cat([old.detach(), zeros]), requires_grad=old.requires_grad)
        if adapter_name in self.lafn_subject_bias:  # the new neurons' gates are open
            old = self.lafn_subject_bias[adapter_name]
            opened = torch.cat([old.detach(), old.new_full((len(indices),), OPEN)])
            self.lafn_subject_bias[adapter_name] = nn.Parameter(opened, requires_grad=old.requires_grad)

    # -- forward ---------------------------------------------------------------------------------------------
    @staticmethod
    def activation_score(activations: torch.Tensor) -> torch.Tensor:
        """The cached update's per-token firing statistic: mean |a_k| over the located neurons (last dim)."""
        return activations.abs().mean(dim=-1)

    def _located_activations(self, h: torch.Tensor, adapter_name: str, edited: bool) -> torch.Tensor:
        """`a_S(h)` recomputed for the located neurons only, with (`edited`) or without their input deltas."""
        idx = self.lafn_indices[adapter_name]
        act = ACT2FN[self.ffn_activation]

        def pre_activation(proj: nn.Module, delta: torch.Tensor) -> torch.Tensor:
            weight = neuron_rows(proj, down=False, index=idx).to(delta.dtype)
            bias = None if getattr(proj, "bias", None) is None else proj.bias[idx].to(delta.dtype)
            return F.linear(h, weight + delta if edited else weight, bias)

        up = pre_activation(self.up_proj, self.lafn_up[adapter_name])
        if self.spec.is_gated:
            return act(pre_activation(self.gate_proj, self.lafn_gate[adapter_name])) * up
        return act(up)

    def adapter_delta(self, adapter_name: str, a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """What `adapter_name` adds to the down projection's output, given its input `a` and FFN input `h`."""
        idx = self.lafn_indices[adapter_name]
        down = self.lafn_down[adapter_name]
        a_located = a.index_select(-1, idx).to(down.dtype)
        opened = self._opened(adapter_name, a.shape[-2] if a.dim() > 2 else 1)  # [B, T, n] or None: all open
        gated = (lambda x: x) if opened is None else (lambda x: x * opened.reshape(x.shape).to(x.dtype))
        if self.lafn_update_input[adapter_name]:
            h = h.to(down.dtype)
            # Both terms go through the same code, so zero input deltas give exactly zero here.
            edited = self._located_activations(h, adapter_name, edited=True)
            change = gated(edited - self._located_activations(h, adapter_name, edited=False))
            down_rows = neuron_rows(self.down_proj, down=True, index=idx).to(down.dtype)
            delta = (gated(a_located) + change) @ down + change @ down_rows
        else:
            delta = gated(a_located) @ down
        threshold = self.lafn_threshold[adapter_name]
        if threshold is not None:
            fires = self.activation_score(a_located) > threshold
            delta = delta * fires.unsqueeze(-1).to(delta.dtype)
        return delta

    def _opened(self, adapter_name: str, positions: int) -> torch.Tensor | None:
        """[B, positions, n]: where each neuron's subject gate is open in this pass (None: all open)."""
        if not self.gated(adapter_name):
            return None
        gate = self._gates.get(adapter_name)
        if gate is None:
            raise RuntimeError(f"LAFN adapter {adapter_name!r} has subject gates but no SubjectGate attached.")
        return gate.open(self.lafn_subject_keys[adapter_name], self.lafn_subject_bias[adapter_name], positions)

    def _adapter_terms(self, adapter_name: str) -> list[str]:
        """`[adapter_name]` if it has deltas in this layer."""
        return [adapter_name] if adapter_name in self.lafn_down else []

    def _active_terms(self) -> list[str]:
        """The active adapters of this layer that are not merged."""
        return [n for n in self.active_adapters if n in self.lafn_down and n not in self.merged_adapters]

    def _down_delta(
        self, terms: Sequence[str], h: torch.Tensor, a: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        return sum(self.adapter_delta(name, a, h) for name in terms)

    # -- merge -----------------------------------------------------------------------------------------------
    def check_mergeable(self, adapter_name: str) -> None:
        if self.gated(adapter_name):
            raise ValueError(
                f"Cannot merge LAFN adapter {adapter_name!r}: its neurons have subject gates (gate_layer), so each "
                "delta applies only once the text has mentioned its edit's subject; merged weights would apply it "
                "everywhere. Keep the adapter unmerged."
            )
        if self.lafn_threshold.get(adapter_name) is not None:
            raise ValueError(
                f"Cannot merge LAFN adapter {adapter_name!r}: it is cached (cached=True), so its delta applies only "
                "to tokens whose located neurons fire (mean |a| > activation_threshold); merged weights would apply "
                "it to every token. Keep the adapter, or make a non-cached copy to merge."
            )

    def _merge_targets(self, adapter_name: str) -> list[tuple[nn.Module, int, torch.Tensor]]:
        """(projection, neuron dimension of its weight, neuron-major delta) for every delta of `adapter_name`."""
        targets = [(self.down_proj, True, self.lafn_down[adapter_name])]
        if adapter_name in self.lafn_up:
            targets.append((self.up_proj, False, self.lafn_up[adapter_name]))
        if adapter_name in self.lafn_gate:
            targets.append((self.gate_proj, False, self.lafn_gate[adapter_name]))
        return [(proj, neuron_dim(proj, down=is_down), delta) for proj, is_down, delta in targets]

    @staticmethod
    def _oriented(delta: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
        """A neuron-major `[n, d]` delta laid out like a weight whose neurons are along `dim`, in `dtype`."""
        return (delta.detach() if dim == 0 else delta.detach().T).to(dtype)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Add the deltas into the located rows/columns of the base weights (restored exactly by `unmerge`)."""
        names = [n for n in check_adapters_to_merge(self, adapter_names) if n in self.lafn_down]
        for name in names:
            self.check_mergeable(name)
            if safe_merge:  # every merged row checked before any weight changes
                idx = self.lafn_indices[name]
                for proj, dim, delta in self._merge_targets(name):
                    merged = proj.weight.data.index_select(dim, idx) + self._oriented(delta, dim, proj.weight.dtype)
                    if not torch.isfinite(merged).all():
                        raise self.broken_adapter_error(name)
        for name in names:
            idx = self.lafn_indices[name]
            backup = []
            for proj, dim, delta in self._merge_targets(name):
                weight = proj.weight.data
                backup.append((proj, dim, weight.index_select(dim, idx).clone()))
                weight.index_add_(dim, idx, self._oriented(delta, dim, weight.dtype))
            self._merge_backup[name] = backup
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """Put back the original rows/columns, bit for bit, newest merge first."""
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            idx = self.lafn_indices[name]
            for proj, dim, original in reversed(self._merge_backup.pop(name)):
                proj.weight.data.index_copy_(dim, idx.to(proj.weight.device), original.to(proj.weight.device))
