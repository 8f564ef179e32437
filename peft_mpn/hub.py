"""Sharing edits: an edit manifest and model card beside the adapter, pushing to / pulling from the Hub, composing.

An edit adapter folder (local or a Hub repo) holds what ``PeftModel.save_pretrained`` writes plus

- ``edits.json``, the *edit manifest*: which facts the adapter changes (case id, edit language, prompt, target,
  languages, method, date), read back with :func:`list_edits`;
- ``README.md``, a model card (:func:`render_edit_card`) with Hub metadata, the metric table and how to load it.

Example:

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

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, HfApi, ModelCard, ModelCardData, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from peft import PeftConfig, PeftModel
from transformers import PreTrainedModel

from .data.requests import EditRequest
from .files import atomic_write_text
from .tuners import AdapterCompositionError, LAFNConfig, MPNConfig

MANIFEST_NAME = "edits.json"
"""File name of the edit manifest, beside ``adapter_config.json``."""
MANIFEST_FORMAT = "peft-mpn/edits"
MANIFEST_VERSION = 1
CARD_TAGS = ("peft-mpn", "knowledge-editing", "cross-lingual")
METRIC_COLUMNS = ("reliability", "generality", "locality", "portability")
#: A record's fields, in the order the manifest writes them.
RECORD_FIELDS = ("case_id", "edit_language", "prompt", "target", "languages", "method", "date")
#: Attribute under which :func:`compose_adapters` leaves the merged manifest on the model it returns.
EDITS_ATTRIBUTE = "peft_mpn_edits"

EditLike = EditRequest | Mapping[str, Any]


class EditManifestError(ValueError):
    """An edit manifest that cannot be read or written as given."""


class EditManifestNotFoundError(FileNotFoundError):
    """The adapter has no edit manifest (``edits.json``)."""


# -- the manifest --------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def edit_records(edits: Iterable[EditLike], *, method: str, date: str | None = None) -> list[dict[str, Any]]:
    """Manifest records for ``edits``: :class:`~peft_mpn.EditRequest` objects or records already in this shape.

    Records that come from another manifest (:func:`list_edits`) keep their method and date; new ones get
    ``method`` and ``date`` (default: now, UTC).
    """
    date = date or _now()
    records = []
    for position, edit in enumerate(edits):
        if isinstance(edit, EditRequest):
            view = edit.edit
            record = {
                "case_id": edit.case_id,
                "edit_language": edit.edit_language,
                "prompt": view.prompt,
                "target": view.target,
                "languages": edit.languages,
                "method": method,
                "date": date,
            }
        elif isinstance(edit, Mapping):
            missing = [key for key in ("prompt", "target", "edit_language") if edit.get(key) in (None, "")]
            if missing:
                raise EditManifestError(
                    f"Edit #{position} lacks {missing}: give EditRequest objects, or records with at least "
                    "prompt, target and edit_language (as list_edits returns them)."
                )
            record = {
                **{key: edit.get(key) for key in RECORD_FIELDS},
                **{key: value for key, value in edit.items() if key not in RECORD_FIELDS},
            }
            record["languages"] = list(edit.get("languages") or [edit["edit_language"]])
            record["method"] = edit.get("method") or method
            record["date"] = edit.get("date") or date
        else:
            raise EditManifestError(
                f"Edit #{position} is a {type(edit).__name__}; give EditRequest objects or manifest records (dicts)."
            )
        records.append(record)
    return records


def write_edit_manifest(
    folder: str | os.PathLike, edits: Iterable[EditLike], *, method: str | None = None, append: bool = False
) -> Path:
    """Write ``edits.json`` into the adapter folder ``folder`` (atomically) and return its path.

    Args:
        folder: an adapter folder (``save_pretrained`` output).
        edits: the edits the adapter holds: :class:`~peft_mpn.EditRequest` objects or manifest records.
        method: ``"mpn"``, ``"t-patcher"``, ``"lafn"``...; default: the adapter's PEFT type, lower case.
        append: keep the records already in the folder's manifest and add these after them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EditManifestError(f"{str(folder)!r} is not a folder; save the adapter there first (save_pretrained).")
    method = method or _method_of_folder(folder)
    records = read_edit_manifest(folder) if append and (folder / MANIFEST_NAME).exists() else []
    records += edit_records(edits, method=method)
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "edits": records}
    path = folder / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return path


def _method_of_folder(folder: Path) -> str:
    config = folder / "adapter_config.json"
    if not config.exists():
        raise EditManifestError(f"No adapter_config.json in {str(folder)!r}; pass method= to name the edit method.")
    return str(json.loads(config.read_text(encoding="utf-8"))["peft_type"]).lower()


def read_edit_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a local manifest file, or of the manifest in a local adapter folder."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.exists():
        raise EditManifestNotFoundError(
            f"No edit manifest at {str(path)!r}. Adapters saved with peft_mpn.hub.save_edit / push_edit_to_hub "
            "carry one; for an adapter saved otherwise, write it with peft_mpn.hub.write_edit_manifest."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise EditManifestError(f"{str(path)!r} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise EditManifestError(f'{str(path)!r} is not a peft-mpn edit manifest (no "format": {MANIFEST_FORMAT!r}).')
    version = manifest.get("version", 0)
    if not isinstance(version, int) or not isinstance(manifest.get("edits"), list):
        raise EditManifestError(
            f'{str(path)!r} is a damaged edit manifest: it needs an integer "version" and a list of "edits". '
            "Write it again with peft_mpn.hub.write_edit_manifest."
        )
    if version > MANIFEST_VERSION:
        raise EditManifestError(
            f"{str(path)!r} has manifest version {manifest['version']}; this peft-mpn reads up to "
            f"{MANIFEST_VERSION}. Upgrade peft-mpn."
        )
    return list(manifest["edits"])


def list_edits(
    path_or_repo_id: str | os.PathLike, revision: str | None = None, *, token: str | bool | None = None
) -> list[dict[str, Any]]:
    """What an edit adapter changes: the records of its manifest, from a local folder or a Hub repo.

    Each record has ``case_id``, ``edit_language``, ``prompt``, ``target``, ``languages``, ``method`` and
    ``date`` (and ``source`` after :func:`compose_adapters`).

    Args:
        path_or_repo_id: a local adapter folder (or manifest file), or a Hub repo id.
        revision: the branch, tag or commit of a Hub repo (default: ``main``).
        token: Hub token for private repos (default: the logged-in one).
    """
    if Path(path_or_repo_id).exists():
        return read_edit_manifest(path_or_repo_id)
    try:
        local = hf_hub_download(str(path_or_repo_id), MANIFEST_NAME, revision=revision, token=token)
    except EntryNotFoundError as error:
        raise EditManifestNotFoundError(
            f"{path_or_repo_id!r} (revision {revision or 'main'}) has no {MANIFEST_NAME}: it was not pushed with "
            "peft_mpn.hub.push_edit_to_hub, so which facts it edits is not recorded."
        ) from error
    return read_edit_manifest(local)


# -- the card ------------------------------------------------------------------------------------------------
def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def render_metric_table(metrics: Mapping[str, Any]) -> str:
    """A Markdown table, one row per language, from :func:`peft_mpn.metrics.compute_cross_lingual_edit`'s result."""
    per_language = metrics.get("per_language")
    if not isinstance(per_language, Mapping) or not per_language:
        raise EditManifestError(
            "metrics must be the dict compute_cross_lingual_edit returns (with a non-empty 'per_language'); "
            f"got keys {sorted(metrics)}."
        )
    edit_language = metrics.get("edit_language")
    augment = set(metrics.get("augment_languages") or ())
    lines = [
        "| Language | " + " | ".join(column.capitalize() for column in METRIC_COLUMNS) + " |",
        "|---|" + "---:|" * len(METRIC_COLUMNS),
    ]
    for language, scores in per_language.items():
        role = " (edit)" if language == edit_language else " (augmented)" if language in augment else ""
        cells = " | ".join(_number(scores.get(column)) for column in METRIC_COLUMNS)
        lines.append(f"| {language}{role} | {cells} |")
    for key, label in (("average", "Average"), ("average_cross_lingual", "Average, other languages")):
        if isinstance(metrics.get(key), Mapping):
            cells = " | ".join(_number(metrics[key].get(column)) for column in METRIC_COLUMNS)
            lines.append(f"| *{label}* | {cells} |")
    return "\n".join(lines)


def render_edit_card(
    *,
    method: str,
    edits: Sequence[Mapping[str, Any]],
    base_model: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
    revision: str | None = None,
) -> ModelCard:
    """The model card of an edit adapter: Hub metadata, what was edited, the metric table, how to load it.

    Args:
        method: the adapter's PEFT type in lower case (``"mpn"`` or ``"lafn"``); a tag and the card's subject.
        edits: manifest records (:func:`edit_records`).
        base_model: the base model's Hub id (``base_model_name_or_path`` of the adapter config).
        metrics: what :func:`peft_mpn.metrics.compute_cross_lingual_edit` returned for these edits.
        repo_id: the Hub repo the adapter lives in, for the loading snippet.
        revision: its branch, tag or commit, for the same snippet.
    """
    languages = sorted({lang for record in edits for lang in record.get("languages") or [record["edit_language"]]})
    if metrics and isinstance(metrics.get("per_language"), Mapping):
        languages = sorted({*languages, *metrics["per_language"]})
    data = ModelCardData(
        library_name="peft",
        base_model=base_model or None,
        tags=[*CARD_TAGS[:2], method, CARD_TAGS[2]],
        language=languages or None,
    )
    name = {"mpn": "MPN (multilingual patch neurons)", "lafn": "LAFN (language-agnostic factual neurons)"}
    where = repo_id or "path/to/this/adapter"
    revision_arg = f', revision="{revision}"' if revision else ""
    lines = [
        f"# Knowledge edits: {len(edits)} fact{'s' if len(edits) != 1 else ''} ({method})",
        "",
        "A peft-mpn knowledge-edit adapter (a PEFT adapter): it corrects the facts listed below in the base "
        "model and is meant to leave everything else as it was.",
        "",
        f"- **Base model:** {f'[{base_model}](https://huggingface.co/{base_model})' if base_model else 'unknown'}",
        f"- **Method:** {name.get(method, method)}",
        f"- **Facts edited:** {len(edits)}",
        f"- **Languages:** {', '.join(languages) if languages else 'unknown'}",
        "",
        "## Edited facts",
        "",
        "| Case | Language | Prompt | New target |",
        "|---|---|---|---|",
    ]
    shown = 50
    for record in edits[:shown]:
        prompt = str(record["prompt"]).replace("|", "\\|")
        lines.append(f"| {record.get('case_id') or ''} | {record['edit_language']} | {prompt} | {record['target']} |")
    if len(edits) > shown:
        lines.append(f"| … | | {len(edits) - shown} more in `{MANIFEST_NAME}` | |")
    if metrics:
        lines += ["", "## Evaluation", "", render_metric_table(metrics), ""]
        lines.append(
            "Scores from `peft_mpn.metrics.compute_cross_lingual_edit` (between 0 and 1, higher is better): "
            "reliability is the edit prompt (cross-lingual generalization outside the edit language), generality "
            "its rephrases, locality unrelated prompts (agreement with the unedited model), portability "
            f"follow-up questions. Cases: {metrics.get('num_cases', 'n/a')}."
        )
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        "import peft_mpn  # registers the MPN and LAFN PEFT types",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base_model or "<base model>"}")',
        f'model = PeftModel.from_pretrained(base, "{where}"{revision_arg})',
        f'edits = peft_mpn.hub.list_edits("{where}"{revision_arg})  # what it changes',
        "```",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


# -- saving and pushing --------------------------------------------------------------------------------------
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
) -> Path:
    """Save an edit adapter to ``folder``: the adapter, its manifest (``edits.json``) and its card (``README.md``).

    Everything is written to a temporary folder first and then moved into ``folder`` file by file, so a failed
    save leaves what ``folder`` held before untouched.

    Args:
        model: the edited :class:`~peft.PeftModel` (e.g. ``editor.model``).
        folder: where to save; created if needed.
        edits: the edits the adapter holds (EditRequests or manifest records); default: those
            :func:`compose_adapters` attached to ``model``.
        metrics: :func:`peft_mpn.metrics.compute_cross_lingual_edit`'s result, for the card's table.
        adapter_name: the adapter to save.
        method: the method recorded per edit (e.g. ``"t-patcher"``); default: the PEFT type (``mpn``/``lafn``).
        repo_id: the Hub repo the adapter will live in, for the card's loading snippet.
        revision: its branch, tag or commit, for the same snippet.
    """
    if adapter_name not in model.peft_config:
        raise KeyError(f"No adapter {adapter_name!r}; have {sorted(model.peft_config)}.")
    records = edit_records(_edits_for(model, edits), method=method or _method_of(model, adapter_name))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.") as temporary:
        # edit adapters never touch the embeddings; "auto" would look the base model up on the Hub to check
        model.save_pretrained(temporary, selected_adapters=[adapter_name], save_embedding_layers=False)
        staged = Path(temporary) / adapter_name if adapter_name != "default" else Path(temporary)
        write_edit_manifest(staged, records, method=method)
        card = render_edit_card(
            method=_method_of(model, adapter_name),
            edits=records,
            base_model=model.peft_config[adapter_name].base_model_name_or_path,
            metrics=metrics,
            repo_id=repo_id,
            revision=revision,
        )
        card.save(staged / "README.md")
        # the manifest and card last: they describe the weights, which must be in place first
        order = sorted(staged.iterdir(), key=lambda p: (p.name in (MANIFEST_NAME, "README.md"), p.name))
        for path in order:
            if path.is_file():
                os.replace(path, folder / path.name)
    return folder


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
) -> CommitInfo:
    """Push an edit adapter with its manifest and card to the Hub in one commit (``save_edit`` + ``upload_folder``).

    The repo is created if needed (``private`` applies then), and so is the branch ``revision``. Pull it back
    with ``PeftModel.from_pretrained(base, repo_id, revision=revision)`` after ``import peft_mpn``, or
    :func:`peft_mpn.from_pretrained`; list its edits with :func:`list_edits`.

    Returns:
        The :class:`~huggingface_hub.CommitInfo` of the commit (``.oid`` is the commit hash).
    """
    from . import __version__

    api = HfApi(library_name="peft-mpn", library_version=__version__)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, token=token).repo_id
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
        )
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


# -- composing -----------------------------------------------------------------------------------------------
def _revisions(sources: Sequence[Any], revision: str | Sequence[str | None] | None) -> list[str | None]:
    if revision is None or isinstance(revision, str):
        return [revision] * len(sources)
    revisions = list(revision)
    if len(revisions) != len(sources):
        raise AdapterCompositionError(f"Got {len(revisions)} revisions for {len(sources)} sources; give one each.")
    return revisions


def _describe(source: Any, revision: str | None) -> str:
    return f"{str(source)!r}" + (f" (revision {revision})" if revision else "")


def _check_same(configs: list[PeftConfig], names: list[str], fields: Sequence[str]) -> None:
    for field in fields:
        first = getattr(configs[0], field)
        for config, name in zip(configs[1:], names[1:]):
            if getattr(config, field) != first:
                raise AdapterCompositionError(
                    f"Cannot compose {names[0]} and {name}: their {field} differ ({first!r} vs "
                    f"{getattr(config, field)!r}). Only adapters that agree on it combine into one."
                )


def _check_lafn_collisions(configs: list[LAFNConfig], names: list[str]) -> None:
    owner: dict[tuple[int, int], str] = {}
    for config, name in zip(configs, names):
        clashes: dict[tuple[str, int], list[int]] = {}
        for layer, indices in config.neurons.items():
            for neuron in indices:
                key = (int(layer), int(neuron))
                if key in owner:
                    clashes.setdefault((owner[key], int(layer)), []).append(int(neuron))
                else:
                    owner[key] = name
        if clashes:
            detail = "; ".join(
                f"layer {layer}: neurons {sorted(neurons)[:10]} also in {other}"
                for (other, layer), neurons in sorted(clashes.items(), key=lambda item: item[0][1])
            )
            raise AdapterCompositionError(
                f"Cannot compose LAFN adapters: {name} edits neurons another source already edits ({detail}). "
                "A neuron holds one delta only: re-edit one of the facts onto the other adapter, or keep them apart."
            )


def compose_adapters(
    base_model: PreTrainedModel,
    sources: Sequence[str | os.PathLike],
    adapter_name: str = "default",
    *,
    revision: str | Sequence[str | None] | None = None,
    token: str | bool | None = None,
) -> PeftModel:
    """Combine several edit adapters made on the same base model into one adapter, ``adapter_name``.

    MPN adapters (same layers and patch activation) combine into one whose patches are the union; LAFN adapters
    (same settings) into one whose neuron sets are the union, provided no neuron is edited by two sources
    (a collision raises :class:`AdapterCompositionError` naming the layer, the neurons and both sources). The
    manifests are merged (each record gains ``source``) and left on the returned model, so ``save_edit`` and
    ``push_edit_to_hub`` write them without ``edits=``.

    Args:
        base_model: the base model the adapters were made for (it is wrapped in place, as by ``from_pretrained``).
        sources: local adapter folders or Hub repo ids, at least one.
        adapter_name: the name of the combined adapter.
        revision: one Hub revision for every source, or one per source (``None`` for local folders).
        token: Hub token for private repos.

    Example:

        ```py
        >>> model = compose_adapters(base_model, ["me/capitals", "me/rivers"])
        >>> save_edit(model, "capitals-and-rivers")
        ```
    """
    sources = list(sources)
    if not sources:
        raise AdapterCompositionError("No sources to compose; give at least one adapter folder or repo id.")
    revisions = _revisions(sources, revision)
    names = [_describe(source, rev) for source, rev in zip(sources, revisions)]
    configs = [
        PeftConfig.from_pretrained(str(source), revision=rev, token=token) for source, rev in zip(sources, revisions)
    ]
    types = {str(config.peft_type.value) for config in configs}
    if len(types) > 1:
        described = ", ".join(f"{name}: {config.peft_type.value}" for name, config in zip(names, configs))
        raise AdapterCompositionError(f"Cannot compose adapters of different methods ({described}).")
    if not isinstance(configs[0], (MPNConfig, LAFNConfig)):
        raise AdapterCompositionError(
            f"{names[0]} is a {configs[0].peft_type.value} adapter; compose_adapters combines MPN or LAFN edit "
            "adapters."
        )
    bases = {name: config.base_model_name_or_path for name, config in zip(names, configs)}
    if len({base for base in bases.values() if base}) > 1:
        raise AdapterCompositionError(
            "Cannot compose adapters made on different base models: "
            + ", ".join(f"{name} on {base!r}" for name, base in bases.items())
            + "."
        )
    if isinstance(configs[0], MPNConfig):
        _check_same(configs, names, ("target_modules", "layers_to_transform", "activation", "hidden_size"))
    else:
        _check_same(
            configs, names, ("update_input", "cached", "activation_threshold", "intermediate_size", "hidden_size")
        )
        _check_lafn_collisions(configs, names)

    records: list[dict[str, Any]] = []
    for source, rev in zip(sources, revisions):
        try:
            found = list_edits(source, revision=rev, token=token)
        except EditManifestNotFoundError:
            warnings.warn(
                f"{_describe(source, rev)} has no edit manifest (edits.json): the composed adapter's manifest will "
                "not list what that source changes. Save it with peft_mpn.hub.save_edit(..., edits=...) to keep one.",
                stacklevel=2,
            )
            found = []
        records += [{**record, "source": record.get("source") or str(source)} for record in found]

    model = PeftModel.from_pretrained(
        base_model, str(sources[0]), adapter_name=adapter_name, revision=revisions[0], token=token
    )
    for position, (source, rev) in enumerate(zip(sources[1:], revisions[1:]), start=1):
        incoming = f"{adapter_name}__compose_{position}"
        model.load_adapter(str(source), adapter_name=incoming, revision=rev, token=token)
        try:
            model.base_model.absorb_adapter(incoming, adapter_name)
        finally:
            model.delete_adapter(incoming)
    model.set_adapter(adapter_name)
    setattr(model, EDITS_ATTRIBUTE, records)
    return model


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
