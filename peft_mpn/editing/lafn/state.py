"""Checkpointing a LAFN editor's stream: the located neurons and their learned deltas."""

from __future__ import annotations

from typing import Any

import torch

_STORES = ("down", "up", "gate", "subject_keys", "subject_bias")


class LAFNEditorState:
    """`state_dict` / `load_state_dict` of `LAFNEditor` (see `peft_mpn.editing.base.Editor.state_dict`).

    The state holds each layer's neuron set, in delta-row order, and the deltas of every kind the adapter has
    (down projection, and with ``update_input`` the up and gate projections), with the neurons' subject gates and
    what the gates' next fits draw from. The generic-neuron estimate is not kept: it depends only on the reference
    facts and is estimated again when needed.
    """

    supports_checkpoints = True

    def state_dict(self) -> dict[str, Any]:
        gates = {} if self.gates is None else {"gates": self.gates.state_dict()}
        if self.tuner is None:  # no edit made yet: the adapter is created at the first one
            return {"neurons": {}, "deltas": {}, **gates}
        deltas = {
            name: {
                kind: getattr(layer, f"lafn_{kind}")[self.adapter_name].detach().clone()
                for kind in _STORES
                if self.adapter_name in getattr(layer, f"lafn_{kind}")
            }
            for name, layer in self.tuner.lafn_layers(self.adapter_name).items()
        }
        neurons = self.tuner.neuron_sets(self.adapter_name)
        return {
            "neurons": {str(index): list(indices) for index, indices in neurons.items()},
            "deltas": deltas,
            **gates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        if self.gates is not None and "gates" in state:
            self.gates.load_state_dict(state["gates"])
        neurons = {int(index): list(indices) for index, indices in state["neurons"].items()}
        if not neurons:
            return
        self.add_neurons(neurons)
        layers = self.tuner.lafn_layers(self.adapter_name)
        if set(layers) != set(state["deltas"]):
            raise ValueError(
                f"This checkpoint holds LAFN deltas for {sorted(state['deltas'])}, but the restored adapter has "
                f"{sorted(layers)}: it was made with another model or editor configuration."
            )
        with torch.no_grad():
            for name, layer in layers.items():
                for kind, tensor in state["deltas"][name].items():
                    getattr(layer, f"lafn_{kind}")[self.adapter_name].copy_(tensor)
