"""Sharing edits: an edit manifest and model card beside the adapter, pushing to / pulling from the Hub, composing.

An edit adapter folder (local or a Hub repo) holds what `PeftModel.save_pretrained` writes plus

- `edits.json`, the *edit manifest*: which facts the adapter changes (case id, edit language, prompt, target,
  languages, method, date), read back with `list_edits` (`peft_mpn.hub.manifest`);
- `README.md`, a model card (`render_edit_card`, `peft_mpn.hub.card`) with Hub metadata, the metric table and
  how to load it.

`save_edit` and `push_edit_to_hub` (`peft_mpn.hub.sharing`) write both beside the adapter; `compose_adapters`
(`peft_mpn.hub.compose`) combines several edit adapters into one.

Examples:
    ```py
    >>> import peft_mpn
    >>> from peft_mpn.hub import list_edits, push_edit_to_hub, save_edit
    >>> save_edit(editor.model, "my-edit", requests, metrics=scores)  # adapter + edits.json + README.md
    >>> push_edit_to_hub(editor.model, "me/capital-fixes", edits=requests, metrics=scores, revision="v1")
    >>> list_edits("me/capital-fixes", revision="v1")[0]["target"]
    'Lyon'
    >>> from peft import PeftModel
    >>> edited = PeftModel.from_pretrained(base_model, "me/capital-fixes", revision="v1")
    >>> both = peft_mpn.hub.compose_adapters(base_model, ["me/capital-fixes", "./river-fixes"])
    ```
"""

from ..tuners import AdapterCompositionError
from .card import render_edit_card, render_metric_table
from .compose import compose_adapters
from .manifest import (
    EDITS_ATTRIBUTE,
    MANIFEST_NAME,
    EditManifestError,
    EditManifestNotFoundError,
    edit_records,
    list_edits,
    read_edit_manifest,
    write_edit_manifest,
)
from .sharing import push_edit_to_hub, save_edit

__all__ = [
    "EDITS_ATTRIBUTE",
    "MANIFEST_NAME",
    "AdapterCompositionError",
    "EditManifestError",
    "EditManifestNotFoundError",
    "compose_adapters",
    "edit_records",
    "list_edits",
    "push_edit_to_hub",
    "read_edit_manifest",
    "render_edit_card",
    "render_metric_table",
    "save_edit",
    "write_edit_manifest",
]
