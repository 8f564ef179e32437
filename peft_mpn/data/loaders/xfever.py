"""XFEVER (FEVER in six languages) as classification edits: `<lang>/<split>.jsonl[.gz]`, aligned by `id`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ..requests import EditRequest, FactView
from .classification import check_parallel, classification_requests, label_id
from .reading import (
    JSONL_SUFFIXES,
    DatasetLayoutError,
    PathLike,
    check_template,
    choose_languages,
    data_files,
    ordered_languages,
    read_jsonl,
    record_text,
    resolve,
    select,
    stem,
)

XFEVER_LANGUAGES = ("en", "es", "fr", "id", "ja", "zh")
XFEVER_LABELS = ("SUPPORTS", "REFUTES", "NOT ENOUGH INFO")
"""XFEVER's label ids, in the order of its code (S, R, N)."""
XFEVER_TEMPLATE = "{claim}\n{evidence}"
"""How an XFEVER claim and its evidence become one classifier input."""

_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z]{2,4})?$")
_FEVER_ESCAPES = (
    ("-LRB-", "("),
    ("-RRB-", ")"),
    ("-LSB-", "["),
    ("-RSB-", "]"),
    ("-COLON-", ":"),
    ("``", '"'),
    ("''", '"'),
)


def _fever_text(text: str) -> str:
    """FEVER's Penn-Treebank escapes (`-LRB-` ...) as the characters they stand for."""
    for escaped, char in _FEVER_ESCAPES:
        text = text.replace(escaped, char)
    return " ".join(text.split())


def _language_files(root: Path, split: str) -> dict[str, Path]:
    """`{language: file}`: `<root>/<lang>/<split>.jsonl[.gz]` (as published) or `<root>/<lang>.jsonl[.gz]`."""
    if root.is_file():
        name = stem(root.name, JSONL_SUFFIXES)
        lang = name if _LANGUAGE.match(name) else root.parent.name
        if not _LANGUAGE.match(lang):
            raise DatasetLayoutError(
                f"{root} is neither <lang>.jsonl nor <lang>/<split>.jsonl; XFEVER files are named by language."
            )
        return {lang: root}
    files = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and _LANGUAGE.match(p.name)):
        found = [f for f in data_files(sub, JSONL_SUFFIXES) if stem(f.name, JSONL_SUFFIXES) == split]
        if found:
            files[sub.name] = found[0]
    if not files:
        for file in data_files(root, JSONL_SUFFIXES):
            name = stem(file.name, JSONL_SUFFIXES)
            if _LANGUAGE.match(name):
                files[name] = file
    if not files:
        raise DatasetLayoutError(
            f"No XFEVER files at {root}; expected <lang>/{split}.jsonl[.gz] (lang in {' '.join(XFEVER_LANGUAGES)}), "
            "as published, or a split folder of <lang>.jsonl[.gz]."
        )
    return files


def load_xfever(
    path: PathLike,
    languages: str | Iterable[str] | None = None,
    *,
    split: str = "test",
    limit: int | None = None,
    start: int = 0,
    template: str = XFEVER_TEMPLATE,
    evidence: bool = True,
) -> list[EditRequest]:
    """Load XFEVER as classification edit requests (`target`: 0/1/2 = SUPPORTS/REFUTES/NOT ENOUGH INFO).

    `path` is the data folder as published (`<lang>/<split>.jsonl`, lang in en es fr id ja zh; `split`
    picks the file), a split folder of `<lang>.jsonl`, or one file; files may be gzip'd. Every line is
    `{"id", "claim", "label", "evidence"?, "page"?}`; languages are aligned by `id` (`case_id`), in the
    English file's order. The label is the name (or its first letter, as XFEVER's code reads it) or the id.

    `prompt` is the claim alone when `evidence=False` or a line has none, else `template` filled with the
    claim and `"<page> : <evidence>"` (XFEVER's input); FEVER's `-LRB-`-style escapes are undone.
    `locality_prompt` is the next selected case's input. An id missing in a requested language, or labelled
    differently, raises a [`DatasetLayoutError`][peft_mpn.data.DatasetLayoutError].
    """
    if evidence:
        check_template(template, ("claim", "evidence"), "XFEVER", XFEVER_TEMPLATE)
    root = resolve(path, JSONL_SUFFIXES)
    files = _language_files(root, split)
    fix = f"add {{lang}}/{split}.jsonl to {root}" if root.is_dir() else "point at the folder of all languages"
    langs = choose_languages(
        languages, ordered_languages(files, XFEVER_LANGUAGES, "XFEVER", root), "XFEVER", root, fix
    )
    aliases = {name[0]: i for i, name in enumerate(XFEVER_LABELS)}
    tables: dict[str, dict[str, FactView]] = {}
    for lang in langs:
        table: dict[str, FactView] = {}
        for number, record in enumerate(read_jsonl(files[lang]), start=1):
            where = f"{files[lang].name} ({lang}), line {number}"
            claim = record_text(record, "claim")
            if record.get("id") is None or claim is None or record.get("label") is None:
                raise DatasetLayoutError(
                    f"{where}: every line needs 'id', 'claim' and 'label' (has {sorted(record)})."
                )
            case_id = str(record["id"])
            if case_id in table:
                raise DatasetLayoutError(f"{where}: id {case_id} appears twice; ids must be unique within a file.")
            text = _fever_text(claim)
            proof = record_text(record, "evidence") if evidence else None
            if proof is not None:
                page = record_text(record, "page")
                proof = _fever_text(f"{page.replace('_', ' ')} : {proof}" if page else proof)
                text = template.format(claim=text, evidence=proof)
            table[case_id] = FactView(prompt=text, target=label_id(record["label"], XFEVER_LABELS, where, aliases))
        tables[lang] = table
    fix = "Use the files of one XFEVER release and split, or leave that language out."
    cases = []
    for case_id in tables["en"]:
        versions = {lang: tables[lang][case_id] for lang in langs if case_id in tables[lang]}
        check_parallel(case_id, versions, langs, files["en"].parent.name or str(root), fix)
        cases.append((case_id, versions))
    for lang in langs:
        extra = [case_id for case_id in tables[lang] if case_id not in tables["en"]]
        if extra:
            raise DatasetLayoutError(
                f"{files[lang]}: {len(extra)} id(s) not in the English file (first: {extra[0]}); the languages are "
                f"not aligned. {fix}"
            )
    return classification_requests(select(cases, start, limit), str(root.name))


def is_xfever(root: Path) -> bool:
    """Whether `root` is a JSON Lines file or a folder in one of XFEVER's layouts."""
    if root.name.endswith(JSONL_SUFFIXES):
        return True
    if not root.is_dir():
        return False
    try:
        return bool(_language_files(root, "test")) or any(
            data_files(sub, JSONL_SUFFIXES) for sub in root.iterdir() if sub.is_dir() and _LANGUAGE.match(sub.name)
        )
    except DatasetLayoutError:
        return False
