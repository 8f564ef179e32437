"""Build the results page (docs/results.md + docs/img/) from a folder of `peft-mpn bench` JSON files.

    python benchmarks/results.py results/bench --docs docs    # from the repo root

One section per dataset (BMIKE-53 per split) and mode (single / sequential): a summary table with a row per
method run (the unedited model first), then per-language cross-lingual reliability, and a grouped-bar plot. A
`classifier_task.json` in the folder (from `benchmarks/classifier_task.py`) adds the classifier-editing section.
A run with augmentation languages is labelled *overlapping* when some of them are evaluated (their average is
the "seen" column) and *disjoint* when none are; an overlapping run's unseen average is also its disjoint
reading (the edits are the same; only the judged languages differ). `benchmarks/run_results.sh` lists the runs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peft_mpn.files import atomic_write, atomic_write_text

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
BOOTSTRAP_SAMPLES = 2000


def load_runs(folder: str | Path) -> list[dict[str, Any]]:
    """Every bench result (a JSON, or gzip'd JSON, with ``method``, ``mode`` and ``per_language``) under ``folder``."""
    runs = []
    paths = sorted([*Path(folder).rglob("*.json"), *Path(folder).rglob("*.json.gz")])
    for path in paths:
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            data = json.loads(raw.decode("utf-8"))
        except (OSError, EOFError, json.JSONDecodeError) as err:
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
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            return json.loads(raw.decode("utf-8"))
    return None


def classifier_section(report: Mapping[str, Any]) -> list[str]:
    """The classifier-editing section: ``classifier_task.py``'s own table and how it was made."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from classifier_task import markdown  # the script's table, not a second rendering of it

    languages = list(report["languages"])
    return [
        "## Classifier editing: fact verification from BMIKE-53 CounterFact",
        "",
        f"MPN's classifier setting on data at hand (`benchmarks/classifier_task.py`): {report['cases']} CounterFact "
        "cases, each question completed with the true answer (label 1) or the counterfactual one (label 0); a "
        f"2-label head plus a merged LoRA trained on {report['classifier']['train_statements']} English train "
        f"statements only. The misclassified English test statements ({report['editors'][0]['edits']} edits, "
        "each from the trained classifier) are edited with T-Patcher (English only) and MPN (English plus "
        f"{', '.join(report['augment_languages'])}). CLG: the edited label in another language (mean of the "
        "statement and its rephrase); a label reads the same in every language, so there is no translated / "
        "copied split here. Locality: unchanged predictions on the edit's neighbour and on other test statements.",
        "",
        "```bash",
        "HF_HUB_OFFLINE=1 python benchmarks/classifier_task.py --output results/classifier_task.json",
        "```",
        "",
        markdown(report, languages).rstrip(),
        "",
    ]


def run_name(path: str | Path) -> str:
    """``mzsre_mpn_single`` from ``.../mzsre_mpn_single.json`` or ``.json.gz``."""
    name = Path(path).name
    return name.removesuffix(".gz").removesuffix(".json")


def planned_runs() -> list[str]:
    """The run names `benchmarks/run_results.sh` lists (its ``--dry-run``), in its order."""
    script = Path(__file__).with_name("run_results.sh")
    listed = subprocess.run(
        ["bash", str(script), "--dry-run"],
        env={**os.environ, "OUT": "planned", "EDITS": "100"},
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


def coverage(runs: Sequence[Mapping[str, Any]], planned: Sequence[str]) -> list[str]:
    """Which of the planned runs the page holds; the missing ones as a dataset × mode table of methods."""
    done = {run_name(run["path"]) for run in runs if "path" in run}
    missing: dict[tuple[str, str], list[str]] = {}
    for name in planned:
        if name not in done:
            dataset, method, mode = name.split("_", 2)
            missing.setdefault((dataset, mode), []).append(method)
    held = sum(name in done for name in planned)
    lines = [f"This page holds {held} of the {len(planned)} runs `benchmarks/run_results.sh` lists."]
    if missing:
        lines += ["Not run yet:", "", "| data | mode | methods |", "|---|---|---|"]
        lines += [f"| {data} | {mode} | {', '.join(methods)} |" for (data, mode), methods in missing.items()]
    return [*lines, ""]


def dataset_label(run: Mapping[str, Any]) -> str:
    names = {"mzsre": "MzsRE", "bmike53": "BMIKE-53", "bizsre": "Bi-ZsRE"}
    label = names.get(run.get("dataset"), str(run.get("dataset")))
    return f"{label} {run['split']}" if run.get("split") else label


def augmentation_kind(run: Mapping[str, Any]) -> str:
    """*overlapping* when some augmentation languages are also judged, else *disjoint*."""
    return "overlapping" if run.get("seen_languages") else "disjoint"


def run_label(run: Mapping[str, Any]) -> str:
    augment = run.get("augment_languages") or []
    if not augment:
        return run["method"]
    return f"{run['method']} (augment: {' '.join(augment)}; {augmentation_kind(run)})"


def _pair(source: Mapping[str, Any], measure: str) -> str:
    token, exact = source.get(measure), source.get(f"{measure}_em")
    if token is None:
        return "–"
    return f"{token:.2f} / {exact:.2f}"


def _summary_row(label: str, result: Mapping[str, Any], run: Mapping[str, Any] | None) -> str:
    cells = []
    for _, where, measure in SUMMARY:
        source = result["metrics"] if where == "metrics" else result["metrics"].get(where) or {}
        cells.append(_pair(source, measure))
    timing = "" if run is None else f"{run['timing']['seconds_per_edit_mean']:.1f}"
    success = "" if run is None or run["timing"]["success_rate"] is None else f"{run['timing']['success_rate']:.2f}"
    return f"| {label} | " + " | ".join(cells) + f" | {timing} | {success} |"


def unseen_by_every_run(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The judged languages that no run trained on (the edit language excluded): a like-for-like unseen set."""
    return [lang for lang in runs[0]["unseen_languages"] if all(lang in run["unseen_languages"] for run in runs)]


def language_average(result: Mapping[str, Any], languages: Sequence[str], measure: str) -> float | None:
    """``measure`` averaged over ``languages`` (a language without a value is skipped), as the metric averages."""
    values = [result["per_language"].get(lang, {}).get(measure) for lang in languages]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _case_cells(run: Mapping[str, Any], languages: Sequence[str], probe: str, copied: bool | None, exact: bool):
    """``{language: {case: value}}`` from a run's ``per_case`` table, the cases the reading covers."""
    cells: dict[str, dict[str, float]] = {}
    for case, by_language in run["per_case"].items():
        for lang in languages:
            cell = by_language.get(lang, {})
            if probe in cell and (copied is None or cell.get("copied") is copied):
                cells.setdefault(lang, {})[case] = cell[probe][1 if exact else 0]
    return cells


def _macro(cells: Mapping[str, Mapping[str, float]], cases: Sequence[str]) -> float | None:
    means = []
    for by_case in cells.values():
        values = [by_case[case] for case in cases if case in by_case]
        if values:
            means.append(sum(values) / len(values))
    return sum(means) / len(means) if means else None


def paired_difference(
    run_a: Mapping[str, Any],
    run_b: Mapping[str, Any],
    languages: Sequence[str],
    probe: str,
    copied: bool | None,
    exact: bool = False,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float, float, float] | None:
    """``a - b`` on one transfer reading over ``languages``, with a 95% paired bootstrap interval over cases.

    ``None`` when the runs edited different cases or a run has no ``per_case`` table (older JSON).
    """
    if run_a.get("case_ids") != run_b.get("case_ids") or "per_case" not in run_a or "per_case" not in run_b:
        return None
    cells_a = _case_cells(run_a, languages, probe, copied, exact)
    cells_b = _case_cells(run_b, languages, probe, copied, exact)
    cases = list(run_a["case_ids"])
    a, b = _macro(cells_a, cases), _macro(cells_b, cases)
    if a is None or b is None:
        return None
    rng = random.Random(seed)
    differences = []
    for _ in range(samples):
        drawn = rng.choices(cases, k=len(cases))
        da, db = _macro(cells_a, drawn), _macro(cells_b, drawn)
        if da is not None and db is not None:
            differences.append(da - db)
    differences.sort()
    low = differences[int(0.025 * (len(differences) - 1))]
    high = differences[int(0.975 * (len(differences) - 1))]
    return a - b, low, high


def _difference(value: tuple[float, float, float] | None) -> str:
    if value is None:
        return "–"
    difference, low, high = value
    return f"{difference:+.2f} [{low:+.2f}, {high:+.2f}]"


def unedited(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The unedited model's results on these runs' cases, from a run without augmentation where there is one.

    Its per-language numbers are the same in every run of a group (same cases, same model); only the seen/unseen
    averages follow the run's augmentation, and the unedited model has seen nothing.
    """
    return next((run for run in runs if not run.get("seen_languages")), runs[0])["before"]


def like_for_like(runs: Sequence[Mapping[str, Any]], languages: Sequence[str]) -> list[str]:
    """Every run (and the unedited model) on the same unseen languages, each transfer reading apart."""
    header = " | ".join(f"{name} (tok. / EM)" for name, _, _, _ in TRANSFER)
    lines = [f"| method | {header} |", "|---|" + "---:|" * len(TRANSFER)]
    for label, result in [("unedited model", unedited(runs)), *((run_label(run), run) for run in runs)]:
        cells = []
        for _, measure, _, _ in TRANSFER:
            token, exact = (
                language_average(result, languages, measure),
                language_average(result, languages, f"{measure}_em"),
            )
            cells.append("–" if token is None else f"{token:.2f} / {exact:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def headline_pairs(runs: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(MPN run, T-Patcher run) pairs of one section: every MPN run against the T-Patcher run."""
    patchers = [run for run in runs if run["method"] == "t-patcher"]
    return [(run, patchers[0]) for run in runs if run["method"] == "mpn" and patchers]


def _versus(
    mpn: Mapping[str, Any],
    patcher: Mapping[str, Any],
    languages: Sequence[str],
    measure: str,
    probe: str,
    copied: bool | None,
) -> str:
    """``MPN vs T-Patcher: difference [interval]; EM ...`` for one reading averaged over ``languages``."""
    ours, theirs = language_average(mpn, languages, measure), language_average(patcher, languages, measure)
    if ours is None or theirs is None:
        return "–"
    token = _difference(paired_difference(mpn, patcher, languages, probe, copied))
    exact = _difference(paired_difference(mpn, patcher, languages, probe, copied, exact=True))
    return f"{ours:.2f} vs {theirs:.2f}: {token}; EM {exact}"


def headline(grouped: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]]) -> list[str]:
    """MPN minus T-Patcher on the languages MPN did not train on, every dataset and mode, with intervals."""
    rows = []
    for (dataset, mode), runs in grouped.items():
        for mpn, patcher in headline_pairs(runs):
            languages = mpn["unseen_languages"]
            cells = [_versus(mpn, patcher, languages, *reading) for _, *reading in TRANSFER]
            # what the transfer costs: locality over every judged language, as the summary tables average it
            cells.append(_versus(mpn, patcher, mpn["languages"], "locality", "locality", None))
            augment = f"{' '.join(mpn['augment_languages'])} ({augmentation_kind(mpn)})"
            unseen = f"{len(languages)}: {' '.join(languages)}"
            rows.append(f"| {dataset} | {mode} | {augment} | {unseen} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "## MPN against T-Patcher on languages MPN never saw",
        "",
        "T-Patcher is MPN with augmentation off: the same patches, trained on the English edit only. Each cell: "
        "MPN vs T-Patcher token accuracy averaged over the languages MPN did not train on, then the difference "
        "(MPN − T-Patcher) with a 95% paired bootstrap interval over the edited cases, for token accuracy and "
        f"exact match ({BOOTSTRAP_SAMPLES} resamples). An interval that excludes 0 is a difference these cases "
        "support. The last column is what the transfer costs: locality averaged over every judged language, "
        "seen ones included, read the same way.",
        "",
        "| data | mode | MPN augmentation | unseen languages | "
        + " | ".join(name for name, _, _, _ in TRANSFER)
        + " | locality, all languages |",
        "|---|---|---|---|" + "---|" * (len(TRANSFER) + 1),
        *rows,
        "",
    ]


def section(dataset: str, mode: str, runs: Sequence[Mapping[str, Any]], image: str) -> list[str]:
    """The Markdown of one dataset × mode."""
    first = runs[0]
    languages = list(dict.fromkeys(lang for run in runs for lang in run["languages"]))
    common = unseen_by_every_run(runs)
    lines = [
        f"## {dataset}, {mode} editing",
        "",
        f"{first['num_edits']} edits (seed {first['seed']}), edit language `{first['edit_language']}`, model "
        f"`{first.get('model', '?')}`, languages: {' '.join(languages)}.",
        "",
        "Cells: token accuracy / exact match. *edit lang.*: reliability in the edit language; *seen* / *unseen*: "
        "cross-lingual reliability averaged over that run's augmentation languages / the other judged languages, "
        "on targets written differently from (*translated*) or the same as (*copied*) the edit-language one; "
        "*edit-lang. answer*: the edit-language target on the unseen languages' prompts; locality averaged "
        "over every language. A run without augmentation has no seen language, so its unseen set is larger than "
        "an augmented run's: the like-for-like table below compares every run on the same languages.",
        "",
        "| method | " + " | ".join(header for header, _, _ in SUMMARY) + " | s / edit | edit success |",
        "|---|" + "---:|" * (len(SUMMARY) + 2),
        _summary_row("unedited model", unedited(runs), None),
    ]
    lines += [_summary_row(run_label(run), run, run) for run in runs]
    if any(run["case_ids"] != first["case_ids"] for run in runs):
        lines += ["", "Note: these runs edited different cases (different seeds or data); compare with care."]
    if common:
        lines += [
            "",
            f"Like for like, on the {len(common)} languages no run here trained on ({' '.join(common)}):",
            "",
            *like_for_like(runs, common),
        ]
    for title, suffix in (("token accuracy", ""), ("exact match", "_em")):
        lines += [
            "",
            f"Cross-lingual reliability per language, {title}, `translated / copied` targets "
            "(* = an augmentation language of that run; – = no such case):",
            "",
            "| method | " + " | ".join(languages) + " |",
            "|---|" + "---:|" * len(languages),
        ]
        for label, result, seen in [
            ("unedited model", unedited(runs), ()),
            *((run_label(run), run, run.get("seen_languages", ())) for run in runs),
        ]:
            cells = []
            for lang in languages:
                values = result["per_language"].get(lang, {})
                if lang == first["edit_language"]:
                    value = values.get(f"reliability{suffix}")
                    cells.append("" if value is None else f"{value:.2f}")
                    continue
                pair = [values.get(f"reliability_{kind}{suffix}") for kind in ("translated", "copied")]
                text = " / ".join("–" if v is None else f"{v:.2f}" for v in pair)
                cells.append(f"{text}{'*' if lang in seen else ''}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"![{dataset}, {mode}]({image})", ""]
    return lines


def plot_section(runs: Sequence[Mapping[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The unseen bars are like for like: every run on the languages none of them trained on.
    common = unseen_by_every_run(runs)
    groups = [
        (header.replace("unseen", "unseen by all") if where == "average_unseen" else header, where, measure)
        for header, where, measure in SUMMARY
        if measure != "portability"
    ]
    entries = [("unedited model", unedited(runs)), *((run_label(run), run) for run in runs)]
    width = 0.8 / len(entries)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(groups) + 2) + 3.5, 4.2))
    colors = plt.get_cmap("tab10")
    for j, (label, result) in enumerate(entries):
        xs, heights = [], []
        for i, (_, where, measure) in enumerate(groups):
            if where == "average_unseen":
                value = language_average(result, common, measure)
            else:
                source = result["metrics"] if where == "metrics" else result["metrics"].get(where) or {}
                value = source.get(measure)
            if value is not None:
                xs.append(i - 0.4 + width * (j + 0.5))
                heights.append(value)
        color = "#b0b0b0" if j == 0 else colors((j - 1) % 10)
        ax.bar(xs, heights, width, label=label, color=color, zorder=2)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([header.replace(", ", ",\n") for header, _, _ in groups], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("token accuracy")
    ax.grid(axis="y", alpha=0.3, zorder=1)
    ax.set_title(f"{title} (unseen by all: {' '.join(common) or 'none'})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda temp: fig.savefig(temp, format="png", dpi=120))
    plt.close(fig)


def run_times(runs: Sequence[Mapping[str, Any]]) -> str:
    """`` (with N torch CPU threads the runs here took A to B minutes each, ...)`` from their ``wall_seconds``."""
    minutes = [run["wall_seconds"] / 60 for run in runs if run.get("wall_seconds")]
    if not minutes:
        return ""
    span = f"{min(minutes):.0f} to {max(minutes):.0f}"
    threads = sorted({run["torch_threads"] for run in runs if run.get("torch_threads")})
    where = f"with {'/'.join(map(str, threads))} torch CPU threads " if threads else ""
    return f" ({where}the runs here took {span} minutes each, judging included)"


def build_page(
    runs: Sequence[Mapping[str, Any]],
    docs: str | Path,
    planned: Sequence[str] | None = None,
    classifier: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``docs/results.md`` and ``docs/img/results_*.png``; returns the page's path.

    ``planned``: the run names the page should eventually hold (:func:`planned_runs`); the page says which of them
    are missing. ``classifier``: a ``classifier_task.py`` report, shown in a section of its own.
    """
    docs = Path(docs)
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((dataset_label(run), run["mode"]), []).append(run)
    lines = [
        "# Results",
        "",
        "Generated by `python benchmarks/results.py benchmarks/results` from the `peft-mpn bench` runs kept "
        f"gzip'd in `benchmarks/results/`; `bash benchmarks/run_results.sh` lists and runs them{run_times(runs)}. "
        "Model: Gemma-3-270M (Q4_K_M GGUF converted to float32). "
        "Reliability outside the edit language is cross-lingual: the prompt in that language against the "
        "target written in it. Copied targets (the same string as the edit-language one) transfer by copying,"
        " so read the translated columns for real transfer. *Seen* languages are the ones a run trained on "
        "(MPN's augmentation); *overlapping* runs judge them too, *disjoint* runs train on languages that are"
        " not judged at all, so every judged language is unseen.",
        "",
    ]
    if planned is not None:
        lines += coverage(runs, planned)
    order = {mode: i for i, mode in enumerate(MODES)}
    grouped = {
        key: sorted(group, key=run_label)
        for key, group in sorted(grouped.items(), key=lambda item: (item[0][0], order.get(item[0][1], 9)))
    }
    lines += headline(grouped)
    for (dataset, mode), group in grouped.items():
        slug = f"results_{dataset}_{mode}".lower().replace(" ", "_").replace("-", "")
        plot_section(group, f"{dataset}, {mode} editing", docs / "img" / f"{slug}.png")
        lines += section(dataset, mode, group, f"img/{slug}.png")
    if classifier is not None:
        lines += classifier_section(classifier)
    page = docs / "results.md"
    text = "\n".join(lines).rstrip() + "\n"
    atomic_write_text(page, text)
    return page


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="results/bench", help="folder of bench JSON files")
    parser.add_argument("--docs", default="docs", help="where results.md and img/ go")
    args = parser.parse_args(argv)
    page = build_page(load_runs(args.folder), args.docs, planned_runs(), load_classifier_report(args.folder))
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
