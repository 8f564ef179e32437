"""The retrieval gate of in-context editing: a stored fact is put in front of an input only where it matches.

In-context editing transfers an edit across languages better than any weight edit, but it puts the fact in front
of every prompt, so unrelated questions change too. The gate keys each stored fact on the model's own hidden
state: the output of one block (`depth` of the way up; the middle blocks represent a question largely apart from
its language) averaged over the question's tokens. An input sees a fact only where its key is closer to the
fact's (cosine) than every unrelated text the editor was given is (plus `margin`); the threshold is the fact's own,
calibrated on those texts. Tokens that every unrelated text starts with (a prompt format's answered questions)
are left out of every average, since they say nothing about the question, and every key is measured from the
unrelated texts' mean: a middle block's states share a large common direction, so uncentred, any two questions
are nearly parallel (cosines near 1) and no threshold tells them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...batching import left_pad, left_padded_positions
from ...devices import input_device
from ...shared_prefix import shared_length
from ...tuners.ffn import _block_stack, ffn_spec, num_layers
from ..prefix import run_until


class RetrievalGate:
    """Hidden-state keys of the stored facts and of unrelated text, and which facts an input may see.

    Args:
        model: the causal LM.
        depth: which block's output the keys read, as a fraction of the blocks (0.5: the middle one).
        margin: how much closer than the closest unrelated text an input must be to a fact (cosine).
        pad: the pad token id.
    """

    def __init__(self, model: nn.Module, depth: float, margin: float, pad: int) -> None:
        self.model, self.margin, self.pad = model, margin, pad
        self.layer = min(int(depth * num_layers(model.config)), num_layers(model.config) - 1)
        self.block = _block_stack(model, ffn_spec(model))[self.layer]
        self.preamble: list[int] = []  # the tokens every unrelated text starts with
        self._unrelated_states: torch.Tensor | None = None  # [N, d] pooled states of the unrelated texts
        self._fact_states: list[torch.Tensor] = []  # [d] pooled state of each stored fact's prompt
        self.unrelated: torch.Tensor | None = None  # [N, d] unit keys
        self.keys: list[torch.Tensor] = []  # one unit key [d] per stored fact
        self.thresholds: list[float] = []

    def keys_of(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Unit keys [B, d] of token rows: `states` less the unrelated texts' mean, normalised."""
        return self._unit(self.states(rows))

    def _unit(self, states: torch.Tensor) -> torch.Tensor:
        centre = 0 if self._unrelated_states is None else self._unrelated_states.mean(0)
        return nn.functional.normalize(states - centre, dim=-1)

    @torch.no_grad()
    def states(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """The block's output [B, d] averaged over each row's tokens after the preamble (where the row starts
        with it; otherwise over every token)."""
        ids, mask = left_pad(rows, self.pad)
        device = input_device(self.model)
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        inputs["position_ids"] = left_padded_positions(inputs["attention_mask"])
        seen: list[torch.Tensor] = []

        def keep(module: nn.Module, args: Any, output: Any) -> None:
            seen.append(output[0] if isinstance(output, tuple) else output)

        handle = self.block.register_forward_hook(keep)
        try:
            run_until(self.model, self.block, inputs)
        finally:
            handle.remove()
        hidden = seen[0].float()
        weights = mask.to(hidden.device, hidden.dtype)
        for r, row in enumerate(rows):
            skip = len(self.preamble) if list(row[: len(self.preamble)]) == self.preamble else 0
            skip = min(skip, len(row) - 1)  # at least the row's last token
            weights[r, ids.shape[1] - len(row) : ids.shape[1] - len(row) + skip] = 0
        return (hidden * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True).clamp_min(1)

    def add_unrelated(self, rows: Sequence[Sequence[int]]) -> None:
        """Calibrate on unrelated token rows (at least two: their shared start is the preamble)."""
        rows = [list(row) for row in rows if row]
        if len(rows) < 2:
            raise ValueError("The retrieval gate calibrates on unrelated texts: give it at least two.")
        if self._unrelated_states is None:
            self.preamble = rows[0][: shared_length(rows)]
        states = torch.cat([self.states(rows[i : i + 16]) for i in range(0, len(rows), 16)])
        if self._unrelated_states is not None:
            states = torch.cat([self._unrelated_states, states])
        self._unrelated_states = states
        self._calibrate()

    def _calibrate(self) -> None:
        """Every key from the stored states, centred on the unrelated texts' mean; each fact's threshold."""
        self.unrelated = self._unit(self._unrelated_states)
        self.keys = [self._unit(state) for state in self._fact_states]
        self.thresholds = [self._threshold(key) for key in self.keys]

    def add_fact(self, prompt: Sequence[int]) -> None:
        """Key a stored fact on its edit prompt's tokens and calibrate its threshold."""
        if self._unrelated_states is None:
            raise ValueError(
                "The retrieval gate calibrates each fact on unrelated text: call editor.add_unrelated_texts(...) "
                "(or add_unrelated_from_requests) before editing, or turn the gate off (gate_depth=None)."
            )
        state = self.states([list(prompt)])[0]
        key = self._unit(state)
        self._fact_states.append(state)
        self.keys.append(key)
        self.thresholds.append(self._threshold(key))

    def _threshold(self, key: torch.Tensor) -> float:
        return float((self.unrelated @ key).max()) + self.margin

    def open_facts(self, key: torch.Tensor) -> list[tuple[float, int]]:
        """``(similarity, fact)`` of every stored fact whose threshold `key` passes."""
        if not self.keys:
            return []
        similarities = (torch.stack(self.keys) @ key).tolist()
        return [(s, i) for i, (s, t) in enumerate(zip(similarities, self.thresholds)) if s > t]

    def clear(self, keep: int = 0) -> None:
        """Forget the facts after the first `keep` (the calibration on unrelated text stays)."""
        del self._fact_states[keep:]
        del self.keys[keep:]
        del self.thresholds[keep:]

    def state_dict(self) -> dict[str, Any]:
        return {
            "preamble": list(self.preamble),
            "unrelated_states": None if self._unrelated_states is None else self._unrelated_states.cpu(),
            "fact_states": [state.cpu() for state in self._fact_states],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = input_device(self.model)
        self.preamble = list(state["preamble"])
        unrelated = state["unrelated_states"]
        self._unrelated_states = None if unrelated is None else unrelated.to(device)
        self._fact_states = [fact.to(device) for fact in state["fact_states"]]
        if self._unrelated_states is not None:
            self._calibrate()
