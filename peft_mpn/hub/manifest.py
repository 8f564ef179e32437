"""The edit manifest: `edits.json` beside `adapter_config.json`, saying which facts an adapter changes.

Each record has `case_id`, `edit_language`, `prompt`, `target`, `languages`, `method` and `date` (and `source`
after `compose_adapters`); `list_edits` reads them from a local folder or a Hub repo.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError
from peft.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME

from ..data.requests import EditRequest, fact_key
from ..files import atomic_write_text, locked, recover_folder

MANIFEST_NAME = "edits.json"
"""File name of the edit manifest, beside `adapter_config.json`."""
MANIFEST_FORMAT = "peft-mpn/edits"
MANIFEST_VERSION = 1
#: A record's fields, in the order the manifest writes them.
RECORD_FIELDS = ("case_id", "edit_language", "prompt", "target", "languages", "method", "date")
#: Attribute under which `compose_adapters` leaves the merged manifest on the model it returns.
EDITS_ATTRIBUTE = "peft_mpn_edits"

EditLike = EditRequest | Mapping[str, Any]


class EditManifestError(ValueError):
    """An edit manifest that cannot be read or written as given."""


class EditManifestNotFoundError(FileNotFoundError):
    """The adapter has no edit manifest (`edits.json`)."""


#: What a record's fields may hold: (check, what it should be). `prompt`, `target` and `edit_language` must be
#: there; the others may be absent or `None`.
_FIELD_TYPES = {
    "prompt": (lambda v: isinstance(v, str), "a str"),
    "target": (lambda v: isinstance(v, (str, int)) and not isinstance(v, bool), "a str or an int label"),
    "edit_language": (lambda v: isinstance(v, str), "a str"),
    "case_id": (lambda v: v is None or (isinstance(v, (str, int)) and not isinstance(v, bool)), "a str"),
    "languages": (
        lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
        "a list of str",
    ),
    "method": (lambda v: v is None or isinstance(v, str), "a str"),
    "date": (lambda v: v is None or isinstance(v, str), "a str"),
    "source": (lambda v: v is None or isinstance(v, str), "a str"),
}
_REQUIRED = ("prompt", "target", "edit_language")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list of " + ", ".join(sorted({type(item).__name__ for item in value}) or ["nothing"])
    return type(value).__name__


def _record_problem(record: Any, label: str) -> str | None:
    """What is wrong with a manifest record, as `"<label> is ..."` (`label` e.g. `"edit #3"`); `None` if nothing."""
    if not isinstance(record, Mapping):
        return f"{label} is a {type(record).__name__}, not a record object"
    for field, (check, expected) in _FIELD_TYPES.items():
        if (field in record or field in _REQUIRED) and not check(record.get(field)):
            return f"{label}'s {field} is {_kind(record.get(field))}, not {expected}"
    return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def edit_records(edits: Iterable[EditLike], *, method: str, date: str | None = None) -> list[dict[str, Any]]:
    """Manifest records for `edits`: `peft_mpn.EditRequest` objects or records already in this shape.

    Records that come from another manifest (`list_edits`) keep their method and date; new ones get
    `method` and `date` (default: now, UTC).
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
            if edit.machine_translated:  # what the edit was trained on in those languages, for review
                record["machine_translated"] = {
                    lang: {"prompt": edit.views[lang].prompt, "target": edit.views[lang].target}
                    for lang in edit.machine_translated
                }
        elif isinstance(edit, Mapping):
            missing = [key for key in _REQUIRED if edit.get(key) in (None, "")]
            if missing:
                raise EditManifestError(
                    f"Edit #{position} lacks {missing}: give EditRequest objects, or records with at least "
                    "prompt, target and edit_language (as list_edits returns them)."
                )
            problem = _record_problem(edit, f"Edit #{position}")
            if problem:
                raise EditManifestError(f"{problem}; give EditRequest objects, or records as list_edits returns them.")
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


def mark_superseded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`records` with `"superseded_by"` (the later record's case id, or its position) on every record whose fact
    (edit language and prompt, Unicode, case and spacing aside) a later record edits again: the later one wins."""
    latest = {fact_key(record["edit_language"], record["prompt"]): position for position, record in enumerate(records)}
    marked = []
    for position, record in enumerate(records):
        last = latest[fact_key(record["edit_language"], record["prompt"])]
        record = {key: value for key, value in record.items() if key != "superseded_by"}
        if last != position:
            later = records[last].get("case_id")
            record["superseded_by"] = later if later is not None else f"#{last}"
        marked.append(record)
    return marked


def write_edit_manifest(
    folder: str | os.PathLike, edits: Iterable[EditLike], *, method: str | None = None, append: bool = False
) -> Path:
    """Write `edits.json` into the adapter folder `folder` (atomically) and return its path.

    Args:
        folder: an adapter folder (`save_pretrained` output).
        edits: the edits the adapter holds: `peft_mpn.EditRequest` objects or manifest records.
        method: `"mpn"`, `"t-patcher"`, `"lafn"`...; default: the adapter's PEFT type, lower case.
        append: keep the records already in the folder's manifest and add these after them. Processes
            appending to the same manifest take turns (a lock file beside it), so none loses another's records.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EditManifestError(f"{str(folder)!r} is not a folder; save the adapter there first (save_pretrained).")
    new = edit_records(edits, method=method or _method_of_folder(folder))
    path = folder / MANIFEST_NAME
    with locked(path):  # another process appending between the read and the write would lose its records
        records = read_edit_manifest(folder) if append and path.exists() else []
        manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "edits": mark_superseded(records + new)}
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
    rewrite = "write it again with peft_mpn.hub.write_edit_manifest (or save the adapter again with save_edit)."
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise EditManifestError(f"{str(path)!r} is not UTF-8 text ({error.reason}); {rewrite}") from error
    except json.JSONDecodeError as error:
        raise EditManifestError(f"{str(path)!r} is not valid JSON ({error}); {rewrite}") from error
    except RecursionError as error:
        raise EditManifestError(f"{str(path)!r} is nested too deeply to be an edit manifest; {rewrite}") from error
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
    for position, record in enumerate(manifest["edits"]):
        problem = _record_problem(record, f"edit #{position}")
        if problem:
            raise EditManifestError(f"{str(path)!r} is a damaged edit manifest: {problem}; {rewrite}")
    return list(manifest["edits"])


def check_revision(revision: str | None) -> str | None:
    """`revision` if it can name a branch, tag or commit; a clear error for a path-like one.

    The Hub client writes a ref file named after the revision under its cache; `../` in a revision would put it
    outside the cache.
    """
    if revision is None:
        return None
    if not isinstance(revision, str) or not revision.strip():
        raise ValueError(f"A revision is a branch, tag or commit name, got {revision!r}.")
    parts = revision.replace("\\", "/").split("/")
    if revision.startswith(("/", "\\")) or ".." in parts or "" in parts or "\\" in revision:
        raise ValueError(
            f"Revision {revision!r} looks like a path ('..', a leading or doubled '/', or a backslash); give a "
            "branch, tag or commit name such as 'main', 'v1' or 'refs/pr/1'."
        )
    return revision


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


@contextmanager
def revision_errors(repo_id: str | os.PathLike, revision: str | None) -> Iterator[None]:
    """Say so when a Hub lookup of `repo_id` fails because `revision` does not exist, naming it and how to list
    the ones that do (`PeftModel.from_pretrained` reports it as "Can't find 'adapter_config.json'")."""
    try:
        yield
    except Exception as error:
        if not _caused_by(error, RevisionNotFoundError):
            raise
        repo = str(repo_id)
        raise ValueError(
            f"Revision {revision or 'main'!r} does not exist in the Hub repo {repo!r}: no branch, tag or commit has "
            f"that name. List its branches and tags with huggingface_hub.list_repo_refs({repo!r}), or leave "
            "revision out to load main."
        ) from error


def check_adapter_folder(source: str | os.PathLike, subfolder: str | None = None) -> None:
    """A clear error for a local adapter folder without its config or weights file (else peft asks the Hub).

    Sources that are not local folders (Hub repo ids) pass unchecked.

    Raises:
        FileNotFoundError: naming the folder, the missing file and how to save the adapter again.
    """
    recover_folder(source)  # a save killed while swapping folders left the old one aside
    folder = Path(source).expanduser() / (subfolder or "")
    if not folder.is_dir():
        return
    if not (folder / CONFIG_NAME).is_file():
        inside = sorted(sub.name for sub in folder.iterdir() if (sub / CONFIG_NAME).is_file())
        where = f" (the adapters {', '.join(inside)} are in subfolders: point at one of them)" if inside else ""
        raise FileNotFoundError(
            f"{str(folder)!r} has no {CONFIG_NAME}, so it is not a saved adapter{where}; give the folder "
            "peft_mpn.hub.save_edit (or save_pretrained) wrote."
        )
    if not any((folder / name).is_file() for name in (SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME)):
        raise FileNotFoundError(
            f"{str(folder)!r} has {CONFIG_NAME} but no weights file ({SAFETENSORS_WEIGHTS_NAME} or {WEIGHTS_NAME}); "
            "save the adapter again with peft_mpn.hub.save_edit, or copy its weights file into that folder."
        )


def list_edits(
    path_or_repo_id: str | os.PathLike, revision: str | None = None, *, token: str | bool | None = None
) -> list[dict[str, Any]]:
    """What an edit adapter changes: the records of its manifest, from a local folder or a Hub repo.

    Each record has `case_id`, `edit_language`, `prompt`, `target`, `languages`, `method` and
    `date` (and `source` after `compose_adapters`).

    Args:
        path_or_repo_id: a local adapter folder (or manifest file), or a Hub repo id.
        revision: the branch, tag or commit of a Hub repo (default: `main`).
        token: Hub token for private repos (default: the logged-in one).
    """
    check_revision(revision)
    recover_folder(path_or_repo_id)  # a save killed while swapping folders left the old one aside
    if Path(path_or_repo_id).exists():
        return read_edit_manifest(path_or_repo_id)
    try:
        with revision_errors(path_or_repo_id, revision):
            local = hf_hub_download(str(path_or_repo_id), MANIFEST_NAME, revision=revision, token=token)
    except EntryNotFoundError as error:
        raise EditManifestNotFoundError(
            f"{path_or_repo_id!r} (revision {revision or 'main'}) has no {MANIFEST_NAME}: it was not pushed with "
            "peft_mpn.hub.push_edit_to_hub, so which facts it edits is not recorded."
        ) from error
    return read_edit_manifest(local)
