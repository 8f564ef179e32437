"""Edit many facts at once with EditTrainer (🤗 Trainer on MPN's objective), judge them before and after, save.

    python examples/trainer_edit.py                          # Gemma-3-270M, 8 MzsRE facts (or the bundled sample)
    python examples/trainer_edit.py --num-facts 32 --batch-size 8 --max-steps 300 --output capital-fixes

All facts' patches are planned up front (`MPNEditor.plan_patches`) when the trainer is built and then trained
jointly for `--max-steps` steps. The patches start non-zero, so the "before" numbers are taken first, on the
base model, by `peft_mpn.metrics.Judge`. "After" is `trainer.evaluate()`: the same judge's scores, with locality
judged against the model with the adapter switched off. The adapter is saved with its edit manifest and card
(`save_edit`).
"""

from __future__ import annotations

import tempfile

from _common import augment_languages, load_facts, markdown_table, parser, rate, write_report
from transformers import TrainingArguments

import peft_mpn
from peft_mpn.data import requests_to_dataset
from peft_mpn.editing import MPNEditor, MPNEditorConfig
from peft_mpn.hub import save_edit
from peft_mpn.metrics import Judge
from peft_mpn.models import load_model
from peft_mpn.training import EditTrainer

#: The rows of the printed table: (label, where in the metric's result, measure).
ROWS = (
    ("edit language: reliability", None, "reliability_em"),
    ("edit language: generality", None, "generality_em"),
    ("seen languages: reliability", "average_augment", "reliability_em"),
    ("unseen languages: reliability", "average_unseen", "reliability_em"),
    ("locality", "average", "locality_em"),
)


def main() -> None:
    options = parser(__doc__.splitlines()[0], num_facts=8)
    options.add_argument("--batch-size", type=int, default=8, help="facts per training batch")
    options.add_argument("--gradient-accumulation-steps", type=int, default=1)
    options.add_argument("--output", default="trainer-edit", help="folder to save the adapter to")
    options.set_defaults(max_steps=200, learning_rate=0.05)  # MPN trains at ~0.05, not fine-tuning's 5e-5
    args = options.parse_args()
    facts, memory_facts, source = load_facts(args)
    augment = augment_languages(args, facts)
    languages = [lang for lang in facts[0].languages if all(lang in fact.views for fact in facts)]
    facts = [fact.restricted_to(languages) for fact in facts]

    model, tokenizer = load_model(args.model)
    # The base model's numbers, before the trainer plans its (non-zero) patches; the same judge as evaluate()'s.
    judge = Judge(tokenizer, augment_languages=augment)
    before = judge.scores(judge.reference(model, facts))

    config = MPNEditorConfig(augment_languages=augment, seed=args.seed)
    editor = MPNEditor(model, tokenizer, config, peft_config=peft_mpn.MPNConfig(layers_to_transform=[args.layer]))
    editor.add_unrelated_from_requests(memory_facts)

    dataset = requests_to_dataset(facts)
    with tempfile.TemporaryDirectory(prefix="trainer-edit-") as trainer_dir:
        training_args = TrainingArguments(
            output_dir=trainer_dir,
            learning_rate=args.learning_rate,
            max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            lr_scheduler_type="constant",
            logging_steps=max(1, args.max_steps // 10),
            save_strategy="no",
            report_to=[],
            seed=args.seed,
        )
        trainer = EditTrainer(editor, training_args, train_dataset=dataset, eval_dataset=dataset)
        patches = editor.tuner.num_patches(editor.adapter_name)
        trainer.train()
        after = {key.removeprefix("eval_"): value for key, value in trainer.evaluate().items()}
    after.update(edit_language=facts[0].edit_language, augment_languages=augment)
    save_edit(trainer.model, args.output, facts, metrics=after)

    def value(result: dict, group: str | None, measure: str) -> str:
        return rate(result[measure] if group is None else result[group][measure])

    rows = [[label, value(before, group, m), value(after, group, m)] for label, group, m in ROWS[:-1]]
    rows.append([ROWS[-1][0], "-", value(after, *ROWS[-1][1:])])  # locality compares with the model before
    print(f"\nSource: {source}; {len(facts)} facts edited together in {facts[0].edit_language}, {patches} patches")
    print(f"Seen (trained) languages: {', '.join(augment) or 'none'}")
    print(markdown_table(["exact match", "before", "after"], rows))
    print(f"\nAdapter, edits.json and README.md saved to {args.output}")
    write_report(
        args.report,
        {
            "source": source,
            "augment_languages": augment,
            "patches": patches,
            "steps": trainer.state.global_step,
            "before": {key: before[key] for key in ("reliability_em", "generality_em", "per_language")},
            "after": {key: after[key] for key in ("reliability_em", "generality_em", "locality_em", "per_language")},
            "adapter": args.output,
        },
    )


if __name__ == "__main__":
    main()
