"""XNLI (Conneau et al. 2018) as classification edits: the XNLI-1.0 TSVs, `datasets` objects or the Hub."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..requests import EditRequest, FactView
from .classification import Case, check_parallel, classification_requests, label_id
from .reading import (
    TSV_SUFFIXES,
    DatasetLayoutError,
    PathLike,
    check_template,
    choose_languages,
    open_text,
    ordered_languages,
    readable,
    resolve,
    select,
)

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

XNLI_LANGUAGES = ("en", "ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
XNLI_LABELS = ("entailment", "neutral", "contradiction")
"""XNLI's label ids, as in `facebook/xnli`."""
XNLI_TEMPLATE = "{premise}\n{hypothesis}"
"""How an XNLI pair becomes one classifier input (language-neutral: no words to translate)."""
XNLI_TSV = re.compile(r"^xnli\.(?:dev|test)\.tsv(?:\.gz)?$")
"""The XNLI-1.0 file names."""

_COLUMNS = ("language", "gold_label", "sentence1", "sentence2", "pairID")


def _split_name(split: str) -> str:
    """The `datasets` split name (`"dev"`, XNLI-1.0's file name, is `"validation"`)."""
    return "validation" if split == "dev" else split


def load_xnli(
    source: PathLike | Dataset | DatasetDict | Mapping[str, Any] | None = None,
    languages: str | Iterable[str] | None = None,
    *,
    split: str = "test",
    limit: int | None = None,
    start: int = 0,
    template: str = XNLI_TEMPLATE,
) -> list[EditRequest]:
    """Load XNLI as classification edit requests (`target`: 0/1/2 = entailment/neutral/contradiction).

    `source` is one of:

    - `None`: the Hub's `facebook/xnli`, `datasets.load_dataset("facebook/xnli", lang, split=split)` per
      language (needs internet; languages default to all 15);
    - the XNLI-1.0 folder (`xnli.dev.tsv`/`xnli.test.tsv`, plain or `.gz`; `split` picks the file) or
      one such file: rows are aligned across languages by `pairID`, which becomes the `case_id`;
    - a folder written by `save_to_disk`, or a loaded `Dataset`/`DatasetDict`: the `all_languages`
      config (`premise` holds every language), a `DatasetDict` keyed by split (`split` picks one) or by
      language, or a `{language: Dataset}` mapping of the per-language configs; those are index-aligned and
      the `case_id` is the row index.

    Each view's `prompt` is `template` filled with `premise` and `hypothesis` (default: one per line,
    the same in every language); `locality_prompt` is the next selected case's input. A case whose label
    differs across languages, or that lacks a requested language, raises a
    [`DatasetLayoutError`][peft_mpn.data.DatasetLayoutError]. `start`/`limit` select
    `cases[start:start + limit]`.
    """
    check_template(template, ("premise", "hypothesis"), "XNLI", XNLI_TEMPLATE)
    if source is None:
        from datasets import load_dataset

        langs = choose_languages(languages, list(XNLI_LANGUAGES), "XNLI", Path("facebook/xnli"), "use another dataset")
        source = {lang: load_dataset("facebook/xnli", lang, split=_split_name(split)) for lang in langs}
    elif isinstance(source, (str, Path)):
        root = resolve(source, TSV_SUFFIXES)
        if not (root.is_dir() and any((root / name).is_file() for name in ("dataset_dict.json", "state.json"))):
            cases = _tsv_cases(root, languages, split, template)
            return classification_requests(select(cases, start, limit), root.name)
        from datasets import load_from_disk

        source = load_from_disk(str(root))
    cases = _dataset_cases(source, languages, split, start, limit, template)
    return classification_requests(cases, "XNLI dataset")


def is_xnli(root: Path) -> bool:
    """Whether `root` is an XNLI-1.0 TSV or a folder holding one."""
    return any(XNLI_TSV.match(name) for name in ([root.name] if root.is_file() else os.listdir(root)))


def _tsv_cases(root: Path, languages: Any, split: str, template: str) -> list[Case]:
    path = root
    if root.is_dir():
        name = {"test": "xnli.test", "validation": "xnli.dev"}.get(_split_name(split))
        if name is None:
            raise DatasetLayoutError(f"XNLI-1.0 has the splits 'test' and 'validation' ('dev'), not {split!r}.")
        try:
            path = resolve(root / f"{name}.tsv", TSV_SUFFIXES)
        except FileNotFoundError as err:
            raise DatasetLayoutError(
                f"No {name}.tsv[.gz] in {root}; point at the XNLI-1.0 folder of XNLI-1.0.zip or pass another split."
            ) from err
    cases: dict[str, dict[str, FactView]] = {}
    try:
        with readable(path), open_text(path) as fh:
            reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = [column for column in _COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise DatasetLayoutError(
                    f"{path.name}: no column(s) {missing} (header: {reader.fieldnames}); expected the XNLI-1.0 TSV "
                    "(language, gold_label, ..., sentence1, sentence2, ..., pairID, ...)."
                )
            for line, row in enumerate(reader, start=2):
                where = f"{path.name}, line {line}"
                label = label_id(row["gold_label"], XNLI_LABELS, where)
                text = template.format(premise=row["sentence1"].strip(), hypothesis=row["sentence2"].strip())
                versions = cases.setdefault(row["pairID"], {})
                if row["language"] in versions:
                    raise DatasetLayoutError(f"{where}: pairID {row['pairID']} appears twice in {row['language']!r}.")
                versions[row["language"]] = FactView(prompt=text, target=label)
    except csv.Error as err:
        raise DatasetLayoutError(f"{path} is not a readable TSV ({err}); re-download it.") from err
    found = {lang for versions in cases.values() for lang in versions}
    langs = choose_languages(
        languages, ordered_languages(found, XNLI_LANGUAGES, "XNLI", path), "XNLI", path, "use the full XNLI-1.0 file"
    )
    fix = "Re-download XNLI-1.0.zip (every pairID has a row in all 15 languages) or leave that language out."
    for pair_id, versions in cases.items():
        check_parallel(pair_id, versions, langs, path.name, fix)
    return [(pair_id, {lang: versions[lang] for lang in langs}) for pair_id, versions in cases.items()]


def _dataset_cases(
    source: Any, languages: Any, split: str, start: int, limit: int | None, template: str
) -> list[Case]:
    from datasets import ClassLabel, Dataset

    def in_split(item: Any) -> Any:
        if isinstance(item, Mapping) and not isinstance(item, Dataset):
            if _split_name(split) not in item:
                raise DatasetLayoutError(f"No split {split!r} in the XNLI DatasetDict (splits: {sorted(item)}).")
            return item[_split_name(split)]
        return item

    if isinstance(source, Mapping) and (set(source) & {"train", "validation", "test"}):
        source = in_split(source)  # a DatasetDict keyed by split
    where = Path("XNLI dataset")
    if isinstance(source, Mapping):  # {language: per-language config}
        tables = {str(lang): in_split(table) for lang, table in source.items()}
        langs = choose_languages(
            languages, ordered_languages(tables, XNLI_LANGUAGES, "XNLI", where), "XNLI", where, "add it"
        )
        sizes = {lang: len(tables[lang]) for lang in langs}
        if len(set(sizes.values())) > 1:
            raise DatasetLayoutError(
                f"The per-language XNLI datasets have different lengths ({sizes}); they are index-aligned, so they "
                "must come from the same split of facebook/xnli."
            )
        indices = select(list(range(sizes["en"])), start, limit)
        columns: dict[str, dict[str, list[Any]]] = {}
        for lang in langs:
            table = tables[lang]
            missing = [c for c in ("premise", "hypothesis", "label") if c not in table.column_names]
            if missing:
                raise DatasetLayoutError(
                    f"The {lang!r} XNLI dataset has no {missing} column (has {table.column_names})."
                )
            feature = table.features["label"]
            if isinstance(feature, ClassLabel) and tuple(feature.names) != XNLI_LABELS:
                raise DatasetLayoutError(
                    f"The {lang!r} XNLI labels are {feature.names}, expected {list(XNLI_LABELS)}."
                )
            columns[lang] = table.select(indices)[:]
        fields = ("premise", "hypothesis", "label")
        rows = [{lang: tuple(columns[lang][f][k] for f in fields) for lang in langs} for k in range(len(indices))]
    elif isinstance(source, Dataset):  # the all_languages config
        premise = source.features.get("premise") if "premise" in source.column_names else None
        if not hasattr(premise, "languages"):
            raise DatasetLayoutError(
                "This XNLI Dataset does not say its language (no per-language 'premise'); pass "
                "{language: dataset} for the per-language configs, or the 'all_languages' config."
            )
        langs = choose_languages(
            languages, ordered_languages(premise.languages, XNLI_LANGUAGES, "XNLI", where), "XNLI", where, "add it"
        )
        indices = select(list(range(len(source))), start, limit)
        rows = []
        for row in source.select(indices):
            hypotheses = dict(zip(row["hypothesis"]["language"], row["hypothesis"]["translation"]))
            rows.append({lang: (row["premise"].get(lang), hypotheses.get(lang), row["label"]) for lang in langs})
    else:
        raise TypeError(
            f"Cannot read XNLI from a {type(source).__name__}; pass a path, a datasets Dataset/DatasetDict, "
            "{language: Dataset}, or None for the Hub."
        )
    cases = []
    fix = "Load every language from the same split of facebook/xnli, in its published order."
    for index, row in zip(indices, rows):
        case_id, versions = str(index), {}
        for lang, (premise_text, hypothesis, label) in row.items():
            if not premise_text or not hypothesis:
                raise DatasetLayoutError(f"XNLI case {case_id}: the {lang!r} premise or hypothesis is missing.")
            label = label_id(label, XNLI_LABELS, f"XNLI case {case_id}, {lang!r}")
            text = template.format(premise=premise_text.strip(), hypothesis=hypothesis.strip())
            versions[lang] = FactView(prompt=text, target=label)
        check_parallel(case_id, versions, langs, "XNLI dataset", fix)
        cases.append((case_id, versions))
    return cases
