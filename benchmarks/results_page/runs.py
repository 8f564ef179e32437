"""Loading `peft-mpn bench` runs and the planned-run list; a run's labels and per-language readings."""

from __future__ import annotations

import gzip
import json
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peft_mpn.data import DatasetLayoutError, dataset_spec

#: The scripts' folder: `run_results.sh` lists the planned runs.
BENCHMARKS = Path(__file__).resolve().parents[1]
#: Summary columns: (header, where the value is, measure). Seen and unseen languages, translated and copied
#: targets are never averaged together: copied targets transfer by copying the edit-language string.
SUMMARY = (
    ("edit lang.", "metrics", "reliability"),
    ("seen, translated", "average_augment", "reliability_translated"),
    ("seen, copied", "average_augment", "reliability_copied"),
    ("unseen, translated", "average_unseen", "reliability_translated"),
    ("unseen, copied", "average_unseen", "reliability_copied"),
    ("unseen, edit-lang. answer", "average_unseen", "reliability_edit_language_answer"),
    ("generality", "metrics", "generality"),
    ("locality", "average", "locality"),
    ("portability", "metrics", "portability"),
)
#: The transfer readings of the like-for-like tables: (header, per-language measure, per-case probe, copied cases
#: only / translated only / all).
TRANSFER = (
    ("translated", "reliability_translated", "reliability", False),
    ("copied", "reliability_copied", "reliability", True),
    ("edit-lang. answer", "reliability_edit_language_answer", "edit_language_answer", None),
)
MODES = ("single", "sequential")


def _read_json(path: Path) -> Any:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(raw.decode("utf-8"))


def _hidden(path: Path, folder: Path) -> bool:
    """Whether ``path`` is hidden under ``folder``: a temporary file of an atomic write, or in a hidden folder."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def load_runs(folder: str | Path) -> list[dict[str, Any]]:
    """Every bench result (a JSON, or gzip'd JSON, with ``method``, ``mode`` and ``per_language``) under ``folder``.

    Hidden files and folders are skipped: a write that was killed leaves its temporary ``.<name>.json.*.tmp.json``.
    """
    runs = []
    folder = Path(folder)
    paths = sorted([*folder.rglob("*.json"), *folder.rglob("*.json.gz")])
    for path in (path for path in paths if not _hidden(path, folder)):
        try:
            data = _read_json(path)
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not readable as JSON ({err}); delete it or re-run its bench command.") from err
        if isinstance(data, dict) and {"method", "mode", "per_language", "before"} <= set(data):
            runs.append({**data, "path": str(path)})
    if not runs:
        raise FileNotFoundError(f"No `peft-mpn bench` result under {folder}; run benchmarks/run_results.sh first.")
    return runs


def load_classifier_report(folder: str | Path) -> dict[str, Any] | None:
    """The ``classifier_task.py`` report kept in ``folder`` (``classifier_task.json`` or ``.json.gz``), if any."""
    for name in ("classifier_task.json", "classifier_task.json.gz"):
        path = Path(folder) / name
        if path.is_file():
            return _read_json(path)
    return None


def run_name(path: str | Path) -> str:
    """``mzsre_mpn_single`` from ``.../mzsre_mpn_single.json`` or ``.json.gz``."""
    name = Path(path).name
    return name.removesuffix(".gz").removesuffix(".json")


def planned_runs() -> list[str]:
    """The run names `benchmarks/run_results.sh` lists (its ``--dry-run``), in its order."""
    listed = subprocess.run(
        ["bash", str(BENCHMARKS / "run_results.sh"), "--dry-run"],
        # the full plan, whatever subset the calling run_results.sh was asked for (METHODS=icl ...)
        env={**{k: v for k, v in os.environ.items() if k != "METHODS"}, "OUT": "planned", "EDITS": "100"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = []
    for line in listed.splitlines():
        words = shlex.split(line)
        if words[:2] == ["peft-mpn", "bench"]:
            names.append(run_name(words[words.index("--output") + 1]))
    return names


def dataset_label(run: Mapping[str, Any]) -> str:
    """The benchmark's title (the data registry's), with the split: ``BMIKE-53 zsre``."""
    dataset = run.get("dataset")
    try:
        label = dataset_spec(dataset).title if isinstance(dataset, str) else str(dataset)
    except DatasetLayoutError:
        label = dataset
    return f"{label} {run['split']}" if run.get("split") else label


def augmentation_kind(run: Mapping[str, Any]) -> str:
    """*overlapping* when some augmentation languages are also judged, else *disjoint*."""
    return "overlapping" if run.get("seen_languages") else "disjoint"


def run_label(run: Mapping[str, Any]) -> str:
    """The method, with its augmentation languages and their kind when it has some."""
    augment = run.get("augment_languages") or []
    method = "lafn-ungated" if method_key(run) == "lafn-ungated" else run["method"]
    if not augment:
        return method
    return f"{method} (augment: {' '.join(augment)}; {augmentation_kind(run)})"


def method_key(run: Mapping[str, Any]) -> str:
    """The method, told apart where a group may hold it twice: ``mpn-disjoint`` (MPN trained on languages that
    are not judged), ``ft-m-augmented`` (FT-M on the parallel versions) and ``lafn-ungated`` (LAFN without subject
    gates, as published; runs made before the gates have no ``subject_gate_depth`` in their editor config)."""
    if run["method"] == "lafn" and (run.get("editor_config") or {}).get("subject_gate_depth") is None:
        return "lafn-ungated"
    if run["method"] == "mpn" and augmentation_kind(run) == "disjoint":
        return "mpn-disjoint"
    if run["method"] == "ft-m" and run.get("augment_languages"):
        return "ft-m-augmented"
    return run["method"]


def generality_not_held_out(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """A warning under the tables where a run trained on the rephrases that generality is judged on."""
    trained = [run_label(run) for run in runs if (run.get("editor_config") or {}).get("use_rephrases")]
    if not trained:
        return []
    return [
        "",
        f"Generality is not held out for {', '.join(trained)}: "
        f"{'this run trains' if len(trained) == 1 else 'these runs train'} on each version's rephrases "
        "(`use_rephrases`, LAFN's setting), which are the rephrases generality is judged on.",
    ]


def unedited(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The unedited model's results on these runs' cases, from a run without augmentation where there is one.

    Its per-language numbers are the same in every run of a group (same cases, same model); only the seen/unseen
    averages follow the run's augmentation, and the unedited model has seen nothing.
    """
    return next((run for run in runs if not run.get("seen_languages")), runs[0])["before"]


def unseen_by_every_run(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The judged languages that no run trained on (the edit language excluded): a like-for-like unseen set."""
    return [lang for lang in runs[0]["unseen_languages"] if all(lang in run["unseen_languages"] for run in runs)]


def language_average(result: Mapping[str, Any], languages: Sequence[str], measure: str) -> float | None:
    """``measure`` averaged over ``languages`` (a language without a value is skipped), as the metric averages."""
    values = [result["per_language"].get(lang, {}).get(measure) for lang in languages]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None
