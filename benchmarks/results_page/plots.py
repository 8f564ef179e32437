"""The grouped-bar plot of one dataset × mode section of the results page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peft_mpn.files import atomic_write

from .runs import SUMMARY, language_average, method_key, run_label, unedited, unseen_by_every_run
from .stats import case_interval

#: One colour per method on every plot of the page (tab10's), the unedited model grey.
METHOD_COLOURS = {
    "mpn": "#1f77b4",
    "mpn-disjoint": "#9ecae1",
    "t-patcher": "#ff7f0e",
    "lafn": "#2ca02c",
    "lafn-ungated": "#98df8a",
    "ft-l": "#d62728",
    "ft-m": "#9467bd",
    "ft-m-augmented": "#c5b0d5",
    "icl": "#8c564b",
    "icl-gated": "#e377c2",
}


def method_colour(run: Mapping[str, Any]) -> str:
    """``run``'s fixed colour by method; lighter for MPN's disjoint, FT-M's augmented and LAFN's ungated runs."""
    return METHOD_COLOURS.get(method_key(run), "#7f7f7f")


#: Where each plotted summary column's per-case cells are: (probe, whose languages, copied targets only /
#: translated only / all). "edit": the edit language; "seen": the run's augmentation languages that are judged;
#: "unseen": the languages no run of the plot trained on; "all": every judged language.
_CELLS = {
    ("metrics", "reliability"): ("reliability", "edit", None),
    ("average_augment", "reliability_translated"): ("reliability", "seen", False),
    ("average_augment", "reliability_copied"): ("reliability", "seen", True),
    ("average_unseen", "reliability_translated"): ("reliability", "unseen", False),
    ("average_unseen", "reliability_copied"): ("reliability", "unseen", True),
    ("average_unseen", "reliability_edit_language_answer"): ("edit_language_answer", "unseen", None),
    ("metrics", "generality"): ("generality", "edit", None),
    ("average", "locality"): ("locality", "all", None),
}
_READINGS = (("token accuracy", "token", ""), ("exact match", "em", "_em"))


def _bar(
    run: Mapping[str, Any], result: Mapping[str, Any], where: str, measure: str, common: Sequence[str], reading: str
) -> tuple[float, float, float] | None:
    """``(value, low, high)`` of one bar: from the per-case table with a 95% bootstrap interval over the cases,
    else (older results) the summary's value with no interval."""
    probe, whose, copied = _CELLS[(where, measure)]
    languages = {
        "edit": [run["edit_language"]],
        "seen": run.get("seen_languages") or [],
        "unseen": common,
        "all": run["languages"],
    }[whose]
    cases = list(run.get("judged_case_ids") or run["case_ids"])
    if languages and (interval := case_interval(result, cases, languages, probe, copied, reading)) is not None:
        return interval
    suffix = "_em" if reading == "em" else ""
    if where == "average_unseen":
        value = language_average(result, common, measure + suffix)
    else:
        source = result["metrics"] if where == "metrics" else result["metrics"].get(where) or {}
        value = source.get(measure + suffix)
    return None if value is None else (value, value, value)


def plot_section(runs: Sequence[Mapping[str, Any]], title: str, path: Path) -> None:
    """Bars per summary column (portability left out), one per run and the unedited model, token accuracy above
    and exact match below, each with its 95% bootstrap interval over the edited cases; saved as PNG."""
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
    reference = next((run for run in runs if not run.get("seen_languages")), runs[0])
    entries = [
        ("unedited model", reference, unedited(runs), "#b0b0b0"),
        *((run_label(r), r, r, method_colour(r)) for r in runs),
    ]
    width = 0.8 / len(entries)
    fig, axes = plt.subplots(2, 1, sharex=True, figsize=(max(7.0, 1.1 * len(groups) + 2) + 3.5, 7.2))
    for ax, (label_y, reading, _) in zip(axes, _READINGS):
        for j, (label, run, result, color) in enumerate(entries):
            xs, heights, below, above = [], [], [], []
            for i, (_, where, measure) in enumerate(groups):
                bar = _bar(run, result, where, measure, common, reading)
                if bar is not None:
                    value, low, high = bar
                    xs.append(i - 0.4 + width * (j + 0.5))
                    heights.append(value)
                    below.append(max(value - low, 0.0))
                    above.append(max(high - value, 0.0))
            ax.bar(xs, heights, width, label=label, color=color, zorder=2)
            ax.errorbar(xs, heights, yerr=[below, above], fmt="none", ecolor="#333333", elinewidth=0.8, zorder=3)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(label_y)
        ax.grid(axis="y", alpha=0.3, zorder=1)
    axes[-1].set_xticks(range(len(groups)))
    axes[-1].set_xticklabels([header.replace(", ", ",\n") for header, _, _ in groups], fontsize=8)
    axes[0].set_title(
        f"{title} (unseen by all: {' '.join(common) or 'none'}; whiskers: 95% bootstrap over edited cases)",
        fontsize=10,
    )
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda temp: fig.savefig(temp, format="png", dpi=120))
    plt.close(fig)
