"""The lifelong section: streams measured every so many edits (`peft-mpn bench --sequential --curve-every N`).

One plot puts every method's curves side by side against the number of edits (each method in its fixed colour),
a bottom line reads the last point, and each run's own curve table follows (`peft_mpn.bench.curve_report`, the
same table `peft-mpn bench` writes next to its results).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peft_mpn.bench.curve_report import curve_markdown, format_rate, read, wilson
from peft_mpn.files import atomic_write

from .plots import method_colour
from .runs import dataset_label, run_label

#: The plot's panels: (title, where a point holds it, the edit-language count that gives its Wilson interval).
PANELS = (
    ("retention, edit language (exact; dashed: every edit made)", ("per_language", "{edit}", "reliability_em"),
     "reliability"),
    ("retention, trained languages, translated (exact)", ("metrics", "average_augment", "reliability_translated_em"),
     None),
    ("locality, every judged language (generated)", ("metrics", "average", "locality_gen"), None),
    ("seconds per edit (median over the window)", ("seconds_per_edit_median",), None),
)  # fmt: skip


def _streams(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Runs with curve points, by dataset (and number of edits), methods in label order."""
    found: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        if run.get("curve"):
            found.setdefault(f"{dataset_label(run)}, {run['num_edits']} edits", []).append(run)
    return {title: sorted(group, key=run_label) for title, group in sorted(found.items())}


def _interval(run: Mapping[str, Any], point: Mapping[str, Any]) -> str:
    edit = run["edit_language"]
    bounds = wilson(read(point, PANELS[0][1], edit), point["counts"].get(edit, {}).get("reliability", 0))
    return "" if bounds is None else f" [{bounds[0]:.2f}, {bounds[1]:.2f}]"


def bottom_line(title: str, runs: Sequence[Mapping[str, Any]]) -> str:
    """One sentence per run, read from its last curve point."""
    said = []
    for run in runs:
        last, edit = run["curve"][-1], run["edit_language"]
        trained = read(last, PANELS[1][1], edit)
        every = last.get("retention_all")
        said.append(
            f"{run_label(run)} keeps {format_rate(read(last, PANELS[0][1], edit))}{_interval(run, last)} of the "
            f"sampled earlier edits in {edit}"
            + ("" if every is None else f" ({format_rate(every)} of all {last['edits']}, teacher-forced)")
            + ("" if trained is None else f" and {format_rate(trained)} in its trained languages (translated answers)")
            + f", leaves {format_rate(read(last, PANELS[2][1], edit))} of unrelated continuations unchanged, at "
            f"{format_rate(read(last, PANELS[3][1], edit))} s an edit"
        )
    judged = len(runs[0]["curve"][-1]["judged_cases"])
    return f"**{title}**, after the last edit ({judged} edited cases judged, exact match, 95% Wilson interval): " + (
        "; ".join(said) + "."
    )


def plot_streams(runs: Sequence[Mapping[str, Any]], title: str, path: Path) -> None:
    """A 2 × 2 grid of `PANELS` against the number of edits, a line per run in its method's colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for axis, (name, where, counted) in zip(axes.flat, PANELS):
        for run in runs:
            edit, curve = run["edit_language"], run["curve"]
            points = [(p["edits"], read(p, where, edit), p) for p in curve]
            points = [(x, v, p) for x, v, p in points if v is not None]
            if not points:
                continue
            colour = method_colour(run)
            axis.plot([x for x, _, _ in points], [v for _, v, _ in points], marker="o", color=colour,
                      label=run_label(run))  # fmt: skip
            if counted:  # and every edit made so far (teacher-forced, edit language), dashed
                every = [(p["edits"], p["retention_all"]) for p in curve if p.get("retention_all") is not None]
                if every:
                    axis.plot([x for x, _ in every], [v for _, v in every], linestyle="--", color=colour)
                bounds = [(x, wilson(v, p["counts"].get(edit, {}).get(counted, 0))) for x, v, p in points]
                bounds = [(x, b) for x, b in bounds if b is not None]
                if bounds:
                    axis.fill_between([x for x, _ in bounds], [b[0] for _, b in bounds], [b[1] for _, b in bounds],
                                      color=colour, alpha=0.15)  # fmt: skip
        axis.set_title(name, fontsize=9)
        axis.grid(alpha=0.3)
        if where[0] != "seconds_per_edit_median":
            axis.set_ylim(0, 1.05)
    for axis in axes[-1]:
        axis.set_xlabel("edits made")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{title}: every method's stream, measured on its way", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda temp: fig.savefig(temp, format="png", dpi=110))
    plt.close(fig)


def lifelong_section(runs: Sequence[Mapping[str, Any]], img: Path) -> list[str]:
    """The page's lifelong section (empty when no run has curve points); plots go to `img`."""
    streams = _streams(runs)
    if not streams:
        return []
    lines = [
        "## Edits in a row: the lifelong curves",
        "",
        "Each stream edits its cases one after another and is measured every so many edits on a seeded sample of "
        "the cases edited so far (the same cases from one point to the next, so a curve follows the same facts): "
        "retention of the earlier edits, locality on those cases' own unrelated questions (which no memory bank "
        "holds), seconds per edit, the memory bank's and the adapter's size, and the edited model's speed.",
        "",
    ]
    for title, group in streams.items():
        slug = "".join(c if c.isalnum() else "_" for c in f"lifelong_{title}".lower()).strip("_")
        plot_streams(group, title, img / f"{slug}.png")
        lines += [bottom_line(title, group), "", f"![{title}](img/{slug}.png)", ""]
        for run in group:
            table = curve_markdown(run)
            lines += [f"### {run_label(run)}", *table[2:], ""]  # its own heading replaced by the run's label
    return lines
