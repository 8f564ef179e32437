"""The ``peft-mpn`` command.

A bad value in the arguments, the data or the files (a `ValueError` or `OSError` the library raises, such as
`EditRequestError`, `DatasetLayoutError` or `FileNotFoundError`, or a model name that does not resolve) ends the
command with one line on stderr, `peft-mpn: error: <message>`, and exit status 2; `--debug` or
`PEFT_MPN_DEBUG=1` shows the traceback instead. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .edits import MODEL_HELP, add_commands
from .edits import option as _option
from .top import DEBUG_VARIABLE, add_command, settle_environment, top_level_parser
from .top import with_flags as _with_flags


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    report = run_demo(
        model_name=args.model,
        data=args.data,
        num_facts=args.num_facts,
        augment_languages=args.augment_languages,
        layer=args.layer,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print()
    print(report.markdown())
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ..bench import bench

    named = {"max_steps": args.max_steps, "learning_rate": args.learning_rate}  # None: not given
    overrides = {**{k: v for k, v in named.items() if v is not None}, **dict(args.editor_option)}
    paths = bench(
        method=args.method,
        dataset=args.dataset,
        data=args.data,
        split=args.split,
        model_name=args.model,
        device=args.device,
        num_processes=args.num_processes,
        dtype=args.dtype,
        edit_language=args.edit_language,
        augment_languages=args.augment_languages,
        eval_languages=args.eval_languages,
        num_edits=args.num_edits,
        seed=args.seed,
        sequential=args.sequential,
        output=args.output,
        layer=args.layer,
        editor_overrides=overrides,
        adapter_overrides=dict(args.adapter_option),
        memory_cases=args.memory_cases,
        batch_size=args.batch_size,
        judge_cache=args.judge_cache,
        prompt_format=args.prompt_format,
        generation=not args.no_generation,
        locality_tokens=args.locality_tokens,
        curve_every=args.curve_every,
        curve_sample=args.curve_sample,
        judge_sample=args.judge_sample,
        translate_languages=args.translate_languages,
        translator=args.translator,
        translation_cache=args.translation_cache,
        progress=not args.no_progress,
    )
    print("\n".join(f"wrote {path}" for path in paths.values()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole ``peft-mpn`` parser (its top level is `top.top_level_parser`'s, which ``--help`` shows alone)."""
    parser, commands = top_level_parser()
    common = _with_flags(argparse.ArgumentParser(add_help=False, prog="common"))
    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument("--no-progress", action="store_true", help="no progress bars")

    demo = add_command(commands, "demo", parents=[common, progress])
    demo.add_argument("--model", default=None, help=MODEL_HELP)
    demo.add_argument(
        "--data",
        default=None,
        metavar="FOLDER",
        help="a MzsRE, BMIKE-53 or Bi-ZsRE folder, detected from its files (default: the BMIKE-53 sample bundled "
        "with the package)",
    )
    demo.add_argument("--num-facts", type=int, default=8, help="facts to edit (at most 12 from the bundled sample)")
    from ..editing.registry import DEFAULT_AUGMENT

    demo.add_argument("--augment-languages", nargs="*", default=list(DEFAULT_AUGMENT))
    demo.add_argument("--layer", type=int, default=-1, help="block whose FFN gets the patches (default: the last)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    from ..data.loaders import DATASETS
    from ..editing.registry import EDITORS, SPECS, options_help

    bench = add_command(
        commands,
        "bench",
        parents=[common, progress],
        description="Edit seeded benchmark cases with one method; judge every language before and after.\n\nmethods:\n"
        + "\n".join(f"  {name:10} {spec.summary}" for name, spec in SPECS.items()),
        epilog=options_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--method", required=True, choices=EDITORS)
    bench.add_argument("--dataset", required=True, choices=DATASETS)
    bench.add_argument("--data", required=True, help="the benchmark's folder (or file), in its published layout")
    bench.add_argument(
        "--split",
        default=None,
        help="the data's split, where it has several (BMIKE-53: zsre, counterfact; zsre+counterfact joins them)",
    )
    bench.add_argument("--model", default=None, help=MODEL_HELP)
    bench.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, cuda:1, mps (default: cpu)")
    bench.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="the model's precision (losses are computed in float32 whatever it is; default: float32)",
    )
    bench.add_argument(
        "--num-processes",
        type=int,
        default=1,
        help="split a single-edit run's cases over this many processes, each with its own model and an equal share "
        "of the torch threads (and its own GPU where there are several); the result is the one process's, row "
        "for row (default: 1)",
    )
    bench.add_argument("--edit-language", default="en")
    bench.add_argument(
        "--augment-languages",
        nargs="*",
        default=None,
        help=f"parallel versions the editor trains on (default: {' '.join(DEFAULT_AUGMENT)} for "
        f"{' and '.join(name for name, spec in SPECS.items() if spec.augments_by_default)}, where the data has "
        "them; none for the other methods)",
    )
    bench.add_argument("--eval-languages", nargs="*", default=None, help="languages to judge (default: all)")
    bench.add_argument("--num-edits", type=int, default=100)
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--sequential", action="store_true", help="edit all cases in a row, then judge them")
    bench.add_argument("--output", required=True, help="results .json; the .md table and .png plot go next to it")
    bench.add_argument(
        "--layer",
        type=int,
        default=None,
        help=f"block the editor changes, for {', '.join(name for name, spec in SPECS.items() if spec.set_layer)} "
        "(default: the last)",
    )
    bench.add_argument("--max-steps", type=int, default=None, help="editor step budget per edit")
    bench.add_argument("--learning-rate", type=float, default=None, help="editor learning rate")
    bench.add_argument(
        "--editor-option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other field of the method's editor config (repeatable; listed below), e.g. memory_weight=5; a "
        "dotted key sets a nested config's field, e.g. locator.top_k=100 for LAFN",
    )
    bench.add_argument(
        "--adapter-option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a field of the adapter config the editor grows (repeatable; MPN and T-Patcher: MPNConfig), e.g. "
        "activation=ffn for patches with the FFN's own activation instead of relu",
    )
    bench.add_argument(
        "--memory-cases",
        type=int,
        default=25,
        help="unselected cases whose locality prompts fill the MPN memory / LAFN KL term",
    )
    bench.add_argument("--batch-size", type=int, default=16, help="scoring batch size")
    bench.add_argument(
        "--judge-cache",
        default=None,
        metavar="DIR",
        help="keep the unedited model's judgements here and reuse them in later runs on the same model and cases",
    )
    bench.add_argument(
        "--prompt-format",
        default="family",
        metavar="NAME|TEMPLATE",
        help="how every prompt is put to the model, for editing and judging alike: raw, qa, qa-2shot, or a template "
        "with {prompt}; family (default): the model family's (qa-2shot, which a small base model answers on one line)",
    )
    bench.add_argument(
        "--no-generation",
        action="store_true",
        help="judge teacher-forced only (default: also the greedy generated answers and continuations)",
    )
    bench.add_argument(
        "--locality-tokens",
        type=int,
        default=16,
        help="generation locality: how many generated tokens of an unrelated prompt must be unchanged",
    )
    bench.add_argument(
        "--curve-every",
        type=int,
        default=None,
        metavar="N",
        help="with --sequential: after every N edits, judge a sample of the cases edited so far (retention, "
        "generality, locality), and record seconds per edit, memory and adapter size and tokens/s (lifelong curves)",
    )
    bench.add_argument(
        "--curve-sample",
        type=int,
        default=50,
        metavar="K",
        help="edited cases judged at each curve point (a seeded sample of those edited so far)",
    )
    bench.add_argument(
        "--judge-sample",
        type=int,
        default=None,
        metavar="K",
        help="with --sequential: judge only K of the edited cases (a seeded sample), before, on the curves and at "
        "the end; every case is still edited (a 1,000-edit stream's judging takes hours on a CPU)",
    )
    bench.add_argument(
        "--translate-languages",
        nargs="*",
        default=[],
        help="languages the editor trains on machine-written versions of each edit (written by --translator from "
        "the edit language before any edit), not on the data's; judged on the data's, reported as their own group",
    )
    bench.add_argument(
        "--translator",
        default="self",
        metavar="self|MODEL",
        help="what writes them: self (default: the model being edited, shown two translated examples) or a "
        "translation model's Hub id or folder (e.g. facebook/nllb-200-distilled-600M)",
    )
    bench.add_argument(
        "--translation-cache",
        default=None,
        metavar="FILE",
        help="JSON file keeping the translations, to review and correct before training and to reuse (default: "
        "next to --output, .translations.json)",
    )
    bench.set_defaults(run=_bench)
    add_commands(commands, common, progress)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``peft-mpn`` with `argv` (default: the command line)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    settle_environment(arguments)  # the console script did so already, before anything heavy was imported
    parser = build_parser()
    args = parser.parse_args(arguments)
    try:
        return args.run(args)
    except Exception as error:
        from ..models import ModelResolutionError

        # a bad value, a missing file or a model that does not resolve, named by the library; others are bugs
        user_error = isinstance(error, (ValueError, OSError, ModelResolutionError))
        if not user_error or args.debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
