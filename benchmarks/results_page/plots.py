"""The grouped-bar plot of one dataset × mode section of the results page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peft_mpn.files import atomic_write

from .runs import SUMMARY, augmentation_kind, language_average, run_label, unedited, unseen_by_every_run

#: One colour per method on every plot of the page (tab10's), the unedited model grey.
METHOD_COLOURS = {
    "mpn": "#1f77b4",
    "mpn-disjoint": "#9ecae1",
    "t-patcher": "#ff7f0e",
    "lafn": "#2ca02c",
    "ft-l": "#d62728",
    "ft-m": "#9467bd",
    "ft-m-augmented": "#c5b0d5",
    "icl": "#8c564b",
}


def method_colour(run: Mapping[str, Any]) -> str:
    """``run``'s fixed colour: by method, a lighter one for MPN's disjoint and FT-M's augmented runs."""
    method = run["method"]
    if method == "mpn" and augmentation_kind(run) == "disjoint":
        method = "mpn-disjoint"
    elif method == "ft-m" and run.get("augment_languages"):
        method = "ft-m-augmented"
    return METHOD_COLOURS.get(method, "#7f7f7f")


def plot_section(runs: Sequence[Mapping[str, Any]], title: str, path: Path) -> None:
    """Bars per summary column (portability left out), one per run and the unedited model, saved as PNG."""
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
    entries = [("unedited model", unedited(runs), "#b0b0b0"), *((run_label(r), r, method_colour(r)) for r in runs)]
    width = 0.8 / len(entries)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(groups) + 2) + 3.5, 4.2))
    for j, (label, result, color) in enumerate(entries):
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
