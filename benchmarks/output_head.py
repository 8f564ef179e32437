"""The output layer on a strided vs a contiguous input: why `batching.contiguous_output_head` exists.

Causal LMs apply the output layer to ``hidden[:, -k:]``, a strided view (k = 1 in every ``generate()`` step).
This times ``F.linear`` on that view and on a contiguous copy of it, with Gemma 3's head shape (262144 × 640) and
random weights, in one run::

    python benchmarks/output_head.py --rows 6 --positions 9 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=262144, help="Output rows (Gemma 3: 262144).")
    parser.add_argument("--hidden", type=int, default=640, help="Hidden size (Gemma-3-270M: 640).")
    parser.add_argument("--rows", type=int, default=6, help="Batch rows.")
    parser.add_argument("--sequence", type=int, default=58, help="Sequence length of the hidden states.")
    parser.add_argument("--positions", type=int, default=9, help="Kept final positions (logits_to_keep).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    weight = torch.randn(args.vocab, args.hidden)
    strided = torch.randn(args.rows, args.sequence, args.hidden)[:, -args.positions :, :]
    result = {
        "strided_s": median_seconds(lambda: F.linear(strided, weight), args.repeats),
        "contiguous_s": median_seconds(lambda: F.linear(strided.contiguous(), weight), args.repeats),
    }
    result["ratio"] = result["strided_s"] / result["contiguous_s"]
    print(
        f"{args.rows} rows x {args.positions} positions -> {args.vocab} outputs: strided {result['strided_s']:.3f} s, "
        f"contiguous {result['contiguous_s']:.3f} s ({result['ratio']:.1f}x)"
    )
    return result


if __name__ == "__main__":
    main()
