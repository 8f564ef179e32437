"""The GPU check: on a machine with CUDA, the GPU-marked tests, then seconds per edit and peak GPU memory of
MPN, T-Patcher and FT-M on Gemma-3-270M in bfloat16, each edit judged as `peft-mpn bench` judges it.

Run from the repository root on a CUDA machine::

    python benchmarks/gpu_check.py --output results/gpu_check.json
    python benchmarks/gpu_check.py --architecture FOLDER --output ...   # config + tokenizer only: random weights

``--architecture`` builds the model from a folder holding its ``config.json`` and tokenizer files, with random
weights, for a machine the real weights cannot reach (seconds per optimisation step and memory are those of the
real model; steps per edit and every score are not, and the report says so). The edited facts are the BMIKE-53
sample bundled with the package (or ``--data``), so nothing else needs to travel. The Markdown summary goes to
stdout and next to the JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model name or path (default: the offline Gemma-3-270M)")
    parser.add_argument(
        "--architecture", default=None, help="a folder with config.json and the tokenizer: random weights instead"
    )
    parser.add_argument("--data", default=None, help="a benchmark folder (default: the bundled BMIKE-53 sample)")
    parser.add_argument("--methods", nargs="+", default=["mpn", "t-patcher", "ft-m"])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--num-edits", type=int, default=8, help="edits per method, each from the unedited model")
    parser.add_argument("--memory-cases", type=int, default=8, help="other cases that fill MPN's memory bank")
    parser.add_argument("--skip-tests", action="store_true", help="skip the GPU-marked tests")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu for a dry run of the script")
    parser.add_argument("--output", default="results/gpu_check.json", help="JSON path; the .md goes next to it")
    return parser.parse_args(argv)


def run_gpu_tests() -> dict[str, Any]:
    """`pytest -m gpu`: every editor on CUDA in float32 and bfloat16 (tests/test_devices.py)."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "--tb=short", "-p", "no:cacheprovider", "tests"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return {
        "command": " ".join(command[1:]),
        "returncode": done.returncode,
        "summary": lines[-1] if lines else "",
        "failures": [line for line in lines if line.startswith(("FAILED", "ERROR"))],
        "seconds": time.perf_counter() - started,
        "output": "\n".join(lines),
    }


def load(args: argparse.Namespace, dtype: Any) -> tuple[Any, Any, str]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from peft_mpn.models import load_model

    if args.architecture is None:
        model, tokenizer = load_model(args.model, dtype=dtype, progress=False)
        return model.to(args.device).eval(), tokenizer, "real"
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(args.architecture)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(args.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.architecture)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, "random (architecture only)"


def measure(method: str, base: Any, tokenizer: Any, requests: list, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from peft_mpn.bench import run_benchmark
    from peft_mpn.editing import DEFAULT_AUGMENT, editor_spec

    available = requests[0].languages
    spec = editor_spec(method)
    augment = [lang for lang in DEFAULT_AUGMENT if lang in available] if spec.augments_by_default else []
    model = copy.deepcopy(base)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = run_benchmark(
        model,
        tokenizer,
        requests,
        method=method,
        num_edits=args.num_edits,
        augment_languages=augment,
        memory_cases=args.memory_cases,
        progress=False,
    )
    if cuda:
        torch.cuda.synchronize()
    edits = result["edits"]
    seconds = [edit["seconds"] for edit in edits]
    steps = [edit["steps"] for edit in edits]
    en = result["per_language"].get(result["edit_language"], {})
    return {
        "method": method,
        "augment_languages": augment,
        "seconds_per_edit_median": statistics.median(seconds),
        "seconds_per_edit_mean": statistics.fmean(seconds),
        "steps_median": statistics.median(steps),
        "seconds_per_step": sum(seconds) / max(1, sum(steps)),
        "held": sum(1 for edit in edits if edit["success"]),
        "edits": len(edits),
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "reliability_em": en.get("reliability_em"),
        "reliability_gen": en.get("reliability_gen"),
        "locality_em": en.get("locality_em"),
        "wall_seconds": time.perf_counter() - started,
    }


def markdown(report: dict[str, Any]) -> str:
    tests = report.get("tests")
    lines = [
        f"GPU check on {report['device']} (torch {report['torch']}, {report['dtype']}, weights: {report['weights']}; "
        f"{report['num_edits']} single edits per method from {report['data']})",
        "",
        f"GPU-marked tests: {tests['summary']}" if tests else "GPU-marked tests: skipped",
        "",
        "| method | s/edit (median) | s/step | steps (median) | held | peak GPU memory | reliability exact (en) "
        "| locality exact (en) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["methods"]:
        if "error" in row:
            lines.append(f"| {row['method']} | failed: {row['error']} |  |  |  |  |  |  |")
            continue
        lines.append(
            f"| {row['method']} | {row['seconds_per_edit_median']:.2f} | {row['seconds_per_step']:.3f} | "
            f"{row['steps_median']:g} | {row['held']}/{row['edits']} | {_gib(row['peak_gpu_memory_gib'])} | "
            f"{_rate(row['reliability_em'])} | {_rate(row['locality_em'])} |"
        )
    if report["weights"] != "real":
        lines += ["", "Random weights: seconds per step and memory are the architecture's; steps and scores are not."]
    return "\n".join(lines)


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} GiB"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA device; this torch sees none (--device cpu: a dry run of the script)")
    from peft_mpn.data import load_bundled_sample, load_edit_requests

    tests = None if args.skip_tests else run_gpu_tests()
    dtype = getattr(torch, args.dtype)
    base, tokenizer, weights = load(args, dtype)
    wanted = args.num_edits + args.memory_cases
    requests = load_bundled_sample() if args.data is None else load_edit_requests(args.data, limit=wanted)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
        "torch": torch.__version__,
        "dtype": args.dtype,
        "weights": weights,
        "model": args.architecture or args.model or "gemma-3-270m",
        "data": args.data or "the bundled BMIKE-53 sample",
        "num_edits": args.num_edits,
        "tests": tests,
        "methods": [],
    }
    for method in args.methods:
        try:
            report["methods"].append(measure(method, base, tokenizer, requests, args))
        except Exception as exc:  # one method's failure must not hide the others' numbers
            report["methods"].append({"method": method, "error": f"{type(exc).__name__}: {exc}"[:300]})
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str))
    table = markdown(report)
    output.with_suffix(".md").write_text(table + "\n")
    print(table)
    return report


if __name__ == "__main__":
    main()
