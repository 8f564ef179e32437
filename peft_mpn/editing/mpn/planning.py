"""Which patches an edit needs, where each must fire, and their initial tensors (before any training)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from ...tuners.mpn import PatchSet
from .config import MPNEditorConfig


@dataclass
class EditRows:
    """The edit batch: one row per (request, language) version."""

    request: list[int]
    language: list[str]
    is_edit: list[bool]

    def of_request(self, index: int) -> list[int]:
        return [r for r, q in enumerate(self.request) if q == index]


@dataclass
class PlannedPatch:
    """One patch to train: the request it serves and the FFN inputs where it must fire."""

    request: int
    rows: torch.Tensor  # rows of its request
    anchors: torch.Tensor  # [len(rows), d] FFN inputs where it must fire
    edit_anchor: torch.Tensor  # [d] the edit-language one


@dataclass
class PatchPlan:
    """The patches planned for a list of requests, before training (see `MPNEditor.plan_patches`).

    `initial` holds their initial tensors (keys from the edit's FFN inputs, zero bias, values `z ⊙ a`);
    `requests[p]` is the index of the request patch `p` serves; `skipped` lists the requests the model
    already gets right in every trained language (they get no patch); `silent` holds this edit's FFN inputs where
    the patches must stay silent besides the memory bank: after each trained answer (`silent_after_answer`) and
    on neighbour questions (`neighbour_negatives`); None when there are none; `rows`, the versions the patches'
    `rows` index (for fitting their subject gates once trained).
    """

    patches: list[PlannedPatch]
    initial: PatchSet
    skipped: list[int]
    silent: torch.Tensor | None = None
    rows: EditRows | None = None  # the planned versions (`PlannedPatch.rows` index them)

    @property
    def requests(self) -> list[int]:
        return [patch.request for patch in self.patches]

    def __len__(self) -> int:
        return len(self.patches)


def plan_patches(
    num_requests: int,
    rows: EditRows,
    correct: torch.Tensor,
    positions: torch.Tensor,
    h: torch.Tensor,
    config: MPNEditorConfig,
    *,
    one_label: bool = False,
) -> tuple[list[PlannedPatch], list[int]]:
    """Patches for the wrong tokens (at most the cap; one for classifiers); requests already right are skipped.

    `patch_plan="edit"`: one patch per target slot at which any training language is wrong, anchored in every
    training language at that relative target position (T-Patcher's plan, shared across languages).
    `"per_language"`: shared patches for the edit language's wrong tokens, and for each other training language
    patches for that language's own wrong tokens, anchored there only. `"separate"`: as `"per_language"`, with the
    edit language's patches anchored in the edit language only.

    Args:
        num_requests: how many requests the rows cover.
        rows: which request and language each batch row is.
        correct: [B, T] per-token correctness of the unpatched model (True on padding).
        positions: [B, T] positions whose FFN inputs the patches read (-1 for padding).
        h: [B, S, d] FFN inputs at the patched layer.
        config: the editor config (`patch_plan`, `max_patches_per_edit`).
        one_label: every language's target is the same label (a classifier): shared patches only, whatever the plan.
    """
    patches: list[PlannedPatch] = []
    skipped = []
    for index in range(num_requests):
        request_rows = rows.of_request(index)
        if bool(correct[request_rows].all()):
            skipped.append(index)
            continue
        edit_row = next(r for r in request_rows if rows.is_edit[r])
        cap = config.max_patches_per_edit
        # shared patches where any version is wrong at that slot: relu patches fire only where they are anchored
        slots = _wrong_slots(request_rows if config.patch_plan == "edit" else [edit_row], correct, positions)
        shared = [edit_row] if config.patch_plan == "separate" else request_rows
        patches += _patches_for(index, edit_row, shared, positions, h, slots[:cap] or [0])
        if config.patch_plan in ("per_language", "separate") and not one_label:
            for row in (r for r in request_rows if r != edit_row):
                slots = _wrong_slots([row], correct, positions)
                patches += _patches_for(index, row, [row], positions, h, slots[:cap])
    return patches, skipped


def _wrong_slots(source_rows: list[int], correct: torch.Tensor, positions: torch.Tensor) -> list[int]:
    """The relative target-token slots at which any of `source_rows` is wrong, in order."""
    wrong: set[int] = set()
    for row in source_rows:
        valid = positions[row] >= 0
        wrong_here = ((~correct[row]) & valid)[valid]  # per target slot of this row
        wrong |= set(torch.nonzero(wrong_here).flatten().tolist())
    return sorted(wrong)


def _patches_for(
    request: int,
    source_row: int,
    anchor_rows: list[int],
    positions: torch.Tensor,
    h: torch.Tensor,
    slots: list[int],
) -> list[PlannedPatch]:
    """One patch per relative target slot in `slots`, anchored at that slot of each of `anchor_rows` (the last
    slot of a shorter row); `source_row`'s anchor is the patch's edit anchor."""
    patches = []
    for rel in slots:
        anchors = []
        for r in anchor_rows:
            row_slots = torch.nonzero(positions[r] >= 0).flatten()
            slot = row_slots[min(rel, len(row_slots) - 1)]
            anchors.append(h[r, positions[r, slot]])
        anchors = torch.stack(anchors)
        edit_anchor = anchors[anchor_rows.index(source_row)]
        patches.append(PlannedPatch(request, torch.tensor(anchor_rows), anchors, edit_anchor))
    return patches


def init_patches(
    patches: list[PlannedPatch], config: MPNEditorConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(keys, bias, noise, amplifier)`: keys `q / ||q||²` (`key_init`), zero bias, values `noise ⊙ amplifier`."""
    if config.key_init == "mean":
        queries = torch.stack([p.anchors.mean(0) for p in patches])
    else:
        queries = torch.stack([p.edit_anchor for p in patches])
    keys = queries / queries.pow(2).sum(-1, keepdim=True).clamp(min=1e-12)
    bias = torch.zeros(len(patches), device=keys.device)
    noise = torch.randn(keys.shape, generator=generator).to(keys.device)  # the generator's draws on every device
    amplifier = torch.full(keys.shape, config.amplifier_init, device=keys.device)
    return keys.clone(), bias, noise, amplifier


def sample_rows(
    rows: EditRows, request_indices: Iterable[int], config: MPNEditorConfig, generator: torch.Generator
) -> torch.Tensor:
    """One step's batch rows: per request, its edit row and `samples_per_step` sampled parallel versions."""
    chosen = []
    for index in request_indices:
        request_rows = rows.of_request(index)
        edit = [r for r in request_rows if rows.is_edit[r]]
        parallel = [r for r in request_rows if not rows.is_edit[r]]
        k = min(config.samples_per_step, len(parallel))
        if k < len(parallel):
            picks = torch.randperm(len(parallel), generator=generator)[:k]
            parallel = [parallel[int(i)] for i in picks.sort().values]
        if config.include_edit_language or not parallel:
            chosen.extend(edit)
        chosen.extend(parallel)
    return torch.tensor(sorted(chosen))


def apart_from_anchors(
    silent: torch.Tensor | None, patches: list[PlannedPatch], threshold: float = 0.999
) -> torch.Tensor | None:
    """`silent` without the inputs that are (nearly: cosine ≥ `threshold`) one of the patches' anchors.

    An input cannot be both where a patch must fire and where it must stay silent; this happens when a fact is
    edited again (the earlier edit's inputs are in the memory bank), and the new edit wins.
    """
    if silent is None or not patches:
        return silent
    anchors = torch.nn.functional.normalize(torch.cat([patch.anchors for patch in patches]).float(), dim=-1)
    similarity = torch.nn.functional.normalize(silent.float(), dim=-1) @ anchors.T
    keep = similarity.max(-1).values < threshold
    return silent if bool(keep.all()) else silent[keep]


def correct_tokens(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row, per-token correctness ([B, T]; True on padding) or per-row ([B, 1]) for classifiers ([B] targets)."""
    predictions = logits.argmax(-1)
    if targets.dim() == 1:
        return (predictions == targets).unsqueeze(-1)
    return (predictions == targets) | (targets == -100)


def held_languages(correct: torch.Tensor, rows: EditRows, active: Sequence[int], languages: list[str]) -> list[str]:
    """The `languages` in which every row of the `active` requests is correct (`correct`: [B, T] per token)."""
    return [
        language
        for language in languages
        if all(
            bool(correct[r].all())
            for r in range(len(rows.language))
            if rows.language[r] == language and rows.request[r] in active
        )
    ]


def joined_rows(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    """The rows of the tensors in `parts` that are not None, stacked (None when all are)."""
    present = [part for part in parts if part is not None]
    return torch.cat(present) if present else None
