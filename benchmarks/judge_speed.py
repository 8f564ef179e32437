"""Seconds to judge one case on the real model, per scoring configuration, in one run.

Judging (teacher-forced scoring of every probe of a case in every language) is most of a ``peft-mpn bench``
run's time. Configurations: ``decisions@N`` is ``score_targets`` at batch size N (the output layer sees only
the positions that predict a target token); ``window@N`` runs the output layer on the whole ``logits_to_keep``
window instead (the scoring before that change); ``all@N`` runs it on every position of the input. An ``icl:``
prefix judges the in-context editor's model holding the case's own fact (the ICL bench runs' setting):
``icl:decisions@N`` is its scoring now, ``icl:all@N`` its scoring before it passed ``logits_to_keep`` on. The
same cases are scored in every configuration, interleaved case by case so that load drift hits them alike, and
every configuration must give the same rows as the first one that judges the same model. Run from the repository
root::

    HF_HUB_OFFLINE=1 python benchmarks/judge_speed.py --output results/judge_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see edit_speed.py: spin-waiting is slow on a busy machine

import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from transformers.modeling_outputs import CausalLMOutputWithPast  # noqa: E402

from peft_mpn.data import load_edit_requests  # noqa: E402
from peft_mpn.editing import ICLEditorConfig, InContextModel  # noqa: E402
from peft_mpn.metrics import metric_rows  # noqa: E402
from peft_mpn.models import load_model  # noqa: E402

BMIKE_LANGUAGES = "en de fr es ru zh ja ar hi th tr vi ko he el uk".split()  # run_results.sh's set


class OwnLogits(nn.Module):
    """The model without ``get_output_embeddings``, so scoring reads the logits it returns.

    ``window=True``: the model computes the ``logits_to_keep`` window; ``False``: every position, cut afterwards.
    """

    def __init__(self, model: nn.Module, window: bool) -> None:
        super().__init__()
        self.model = model
        self.window = window

    def forward(self, input_ids, attention_mask, position_ids, logits_to_keep=0):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        if self.window:
            return self.model(**inputs, logits_to_keep=logits_to_keep)
        logits = self.model(**inputs, logits_to_keep=0).logits
        return CausalLMOutputWithPast(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


def scorers(model: nn.Module, in_context: InContextModel) -> dict[str, nn.Module]:
    """Configuration name (without ``@N``) -> the module ``score_targets`` is given."""
    return {
        "decisions": model,
        "window": OwnLogits(model, window=True),
        "all": OwnLogits(model, window=False),
        "icl:decisions": in_context,
        "icl:all": OwnLogits(in_context, window=False),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Model name or path (default: the offline Gemma-3-270M).")
    parser.add_argument("--data", default="../shared/data/bmike53", help="The dataset's folder.")
    parser.add_argument("--dataset", default="bmike53", choices=["bmike53", "mzsre", "bizsre"])
    parser.add_argument("--split", default="zsre", help="BMIKE-53 split.")
    parser.add_argument("--languages", nargs="+", default=BMIKE_LANGUAGES)
    parser.add_argument("--cases", type=int, default=6, help="Cases judged in every configuration.")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["decisions@16", "window@16", "decisions@32", "decisions@64"],
        help="[icl:]decisions@N, window@N or all@N (see the module docstring); ratios are against the first.",
    )
    parser.add_argument("--output", type=Path, default=Path("results/judge_speed.json"))
    args = parser.parse_args(argv)

    model, tokenizer = load_model(args.model, progress=False)
    in_context = InContextModel(model, tokenizer, ICLEditorConfig())
    models = scorers(model, in_context)
    unknown = [name for name in args.configs if name.split("@")[0] not in models or "@" not in name]
    if unknown:
        parser.error(f"unknown configurations {unknown}; use NAME@BATCH_SIZE with NAME one of {sorted(models)}")
    configs = {name: (models[name.split("@")[0]], int(name.split("@")[1])) for name in args.configs}
    split = {"split": args.split} if args.dataset == "bmike53" else {}
    requests = load_edit_requests(args.data, args.dataset, languages=args.languages, **split)
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    rows: dict[str, list] = {name: [] for name in configs}
    in_context.add_fact(requests[0].edit.prompt, requests[0].edit.target)
    for scorer, size in configs.values():  # warm-up
        metric_rows(scorer, tokenizer, requests[0], languages=args.languages, batch_size=size)
    for request in tqdm(requests[1 : 1 + args.cases], desc="cases"):
        in_context.clear()
        in_context.add_fact(request.edit.prompt, request.edit.target)
        for name, (scorer, size) in configs.items():
            start = time.perf_counter()
            rows[name].append(metric_rows(scorer, tokenizer, request, languages=args.languages, batch_size=size))
            seconds[name].append(time.perf_counter() - start)

    reference = args.configs[0]
    judged = {name: name.split(":")[0] if ":" in name else "" for name in args.configs}  # "icl" or "" (the model)
    same_model_first = {name: next(n for n in args.configs if judged[n] == judged[name]) for name in args.configs}
    summary = {
        name: {
            "seconds_per_case_median": statistics.median(seconds[name]),
            "time_vs_first": statistics.median(a / b for a, b in zip(seconds[name], seconds[reference])),
            "same_rows_as": same_model_first[name],
            "same_rows": rows[name] == rows[same_model_first[name]],
        }
        for name in configs
    }
    report = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "probes_per_case": statistics.median(len(r) for r in rows[reference]),
        "torch_threads": torch.get_num_threads(),
        "load_average_end": os.getloadavg(),
        "configs": summary,
        "seconds": seconds,
    }
    table = [
        f"{len(rows[reference])} cases, {report['probes_per_case']:.0f} probes per case, "
        f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}",
        "",
        f"| configuration | s / case (median) | time / {reference}'s (median over cases) | same rows as |",
        "|---:|---:|---:|---|",
        *(
            f"| {name} | {row['seconds_per_case_median']:.2f} | {row['time_vs_first']:.2f} "
            f"| {row['same_rows_as']}: {'yes' if row['same_rows'] else 'NO'} |"
            for name, row in summary.items()
        ),
    ]
    print("\n".join(table))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    args.output.with_suffix(".md").write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
