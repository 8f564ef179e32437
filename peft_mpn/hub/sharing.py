"""Saving an edit adapter with its manifest and card, and pushing it to the Hub in one commit."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import CommitInfo, HfApi, ModelCard
from peft import PeftModel
from peft.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME, get_peft_model_state_dict

from ..files import replace_folder
from .card import hub_model_id, render_edit_card
from .manifest import (
    EDITS_ATTRIBUTE,
    MANIFEST_NAME,
    EditLike,
    EditManifestError,
    check_revision,
    edit_records,
    read_edit_manifest,
    write_edit_manifest,
)


def _method_of(model: PeftModel, adapter_name: str) -> str:
    return str(model.peft_config[adapter_name].peft_type.value).lower()


def _edits_for(model: PeftModel, edits: Iterable[EditLike] | None) -> list[EditLike]:
    if edits is not None:
        return list(edits)
    if hasattr(model, EDITS_ATTRIBUTE):
        return list(getattr(model, EDITS_ATTRIBUTE))
    raise EditManifestError(
        "Pass edits=[...]: the EditRequests this adapter holds (or list_edits() records of the adapter it grew from)."
    )


def _check_finite(model: PeftModel, adapter_name: str) -> None:
    """Refuse an adapter holding NaN or infinite weights: loaded, it would turn every prompt's logits into NaN."""
    bad = [
        name
        for name, tensor in get_peft_model_state_dict(model, adapter_name=adapter_name).items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        raise ValueError(
            f"Adapter {adapter_name!r} holds NaN or infinite values in {bad}; nothing was saved. Remove the edit "
            "that diverged (editor.reset() and redo the others) before saving."
        )


def save_edit(
    model: PeftModel,
    folder: str | os.PathLike,
    edits: Iterable[EditLike] | None = None,
    metrics: Mapping[str, Any] | None = None,
    *,
    adapter_name: str = "default",
    method: str | None = None,
    repo_id: str | None = None,
    revision: str | None = None,
    base_model: str | None = None,
) -> Path:
    """Save an edit adapter to `folder`: the adapter, its manifest (`edits.json`) and its card (`README.md`).

    The new folder is written beside `folder` and then swapped in whole (`peft_mpn.files.replace_folder`):
    `folder` holds either everything it held before or the complete new save, even if the process is killed
    midway (the next save or load puts a folder a killed swap left aside back, and removes what killed saves left).
    Files in `folder` that a save does not write are kept.

    Args:
        model: the edited `peft.PeftModel` (e.g. `editor.model`).
        folder: where to save; created if needed.
        edits: the edits the adapter holds (EditRequests or manifest records); default: those
            `compose_adapters` attached to `model`.
        metrics: `peft_mpn.metrics.compute_cross_lingual_edit`'s result, for the card's table.
        adapter_name: the adapter to save.
        method: the method recorded per edit (e.g. `"t-patcher"`); default: the PEFT type (`mpn`/`lafn`).
        repo_id: the Hub repo the adapter will live in, for the card's loading snippet.
        revision: its branch, tag or commit, for the same snippet.
        base_model: the base model's name to record (``adapter_config.json``'s ``base_model_name_or_path`` and
            the card's ``base_model``), e.g. the Hub id of a model loaded from a local folder; default: the one
            the adapter config holds.
    """
    if adapter_name not in model.peft_config:
        raise KeyError(f"No adapter {adapter_name!r}; have {sorted(model.peft_config)}.")
    _check_finite(model, adapter_name)
    records = edit_records(_edits_for(model, edits), method=method or _method_of(model, adapter_name))
    folder = Path(folder)
    base_model = base_model or model.peft_config[adapter_name].base_model_name_or_path
    card = render_edit_card(
        method=_method_of(model, adapter_name),
        edits=records,
        base_model=base_model,
        metrics=metrics,
        repo_id=repo_id,
        revision=revision,
    )

    def build(staging: Path) -> None:
        raw = staging / ".save_pretrained"
        # edit adapters never touch the embeddings; "auto" would look the base model up on the Hub to check
        model.save_pretrained(raw, selected_adapters=[adapter_name], save_embedding_layers=False)
        for path in (raw / adapter_name if adapter_name != "default" else raw).iterdir():
            os.replace(path, staging / path.name)
        shutil.rmtree(raw)
        config_path = staging / CONFIG_NAME
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if base_model and config.get("base_model_name_or_path") != base_model:
            config["base_model_name_or_path"] = base_model
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        write_edit_manifest(staging, records, method=method)
        card.save(staging / "README.md")

    if folder.parent.is_dir():
        _remove_legacy_staging(folder)
    # the whole folder at once, not between another process's reading and rewriting the manifest (hold=)
    return replace_folder(folder, build, drop=(SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME), hold=MANIFEST_NAME)


#: What a save writes into an adapter folder: a temporary folder of an old, killed save held nothing else.
_SAVED_NAMES = {
    CONFIG_NAME,
    SAFETENSORS_WEIGHTS_NAME,
    WEIGHTS_NAME,
    MANIFEST_NAME,
    "README.md",
    f".{MANIFEST_NAME}.lock",
}


def _only_saved_files(folder: Path, depth: int = 1) -> bool:
    """Whether `folder` holds nothing but what a save writes (in adapter-named subfolders `depth` deep at most)."""
    for entry in folder.iterdir():
        if entry.is_symlink():
            return False
        if entry.is_dir() and not (depth and _only_saved_files(entry, depth - 1)):
            return False
        if not entry.is_dir() and entry.name not in _SAVED_NAMES:
            return False
    return True


def _remove_legacy_staging(folder: Path) -> None:
    """Remove the temporary folders (``.<name>.XXXXXXXX``) that killed saves of peft-mpn 0.1.0 left beside `folder`
    (they moved files out of one file by file); only those holding nothing but adapter files."""
    pattern = re.compile(re.escape(f".{folder.name}.") + r"[a-z0-9_]{8}")
    for path in folder.parent.iterdir():
        if pattern.fullmatch(path.name) and path.is_dir() and not path.is_symlink() and _only_saved_files(path):
            shutil.rmtree(path, ignore_errors=True)


def push_edit_to_hub(
    model: PeftModel,
    repo_id: str,
    *,
    edits: Iterable[EditLike] | None = None,
    metrics: Mapping[str, Any] | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | bool | None = None,
    create_pr: bool = False,
    adapter_name: str = "default",
    method: str | None = None,
    base_model: str | None = None,
) -> CommitInfo:
    """Push an edit adapter with its manifest and card to the Hub in one commit (`save_edit` + `upload_folder`).

    The repo is created if needed (`private` applies then), and so is the branch `revision`. Pull it back
    with `PeftModel.from_pretrained(base, repo_id, revision=revision)` after `import peft_mpn`, or
    `peft_mpn.from_pretrained`; list its edits with `list_edits`.

    The base model is recorded by its Hub id: `base_model`, else the adapter config's
    ``base_model_name_or_path``. When that is a local path (a model loaded from a folder), nothing is pushed and
    the error asks for ``base_model="org/name"``. The card's metadata is checked by the Hub's validator
    (`huggingface_hub.ModelCard.validate`) before the commit.

    Returns:
        The `huggingface_hub.CommitInfo` of the commit (`.oid` is the commit hash).
    """
    from .. import __version__  # peft_mpn/__init__.py imports this module before it sets __version__

    if adapter_name not in model.peft_config:
        raise KeyError(f"No adapter {adapter_name!r}; have {sorted(model.peft_config)}.")
    base_model = base_model or model.peft_config[adapter_name].base_model_name_or_path
    if hub_model_id(base_model) is None:
        raise ValueError(
            f"The adapter's base model is {base_model!r}, which is not a Hub model id, and the Hub needs one to "
            "say what the adapter is for; nothing was pushed. Pass base_model='org/name' (the Hub id of the model "
            "you loaded from that folder) to push_edit_to_hub (peft-mpn push: --base-model org/name)."
        )
    api = HfApi(library_name="peft-mpn", library_version=__version__)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, token=token).repo_id
    check_revision(revision)
    if revision is not None and revision != "main" and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True, token=token)
    with tempfile.TemporaryDirectory(prefix="peft-mpn-push-") as temporary:
        folder = save_edit(
            model,
            Path(temporary) / "adapter",
            edits,
            metrics,
            adapter_name=adapter_name,
            method=method,
            repo_id=repo_id,
            revision=revision,
            base_model=base_model,
        )
        ModelCard.load(folder / "README.md").validate()  # the Hub's own check, before anything is committed
        count = len(read_edit_manifest(folder))
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message or f"Edit adapter: {count} fact{'s' if count != 1 else ''}",
            commit_description=commit_description,
            token=token,
            create_pr=create_pr,
        )
