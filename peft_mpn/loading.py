"""Loading edit adapters with the plugin guaranteed to be registered."""

from __future__ import annotations

import os
from typing import Any

from peft import PeftModel
from transformers import PreTrainedModel

from .hub.manifest import check_adapter_folder, check_revision, revision_errors


def from_pretrained(
    model: PreTrainedModel,
    adapter: str | os.PathLike,
    adapter_name: str = "default",
    is_trainable: bool = False,
    **kwargs: Any,
) -> PeftModel:
    """``PeftModel.from_pretrained`` for MPN/LAFN adapters (local folder or Hub id, ``revision=`` supported).

    Importing this module has registered the plugin's PEFT types, so this works in a process that never wrote
    ``import peft_mpn`` itself. A local folder without ``adapter_config.json`` or the weights file is refused
    naming the missing file (``PeftModel.from_pretrained`` would look for it on the Hub), and a Hub
    ``revision`` that does not exist is named as such (not as a missing ``adapter_config.json``).
    """
    check_revision(kwargs.get("revision"))
    check_adapter_folder(adapter, kwargs.get("subfolder"))
    with revision_errors(adapter, kwargs.get("revision")):
        return PeftModel.from_pretrained(
            model, adapter, adapter_name=adapter_name, is_trainable=is_trainable, **kwargs
        )
