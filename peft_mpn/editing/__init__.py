"""Editors: how an edit is *learned*."""

from __future__ import annotations

from typing import Any

from .config import MPNEditorConfig
from .lafn import LAFNEditor, LAFNEditorConfig, LAFNEditResult
from .mpn import EditResult, MPNEditor

#: Editors selectable by name. T-Patcher is the MPN editor with cross-lingual augmentation off.
EDITORS = ("mpn", "t-patcher", "lafn")


def make_editor(name: str, model: Any, tokenizer: Any, config: Any = None, **kwargs: Any):
    """Build an editor by name: ``"mpn"``, ``"t-patcher"`` or ``"lafn"``."""
    if name == "mpn":
        return MPNEditor(model, tokenizer, config, **kwargs)
    if name == "t-patcher":
        return MPNEditor.t_patcher(model, tokenizer, config=config, **kwargs)
    if name == "lafn":
        return LAFNEditor(model, tokenizer, config, **kwargs)
    raise ValueError(f"Unknown editor {name!r}; choose one of {', '.join(EDITORS)}.")


__all__ = [
    "EDITORS",
    "EditResult",
    "LAFNEditResult",
    "LAFNEditor",
    "LAFNEditorConfig",
    "MPNEditor",
    "MPNEditorConfig",
    "make_editor",
]
