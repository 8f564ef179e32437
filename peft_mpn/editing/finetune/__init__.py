"""The fine-tuning baselines FT-L and FT-M: one FFN down-projection trained on the edit (EasyEdit's recipe)."""

from .config import FTEditorConfig
from .editor import FTEditor

__all__ = ["FTEditor", "FTEditorConfig"]
