"""In-context editing (IKE-like): no weight changes; the new fact is put in front of every prompt."""

from .config import ICLEditorConfig
from .editor import ICLEditor
from .model import InContextModel

__all__ = ["ICLEditor", "ICLEditorConfig", "InContextModel"]
