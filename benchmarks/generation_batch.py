"""Seconds to judge a case on Gemma-3-270M with its greedy generations decoded 16 rows at a time (the judge's
teacher-forced batch, which generation used before) against `GenerationSettings.batch_size` (64), in one run.

Each greedy step reads the whole 262k-row output layer and every weight whatever the batch, so on a CPU more rows
per step cost little. Both settings judge the same BMIKE-53 CounterFact cases, alternating, and must give the same
rows. Run from the repository root::

    HF_HUB_OFFLINE=1 python benchmarks/generation_batch.py --cases 4
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see edit_speed.py: spin-waiting is slow on a busy machine

from peft_mpn.data import load_bmike53  # noqa: E402
from peft_mpn.data.prompts import format_requests, resolve_prompt_format  # noqa: E402
from peft_mpn.metrics import Judge  # noqa: E402
from peft_mpn.metrics.generation import GenerationSettings  # noqa: E402
from peft_mpn.models import load_model  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bmike53"
LANGUAGES = ["en", "de", "fr", "es", "ru", "zh", "ja", "ar"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA), help="the BMIKE-53 folder")
    parser.add_argument("--cases", type=int, default=4, help="CounterFact cases to judge")
    args = parser.parse_args()
    model, tokenizer = load_model(progress=False)
    cases = load_bmike53(args.data, "counterfact", languages=LANGUAGES)[: args.cases]
    cases = format_requests(cases, resolve_prompt_format(None, model))
    seconds: dict[int, float] = {16: 0.0, 64: 0.0}
    rows: dict[int, list] = {16: [], 64: []}
    for case in cases:
        for batch_size in seconds:
            judge = Judge(tokenizer, languages=LANGUAGES, generation=GenerationSettings(batch_size=batch_size))
            start = time.perf_counter()
            rows[batch_size].append(judge.reference(model, [case], progress=False))
            seconds[batch_size] += time.perf_counter() - start
    assert rows[16] == rows[64], "the readings differ between the batch sizes"
    for batch_size, total in seconds.items():
        print(f"generation batch {batch_size}: {total / len(cases):.1f} s per case (unedited model, all probes)")
    print(f"ratio: {seconds[16] / seconds[64]:.2f}x")


if __name__ == "__main__":
    main()
