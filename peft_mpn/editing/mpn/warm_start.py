"""A closed-form start for patches, so that training begins close to an edit that holds and stays silent.

T-Patcher starts a key at `q / ||q||²` (the patch fires at 1 on its edit, and on anything that looks like it) and
a value at random, then spends most of its step budget on two things this module computes directly:

- **keys** that separate the edit from what must stay silent: the direction `(Σ + λI)⁻¹ (q − μ)` (Fisher's
  discriminant against the silent set: memory bank, neighbour questions, the positions after the answer), scaled
  and biased so the patch's pre-activation is `+margin` on its least-activated anchor and `−2 margin` on the most
  activated silent input (where they are separable along it);
- **values** along the edit loss's descent direction (its gradient with respect to the value at zero), scaled by
  a short line search: twice the smallest scale at which the edit holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .planning import PlannedPatch

#: Ridge of the silent set's covariance, relative to its mean variance: keeps the solve stable with few inputs.
RIDGE = 1.0
#: Pre-activation span, in margins, from the most activated silent input (-2 margin) to the edit (+margin).
SPAN = 3.0
#: The value is this many times the smallest line-search value at which the edit holds.
HEADROOM = 2.0
#: Value scales tried by the line search, relative to the anchors' mean FFN-input norm.
VALUE_SCALES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def discriminative_keys(
    patches: Sequence[PlannedPatch], silent: torch.Tensor | None, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(keys [P, d], bias [P])` whose pre-activation is `margin` on each patch's anchors, `-2 margin` on `silent`.

    `-2 margin`, not T-Patcher's `-margin`: GELU/SiLU still pass about 1 % of a value at `-margin`, enough to move
    a neighbour's answer once the value is scaled up. Without silent inputs, or where the anchors and the silent
    set overlap along the discriminant, the anchors' mean is placed at `margin` and the silent inputs' mean at
    `-2 margin` (training separates the rest).
    """
    queries = torch.stack([patch.anchors.mean(0) for patch in patches]).float()
    if silent is None or len(silent) < 2:
        keys = queries / queries.pow(2).sum(-1, keepdim=True).clamp(min=1e-12)
        return keys * margin, torch.zeros(len(patches), device=keys.device)
    silent = silent.float().to(queries.device)
    mean = silent.mean(0)
    centred = silent - mean
    covariance = centred.T @ centred / len(silent)
    ridge = RIDGE * covariance.diagonal().mean().clamp(min=1e-6)
    covariance.diagonal().add_(ridge)
    directions = torch.linalg.solve(covariance, (queries - mean).T).T  # [P, d]
    keys, biases = [], []
    for patch, direction in zip(patches, directions):
        anchor_low = (patch.anchors.float() @ direction).min()
        silent_scores = silent @ direction
        silent_high = silent_scores.max()
        if anchor_low <= silent_high:
            silent_high = silent_scores.mean()
            anchor_low = (patch.anchors.float() @ direction).mean()
        scale = SPAN * margin / (anchor_low - silent_high).clamp(min=1e-6)
        keys.append(direction * scale)
        biases.append(margin - scale * anchor_low)
    return torch.stack(keys), torch.stack(biases)


def warm_start_patches(
    patches: Sequence[PlannedPatch],
    silent: torch.Tensor | None,
    margin: float,
    edit_loss_with: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, bool]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(keys, bias, values)` in closed form: `discriminative_keys`, then `descent_values`.

    `edit_loss_with(keys, bias, values)` runs the edit batch with those patches added and returns the edit loss
    (differentiable in `values`) and whether the edit then holds.
    """
    keys, bias = discriminative_keys(patches, silent, margin)
    zero = torch.zeros_like(keys, requires_grad=True)
    (gradient,) = torch.autograd.grad(edit_loss_with(keys, bias, zero)[0], zero)

    def try_values(values: torch.Tensor) -> tuple[float, bool]:
        with torch.no_grad():
            loss, holds = edit_loss_with(keys, bias, values)
        return loss.item(), holds

    return keys, bias, descent_values(patches, gradient, try_values)


def descent_values(
    patches: Sequence[PlannedPatch],
    gradient: torch.Tensor,
    try_values: Callable[[torch.Tensor], tuple[float, bool]],
) -> torch.Tensor:
    """Values `-s · ĝ` along the normalised edit-loss gradient `gradient` ([P, d], taken at zero values).

    `s` runs up `VALUE_SCALES` (times the anchors' mean norm); `try_values(values)` gives the edit loss with those
    values and whether the edit then holds. Twice the first scale at which it holds wins (small values leak least
    where the patch is nearly silent; the factor 2 is headroom against other patches and paraphrases); otherwise
    the lowest loss before it rises again.
    """
    direction = -gradient / gradient.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    norm = torch.stack([patch.anchors.float().norm(dim=-1).mean() for patch in patches]).unsqueeze(-1)
    best, best_loss = direction * norm, float("inf")
    for scale in VALUE_SCALES:
        candidate = direction * norm * scale
        loss, holds = try_values(candidate)
        if holds:
            return HEADROOM * candidate
        if loss >= best_loss:
            break
        best, best_loss = candidate, loss
    return best
