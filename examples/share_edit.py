"""Edit two facts separately with MPN, save each as a shareable edit, list them, compose them into one adapter.

    python examples/share_edit.py                            # Gemma-3-270M, 2 MzsRE facts (or the bundled sample)
    python examples/share_edit.py --output shared-edits --push me/capital-fixes --revision v1

Each fact is edited from the base model and saved with `save_edit`: the adapter, its edit manifest
(`edits.json`) and a model card (`README.md`) with the scores of `peft_mpn.metrics.Judge`. `list_edits` reads a
folder's manifest back, `compose_adapters` merges the two folders into one adapter (the union of their
patches) on a fresh base model, and the judge checks that both edits hold there. With `--push REPO_ID` the
composed adapter goes to the Hub with `push_edit_to_hub` (this needs a login, `hf auth login`, and turns
the offline default off).
"""

# The Hub mode must be chosen before huggingface_hub is imported (by _common), so the imports follow it.
# ruff: noqa: E402
from __future__ import annotations

import os
import sys

if "--push" in sys.argv:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise SystemExit("--push needs the Hub, but HF_HUB_OFFLINE is set: unset it or set HF_HUB_OFFLINE=0.")
    os.environ["HF_HUB_OFFLINE"] = "0"

from pathlib import Path

from _common import augment_languages, holds, load_facts, markdown_table, parser, training_overrides, write_report

import peft_mpn
from peft_mpn.editing import MPNEditor, MPNEditorConfig
from peft_mpn.hub import compose_adapters, list_edits, push_edit_to_hub, save_edit
from peft_mpn.metrics import Judge
from peft_mpn.models import load_model


def main() -> None:
    options = parser(__doc__.splitlines()[0], num_facts=2)
    options.add_argument("--output", default="shared-edits", help="folder for one sub-folder per edit + composed/")
    options.add_argument("--push", metavar="REPO_ID", default=None, help="push the composed adapter to this repo")
    options.add_argument("--revision", default=None, help="branch to push to (created if needed; default: main)")
    args = options.parse_args()
    if args.num_facts != 2:
        raise SystemExit(f"This example edits and composes two facts; got --num-facts {args.num_facts}.")
    facts, memory_facts, source = load_facts(args)
    augment = augment_languages(args, facts)
    output = Path(args.output)

    model, tokenizer = load_model(args.model)
    judge = Judge(tokenizer, augment_languages=augment)
    unedited = judge.scores(judge.reference(model, facts))  # the base model; keeps its locality answers
    before = {fact.case_id: holds(unedited, fact) for fact in facts}

    config = MPNEditorConfig(augment_languages=augment, seed=args.seed, **training_overrides(args))
    editor = MPNEditor(model, tokenizer, config, peft_config=peft_mpn.MPNConfig(layers_to_transform=[args.layer]))
    editor.add_unrelated_from_requests(memory_facts)
    folders, statuses = [], {}
    for fact in facts:
        editor.reset()  # each edit on its own, from the base model, as two people would make them
        statuses[fact.case_id] = editor.edit(fact).status
        metrics = judge.scores(judge.rows(editor.model, fact))  # the edit card's table
        folders.append(save_edit(editor.model, output / f"edit-{fact.case_id}", [fact], metrics=metrics))
    for folder in folders:
        for record in list_edits(folder):
            print(
                f"{folder}: {record['case_id']} ({record['edit_language']}) {record['prompt']!r} -> "
                f"{record['target']!r}, {record['method']}, languages {', '.join(record['languages'])}"
            )

    base, _ = load_model(args.model, progress=False)
    composed = compose_adapters(base, folders)
    after = {fact.case_id: holds(judge.scores(judge.rows(composed, fact)), fact) for fact in facts}
    composed_folder = save_edit(composed, output / "composed")  # the merged manifest travels with the model
    composed_edits = list_edits(composed_folder)

    pushed = None
    if args.push:
        commit = push_edit_to_hub(composed, args.push, revision=args.revision)
        pushed = {"repo_id": args.push, "revision": args.revision, "commit": commit.oid}
        pushed["edits"] = [record["case_id"] for record in list_edits(args.push, revision=args.revision)]

    def mark(won: bool) -> str:
        return "yes" if won else "no"

    rows = [
        [fact.case_id, language, fact.views[language].target, mark(before[fact.case_id][language]),
         mark(after[fact.case_id][language])]
        for fact in facts
        for language in fact.views
    ]  # fmt: skip
    print(f"\nSource: {source}; edits: {', '.join(f'case {case} {status}' for case, status in statuses.items())}")
    print(f"Composed adapter ({composed.base_model.num_patches()} patches) saved to {composed_folder}:")
    print(markdown_table(["case", "language", "new answer", "base model", "composed adapter"], rows))
    edited_language = {fact.case_id: after[fact.case_id][fact.edit_language] for fact in facts}
    print(f"\nBoth edits hold in the composed adapter: {mark(all(edited_language.values()))}")
    if pushed:
        print(f"Pushed to {pushed['repo_id']} (revision {pushed['revision'] or 'main'}), commit {pushed['commit']}")
    write_report(
        args.report,
        {
            "source": source,
            "augment_languages": augment,
            "status": statuses,
            "folders": [str(folder) for folder in folders],
            "before": before,
            "after": after,
            "composed": {"folder": str(composed_folder), "sources": [r["source"] for r in composed_edits]},
            "pushed": pushed,
        },
    )


if __name__ == "__main__":
    main()
