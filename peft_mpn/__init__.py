"""peft-mpn: cross-lingual knowledge editing as PEFT tuners.

``import peft_mpn`` registers the PEFT types ``MPN`` (and ``LAFN``) so that ``get_peft_model``,
``PeftModel.from_pretrained``, ``save_pretrained``/``push_to_hub`` and transformers' ``load_adapter`` work
for them as they do for LoRA.
"""

from .data import EditRequest, EditRequestError, FactView
from .hub import compose_adapters, list_edits, push_edit_to_hub, save_edit
from .loading import from_pretrained
from .tuners import FFN_SPECS, FFNSpec, MPNConfig, MPNLayer, MPNModel, PatchSet, UnsupportedArchitectureError
from .tuners.lafn import LAFNConfig, LAFNLayer, LAFNModel, NeuronAddition

__version__ = "0.1.0"

#: Editors, importable from here but loaded on first use: the tuners and `peft_mpn.locating` sit below them.
_EDITING = ("EditResult", "LAFNEditor", "LAFNEditorConfig", "MPNEditor", "MPNEditorConfig", "make_editor")


def __getattr__(name: str) -> object:
    if name in _EDITING:
        from . import editing

        return getattr(editing, name)
    if name == "evaluate_edits":
        from .metrics import evaluate_edits

        return evaluate_edits
    raise AttributeError(f"module 'peft_mpn' has no attribute {name!r}")


__all__ = [
    "FFN_SPECS",
    "EditRequest",
    "EditRequestError",
    "EditResult",
    "FFNSpec",
    "FactView",
    "LAFNConfig",
    "LAFNEditor",
    "LAFNEditorConfig",
    "LAFNLayer",
    "LAFNModel",
    "MPNConfig",
    "MPNEditor",
    "MPNEditorConfig",
    "MPNLayer",
    "MPNModel",
    "NeuronAddition",
    "PatchSet",
    "UnsupportedArchitectureError",
    "compose_adapters",
    "evaluate_edits",
    "from_pretrained",
    "list_edits",
    "make_editor",
    "push_edit_to_hub",
    "save_edit",
]
