from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn
from transformers.activations import ACT2FN
from transformers.pytorch_utils import Conv1D

from ..ffn import FFNSpec
from .config import LAFNConfig


def ffn_width(down_proj: nn.Module) -> int:
    """Number of FFN neurons: the down projection's input width (GPT-2's Conv1D stores the weight as [in, out])."""
    return down_proj.weight.shape[0] if isinstance(down_proj, Conv1D) else down_proj.weight.shape[1]


def model_width(down_proj: nn.Module) -> int:
    return down_proj.weight.shape[1] if isinstance(down_proj, Conv1D) else down_proj.weight.shape[0]


def _neuron_dim(proj: nn.Module, is_down: bool) -> int:
    """The weight dimension that indexes FFN neurons (Linear weights are [out, in], Conv1D ones [in, out])."""
    return int(isinstance(proj, Conv1D) != is_down)


def _rows(proj: nn.Module, idx: torch.Tensor, is_down: bool) -> torch.Tensor:
    """The weights of neurons ``idx`` as ``[n, d]`` rows (input rows for up/gate, output columns for down)."""
    dim = _neuron_dim(proj, is_down)
    rows = proj.weight.index_select(dim, idx)
    return rows if dim == 0 else rows.T


class LAFNLayer(BaseTunerLayer, nn.Module):
    """Wraps an FFN block and adds learned deltas on a set of its neurons.

    While the wrapped block runs, a forward hook on its down projection reads the down projection's input (the
    FFN's intermediate activation ``a``) and adds, for every active adapter, ``a[..., S] · Δdown`` to its output,
    so no FFN code is duplicated. With ``update_input`` the located neurons' up (and gate) rows get deltas too:
    their activations are recomputed from the FFN input ``h`` for the ``n`` located neurons only, with the FFN's
    own activation (this also covers BERT-likes, whose up projection runs outside the wrapped block), and the
    change ``Δa_S`` enters as ``(a_S + Δa_S)·(W_down[S] + Δdown) − a_S·W_down[S]``. With ``cached`` the sum is
    masked per token by :meth:`activation_score` ``> threshold`` on the base activation.

    Deltas are stored neuron-major, ``[n, d]`` (``lafn_down``, ``lafn_up``, ``lafn_gate``); the neuron indices
    are a persistent int64 buffer (``lafn_indices``) so they travel with the saved weights.
    """

    adapter_layer_names = ("lafn_down", "lafn_up", "lafn_gate")
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
        nn.Module.__init__(self)
        self.base_layer = base_layer
        self.spec = spec
        self.layer_index = layer_index
        self.ffn_activation = ffn_activation
        self.lafn_down = nn.ParameterDict({})
        self.lafn_up = nn.ParameterDict({})
        self.lafn_gate = nn.ParameterDict({})
        self.lafn_indices = BufferDict(persistent=True)  # peft's default (False) would not save them
        self.lafn_update_input: dict[str, bool] = {}
        self.lafn_threshold: dict[str, float | None] = {}
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        # Not submodules: the block holds them already (BERT's up projection is a sibling of ``output``).
        self.__dict__["_block"] = block
        self.__dict__["_merge_backup"] = {}
        self.update_layer(adapter_name, config)

    # -- structure -------------------------------------------------------------------------------------------
    def _projection(self, path: str) -> nn.Module:
        try:
            if path.startswith(self.spec.block + "."):
                return self.get_base_layer().get_submodule(self.spec.relative_to_block(path))
            return self._block.get_submodule(path)
        except AttributeError as error:
            raise ValueError(
                f"The targeted {type(self.get_base_layer()).__name__} is not an FFN block: no {path!r}. LAFN adapts "
                "FFN blocks; check target_modules / exclude_modules."
            ) from error

    @property
    def down_proj(self) -> nn.Module:
        return self._projection(self.spec.down_proj)

    @property
    def up_proj(self) -> nn.Module:
        return self._projection(self.spec.up_proj)

    @property
    def gate_proj(self) -> nn.Module | None:
        return self._projection(self.spec.gate_proj) if self.spec.gate_proj else None

    @property
    def width(self) -> int:
        """Number of neurons of the FFN (intermediate size)."""
        return ffn_width(self.down_proj)

    @property
    def hidden_size(self) -> int:
        return model_width(self.down_proj)

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
        device = self.down_proj.weight.device
        if random:
            return torch.randn(n, self.hidden_size, device=device) * scale
        return torch.zeros(n, self.hidden_size, device=device)

    def update_layer(self, adapter_name: str, config: LAFNConfig, **kwargs: Any) -> None:
        indices = config.neurons.get(self.layer_index)
        if not indices:
            raise ValueError(f"LAFN adapter {adapter_name!r} has no neurons for layer {self.layer_index}.")
        self._check_indices(indices)
        random = not config.init_lafn_weights
        self.lafn_indices[adapter_name] = torch.tensor(indices, dtype=torch.int64, device=self.down_proj.weight.device)
        self.lafn_down[adapter_name] = nn.Parameter(self._new_deltas(len(indices), random, 1.0))
        for store in (self.lafn_up, self.lafn_gate):
            if adapter_name in store:
                del store[adapter_name]
        if config.update_input:
            scale = self.hidden_size**-0.5
            self.lafn_up[adapter_name] = nn.Parameter(self._new_deltas(len(indices), random, scale))
            if self.spec.is_gated:
                self.lafn_gate[adapter_name] = nn.Parameter(self._new_deltas(len(indices), random, scale))
        self.lafn_update_input[adapter_name] = config.update_input
        self.lafn_threshold[adapter_name] = config.activation_threshold if config.cached else None
        self.set_adapter(self.active_adapters)

    def add_neurons(self, adapter_name: str, indices: list[int]) -> None:
        """Append neurons (zero deltas) to ``adapter_name``; existing deltas are kept, trainability follows them."""
        if self.merged:
            raise RuntimeError("Unmerge the adapter before adding neurons.")
        self._check_indices(indices)
        present = set(self.neurons(adapter_name))
        if present & set(indices):
            raise ValueError(f"Neurons {sorted(present & set(indices))[:10]} are already in adapter {adapter_name!r}.")
        old_idx = self.lafn_indices[adapter_name]
        self.lafn_indices[adapter_name] = torch.cat([old_idx, torch.tensor(indices, dtype=old_idx.dtype).to(old_idx)])
        for store in (self.lafn_down, self.lafn_up, self.lafn_gate):
            if adapter_name in store:
                old = store[adapter_name]
                zeros = old.new_zeros(len(indices), old.shape[1])
                store[adapter_name] = nn.Parameter(torch.cat([old.detach(), zeros]), requires_grad=old.requires_grad)

    # -- forward ---------------------------------------------------------------------------------------------
    @staticmethod
    def activation_score(activations: torch.Tensor) -> torch.Tensor:
        """The cached update's per-token firing statistic: mean |a_k| over the located neurons (last dim)."""
        return activations.abs().mean(dim=-1)

    def _located_activations(self, h: torch.Tensor, adapter_name: str, edited: bool) -> torch.Tensor:
        """``a_S(h)`` recomputed for the located neurons only, with (``edited``) or without their input deltas."""
        idx = self.lafn_indices[adapter_name]
        act = ACT2FN[self.ffn_activation]

        def pre_activation(proj: nn.Module, delta: torch.Tensor) -> torch.Tensor:
            weight = _rows(proj, idx, is_down=False).to(delta.dtype)
            bias = None if getattr(proj, "bias", None) is None else proj.bias[idx].to(delta.dtype)
            return F.linear(h, weight + delta if edited else weight, bias)

        up = pre_activation(self.up_proj, self.lafn_up[adapter_name])
        if self.spec.is_gated:
            return act(pre_activation(self.gate_proj, self.lafn_gate[adapter_name])) * up
        return act(up)

    def adapter_delta(self, adapter_name: str, a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """What ``adapter_name`` adds to the down projection's output, given its input ``a`` and FFN input ``h``."""
        idx = self.lafn_indices[adapter_name]
        down = self.lafn_down[adapter_name]
        a_located = a.index_select(-1, idx).to(down.dtype)
        if self.lafn_update_input[adapter_name]:
            h = h.to(down.dtype)
            # Both terms go through the same code, so zero input deltas give exactly zero here.
            edited = self._located_activations(h, adapter_name, edited=True)
            change = edited - self._located_activations(h, adapter_name, edited=False)
            down_rows = _rows(self.down_proj, idx, is_down=True).to(down.dtype)
            delta = (a_located + change) @ down + change @ down_rows
        else:
            delta = a_located @ down
        threshold = self.lafn_threshold[adapter_name]
        if threshold is not None:
            fires = self.activation_score(a_located) > threshold
            delta = delta * fires.unsqueeze(-1).to(delta.dtype)
        return delta

    def _active_unmerged(self) -> list[str]:
        return [n for n in self.active_adapters if n in self.lafn_down and n not in self.merged_adapters]

    def _ffn_input(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        if len(args) > self.spec.input_arg:
            return args[self.spec.input_arg]
        return kwargs[self.spec.input_kwarg]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(*args, **kwargs)
        active = self._active_unmerged()
        if not active:
            return self.base_layer(*args, **kwargs)
        h = self._ffn_input(args, kwargs)

        def add_deltas(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            total = sum(self.adapter_delta(name, inputs[0], h) for name in active)
            return output + total.to(output.dtype)

        handle = self.down_proj.register_forward_hook(add_deltas)
        try:
            return self.base_layer(*args, **kwargs)
        finally:
            handle.remove()

    # -- merge -----------------------------------------------------------------------------------------------
    def check_mergeable(self, adapter_name: str) -> None:
        if self.lafn_threshold.get(adapter_name) is not None:
            raise ValueError(
                f"Cannot merge LAFN adapter {adapter_name!r}: it is cached (cached=True), so its delta applies only "
                "to tokens whose located neurons fire (mean |a| > activation_threshold); merged weights would apply "
                "it to every token. Keep the adapter, or make a non-cached copy to merge."
            )

    def _merge_targets(self, adapter_name: str) -> list[tuple[nn.Module, int, torch.Tensor]]:
        """(projection, neuron dimension of its weight, neuron-major delta) for every delta of ``adapter_name``."""
        targets = [(self.down_proj, True, self.lafn_down[adapter_name])]
        if adapter_name in self.lafn_up:
            targets.append((self.up_proj, False, self.lafn_up[adapter_name]))
        if adapter_name in self.lafn_gate:
            targets.append((self.gate_proj, False, self.lafn_gate[adapter_name]))
        return [(proj, _neuron_dim(proj, is_down), delta) for proj, is_down, delta in targets]

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Add the deltas into the located rows/columns of the base weights (restored exactly by :meth:`unmerge`)."""
        names = [n for n in check_adapters_to_merge(self, adapter_names) if n in self.lafn_down]
        for name in names:
            self.check_mergeable(name)
            if safe_merge and not all(torch.isfinite(d).all() for _, _, d in self._merge_targets(name)):
                raise ValueError(f"NaNs or infs in LAFN adapter {name!r}; not merging.")
        for name in names:
            idx = self.lafn_indices[name]
            backup = []
            for proj, dim, delta in self._merge_targets(name):
                weight = proj.weight.data
                backup.append((proj, dim, weight.index_select(dim, idx).clone()))
                weight.index_add_(dim, idx, (delta.detach() if dim == 0 else delta.detach().T).to(weight.dtype))
            self._merge_backup[name] = backup
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """Put back the original rows/columns, bit for bit, newest merge first."""
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            idx = self.lafn_indices[name]
            for proj, dim, original in reversed(self._merge_backup.pop(name)):
                proj.weight.data.index_copy_(dim, idx.to(proj.weight.device), original.to(proj.weight.device))
