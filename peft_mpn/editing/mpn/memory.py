"""The memory bank: FFN inputs of unrelated text on which a patch must stay silent."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from tqdm.auto import tqdm

from ...batching import left_padded_positions
from ...devices import input_device

logger = logging.getLogger(__name__)


class MemoryBank:
    """FFN inputs at the patched layer: a bounded sample of unrelated text, plus the inputs of past edits.

    Both parts are bounded, so a stream of edits neither outgrows RAM nor slows every later edit's memory loss:
    unrelated text beyond `max_size` is subsampled uniformly, and past edits' inputs beyond `max_edit_size` are
    kept as a uniform sample of all of them (reservoir sampling; said once in the log when it starts).

    Args:
        max_size: most unrelated-text vectors kept.
        seed: seed of the subsamples.
        max_edit_size: most past-edit vectors kept (default: `max_size`).
    """

    def __init__(self, max_size: int = 20000, seed: int = 0, max_edit_size: int | None = None) -> None:
        self.max_size = max_size
        self.max_edit_size = max_size if max_edit_size is None else max_edit_size
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        self._unrelated: torch.Tensor | None = None
        self._edits: torch.Tensor | None = None
        self._edit_vectors_seen = 0
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
        """Keep an edit's FFN inputs; beyond `max_edit_size`, each vector seen so far stays with equal chance."""
        vectors = vectors.detach().reshape(-1, vectors.shape[-1]).float()
        kept = vectors if self._edits is None else torch.cat([self._edits, vectors])
        seen_before, self._edit_vectors_seen = self._edit_vectors_seen, self._edit_vectors_seen + len(vectors)
        if len(kept) > self.max_edit_size:
            if seen_before <= self.max_edit_size:  # this edit crosses the bound
                logger.info(
                    "The memory bank holds %d vectors of past edits (max_edit_size): from now on it keeps a uniform "
                    "sample of them, so later patches are checked against a sample of the earlier edits' inputs.",
                    self.max_edit_size,
                )
            kept = self._reservoir(kept, seen_before)
        self._edits = kept
        self._joined = None

    def _reservoir(self, kept: torch.Tensor, seen_before: int) -> torch.Tensor:
        """Algorithm R over the new rows of `kept` (after its first `min(seen_before, max_edit_size)` rows)."""
        old = min(seen_before, self.max_edit_size)
        sample, new = kept[:old].clone(), kept[old:]
        fill = self.max_edit_size - len(sample)
        if fill > 0:
            sample, new = torch.cat([sample, new[:fill]]), new[fill:]
            seen_before += fill
        positions = torch.arange(seen_before + 1, seen_before + len(new) + 1)
        slots = (torch.rand(len(new), generator=self._generator) * positions).long()
        for row, slot in zip(new, slots.tolist()):
            if slot < self.max_edit_size:
                sample[slot] = row
        return sample

    def clear_edits(self) -> None:
        """Forget the inputs of past edits (keep the unrelated text); the sampling starts again from the seed."""
        self._generator.manual_seed(self.seed)
        self._edits = None
        self._edit_vectors_seen = 0
        self._joined = None

    def state_dict(self) -> dict[str, object]:
        """The bank's vectors, counts and sampling state (for `load_state_dict`)."""
        return {
            "unrelated": self._unrelated,
            "edits": self._edits,
            "edit_vectors_seen": self._edit_vectors_seen,
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self._unrelated, self._edits = state["unrelated"], state["edits"]
        self._edit_vectors_seen = int(state["edit_vectors_seen"])
        self._generator.set_state(state["generator"])
        self._joined = None

    @property
    def edit_vectors_seen(self) -> int:
        """How many past-edit vectors were added since the last `clear_edits` (kept or not)."""
        return self._edit_vectors_seen

    @property
    def vectors(self) -> torch.Tensor | None:
        if self._joined is None:
            parts = [part for part in (self._unrelated, self._edits) if part is not None]
            self._joined = torch.cat(parts) if parts else None
        return self._joined

    def __len__(self) -> int:
        vectors = self.vectors
        return 0 if vectors is None else len(vectors)


def decoder_memory_vectors(
    model: Any,
    layer: Any,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int,
    pad: int,
    progress: bool = False,
    gate: Any = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """FFN inputs at `layer` for every token of `texts` (a decoder's), one [N, d] tensor per chunk of `batch_size`,
    each with the same tokens' FFN inputs at the block a `SubjectGate` `gate` reads (None without one).

    Texts in a prompt format start with the same answered questions (`qa-2shot`: 29 tokens on Gemma 3). Those
    tokens run once per chunk (`SharedPrefix`), and their vectors enter once per call rather than once per text:
    repeated, they would fill most of the bank with copies of a few vectors, which the memory loss's top k would
    count many times over.
    """
    from ...shared_prefix import SharedPrefix
    from ..common import frozen
    from ..prefix import capture_ffn_inputs

    prefixes_added: set[tuple[int, ...]] = set()
    for start in tqdm(range(0, len(texts), batch_size), desc="memory bank", disable=not progress, leave=False):
        rows = [
            tokenizer(text, truncation=True, max_length=128)["input_ids"] for text in texts[start : start + batch_size]
        ]
        shared = SharedPrefix(rows, pad)
        split = shared.length if shared.usable(model) else 0  # otherwise `inputs` is the plain left-padded batch
        with frozen(model), gate.record_inputs() if gate is not None else nullcontext([]) as at_gate:
            with layer.record_inputs() as recorded:
                inputs = shared.inputs(model)  # runs the shared prefix once, where there is one to split off
            h = capture_ffn_inputs(model, layer, inputs)
        kept = inputs["attention_mask"][:, split:].bool()
        vectors, gate_vectors = h[kept], at_gate[-1][kept] if at_gate else None
        prefix = tuple(rows[0][:split])
        if split and prefix not in prefixes_added:
            prefixes_added.add(prefix)
            vectors = torch.cat([recorded[0][0], vectors])
            gate_vectors = torch.cat([at_gate[0][0], gate_vectors]) if at_gate else None
        yield vectors, gate_vectors


def encode_texts(model: Any, tokenizer: Any, texts: Sequence[str], *, encoder: bool) -> dict[str, torch.Tensor]:
    """`texts` as one padded batch on `model`'s input device (a classifier's inputs, or its memory texts)."""
    inputs = tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True, max_length=128)
    inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    if not encoder and tokenizer.padding_side == "left":
        inputs["position_ids"] = left_padded_positions(inputs["attention_mask"])
    device = input_device(model)
    return {k: v.to(device) for k, v in inputs.items()}


def decision_index(mask: torch.Tensor, *, encoder: bool) -> torch.Tensor:
    """Where a classifier decides: [CLS] for encoders, the last real token for decoders."""
    if encoder:
        return torch.zeros(len(mask), dtype=torch.long, device=mask.device)
    return mask.shape[1] - 1 - mask.flip(-1).argmax(-1)
