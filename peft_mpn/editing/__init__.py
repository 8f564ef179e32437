"""Editors: how an edit is *learned*."""

from __future__ import annotations

from typing import Any

from .config import MPNEditorConfig
from .finetune import FTEditor, FTEditorConfig
from .in_context import ICLEditor, ICLEditorConfig, InContextModel
from .lafn import LAFNEditor, LAFNEditorConfig, LAFNEditResult
from .mpn import EditResult, MPNEditor

#: Editors selectable by name. T-Patcher is the MPN editor with cross-lingual augmentation off; FT-L, FT-M
#: (fine-tuning one FFN down-projection) and ICL (in-context editing) are the baselines.
EDITORS = ("mpn", "t-patcher", "lafn", "ft-l", "ft-m", "icl")


def make_editor(name: str, model: Any, tokenizer: Any, config: Any = None, **kwargs: Any):
    """Build an editor by name: ``"mpn"``, ``"t-patcher"``, ``"lafn"``, ``"ft-l"``, ``"ft-m"`` or ``"icl"``."""
    if name == "mpn":
        return MPNEditor(model, tokenizer, config, **kwargs)
    if name == "t-patcher":
        return MPNEditor.t_patcher(model, tokenizer, config=config, **kwargs)
    if name == "lafn":
        return LAFNEditor(model, tokenizer, config, **kwargs)
    if name == "ft-l":
        return FTEditor.ft_l(model, tokenizer, config=config, **kwargs)
    if name == "ft-m":
        return FTEditor.ft_m(model, tokenizer, config=config, **kwargs)
    if name == "icl":
        return ICLEditor(model, tokenizer, config, **kwargs)
    raise ValueError(f"Unknown editor {name!r}; choose one of {', '.join(EDITORS)}.")


__all__ = [
    "EDITORS",
    "EditResult",
    "FTEditor",
    "FTEditorConfig",
    "ICLEditor",
    "ICLEditorConfig",
    "InContextModel",
    "LAFNEditResult",
    "LAFNEditor",
    "LAFNEditorConfig",
    "MPNEditor",
    "MPNEditorConfig",
    "make_editor",
]
