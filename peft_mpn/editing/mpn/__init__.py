"""MPN (and T-Patcher, its augmentation-off setting): patch neurons in one FFN, learned per edit."""

from .config import MPNEditorConfig
from .editor import MPNEditor
from .memory import MemoryBank
from .objective import MPNTrainerObjective
from .planning import PatchPlan

__all__ = ["MPNEditor", "MPNEditorConfig", "MPNTrainerObjective", "MemoryBank", "PatchPlan"]
