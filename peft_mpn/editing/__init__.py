"""Editors: how an edit is *learned*."""

from __future__ import annotations

from typing import Any

from .config import MPNEditorConfig
from .mpn import EditResult, MPNEditor

#: Editors selectable by name. T-Patcher is the MPN editor with cross-lingual augmentation off.
EDITORS = ("mpn", "t-patcher")


def make_editor(name: str, model: Any, tokenizer: Any, config: MPNEditorConfig | None = None, **kwargs: Any):
    """Build an editor by name: ``"mpn"`` or ``"t-patcher"``."""
    if name == "mpn":
        return MPNEditor(model, tokenizer, config, **kwargs)
    if name == "t-patcher":
        return MPNEditor.t_patcher(model, tokenizer, config=config, **kwargs)
    raise ValueError(f"Unknown editor {name!r}; choose one of {', '.join(EDITORS)}.")


__all__ = ["EDITORS", "EditResult", "MPNEditor", "MPNEditorConfig", "make_editor"]
