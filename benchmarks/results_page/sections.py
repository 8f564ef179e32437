"""The Markdown of the results page: coverage, the MPN-vs-T-Patcher headline, a section per dataset × mode,
the classifier-editing section."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .runs import (
    SUMMARY,
    TRANSFER,
    augmentation_kind,
    generality_not_held_out,
    language_average,
    run_label,
    run_name,
    unedited,
    unseen_by_every_run,
)
from .stats import BOOTSTRAP_SAMPLES, format_difference, paired_difference


def run_times(runs: Sequence[Mapping[str, Any]]) -> str:
    """`` (with N torch CPU threads the runs here took A to B minutes each, ...)`` from their ``wall_seconds``."""
    minutes = [run["wall_seconds"] / 60 for run in runs if run.get("wall_seconds")]
    if not minutes:
        return ""
    span = f"{min(minutes):.0f} to {max(minutes):.0f}"
    threads = sorted({run["torch_threads"] for run in runs if run.get("torch_threads")})
    where = f"with {'/'.join(map(str, threads))} torch CPU threads " if threads else ""
    return f" ({where}the runs here took {span} minutes each, judging included)"


def patch_activations(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Which activation the MPN / T-Patcher runs' patches had: a run made before `adapter_options` was recorded
    predates the relu default and used the FFN's own activation."""
    counts: dict[str, int] = {}
    for run in runs:
        if run.get("method") in ("mpn", "t-patcher"):
            options = run.get("adapter_options")
            name = "the FFN's own (made before the relu default)" if options is None else options.get("activation")
            name = {None: "relu", "ffn": "the FFN's own"}.get(name, name)
            counts[name] = counts.get(name, 0) + 1
    if not counts:
        return []
    held = "; ".join(f"{name}: {count} run{'s' * (count != 1)}" for name, count in counts.items())
    return [f"MPN and T-Patcher patch activation ([why it matters](mpn_patch_plans.md#patch-activation)): {held}.", ""]


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
    token = format_difference(paired_difference(mpn, patcher, languages, probe, copied))
    exact = format_difference(paired_difference(mpn, patcher, languages, probe, copied, exact=True))
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
    lines += generality_not_held_out(runs)
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


def classifier_section(report: Mapping[str, Any]) -> list[str]:
    """The classifier-editing section: ``classifier_task.py``'s own table and how it was made."""
    here = str(Path(__file__).resolve().parents[1])
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
