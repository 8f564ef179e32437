"""Can LAFN's cached gate tell an edit from unrelated text? Its statistic on the fact and off it, per layer.

``LAFNConfig(cached=True)`` applies a layer's delta only at tokens where ``mean |a_k|`` over the located neurons
(``LAFNLayer.activation_score``, on the unedited model) exceeds ``activation_threshold``. A gate can keep an edit
local only if that statistic is higher on the fact than on unrelated text. For the bench's first ``--num-edits``
cases (``peft_mpn.bench.select_cases``, the same seed), this script locates each edit's neurons with the bench's
LAFN settings and reads the statistic, layer by layer, at the positions that predict an answer token:

- *trained*: the edit's own prompts in the training languages (the edit language and the augmentation ones);
- *unseen*: the same fact in the other languages (where a gate must fire for the edit to transfer);
- *unrelated*: each case's locality question and answer, in every language (where it must stay shut).

For each (edit, layer) a threshold is put at each of ``--quantiles`` of the trained positions (0.25: the gate fires
on 75% of them), and the script reports the share of unseen and unrelated positions that would fire with it.

    HF_HUB_OFFLINE=1 python benchmarks/lafn_gate.py --output results/lafn_gate.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from peft_mpn.batching import collate_targets, encode_target, pad_token_id, takes_logits_to_keep  # noqa: E402
from peft_mpn.bench import select_cases  # noqa: E402
from peft_mpn.data import load_edit_requests  # noqa: E402
from peft_mpn.editing import editor_config, make_editor  # noqa: E402
from peft_mpn.files import atomic_write_text  # noqa: E402
from peft_mpn.models import load_model  # noqa: E402
from peft_mpn.tuners.ffn import ffn_blocks  # noqa: E402
from peft_mpn.tuners.lafn.layer import LAFNLayer  # noqa: E402

GROUPS = ("trained", "unseen", "unrelated")


def gate_statistics(model: Any, tokenizer: Any, pairs: list[tuple[str, str]], neurons: dict[int, list[int]]):
    """``{layer: [n]}``: the gate statistic of ``neurons`` at every answer-predicting position of ``pairs``."""
    batch = collate_targets(
        [encode_target(tokenizer, prompt, target) for prompt, target in pairs], pad_token_id(tokenizer)
    )
    ffns = ffn_blocks(model, sorted(neurons))
    positions = batch.decision_positions()
    rows, slots = (positions >= 0).nonzero(as_tuple=True)
    statistics_by_layer: dict[int, torch.Tensor] = {}

    def hook(layer: int):
        def capture(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            a = args[0][rows, positions[rows, slots]].detach().float()
            statistics_by_layer[layer] = LAFNLayer.activation_score(a[:, neurons[layer]])

        return capture

    inputs = batch.model_inputs()
    if takes_logits_to_keep(model):  # only the FFN inputs are read: skip the output layer's 262k-wide logits
        inputs["logits_to_keep"] = 1
    handles = [down.register_forward_pre_hook(hook(layer)) for layer, down in ffns.downs.items()]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return statistics_by_layer


def measure(model: Any, tokenizer: Any, requests: list, editor: Any, languages: list[str]) -> list[dict]:
    """One row per (edit, layer): the gate statistic at every position of each group (:data:`GROUPS`)."""
    rows = []
    for request in tqdm(requests, desc="locating and reading the gate"):
        trained = editor.training_languages(request)
        views = {
            "trained": [(request.views[lang].prompt, request.views[lang].target) for lang in trained],
            "unseen": [
                (request.views[lang].prompt, request.views[lang].target)
                for lang in languages
                if lang not in trained and lang in request.views
            ],
            "unrelated": [
                (view.locality_prompt, view.locality_answer)
                for lang, view in request.views.items()
                if lang in languages and view.locality_prompt and view.locality_answer
            ],
        }
        neurons = {layer: indices for layer, indices in editor.locate(request).neurons.items() if indices}
        read = {group: gate_statistics(model, tokenizer, pairs, neurons) for group, pairs in views.items() if pairs}
        for layer in sorted(neurons):
            row: dict[str, Any] = {"case_id": str(request.case_id), "layer": layer, "neurons": list(neurons[layer])}
            row.update({group: [round(float(v), 6) for v in by_layer[layer]] for group, by_layer in read.items()})
            rows.append(row)
    return rows


def firing(rows: list[dict], quantile: float) -> dict[str, float]:
    """Per group, the median over (edit, layer) of the share of positions above that pair's threshold.

    The threshold is the ``quantile`` of the pair's trained positions: at 0.25 the gate fires on 75% of them.
    """
    shares: dict[str, list[float]] = {group: [] for group in GROUPS}
    for row in rows:
        threshold = float(torch.quantile(torch.tensor(row["trained"], dtype=torch.float64), quantile))
        for group in GROUPS:
            if row.get(group):
                shares[group].append(sum(v > threshold for v in row[group]) / len(row[group]))
    return {group: statistics.median(values) for group, values in shares.items() if values}


def summary(rows: list[dict], quantiles: list[float]) -> str:
    edits = len({row["case_id"] for row in rows})
    groups = [group for group in GROUPS if any(row.get(group) for row in rows)]
    lines = [
        f"{edits} edits, {len(rows)} (edit, layer) pairs. Share of positions where the gate fires, with the threshold "
        "at a quantile of each pair's trained positions (median over the pairs):",
        "",
        "| threshold quantile | " + " | ".join(groups) + " |",
        "|---:|" + "---:|" * len(groups),
    ]
    for quantile in quantiles:
        shares = firing(rows, quantile)
        lines.append(f"| {quantile:.2f} | " + " | ".join(f"{shares[group]:.2f}" for group in groups) + " |")
    ratios = [
        statistics.median(row["trained"]) / statistics.median(row["unrelated"])
        for row in rows
        if row.get("unrelated") and statistics.median(row["unrelated"]) > 0
    ]
    if ratios:
        lines += [
            "",
            f"Median statistic, trained / unrelated: {statistics.median(ratios):.2f} (median over the pairs).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Model name or path (default: the offline Gemma-3-270M).")
    parser.add_argument("--dataset", default="mzsre", choices=["mzsre", "bmike53", "bizsre"])
    parser.add_argument("--data", default="../shared/data/mzsre", help="The dataset's folder.")
    parser.add_argument("--split", default=None, help="BMIKE-53 split.")
    parser.add_argument(
        "--languages",
        nargs="+",
        default=None,
        help="Languages to read (default: all in the data; give them for BMIKE-53).",
    )
    parser.add_argument("--edit-language", default="en")
    parser.add_argument("--augment-languages", nargs="*", default=["de", "fr", "es", "ru", "zh"])
    parser.add_argument("--num-edits", type=int, default=10)
    parser.add_argument("--memory-cases", type=int, default=25, help="Reference facts for the generic neurons.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quantiles",
        type=float,
        nargs="+",
        default=[0.1, 0.25, 0.5, 0.75],
        help="Thresholds, as quantiles of the trained positions' statistic (0.25: the gate fires on 75%% of them).",
    )
    parser.add_argument("--output", type=Path, default=Path("results/lafn_gate.json"))
    args = parser.parse_args(argv)
    if not all(0 <= q < 1 for q in args.quantiles):
        parser.error(f"--quantiles are fractions in [0, 1), got {args.quantiles}.")

    kwargs: dict[str, Any] = {"split": args.split} if args.dataset == "bmike53" else {}
    if args.languages:
        kwargs["languages"] = list(dict.fromkeys([args.edit_language, *args.augment_languages, *args.languages]))
    requests = load_edit_requests(args.data, args.dataset, **kwargs)
    languages = list(requests[0].views)
    edit_ids, memory_ids = select_cases(len(requests), args.num_edits, args.seed, args.memory_cases)
    model, tokenizer = load_model(args.model, progress=False)
    model.eval()
    config = editor_config("lafn", train_languages=[args.edit_language, *args.augment_languages])
    editor = make_editor(
        "lafn", model, tokenizer, config, reference_requests=[requests[i] for i in memory_ids], progress=False
    )
    rows = measure(model, tokenizer, [requests[i] for i in edit_ids], editor, languages)
    if not rows:
        raise SystemExit("No edit had located neurons: nothing to read.")
    text = summary(rows, args.quantiles)
    report = {"arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, json.dumps(report, indent=1))
    atomic_write_text(args.output.with_suffix(".md"), text + "\n")
    print(text)
    return report


if __name__ == "__main__":
    main()
