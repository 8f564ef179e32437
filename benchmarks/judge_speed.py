"""Seconds to judge one case on the real model, per scoring configuration, in one run.

Judging (teacher-forced scoring of every probe of a case in every language) is most of a ``peft-mpn bench``
run's time. Configurations: ``decisions@N`` is ``score_targets`` at batch size N (the output layer sees only
the positions that predict a target token); ``window@N`` runs the output layer on the whole ``logits_to_keep``
window instead (the scoring before that change). The same cases are scored in every configuration, interleaved
case by case so that load drift hits them alike, and every configuration must give the same rows. Run from the
repository root::

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

from peft_mpn.bench import metric_rows  # noqa: E402
from peft_mpn.data import load_edit_requests  # noqa: E402
from peft_mpn.models import load_model  # noqa: E402

BMIKE_LANGUAGES = "en de fr es ru zh ja ar hi th tr vi ko he el uk".split()  # run_results.sh's set


class WindowHead(nn.Module):
    """The model without ``get_output_embeddings``: scoring reads the logits of the whole window."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, logits_to_keep=0):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        return self.model(**inputs, logits_to_keep=logits_to_keep)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Model name or path (default: the offline Gemma-3-270M).")
    parser.add_argument("--data", default="../shared/data/bmike53", help="BMIKE-53 folder.")
    parser.add_argument("--split", default="zsre")
    parser.add_argument("--languages", nargs="+", default=BMIKE_LANGUAGES)
    parser.add_argument("--cases", type=int, default=6, help="Cases judged in every configuration.")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["decisions@16", "window@16", "decisions@32", "decisions@64"],
        help="decisions@N or window@N; ratios are against the first.",
    )
    parser.add_argument("--output", type=Path, default=Path("results/judge_speed.json"))
    args = parser.parse_args(argv)

    model, tokenizer = load_model(args.model, progress=False)
    models = {"decisions": model, "window": WindowHead(model)}
    configs = {name: (models[name.split("@")[0]], int(name.split("@")[1])) for name in args.configs}
    requests = load_edit_requests(args.data, "bmike53", split=args.split, languages=args.languages, strict=False)
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    rows: dict[str, list] = {name: [] for name in configs}
    for scorer, size in configs.values():  # warm-up
        metric_rows(scorer, tokenizer, requests[0], languages=args.languages, batch_size=size)
    for request in tqdm(requests[1 : 1 + args.cases], desc="cases"):
        for name, (scorer, size) in configs.items():
            start = time.perf_counter()
            rows[name].append(metric_rows(scorer, tokenizer, request, languages=args.languages, batch_size=size))
            seconds[name].append(time.perf_counter() - start)

    reference = args.configs[0]
    summary = {
        name: {
            "seconds_per_case_median": statistics.median(seconds[name]),
            "time_vs_first": statistics.median(a / b for a, b in zip(seconds[name], seconds[reference])),
            "same_rows_as_first": rows[name] == rows[reference],
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
        f"| configuration | s / case (median) | time / {reference}'s (median over cases) | same rows |",
        "|---:|---:|---:|---|",
        *(
            f"| {name} | {row['seconds_per_case_median']:.2f} | {row['time_vs_first']:.2f} "
            f"| {row['same_rows_as_first']} |"
            for name, row in summary.items()
        ),
    ]
    print("\n".join(table))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    args.output.with_suffix(".md").write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
