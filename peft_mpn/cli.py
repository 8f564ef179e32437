"""The ``peft-mpn`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(
        model_name=args.model,
        data=args.data,
        num_facts=args.num_facts,
        augment_languages=args.augment_languages,
        layer=args.layer,
        seed=args.seed,
    )
    print()
    print(report.markdown())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    if "--online" not in (sys.argv if argv is None else argv):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a Hub miss otherwise hangs before failing
    # Before torch is imported: OpenMP's spin-waiting makes CPU forwards several times slower on a busy machine.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = argparse.ArgumentParser(prog="peft-mpn", description="Cross-lingual knowledge editing with PEFT.")
    parser.add_argument("--online", action="store_true", help="allow Hugging Face Hub access (off by default)")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="edit real facts in English with MPN and T-Patcher; show every language")
    demo.add_argument("--model", default=None, help="Hub id, local folder or .gguf file (default: Gemma-3-270M)")
    demo.add_argument(
        "--data", default=None, help="MzsRE folder (default: ../shared/data/mzsre, else a bundled sample)"
    )
    demo.add_argument("--num-facts", type=int, default=8)
    from .demo import DEFAULT_AUGMENT

    demo.add_argument("--augment-languages", nargs="*", default=list(DEFAULT_AUGMENT))
    demo.add_argument("--layer", type=int, default=-1, help="block whose FFN gets the patches (default: the last)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
