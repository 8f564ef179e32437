"""Fact verification from BMIKE-53 CounterFact: a classifier trained on English statements, its mistakes edited
with MPN and T-Patcher, judged in every language (MPN's XNLI/XFEVER setting, on data at hand).

1. The task (`peft_mpn.data.build_fact_verification`): each case's question completed with the true answer (label
   1) or the counterfactual one (label 0), per language; train/test split by case.
2. A sequence-classification head (plus a LoRA of rank `--lora-rank`, merged; 0 = head only) is trained on the
   English train statements only and cached under `<cache>/classifiers/<key>` (`$PEFT_MPN_CACHE` or
   `~/.cache/peft_mpn`; written to a temp folder, then renamed), keyed by the model, data and settings.
3. Every misclassified English test statement (up to `--num-edits`) is edited from the trained classifier with
   T-Patcher and with MPN (parallel statements in `--augment-languages` as augmentation). Reported: reliability
   (the English statement), generality (its rephrase), CLG per language (mean of the translated statement and
   its rephrase), averaged over the augmentation ("seen") and the other ("unseen") languages, and locality
   (unchanged predictions on the edit's neighbour statement and on `--locality-pool` other test statements, in
   every language). Memory texts: train statements in every language, apart from the locality statements.

    HF_HUB_OFFLINE=1 python benchmarks/classifier_task.py --output results/classifier_task.json

It prints a Markdown table and writes it next to the JSON (`.md`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from peft import get_peft_model  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from peft_mpn import MPNConfig  # noqa: E402
from peft_mpn.batching import eval_mode  # noqa: E402
from peft_mpn.data import build_fact_verification, dataset_to_requests, load_bmike53  # noqa: E402
from peft_mpn.editing import MPNEditorConfig, make_editor  # noqa: E402
from peft_mpn.metrics import compute_cross_lingual_edit  # noqa: E402
from peft_mpn.models import DEFAULT_MODEL, default_cache_dir, load_model, resolve_model_path  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bmike53" / "counterfact"
MARKER = "peft_mpn_classifier.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name, folder or .gguf (default: Gemma-3-270M)")
    parser.add_argument("--data", default=str(DATA), help="the BMIKE-53 CounterFact folder")
    parser.add_argument("--languages", nargs="+", default=["de", "fr", "es", "ru", "zh"])
    parser.add_argument("--augment-languages", nargs="*", default=["de", "fr"])
    parser.add_argument("--num-cases", type=int, default=400, help="CounterFact cases (two statements each)")
    parser.add_argument("--test-fraction", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--lora-rank", type=int, default=8, help="0: train the classification head only")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--layer", type=int, default=-1, help="the block whose FFN is patched")
    parser.add_argument("--num-edits", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=200, help="editor step budget per edit")
    parser.add_argument("--edit-learning-rate", type=float, default=1e-2, help="editor Adam learning rate")
    parser.add_argument("--locality-pool", type=int, default=16, help="other test statements judged for locality")
    parser.add_argument("--memory-size", type=int, default=400, help="train statements (per language) as memory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="cache root (default: $PEFT_MPN_CACHE or ~/.cache/peft_mpn)")
    parser.add_argument("--output", default="results/classifier_task.json")
    args = parser.parse_args(argv)
    unknown = [lang for lang in args.augment_languages if lang not in args.languages]
    if unknown:
        parser.error(f"--augment-languages {unknown} are not in --languages {args.languages}")
    return args


# ------------------------------------------------------------------------------------------- classifier


def encode(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    inputs = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    return {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


@torch.no_grad()
def predict_labels(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32) -> list[int]:
    labels: list[int] = []
    with eval_mode(model):
        for start in range(0, len(texts), batch_size):
            labels += (
                model(**encode(tokenizer, texts[start : start + batch_size], max_length)).logits.argmax(-1).tolist()
            )
    return labels


def classifier_key(model_path: str, train: list[tuple[str, int]], args: argparse.Namespace) -> str:
    settings = {
        "model": model_path,
        "train": hashlib.sha256(json.dumps(train, ensure_ascii=False).encode()).hexdigest(),
        **{k: getattr(args, k) for k in ("epochs", "batch_size", "learning_rate", "lora_rank", "max_length", "seed")},
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return f"{Path(model_path).name}-{digest}"


def train_classifier(model_path: str, train: list[tuple[str, int]], out_dir: Path, args: argparse.Namespace) -> None:
    """Fine-tune a 2-label head (and a LoRA, merged) on ``train`` and save model + tokenizer to ``out_dir``."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(args.seed)
    model, tokenizer = load_model(model_path, task="sequence-classification", num_labels=2, progress=False)
    tokenizer.padding_side = "right"  # positions need no fixing; the model pools the last real token either way
    if args.lora_rank > 0:
        lora = LoraConfig(
            task_type="SEQ_CLS", r=args.lora_rank, lora_alpha=2 * args.lora_rank, target_modules="all-linear"
        )
        model = get_peft_model(model, lora)  # also trains the new head (modules_to_save)
    else:
        heads = [name for name in ("score", "classifier") if hasattr(model, name)]
        if not heads:
            raise SystemExit(f"{type(model).__name__} has no 'score' or 'classifier' head; pass --lora-rank > 0.")
        for name, param in model.named_parameters():
            param.requires_grad = name.split(".")[0] in heads
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
    generator = torch.Generator().manual_seed(args.seed)
    model.train()
    steps = args.epochs * -(-len(train) // args.batch_size)
    with tqdm(total=steps, desc="training the classifier") as bar:
        for _ in range(args.epochs):
            order = torch.randperm(len(train), generator=generator).tolist()
            for start in range(0, len(order), args.batch_size):
                batch = [train[i] for i in order[start : start + args.batch_size]]
                inputs = encode(tokenizer, [text for text, _ in batch], args.max_length)
                loss = model(**inputs, labels=torch.tensor([label for _, label in batch])).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    if args.lora_rank > 0:
        model = model.merge_and_unload()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def cached_classifier(model_path: str, train: list[tuple[str, int]], args: argparse.Namespace) -> tuple[Path, bool]:
    """The trained classifier's folder (trained now unless cached) and whether it came from the cache."""
    root = default_cache_dir(args.cache_dir) / "classifiers"
    target = root / classifier_key(model_path, train, args)
    if (target / MARKER).is_file():
        return target, True
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
    try:
        train_classifier(model_path, train, tmp, args)
        (tmp / MARKER).write_text(json.dumps({"model": model_path, "created": time.time()}) + "\n")
        if target.exists():  # an incomplete leftover (no marker) of an interrupted run
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, False


# ---------------------------------------------------------------------------------------------- editing


def edit_rows(request, before: dict[tuple[str, str], int], predict) -> dict[str, list]:
    """The rows of ``compute_cross_lingual_edit`` for one edited request (labels as one-token targets)."""
    rows: dict[str, list] = {k: [] for k in ("predictions", "references", "case_id", "language", "probe", "copied")}

    def add(language: str, probe: str, texts: list[str], references: list[int]) -> None:
        for predicted, reference in zip(predict(texts), references):
            rows["predictions"].append([predicted])
            rows["references"].append([reference])
            rows["case_id"].append(request.case_id)
            rows["language"].append(language)
            rows["probe"].append(probe)
            rows["copied"].append(True)  # a label reads the same in every language

    for language, view in request.views.items():
        add(language, "reliability", [view.prompt], [view.target])
        add(language, "generality", list(view.rephrases), [view.target] * len(view.rephrases))
        pool = [text for lang, text in before if lang == language]
        add(language, "locality", pool, [before[language, text] for text in pool])
    return rows


def extend(columns: dict[str, list], rows: dict[str, list]) -> None:
    for key, values in rows.items():
        columns.setdefault(key, []).extend(values)


def run_editor(name, peft_model, tokenizer, memory, edits, before, args) -> dict:
    config = MPNEditorConfig(
        augment_languages=args.augment_languages if name == "mpn" else [],
        max_steps=args.max_steps,
        learning_rate=args.edit_learning_rate,
        seed=args.seed,
    )
    editor = make_editor(name, peft_model, tokenizer, config, memory=memory, progress=False)

    def predict(texts: list[str]) -> list[int]:
        return predict_labels(editor.model, tokenizer, texts, args.max_length) if texts else []

    columns: dict[str, list] = {}
    statuses, seconds = [], []
    for request, locality in tqdm(edits, desc=name):
        editor.reset()
        result = editor.edit(request)
        statuses.append(result.status)
        seconds.append(result.seconds)
        extend(columns, edit_rows(request, {key: before[key] for key in locality}, predict))
    editor.reset()
    result = judge(name, columns, config.augment_languages or [], args)
    result["success"] = sum(s in ("edited", "skipped") for s in statuses) / len(edits)
    result["median_seconds"] = statistics.median(seconds)
    result["statuses"] = statuses
    return result


def judge_unedited(model, tokenizer, edits, before, args) -> dict:
    """The unedited classifier on the statements the editors edit: the floor every CLG is read against."""

    def predict(texts: list[str]) -> list[int]:
        return predict_labels(model, tokenizer, texts, args.max_length) if texts else []

    columns: dict[str, list] = {}
    for request, locality in edits:
        extend(columns, edit_rows(request, {key: before[key] for key in locality}, predict))
    return judge("unedited", columns, [], args)


def judge(name: str, columns: dict[str, list], augment_languages: list[str], args) -> dict:
    """Reliability, generality, locality and CLG per language from ``edit_rows`` columns."""
    languages = ["en", *args.languages]
    scores = compute_cross_lingual_edit(
        **columns, edit_language="en", augment_languages=augment_languages, languages=languages
    )
    per_language = scores["per_language"]
    clg = {
        lang: statistics.mean(
            v for v in (per_language[lang]["reliability"], per_language[lang]["generality"]) if v is not None
        )
        for lang in args.languages
    }
    seen = [lang for lang in args.languages if lang in args.augment_languages]
    unseen = [lang for lang in args.languages if lang not in args.augment_languages]
    return {
        "editor": name,
        "edits": scores["num_cases"],
        "success": None,
        "median_seconds": None,
        "reliability": scores["reliability"],
        "generality": scores["generality"],
        "locality_en": scores["locality"],
        "locality_all": scores["average"]["locality"],
        "clg": clg,
        "clg_seen": statistics.mean(clg[lang] for lang in seen) if seen else None,
        "clg_unseen": statistics.mean(clg[lang] for lang in unseen) if unseen else None,
        "statuses": [],
        "scores": scores,
    }


def markdown(report: dict, languages: list[str]) -> str:
    def fmt(value) -> str:
        return "–" if value is None else f"{value:.2f}"

    head = ["editor", "edits", "success", "rel (en)", "gen (en)", "loc (en)", "loc (all)", "CLG seen", "CLG unseen"]
    head += [f"CLG {lang}" for lang in languages]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = ([report["unedited"]] if "unedited" in report else []) + report["editors"]
    for r in rows:
        cells = [r["editor"], str(r["edits"]), fmt(r["success"]), fmt(r["reliability"]), fmt(r["generality"])]
        cells += [fmt(r["locality_en"]), fmt(r["locality_all"]), fmt(r["clg_seen"]), fmt(r["clg_unseen"])]
        cells += [fmt(r["clg"][lang]) for lang in languages]
        lines.append("| " + " | ".join(cells) + " |")
    accuracy = ", ".join(f"{lang} {acc:.2f}" for lang, acc in report["classifier"]["test_accuracy"].items())
    lines.append("")
    lines.append(
        f"Classifier test accuracy before editing: {accuracy}. Seen (MPN augmentation): "
        f"{', '.join(report['augment_languages']) or 'none'}; T-Patcher trains on English only. The unedited "
        "row is the classifier before any edit on the same statements: English is 0 by construction (only "
        "misclassified statements are edited); its CLG is what the other languages already said."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cases without a version in some language are dropped, as counted below
        cases = load_bmike53(args.data, "counterfact", args.languages, limit=args.num_cases)
    task = build_fact_verification(cases, args.languages, test_fraction=args.test_fraction, seed=args.seed)
    train = [(row["views"]["en"]["prompt"], row["views"]["en"]["target"]) for row in task["train"]]
    test = dataset_to_requests(task["test"])

    model_path = resolve_model_path(args.model)
    folder, cached = cached_classifier(model_path, train, args)
    print(f"classifier: {folder} ({'cached' if cached else 'trained'})", file=sys.stderr)
    model, tokenizer = load_model(str(folder), task="sequence-classification", progress=False)

    languages = ["en", *args.languages]
    accuracy = {}
    for lang in languages:
        predicted = predict_labels(model, tokenizer, [r.views[lang].prompt for r in test], args.max_length)
        accuracy[lang] = sum(p == r.views[lang].target for p, r in zip(predicted, test)) / len(test)
    english = predict_labels(model, tokenizer, [r.edit.prompt for r in test], args.max_length)
    wrong = [r for r, p in zip(test, english) if p != r.edit.target][: args.num_edits]
    report = {
        "model": args.model,
        "classifier": {
            "folder": str(folder),
            "cached": cached,
            "test_accuracy": accuracy,
            "train_statements": len(train),
        },
        "cases": len(cases),
        "test_statements": len(test),
        "languages": args.languages,
        "augment_languages": args.augment_languages,
        "editors": [],
    }
    if wrong:
        # locality: the edit's neighbour statement plus a fixed pool of other test statements, every language
        pool = [r for r in test if r not in wrong][: args.locality_pool]
        shared_pool = [(lang, r.views[lang].prompt) for lang in languages for r in pool]
        edits = []
        for request in wrong:
            own = [(lang, view.locality_prompt) for lang, view in request.views.items() if view.locality_prompt]
            edits.append((request, list(dict.fromkeys(own + shared_pool))))
        keys = list(dict.fromkeys(key for _, locality in edits for key in locality))
        before = dict(zip(keys, predict_labels(model, tokenizer, [text for _, text in keys], args.max_length)))
        report["unedited"] = judge_unedited(model, tokenizer, edits, before, args)
        peft_model = get_peft_model(model, MPNConfig(layers_to_transform=[args.layer]))
        unrelated_texts = [row["views"][lang]["prompt"] for row in task["train"] for lang in languages][
            : args.memory_size * len(languages)
        ]
        shared = make_editor(
            "t-patcher",
            peft_model,
            tokenizer,
            MPNEditorConfig(seed=args.seed),
            unrelated_texts=unrelated_texts,
            progress=False,
        )
        for name in ("t-patcher", "mpn"):
            report["editors"].append(run_editor(name, peft_model, tokenizer, shared.memory, edits, before, args))
    table = (
        markdown(report, args.languages) if wrong else "No misclassified English test statement: nothing to edit.\n"
    )
    print(table)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    output.with_suffix(".md").write_text(table, encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
