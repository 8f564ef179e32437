"""How edits are *judged*."""

from pathlib import Path

from .edit_metrics import compute_cross_lingual_edit
from .evaluation import evaluate_edits
from .judge import Judge, exact_matches, locality_predictions, metric_rows, rows_to_columns
from .probes import Probe, edit_probes
from .scoring import TargetScore, score_targets

CROSS_LINGUAL_EDIT = str(Path(__file__).resolve().parent / "cross_lingual_edit")
"""Folder of the ``evaluate`` metric module: ``evaluate.load(peft_mpn.metrics.CROSS_LINGUAL_EDIT)``."""

__all__ = [
    "CROSS_LINGUAL_EDIT",
    "Judge",
    "Probe",
    "TargetScore",
    "compute_cross_lingual_edit",
    "edit_probes",
    "evaluate_edits",
    "exact_matches",
    "locality_predictions",
    "metric_rows",
    "rows_to_columns",
    "score_targets",
]
