"""Edit latency, memory and inference overhead of the MPN editor on the real model, in one run.

Measures, on MzsRE edits made in English with MPN's cross-lingual augmentation:

1. seconds per edit (median, p10/p90, mean; wall and CPU time), steps per edit and seconds per step for five
   editor configurations: ``cached`` (prefix cache + candidate vocabulary + warm start, the default),
   ``t-patcher-start`` (the same with Transformer-Patcher's key and value start: the before of the warm start),
   ``no-prefix-cache``, ``full-vocab`` and ``baseline`` (both off). Every edit starts from a fresh adapter, the
   same memory bank and the same seed; configurations are interleaved case by case so that load drift hits them
   alike. The slow configurations run on the first ``--slow-edits`` cases only and every ratio is taken on shared
   cases;
2. peak RSS while editing and the size of the memory bank;
3. forward (8 x 32 tokens) and ``generate`` (16 new tokens) latency with the edits' patches vs the unedited
   base;
4. that prefix caching is exact: the same status and steps, and close patches, with and without it.

Run from the repository root::

    HF_HUB_OFFLINE=1 python benchmarks/edit_speed.py --output results/edit_speed.json

The Markdown summary goes to stdout and next to the JSON (``results/edit_speed.md``).

Its parts are in ``speed/`` next to this script: the configurations (``configs``), machine and RSS readings
(``machine``), the timed edits (``measure``), the statistics (``summary``) and the Markdown table (``report``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# With more runnable threads than cores (a shared machine), OpenMP's default spin-waiting made a Gemma-3-270M
# forward 4-5x slower with 2 threads than with 1; passive waiting keeps it at the 1-thread speed or better.
# Set OMP_WAIT_POLICY=ACTIVE in the environment to measure the default behaviour.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The parts live in speed/ next to this file; put it on the path also when the script is loaded by file location.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from speed.configs import DEFAULT_DATA, REFERENCE  # noqa: E402
from speed.machine import busy_processes, machine_info, mb  # noqa: E402
from speed.measure import Bench  # noqa: E402
from speed.report import markdown  # noqa: E402
from speed.summary import exactness, ratios_on_shared_cases, variant_summary  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Model name or path (default: the offline Gemma-3-270M).")
    parser.add_argument(
        "--data", default=None, help=f"MzsRE folder (default: {DEFAULT_DATA} relative to the repository root)."
    )
    parser.add_argument("--num-edits", type=int, default=20, help="Timed edits: MzsRE cases 0..N-1.")
    parser.add_argument(
        "--slow-edits",
        type=int,
        default=5,
        help="Run the configurations other than 'cached' on the first K cases only (K >= N: all of them).",
    )
    parser.add_argument("--layer", type=int, default=-1, help="Block whose FFN is patched (negative: from the end).")
    parser.add_argument("--augment-languages", nargs="*", default=["de", "fr", "es", "ru", "zh"])
    parser.add_argument("--max-steps", type=int, default=None, help="Step budget per edit (default: the editor's).")
    parser.add_argument(
        "--prompt-format",
        default="family",
        help="Prompt format (a peft_mpn.data.PROMPT_FORMATS name or a template; default: the model family's, as "
        "peft-mpn bench uses; 'raw': the data's prompts).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-start", type=int, default=400, help="First MzsRE case of the memory bank.")
    parser.add_argument("--memory-cases", type=int, default=50, help="Cases whose locality prompts form the memory.")
    parser.add_argument(
        "--overhead-edits",
        type=int,
        default=20,
        help="Edits whose patches the inference-overhead measurement carries (0: skip that part).",
    )
    parser.add_argument(
        "--overhead-source",
        choices=["latency", "sequential"],
        default="latency",
        help="'latency': stack the patches the timed 'cached' edits learned (no extra training; forward cost "
        "depends only on the number of patches); 'sequential': run that many fresh sequential edits.",
    )
    parser.add_argument("--repeats", type=int, default=20, help="Repeats of each forward timing (median).")
    parser.add_argument("--generate-repeats", type=int, default=10, help="Repeats of each generate timing.")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads.")
    parser.add_argument("--output", default="results/edit_speed.json", help="JSON path; the .md goes next to it.")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.num_edits < 1:
        parser.error("--num-edits must be at least 1.")
    if args.num_edits > args.memory_start:
        parser.error("The edited cases must stay apart from the memory cases: --num-edits <= --memory-start.")
    args.slow_edits = max(1, min(args.slow_edits, args.num_edits))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every measurement, write the JSON and the Markdown next to it, print the Markdown; returns the report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    machine = machine_info(args.threads)
    started = time.perf_counter()
    bench = Bench(args)
    bench.warm_up()
    records, patches = bench.latency()
    overhead = bench.inference_overhead(patches[REFERENCE]) if args.overhead_edits > 0 else None
    max_steps = args.max_steps or bench.MPNEditorConfig().max_steps
    report = {
        "args": vars(args),
        "model": bench.model.get_base_model().config.name_or_path,
        "prompt_format": bench.template,
        "layer": bench.layer_name,
        "max_steps": max_steps,
        "machine": machine,
        "load_seconds": bench.load_seconds,
        "configs": {name: variant_summary(rows) for name, rows in records.items()},
        "ratios": ratios_on_shared_cases(records),
        "exactness": exactness(records, patches),
        "memory": {
            "bank": bench.memory_info,
            "rss_after_load_mb": mb(bench.rss_after_load),
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        "inference_overhead": overhead,
        "edits": records,
        "load_average_end": os.getloadavg(),
        "other_busy_processes_end": busy_processes(),
        "load_average_edits": statistics.fmean(r["load_average"] for rows in records.values() for r in rows),
        "total_seconds": time.perf_counter() - started,
    }
    bench.rss.close()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str))
    table = markdown(report)
    output.with_suffix(".md").write_text(table + "\n")
    partial = output.with_suffix(".partial.json")
    if partial.exists():
        partial.unlink()
    print(table)
    return report


if __name__ == "__main__":
    main()
