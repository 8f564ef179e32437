"""Editors: how an edit is *learned*.

Every editor follows one contract (`peft_mpn.editing.base.Editor`: `edit`, `edit_stream`, `edit_batch`, `reset`,
`.model`) and is selectable by name through one registry (`peft_mpn.editing.registry`, read by `make_editor`).
T-Patcher is the MPN editor with cross-lingual augmentation off; FT-L, FT-M (fine-tuning one FFN down-projection)
and ICL (in-context editing) are the baselines.
"""

from .base import Editor, EditorConfig, EditResult, TrainerObjective
from .finetune import FTEditor, FTEditorConfig
from .in_context import ICLEditor, ICLEditorConfig, InContextModel
from .lafn import LAFNEditor, LAFNEditorConfig, LAFNEditResult
from .mpn import MPNEditor, MPNEditorConfig
from .registry import DEFAULT_AUGMENT, EDITORS, EditorSpec, editor_config, editor_spec, make_editor

__all__ = [
    "DEFAULT_AUGMENT",
    "EDITORS",
    "EditResult",
    "Editor",
    "EditorConfig",
    "EditorSpec",
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
    "TrainerObjective",
    "editor_config",
    "editor_spec",
    "make_editor",
]
