"""How edits are *judged*."""

from .scoring import TargetScore, score_targets

__all__ = ["TargetScore", "score_targets"]
