"""Build the results page (docs/results.md + docs/img/) from a folder of `peft-mpn bench` JSON files.

    python benchmarks/results.py results/bench --docs docs    # from the repo root

One section per dataset (BMIKE-53 per split) and mode (single / sequential): a summary table with a row per
method run (the unedited model first), then per-language cross-lingual reliability, and a grouped-bar plot.
A run with augmentation languages is labelled *overlapping* when some of them are evaluated (their average is
the "seen" column) and *disjoint* when none are; an overlapping run's unseen average is also its disjoint
reading (the edits are the same; only the judged languages differ). `benchmarks/run_results.sh` lists the runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peft_mpn.files import atomic_write, atomic_write_text

#: Summary columns: (header, where the value is, measure).
SUMMARY = (
    ("edit lang.", "metrics", "reliability"),
    ("seen avg.", "average_augment", "reliability"),
    ("unseen avg.", "average_unseen", "reliability"),
    ("translated", "average_cross_lingual", "reliability_translated"),
    ("copied", "average_cross_lingual", "reliability_copied"),
    ("edit-lang. answer", "average_cross_lingual", "reliability_edit_language_answer"),
    ("generality", "metrics", "generality"),
    ("locality", "average", "locality"),
    ("portability", "metrics", "portability"),
)
MODES = ("single", "sequential")


def load_runs(folder: str | Path) -> list[dict[str, Any]]:
    """Every bench result (a JSON with ``method``, ``mode`` and ``per_language``) under ``folder``."""
    runs = []
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not readable as JSON ({err}); delete it or re-run its bench command.") from err
        if isinstance(data, dict) and {"method", "mode", "per_language", "before"} <= set(data):
            runs.append({**data, "path": str(path)})
    if not runs:
        raise FileNotFoundError(f"No `peft-mpn bench` result under {folder}; run benchmarks/run_results.sh first.")
    return runs


def dataset_label(run: Mapping[str, Any]) -> str:
    names = {"mzsre": "MzsRE", "bmike53": "BMIKE-53", "bizsre": "Bi-ZsRE"}
    label = names.get(run.get("dataset"), str(run.get("dataset")))
    return f"{label} {run['split']}" if run.get("split") else label


def run_label(run: Mapping[str, Any]) -> str:
    augment = run.get("augment_languages") or []
    if not augment:
        return run["method"]
    kind = "overlapping" if run.get("seen_languages") else "disjoint"
    return f"{run['method']} (augment: {' '.join(augment)}; {kind})"


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


def section(dataset: str, mode: str, runs: Sequence[Mapping[str, Any]], image: str) -> list[str]:
    """The Markdown of one dataset × mode."""
    first = runs[0]
    languages = list(dict.fromkeys(lang for run in runs for lang in run["languages"]))
    lines = [
        f"## {dataset}, {mode} editing",
        "",
        f"{first['num_edits']} edits (seed {first['seed']}), edit language `{first['edit_language']}`, model "
        f"`{first.get('model', '?')}`, languages: {' '.join(languages)}.",
        "",
        "Cells: token accuracy / exact match. *edit lang.*: reliability in the edit language; *seen* / *unseen*: "
        "cross-lingual reliability averaged over the augmentation languages / the others; *translated* / "
        "*copied*: cross-lingual reliability on targets written differently from / the same as the edit-language "
        "one; *edit-lang. answer*: the edit-language target on the other languages' prompts; locality averaged "
        "over every language.",
        "",
        "| method | " + " | ".join(header for header, _, _ in SUMMARY) + " | s / edit | edit success |",
        "|---|" + "---:|" * (len(SUMMARY) + 2),
        _summary_row("unedited model", first["before"], None),
    ]
    lines += [_summary_row(run_label(run), run, run) for run in runs]
    if any(run["case_ids"] != first["case_ids"] for run in runs):
        lines += ["", "Note: these runs edited different cases (different seeds or data); compare with care."]
    lines += [
        "",
        "Cross-lingual reliability per language (token accuracy; * = an augmentation language of that run):",
        "",
        "| method | " + " | ".join(languages) + " |",
        "|---|" + "---:|" * len(languages),
    ]
    for run in runs:
        cells = []
        for lang in languages:
            value = run["per_language"].get(lang, {}).get("reliability")
            mark = "*" if lang in run.get("seen_languages", []) else ""
            cells.append("" if value is None else f"{value:.2f}{mark}")
        lines.append(f"| {run_label(run)} | " + " | ".join(cells) + " |")
    lines += ["", f"![{dataset}, {mode}]({image})", ""]
    return lines


def plot_section(runs: Sequence[Mapping[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(header, where, measure) for header, where, measure in SUMMARY if measure != "portability"]
    entries = [("unedited model", runs[0]["before"]), *((run_label(run), run) for run in runs)]
    width = 0.8 / len(entries)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(groups) + 2) + 3.5, 4.2))
    colors = plt.get_cmap("tab10")
    for j, (label, result) in enumerate(entries):
        xs, heights = [], []
        for i, (_, where, measure) in enumerate(groups):
            source = result["metrics"] if where == "metrics" else result["metrics"].get(where) or {}
            if source.get(measure) is not None:
                xs.append(i - 0.4 + width * (j + 0.5))
                heights.append(source[measure])
        color = "#b0b0b0" if j == 0 else colors((j - 1) % 10)
        ax.bar(xs, heights, width, label=label, color=color, zorder=2)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([header for header, _, _ in groups], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("token accuracy")
    ax.grid(axis="y", alpha=0.3, zorder=1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda temp: fig.savefig(temp, format="png", dpi=120))
    plt.close(fig)


def build_page(runs: Sequence[Mapping[str, Any]], docs: str | Path) -> Path:
    """Write ``docs/results.md`` and ``docs/img/results_*.png``; returns the page's path."""
    docs = Path(docs)
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((dataset_label(run), run["mode"]), []).append(run)
    lines = [
        "# Results",
        "",
        "Generated by `benchmarks/results.py` from the JSON files of `peft-mpn bench` (commands: "
        "`benchmarks/run_results.sh`). Reliability outside the edit language is cross-lingual: the prompt in that "
        "language against the target written in it. Copied targets (the same string as the edit-language one) "
        "transfer by copying, so read the translated column for real transfer. An overlapping MPN run's unseen "
        "average is its disjoint reading.",
        "",
    ]
    order = {mode: i for i, mode in enumerate(MODES)}
    for (dataset, mode), group in sorted(grouped.items(), key=lambda item: (item[0][0], order.get(item[0][1], 9))):
        group = sorted(group, key=run_label)
        slug = f"results_{dataset}_{mode}".lower().replace(" ", "_").replace("-", "")
        plot_section(group, f"{dataset}, {mode} editing", docs / "img" / f"{slug}.png")
        lines += section(dataset, mode, group, f"img/{slug}.png")
    page = docs / "results.md"
    text = "\n".join(lines).rstrip() + "\n"
    atomic_write_text(page, text)
    return page


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="results/bench", help="folder of bench JSON files")
    parser.add_argument("--docs", default="docs", help="where results.md and img/ go")
    args = parser.parse_args(argv)
    page = build_page(load_runs(args.folder), args.docs)
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
