"""Checkpointing an MPN editor's stream: its patches and everything later edits depend on."""

from __future__ import annotations

from typing import Any

from ...tuners.mpn import PatchSet


class MPNEditorState:
    """`state_dict` / `load_state_dict` of `MPNEditor` (see `peft_mpn.editing.base.Editor.state_dict`).

    The state holds the adapter's patches (with their subject gates), the memory banks (unrelated text and past
    edits' inputs; unrelated text at the gates' block), the subject pool of neighbour questions, which patches
    belong to which edit, and the seeded generator: a stream resumed from it makes the same patches as one that
    never stopped.
    """

    supports_checkpoints = True

    def state_dict(self) -> dict[str, Any]:
        patches = self.tuner.patch_state(self.adapter_name)
        return {
            "patches": {name: list(p.tensors(p.gated)) for name, p in patches.items()},
            "memory": self.memory.state_dict(),
            "gate_memory": self.gates.memory.state_dict() if self.gates is not None else None,
            "subjects": self.subjects.state_dict(),
            "history": [list(entry) for entry in self.history.entries],
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        patches = {name: PatchSet(*tensors) for name, tensors in state["patches"].items()}
        self.tuner.restore_patches(patches, self.adapter_name)
        self.memory.load_state_dict(state["memory"])
        if self.gates is not None and state.get("gate_memory") is not None:
            self.gates.memory.load_state_dict(state["gate_memory"])
        self.subjects.load_state_dict(state["subjects"])
        self.history.entries = [
            (tuple(key), target, case_id, count) for key, target, case_id, count in state["history"]
        ]
        self._generator.set_state(state["generator"])
