"""LAFN: locate the FFN neurons a fact activates in every language, and learn deltas on just those."""

from .config import LAFNEditorConfig
from .editor import LAFNEditor, LAFNEditResult
from .objective import LAFNTrainerObjective, delta_norm

__all__ = ["LAFNEditResult", "LAFNEditor", "LAFNEditorConfig", "LAFNTrainerObjective", "delta_norm"]
