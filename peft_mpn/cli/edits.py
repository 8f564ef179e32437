"""``peft-mpn edit | evaluate | push | list | compose``: an edit adapter's whole life from the shell.

An adapter folder is what `peft_mpn.hub.save_edit` writes: the adapter, its edit manifest and its card. Facts
come from ``--prompt/--target`` (with ``--parallel LANG PROMPT TARGET``) or from a JSON / JSONL file of edit
requests (`EditRequest.to_dict` records, or ``{"prompt": ..., "target": ..., "parallel": {...}}``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .top import add_command

#: `--model`'s help: what a model can be named by (the offline ones are `peft_mpn.models.OFFLINE_MODELS`).
MODEL_HELP = (
    "Hub id, local folder, .gguf file, or an offline model: gemma-3-270m (the default; the models extra) or "
    "qwen2.5-coder-1.5b-instruct (the qwen extra)"
)

#: Methods whose edit is an adapter the commands can save, push and compose.
ADAPTER_METHODS = ("mpn", "t-patcher", "lafn")


def option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` for ``--editor-option``; the value is read as JSON where it parses (numbers, lists, null)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. memory_weight=5), got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def read_facts(path: str | Path) -> list[Any]:
    """Edit requests from a JSON list (or one object) or a JSONL file; see the module docstring for the shape."""
    from ..data.requests import EditRequest, EditRequestError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No facts file at {path}: give a .json or .jsonl file of edit requests.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            loaded = json.loads(text)
            records = loaded if isinstance(loaded, list) else [loaded]
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON{' lines' if path.suffix == '.jsonl' else ''}: {error}") from error
    requests = []
    for number, record in enumerate(records, 1):
        if not isinstance(record, Mapping):
            raise EditRequestError(f"{path}, fact {number}: expected an object, got {type(record).__name__}.")
        if "views" in record:
            requests.append(EditRequest.from_dict(record))
            continue
        if "prompt" not in record or "target" not in record:
            raise EditRequestError(
                f"{path}, fact {number}: give 'prompt' and 'target' (and optionally 'parallel', 'language', "
                "'case_id'), or 'views' as EditRequest.to_dict writes them."
            )
        fields = dict(record)
        parallel = {
            lang: tuple(pair) if isinstance(pair, list) else pair for lang, pair in fields.pop("parallel", {}).items()
        }
        case_id = fields.pop("case_id", None)
        requests.append(
            EditRequest.single(
                fields.pop("prompt"),
                fields.pop("target"),
                language=fields.pop("language", "en"),
                parallel=parallel,
                case_id=None if case_id is None else str(case_id),
                **fields,
            )
        )
    if not requests:
        raise EditRequestError(f"{path} holds no facts.")
    return requests


def _facts(args: argparse.Namespace) -> list[Any]:
    from ..data.requests import EditRequest

    if args.facts and args.prompt:
        raise ValueError("Give the facts either with --facts FILE or with --prompt/--target, not both.")
    if args.facts:
        return read_facts(args.facts)
    if not args.prompt or args.target is None:
        raise ValueError("Nothing to edit: give --prompt and --target (or --facts FILE).")
    parallel = {language: (prompt, target) for language, prompt, target in args.parallel}
    return [EditRequest.single(args.prompt, args.target, language=args.language, parallel=parallel)]


def load_base(model: str | None, adapter: str | None = None, *, progress: bool = True) -> tuple[Any, Any]:
    """The base model to edit or to load `adapter` on: `model`, else the one the adapter names.

    An adapter made on an offline model (`OFFLINE_MODELS`) names it by its Hub id; without ``--model`` it is
    loaded on that offline model, the weights it was made on.
    """
    from ..models import load_model, offline_model_for

    if model is None and adapter is not None:
        from peft import PeftConfig

        recorded = PeftConfig.from_pretrained(adapter).base_model_name_or_path
        model = offline_model_for(recorded) or recorded
    return load_model(model, progress=progress)


def _unrelated_texts(path: str | None, template: str = "{prompt}") -> list[str]:
    """``--unrelated FILE`` (one text per line, as given), else the bundled BMIKE-53 sample's unrelated questions
    put in `template`, the prompt format the edits are made in."""
    if path is not None:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"{path} holds no text: one unrelated text per line.")
        return lines
    from ..data.prompts import format_prompt
    from ..demo import load_demo_facts

    _, memory, _ = load_demo_facts(None, 1)
    questions = [view.locality_prompt for request in memory for view in request.views.values() if view.locality_prompt]
    return [format_prompt(template, question) for question in questions]


def score_lines(scores: Mapping[str, Any]) -> list[str]:
    """A per-language table of a judge result: reliability and locality, teacher-forced and generated."""
    lines = [f"{'language':10} {'reliability tok / EM / generated':>34} {'locality tok / EM / generated':>31}"]

    def triple(values: Mapping[str, Any], measure: str) -> str:
        cells = [values.get(f"{measure}{suffix}") for suffix in ("", "_em", "_gen")]
        return " / ".join("–" if value is None else f"{value:.2f}" for value in cells)

    for language, values in scores["per_language"].items():
        role = " (edit)" if language == scores.get("edit_language") else ""
        lines.append(f"{language + role:10} {triple(values, 'reliability'):>34} {triple(values, 'locality'):>31}")
    return lines


def run_edit(args: argparse.Namespace) -> int:
    from ..data.prompts import format_requests, resolve_prompt_format
    from ..editing import make_editor
    from ..editing.registry import editor_config, editor_spec
    from ..hub import save_edit
    from ..hub.manifest import edit_records
    from ..metrics import evaluate_edits

    requests = _facts(args)  # bad facts fail before the model loads
    spec = editor_spec(args.method)
    edit_languages = {request.edit_language for request in requests}
    given = sorted({lang for request in requests for lang in request.languages} - edit_languages)
    augment = given if args.augment_languages is None else list(args.augment_languages)
    augment = augment if spec.augments else []
    if len(edit_languages) > 1:
        raise ValueError(f"The facts mix edit languages {sorted(edit_languages)}; edit each language in its own run.")
    config = editor_config(args.method, spec.config(), **dict(args.editor_option))
    config = config.for_run(
        edit_language=edit_languages.pop(), augment_languages=augment, seed=getattr(config, "seed", 0)
    )
    model, tokenizer = load_base(args.model, progress=not args.no_progress)
    template = resolve_prompt_format(args.prompt_format, model)
    kwargs: dict[str, Any] = {"progress": not args.no_progress}
    if spec.editor.uses_unrelated_text:
        kwargs["unrelated_texts"] = _unrelated_texts(args.unrelated, template)
    editor = make_editor(args.method, model, tokenizer, config, **kwargs)
    held = []
    for request in requests:
        result = editor.edit(request.with_prompt_format(template))
        holds = " ".join(result.fixed_languages) or "no language"
        label = request.case_id or repr(request.edit.prompt)
        print(f"{label}: {result.status}, holds in {holds} ({result.steps} steps, {result.seconds:.1f} s)")
        if result.patches_added or result.status == "skipped":  # a rolled-back edit is left out
            held.append(request)
    if not held:
        print(f"no edit held within its budget: nothing written to {args.output}")
        return 1
    scores = None
    if args.evaluate:
        scores = evaluate_edits(editor.model, tokenizer, format_requests(held, template), augment_languages=augment)
        print("\n".join(score_lines(scores)))
    # the user's own prompts, and the format they were put to the model in (evaluate reads it back)
    records = [{**record, "prompt_format": template} for record in edit_records(held, method=args.method)]
    folder = save_edit(editor.model, args.output, records, scores, base_model=args.base_model)
    print(f"wrote {folder} ({len(held)} of {len(requests)} edits held and saved)")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..data.prompts import format_requests, resolve_prompt_format
    from ..data.requests import EditRequest
    from ..hub import list_edits
    from ..loading import from_pretrained
    from ..metrics import evaluate_edits

    base, tokenizer = load_base(args.model, args.adapter, progress=not args.no_progress)
    model = from_pretrained(base, args.adapter, revision=args.revision)
    records = list_edits(args.adapter, revision=args.revision)
    # the format the edits were made in (peft-mpn edit records it), unless --prompt-format says otherwise
    recorded = next((r["prompt_format"] for r in records if r.get("prompt_format")), None)
    template = resolve_prompt_format(args.prompt_format or recorded, base)
    if args.facts:
        requests = read_facts(args.facts)
    else:  # the manifest holds each edit's own prompt and target: reliability in the edit language only
        requests = [
            EditRequest.single(r["prompt"], r["target"], language=r["edit_language"], case_id=r.get("case_id"))
            for r in records
        ]
    seen = args.augment_languages or ()
    scores = evaluate_edits(model, tokenizer, format_requests(requests, template), augment_languages=seen)
    print("\n".join(score_lines(scores)))
    if args.output:
        from ..files import atomic_write_text

        atomic_write_text(Path(args.output), json.dumps(scores, indent=2, ensure_ascii=False))
        print(f"wrote {args.output}")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from ..hub import list_edits, push_edit_to_hub
    from ..loading import from_pretrained

    base, _ = load_base(args.model, args.adapter, progress=not args.no_progress)
    model = from_pretrained(base, args.adapter)
    commit = push_edit_to_hub(
        model,
        args.repo_id,
        edits=list_edits(args.adapter),
        private=args.private or None,
        revision=args.revision,
        base_model=args.base_model,
    )
    print(f"pushed {args.adapter} to {args.repo_id}{f'@{args.revision}' if args.revision else ''}: {commit.oid}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ..hub import list_edits

    records = list_edits(args.source, revision=args.revision)
    for record in records:
        print(
            f"{record.get('case_id') or '-'}\t{record['edit_language']}\t{record['method']}\t{record['prompt']} -> "
            f"{record['target']}"
        )
    print(f"{len(records)} edit{'s' if len(records) != 1 else ''}")
    return 0


def run_compose(args: argparse.Namespace) -> int:
    from ..hub import compose_adapters, save_edit

    base, _ = load_base(args.model, args.sources[0], progress=not args.no_progress)
    model = compose_adapters(base, args.sources)
    folder = save_edit(model, args.output, base_model=args.base_model)
    print(f"wrote {folder}: {len(model.peft_mpn_edits)} edits from {len(args.sources)} adapters")
    return 0


def add_commands(commands: Any, common: argparse.ArgumentParser, progress: argparse.ArgumentParser) -> None:
    """The edit, evaluate, push, list and compose subcommands, on the `commands` subparsers (`common`: the flags
    every subcommand takes; `progress`: ``--no-progress``)."""
    model_help = f"{MODEL_HELP}; default: gemma-3-270m, or the base model the adapter names"
    edit = add_command(commands, "edit", parents=[common, progress])
    edit.add_argument("--output", required=True, metavar="FOLDER", help="the adapter folder to write")
    edit.add_argument("--prompt", help="the prompt whose answer changes, in the edit language")
    edit.add_argument("--target", help="the new answer")
    edit.add_argument("--language", default="en", help="the edit language (default: en)")
    edit.add_argument(
        "--parallel",
        nargs=3,
        action="append",
        default=[],
        metavar=("LANG", "PROMPT", "TARGET"),
        help="the same fact in another language (repeatable); MPN and LAFN train on these versions",
    )
    edit.add_argument("--facts", metavar="FILE", help="a .json or .jsonl file of facts instead of --prompt/--target")
    edit.add_argument("--method", default="mpn", choices=ADAPTER_METHODS, help="the editor (default: mpn)")
    edit.add_argument("--model", default=None, help=model_help)
    edit.add_argument(
        "--augment-languages",
        nargs="*",
        default=None,
        help="which parallel versions MPN / LAFN train on (default: every language the facts are given in)",
    )
    edit.add_argument(
        "--unrelated",
        metavar="FILE",
        help="unrelated texts the edit must leave alone, one per line (default: the bundled sample's questions)",
    )
    edit.add_argument(
        "--editor-option",
        type=option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a field of the method's editor config (repeatable; `peft-mpn bench --help` lists them), e.g. "
        "max_steps=100",
    )
    edit.add_argument(
        "--prompt-format",
        default="family",
        metavar="NAME|TEMPLATE",
        help="how each prompt is put to the model while editing and judging: raw, qa, qa-2shot, or a template with "
        "{prompt}; family (default): the model family's, which a base model answers on one line",
    )
    edit.add_argument("--evaluate", action="store_true", help="judge the edits (with generation) into the card")
    edit.add_argument("--base-model", help="the Hub id to record as the base model (default: the loaded model's)")
    edit.set_defaults(run=run_edit)

    evaluate = add_command(commands, "evaluate", parents=[common, progress])
    evaluate.add_argument("adapter", help="adapter folder or Hub repo id")
    evaluate.add_argument("--facts", metavar="FILE", help="facts with their parallel versions (default: manifest)")
    evaluate.add_argument("--model", default=None, help=model_help)
    evaluate.add_argument("--revision", help="the adapter repo's branch, tag or commit")
    evaluate.add_argument("--augment-languages", nargs="*", help="languages the edit trained on (reported as seen)")
    evaluate.add_argument("--output", metavar="FILE", help="also write the result as JSON")
    evaluate.add_argument(
        "--prompt-format",
        default=None,
        metavar="NAME|TEMPLATE",
        help="how each prompt is put to the model (default: the one the edits were made in, else family)",
    )
    evaluate.set_defaults(run=run_evaluate)

    push = add_command(commands, "push", parents=[common, progress])
    push.add_argument("adapter", help="adapter folder (from peft-mpn edit or compose)")
    push.add_argument("repo_id", help="the Hub repo, e.g. me/capital-fixes")
    push.add_argument("--revision", help="a branch to push to (created if needed)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--base-model", help="the base model's Hub id, if the adapter names a local folder")
    push.add_argument("--model", default=None, help=model_help)
    push.set_defaults(run=run_push)

    listing = add_command(commands, "list", parents=[common])
    listing.add_argument("source", help="adapter folder or Hub repo id")
    listing.add_argument("--revision", help="the repo's branch, tag or commit")
    listing.set_defaults(run=run_list)

    compose = add_command(commands, "compose", parents=[common, progress])
    compose.add_argument("sources", nargs="+", help="adapter folders or Hub repo ids")
    compose.add_argument("--output", required=True, metavar="FOLDER", help="the combined adapter folder to write")
    compose.add_argument("--model", default=None, help=model_help)
    compose.add_argument("--base-model", help="the Hub id to record as the base model")
    compose.set_defaults(run=run_compose)
