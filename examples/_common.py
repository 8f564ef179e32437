"""What the examples share: their command-line options, the facts they edit, and how they report.

The examples run offline on Gemma-3-270M by default (`peft_mpn.models.load_model()` converts the model from the
`models` extra once, then reloads it from the cache). Facts come from `--facts` (a JSON list of
`EditRequest.to_dict()` records), `--data` (a MzsRE, BMIKE-53 or Bi-ZsRE folder), `../shared/data/mzsre` next to
the repository when it exists, or else the BMIKE-53 sample bundled with the package. Every example judges with
`peft_mpn.metrics.Judge` and only formats its result.
"""

# The environment is set before torch is imported, so the imports come after it.
# ruff: noqa: E402
from __future__ import annotations

import os

# Before torch is imported (as `peft-mpn demo` does): no Hub access, and no OpenMP spin-waiting on a busy CPU.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peft_mpn import EditRequest
from peft_mpn.data import format_requests, resolve_prompt_format
from peft_mpn.demo import load_demo_facts
from peft_mpn.editing import DEFAULT_AUGMENT
from peft_mpn.files import atomic_write_text

#: The examples' default data, when it exists: MzsRE in the developers' shared folder next to the repository.
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mzsre"


def parser(description: str, *, num_facts: int) -> argparse.ArgumentParser:
    """The options every example takes."""
    options = argparse.ArgumentParser(description=description)
    options.add_argument("--model", default=None, help="Hub id, local folder or .gguf file (default: Gemma-3-270M)")
    options.add_argument(
        "--data",
        default=None,
        help="a MzsRE, BMIKE-53 or Bi-ZsRE folder (default: ../shared/data/mzsre if present, else a bundled sample)",
    )
    options.add_argument(
        "--facts",
        default=None,
        help="a JSON list of EditRequest.to_dict() records instead of --data: the first --num-facts are edited, "
        "the others fill the memory bank",
    )
    options.add_argument("--num-facts", type=int, default=num_facts, help="how many facts to edit")
    options.add_argument(
        "--augment-languages",
        nargs="*",
        default=list(DEFAULT_AUGMENT),
        help="languages whose parallel versions MPN trains on (those the facts carry); the others stay unseen",
    )
    options.add_argument("--layer", type=int, default=-1, help="block whose FFN is edited (default: the last)")
    options.add_argument("--max-steps", type=int, default=None, help="step budget per edit (default: the editor's)")
    options.add_argument("--learning-rate", type=float, default=None, help="(default: the editor's)")
    options.add_argument("--seed", type=int, default=0)
    options.add_argument("--report", default=None, help="also write the numbers printed to this JSON file")
    return options


def training_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """`--max-steps` / `--learning-rate` where given, for the editor config."""
    given = {"max_steps": args.max_steps, "learning_rate": args.learning_rate}
    return {name: value for name, value in given.items() if value is not None}


def load_facts(args: argparse.Namespace, memory_facts: int = 25) -> tuple[list[EditRequest], list[EditRequest], str]:
    """`(facts to edit, other facts for the memory bank, where they came from)`.

    From `--facts`, else `--data`, else `DEFAULT_DATA` when it exists, else the bundled BMIKE-53 sample (read by
    `peft_mpn.demo.load_demo_facts`, as `peft-mpn demo` reads them).
    """
    if args.num_facts < 1:
        raise SystemExit(f"--num-facts must be at least 1, got {args.num_facts}.")
    if args.facts is not None:
        path = Path(args.facts)
        if not path.is_file():
            raise SystemExit(f"--facts {path}: no such file; give a JSON list of EditRequest.to_dict() records.")
        records = json.loads(path.read_text(encoding="utf-8"))
        requests = [EditRequest.from_dict(record) for record in records]
        if len(requests) <= args.num_facts:
            raise SystemExit(
                f"--facts {path} has {len(requests)} facts; give more than --num-facts={args.num_facts} "
                "(the rest fill the memory bank)."
            )
        return requests[: args.num_facts], requests[args.num_facts :], str(path)
    data = args.data if args.data is not None else (DEFAULT_DATA if DEFAULT_DATA.is_dir() else None)
    try:
        return load_demo_facts(data, args.num_facts, memory_facts=memory_facts)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(str(error)) from error


def augment_languages(args: argparse.Namespace, facts: Sequence[EditRequest]) -> list[str]:
    """The requested augmentation languages that every fact carries."""
    return [lang for lang in args.augment_languages if all(lang in fact.views for fact in facts)]


def is_copied(request: EditRequest, language: str) -> bool:
    """Whether `language`'s target is the same string as the edit-language target (see the metrics page)."""
    return request.copies_edit_target(language)


def language_role(request: EditRequest, language: str, augment: Sequence[str]) -> str:
    if language == request.edit_language:
        return "edit"
    return "seen" if language in augment else "unseen"


def holds(scores: dict[str, Any], request: EditRequest) -> dict[str, bool]:
    """Per language of `request`: does its new answer win there (greedy decoding would produce it)?

    Read from a `Judge.scores` result: the case's exact match on that language's prompt.
    """
    case = scores["per_case"][str(request.case_id)]
    return {language: case[language]["reliability"][1] == 1.0 for language in request.views}


def in_prompt_format(model: Any, *groups: Sequence[EditRequest]) -> list[list[EditRequest]]:
    """Each group of facts with every prompt in `model`'s family's prompt format (a base model answers it on one
    line, so its generated answer can be read); see `peft_mpn.data.prompts`."""
    template = resolve_prompt_format(None, model)
    return [format_requests(group, template) for group in groups]


def generated_answers(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Per language, the answer the model generated on the fact's prompt (a Judge row's reading)."""
    return {
        row["language"]: row["generated"]["answer"]
        for row in rows
        if row["probe"] == "reliability" and "generated" in row
    }


def rate(value: float | None) -> str:
    """A score as printed: two decimals, `-` where the judge has none."""
    return "-" if value is None else f"{value:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: str | None, report: dict[str, Any]) -> None:
    """Write `report` as JSON to `path` (through a temporary file, so a failed run never leaves half a file)."""
    if path is None:
        return
    target = atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False))
    print(f"\nReport written to {target}")
