"""Editors: how an edit is *learned*."""

from .config import MPNEditorConfig
from .mpn import EditResult, MPNEditor

__all__ = ["EditResult", "MPNEditor", "MPNEditorConfig"]
