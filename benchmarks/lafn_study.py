"""Do language-agnostic factual neurons exist in Gemma-3-270M, where, and does editing them transfer?

Part 1 (location): for N MzsRE facts in all 12 languages, locate the neurons each fact activates in every
language (src + rephrase), with the generic neurons of 40 other facts removed, and compare with a shuffled-fact
control (each language's prompts taken from a different fact). Writes the layer distribution and the
language-overlap heatmap as PNGs.

Part 2 (editing): the same facts edited one at a time from the base model with LAFN (multilingual: every language
given; cross-lingual: English + the augmentation languages) and with MPN (English + the same augmentation
languages), each judged by `peft_mpn.metrics.Judge` (the tables only format its scores). Per language: does the
new answer win (exact match under teacher forcing), split into translated and copied targets, plus locality on
each fact's own unrelated question in every language.

    python benchmarks/lafn_study.py --num-facts 50 --output results/lafn_study.json --plots docs/img
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from peft_mpn import EditRequest, MPNConfig  # noqa: E402
from peft_mpn.data import load_mzsre  # noqa: E402
from peft_mpn.editing import LAFNEditor, LAFNEditorConfig, MPNEditor, MPNEditorConfig  # noqa: E402
from peft_mpn.locating import LocatorConfig, estimate_generic_neurons, locate_neurons  # noqa: E402
from peft_mpn.metrics import Judge, exact_matches  # noqa: E402
from peft_mpn.models import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MULTILINGUAL = "LAFN (all languages given)"


def shuffled(facts: list[EditRequest], offset: int) -> EditRequest:
    """Fact ``offset``'s edit-language view with every other language taken from a different fact."""
    views = {}
    for number, language in enumerate(facts[offset].languages):
        views[language] = facts[(offset + number) % len(facts)].views[language]
    return EditRequest(views=views, edit_language=facts[offset].edit_language, case_id=f"shuffled-{offset}")


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def study_location(model, tokenizer, facts, references, config, progress) -> dict:
    languages = facts[0].languages
    generic = estimate_generic_neurons(model, tokenizer, references, languages, config)
    layers = generic.layers
    result = {"layers": layers, "languages": languages, "real": [], "shuffled": [], "overlap": {}}
    pair_sums: dict[tuple[str, str], list[float]] = {}
    for offset, fact in enumerate(tqdm(facts, desc="locating", disable=not progress)):
        for kind, request in (("real", fact), ("shuffled", shuffled(facts, offset))):
            try:
                location = locate_neurons(model, tokenizer, request, config, reference_requests=generic)
                counts = {layer: len(location.neurons.get(layer, [])) for layer in layers}
            except ValueError:  # no language-agnostic neuron at all
                location, counts = None, dict.fromkeys(layers, 0)
            result[kind].append(counts)
            if kind == "real" and location is not None:
                flat = {
                    lang: {(layer, n) for layer, ns in sets.items() for n in ns}
                    for lang, sets in location.per_language.items()
                }
                for a in languages:
                    for b in languages:
                        pair_sums.setdefault((a, b), []).append(jaccard(flat[a], flat[b]))
    result["overlap"] = {f"{a}|{b}": statistics.mean(v) for (a, b), v in pair_sums.items()}
    return result


def plot_location(location: dict, folder: Path, model: str | None = None) -> list[str]:
    """The layer distribution and the language-overlap heatmap as PNGs in `folder` (another model than the default:
    its name in the titles and the file names)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    layers = location["layers"]
    real = [
        statistics.mean(c[str(layer)] if str(layer) in c else c[layer] for c in location["real"]) for layer in layers
    ]
    control = [
        statistics.mean(c[str(layer)] if str(layer) in c else c[layer] for c in location["shuffled"])
        for layer in layers
    ]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.4
    ax.bar([x - width / 2 for x in range(len(layers))], real, width, label="same fact in every language")
    ax.bar([x + width / 2 for x in range(len(layers))], control, width, label="shuffled facts (control)")
    ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("language-agnostic neurons per fact")
    ax.set_title(f"{model or 'Gemma-3-270M'}, {len(location['real'])} MzsRE facts, generic neurons removed")
    ax.legend()
    fig.tight_layout()
    suffix = "" if model is None else "_" + model.replace("/", "-")
    layers_png = folder / f"lafn_layers{suffix}.png"
    fig.savefig(layers_png, dpi=120)
    plt.close(fig)

    languages = location["languages"]
    matrix = [[location["overlap"].get(f"{a}|{b}", 0.0) for b in languages] for a in languages]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(languages)), languages)
    ax.set_yticks(range(len(languages)), languages)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.5 else "black"
            )
    ax.set_title(f"{model or 'Gemma-3-270M'}: Jaccard overlap of per-language sets", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    overlap_png = folder / f"lafn_overlap{suffix}.png"
    fig.savefig(overlap_png, dpi=120)
    plt.close(fig)
    return [str(layers_png), str(overlap_png)]


def study_editing(
    model,
    tokenizer,
    facts,
    memory_facts,
    references,
    augment,
    locator,
    progress,
    patch_plan="per_language",
    lafn_max_steps=100,
) -> dict:
    """Edit each fact from the base model with each method; `results[method]` holds the judge's `scores` of the
    edits that ran (None if none did) and per case its outcome (`status`, ...) or the locator's `error`."""
    judge = Judge(tokenizer, augment_languages=augment)
    before = judge.reference(model, facts, progress=progress)  # the base model; keeps its locality answers
    results: dict[str, dict] = {"before": {"scores": judge.scores(before), "cases": {}}}
    methods = {
        MULTILINGUAL: lambda: LAFNEditor(
            model, tokenizer, LAFNEditorConfig(locator=locator, max_steps=lafn_max_steps), progress=False
        ),
        "LAFN (en + aug)": lambda: LAFNEditor(
            model,
            tokenizer,
            LAFNEditorConfig(locator=locator, train_languages=["en", *augment], max_steps=lafn_max_steps),
            reference_requests=references,
            progress=False,
        ),
    }
    timings: dict[str, list[float]] = {}
    for name, make in methods.items():
        editor = make()
        editor.add_unrelated_from_requests(memory_facts)
        rows, cases = [], {}
        for fact in tqdm(facts, desc=name, disable=not progress):
            start = time.perf_counter()
            try:
                outcome = editor.edit(fact)
            except ValueError as error:  # no language-agnostic neuron found
                cases[fact.case_id] = {"error": str(error)}
                continue
            timings.setdefault(name, []).append(time.perf_counter() - start)
            rows += judge.rows(editor.model, fact)
            cases[fact.case_id] = {
                "status": outcome.status,
                "steps": outcome.steps,
                "seconds": outcome.seconds,
                "neurons": {layer: len(indices) for layer, indices in outcome.neurons.items()},
            }
            editor.reset()
        results[name] = {"scores": judge.scores(rows) if rows else None, "cases": cases}
    mpn = MPNEditor(
        model,
        tokenizer,
        MPNEditorConfig(augment_languages=list(augment), patch_plan=patch_plan),
        peft_config=MPNConfig(),
        progress=False,
    )
    mpn.add_unrelated_from_requests(memory_facts)
    rows, cases = [], {}
    for fact in tqdm(facts, desc="MPN", disable=not progress):
        start = time.perf_counter()
        outcome = mpn.edit(fact)
        timings.setdefault("MPN (en + aug)", []).append(time.perf_counter() - start)
        rows += judge.rows(mpn.model, fact)
        cases[fact.case_id] = {"status": outcome.status, "steps": outcome.steps}
        mpn.reset()
    results["MPN (en + aug)"] = {"scores": judge.scores(rows), "cases": cases}
    return {"results": results, "seconds_per_edit": {k: statistics.median(v) for k, v in timings.items()}}


def wins(scores: dict | None, languages: list[str], measure: str) -> tuple[int, int]:
    """Facts that win on `measure`, and facts judged, pooled over `languages` (the judge's counts)."""
    counts = [exact_matches(scores, lang, measure) for lang in languages] if scores is not None else []
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def judged_languages(editing: dict) -> list[str]:
    """The languages the judge scored, the edit language first."""
    return list(editing["results"]["before"]["scores"]["per_language"])


def editing_table(editing: dict, languages: list[str], augment: list[str]) -> str:
    methods = list(editing["results"])
    lines = [
        "| language | seen by MPN / LAFN (en + aug) | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for language in languages:
        seen = "edit language" if language == "en" else ("yes" if language in augment else "no")
        cells = []
        for method in methods:
            scores = editing["results"][method]["scores"]
            if language == "en":
                cells.append("{}/{}".format(*wins(scores, [language], "reliability")))
            else:
                t, c = (wins(scores, [language], f"reliability_{kind}") for kind in ("translated", "copied"))
                cells.append(f"{t[0]}/{t[1]} ({c[0]}/{c[1]})")
        lines.append(f"| {language} | {seen} | " + " | ".join(cells) + " |")
    locality = [_locality(editing["results"][method]["scores"]) for method in methods]
    lines.append("| locality | | " + " | ".join(locality) + " |")
    failed = [sum("error" in c for c in editing["results"][m]["cases"].values()) for m in methods]
    lines.append("| no neurons found | | " + " | ".join(str(f) for f in failed) + " |")
    return "\n".join(lines)


def _locality(scores: dict | None) -> str:
    """The judge's locality averaged over languages ('-' for the unedited model or a method that edited nothing)."""
    value = None if scores is None else scores["average"]["locality"]
    return "-" if value is None else f"{value:.3f}"


def summary_table(editing: dict, languages: list[str], augment: list[str]) -> str:
    """One row per method: wins pooled over the edit language, seen and unseen languages, by target kind.

    "Seen" are the languages a method trained on besides English: every language for multilingual LAFN (so it has
    no unseen column), the augmentation languages for the others.
    """
    lines = [
        "| method | en | seen translated | seen copied | unseen translated | unseen copied | locality | "
        "edited / unfixed / no neurons | median s / edit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, result in editing["results"].items():
        scores, cases = result["scores"], result["cases"]
        seen = [lang for lang in languages if lang != "en" and (lang in augment or method == MULTILINGUAL)]
        groups = {"seen": seen, "unseen": [lang for lang in languages if lang not in ["en", *seen]]}
        tallies = {("en", "translated"): wins(scores, ["en"], "reliability")}
        for group, langs in groups.items():
            for kind in ("translated", "copied"):
                tallies[group, kind] = wins(scores, langs, f"reliability_{kind}")
        cells = {key: f"{won}/{total} ({won / total:.0%})" if total else "-" for key, (won, total) in tallies.items()}
        statuses = [c.get("status") for c in cases.values()]
        outcome = (
            f"{statuses.count('edited')} / {statuses.count('unfixed')} / {sum('error' in c for c in cases.values())}"
            if any(statuses)
            else "-"
        )
        seconds = editing.get("seconds_per_edit", {}).get(method)
        lines.append(
            f"| {method} | {cells['en', 'translated']} | {cells['seen', 'translated']} | "
            f"{cells['seen', 'copied']} | {cells['unseen', 'translated']} | {cells['unseen', 'copied']} | "
            f"{_locality(scores)} | {outcome} | {f'{seconds:.1f}' if seconds else '-'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mzsre"))
    parser.add_argument("--num-facts", type=int, default=50)
    parser.add_argument("--references", type=int, default=40, help="facts (cases 100..) for the generic set")
    parser.add_argument("--augment-languages", nargs="*", default=["de", "fr", "es", "ru", "zh"])
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--language-vote", type=float, default=0.75)
    parser.add_argument(
        "--template", default=None, help='read every language at a template slot, e.g. "Q: {prompt}\\nA:"'
    )
    parser.add_argument(
        "--layers", type=int, nargs="*", default=None, help="blocks the locator searches (default: all)"
    )
    parser.add_argument(
        "--single-prompt-languages",
        action="store_true",
        help="locate on the prompt alone in languages whose rephrase equals it (MzsRE: 123-194 cases per language)",
    )
    parser.add_argument("--mpn-patch-plan", default="per_language", choices=["edit", "per_language"])
    parser.add_argument("--lafn-max-steps", type=int, default=100, help="LAFN step budget per edit")
    parser.add_argument("--skip-location", action="store_true")
    parser.add_argument(
        "--tables-from",
        default=None,
        help="print the editing tables of an earlier run's JSON (written by this version: the judge's scores); "
        "run nothing",
    )
    parser.add_argument("--skip-editing", action="store_true")
    parser.add_argument("--output", default="results/lafn_study.json")
    parser.add_argument("--plots", default=str(REPO / "docs" / "img"))
    args = parser.parse_args()
    if args.tables_from:
        editing = json.loads(Path(args.tables_from).read_text())["editing"]
        languages = judged_languages(editing)
        print(summary_table(editing, languages, args.augment_languages))
        print(editing_table(editing, languages, args.augment_languages))
        return

    torch.manual_seed(0)
    model, tokenizer = load_model(args.model)
    facts = load_mzsre(args.data, limit=args.num_facts)
    references = load_mzsre(args.data, start=100, limit=args.references)
    memory_facts = load_mzsre(args.data, start=400, limit=20)
    config = LocatorConfig(
        top_k=args.top_k,
        language_vote=args.language_vote,
        generic_facts_fraction=0.2,
        template=args.template,
        layers=args.layers,
        require_paraphrases=not args.single_prompt_languages,
    )
    report: dict = {"args": vars(args), "torch_threads": torch.get_num_threads()}
    if not args.skip_location:
        report["location"] = study_location(model, tokenizer, facts, references, config, progress=True)
        location = json.loads(json.dumps(report["location"]))
        report["plots"] = plot_location(location, Path(args.plots), args.model)
    if not args.skip_editing:
        report["editing"] = study_editing(
            model,
            tokenizer,
            facts,
            memory_facts,
            references,
            args.augment_languages,
            config,
            True,
            patch_plan=args.mpn_patch_plan,
            lafn_max_steps=args.lafn_max_steps,
        )
        languages = judged_languages(report["editing"])
        report["editing_table"] = editing_table(report["editing"], languages, args.augment_languages)
        report["summary_table"] = summary_table(report["editing"], languages, args.augment_languages)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    if "location" in report:
        print_location(report)
    if "editing_table" in report:
        print(report["summary_table"])
        print(report["editing_table"])
        print("median s / edit:", report["editing"]["seconds_per_edit"])


def print_location(report: dict) -> None:
    layers = report["location"]["layers"]
    real = [statistics.mean(c[layer] for c in report["location"]["real"]) for layer in layers]
    control = [statistics.mean(c[layer] for c in report["location"]["shuffled"]) for layer in layers]
    print("layer  real  shuffled")
    for layer, r, c in zip(layers, real, control):
        print(f"{layer:>5}  {r:5.1f}  {c:8.1f}")
    print(f"total  {sum(real):5.1f}  {sum(control):8.1f}")
    print("plots:", report["plots"])


if __name__ == "__main__":
    main()
