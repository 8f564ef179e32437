"""MzsRE (ReMaKE, Wang et al. 2023): index-aligned `mzsre_test_duplicate_en{xx}.json[.gz]` files."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ..requests import EditRequest, FactView
from .reading import (
    DatasetLayoutError,
    PathLike,
    brief,
    choose_languages,
    edit_request,
    english_key,
    json_files,
    json_names,
    read_records,
    record_view,
    resolve,
    select,
)

MZSRE_LANGUAGES = ("en", "cz", "de", "du", "es", "fr", "pt", "ru", "th", "tr", "vi", "zh")
MZSRE_FILE = re.compile(r"^mzsre_test_duplicate_en(?P<lang>[A-Za-z-]+)\.json(?:\.gz)?$")
"""An MzsRE file name; `lang` is the language paired with English."""


def load_mzsre(
    path: PathLike,
    languages: str | Iterable[str] | None = None,
    *,
    limit: int | None = None,
    start: int = 0,
) -> list[EditRequest]:
    """Load MzsRE (ReMaKE): a folder of `mzsre_test_duplicate_en{xx}.json[.gz]`, or one such file.

    The files are index-aligned (case `i` is entry `i` of every file; `case_id = str(i)`); the English
    record of each entry is checked against the other files and a mismatch raises a
    [`DatasetLayoutError`][peft_mpn.data.DatasetLayoutError]. Languages default to all found
    (en + cz de du es fr pt ru th tr vi zh).
    """
    root = resolve(path)
    files: dict[str, Path] = {}
    for file in [root] if root.is_file() else json_files(root):
        match = MZSRE_FILE.match(file.name)
        if match:
            files[match["lang"]] = file
    if not files:
        raise DatasetLayoutError(
            f"No MzsRE file at {root}; expected mzsre_test_duplicate_en{{xx}}.json[.gz] "
            "(xx in cz de du es fr pt ru th tr vi zh)."
        )
    order = {lang: i for i, lang in enumerate(MZSRE_LANGUAGES)}
    available = ["en", *sorted(files, key=lambda lang: (order.get(lang, len(order)), lang))]
    langs = choose_languages(
        languages,
        available,
        "MzsRE",
        root,
        "add the file mzsre_test_duplicate_en{xx}.json[.gz] to the folder",
    )
    to_read = [lang for lang in langs if lang != "en"] or [available[1]]
    tables = {lang: read_records(files[lang]) for lang in to_read}

    ref_lang = to_read[0]
    ref, ref_file = tables[ref_lang], files[ref_lang]
    for lang, table in tables.items():
        if len(table) != len(ref):
            raise DatasetLayoutError(
                f"{files[lang].name} has {len(table)} cases but {ref_file.name} has {len(ref)}; MzsRE files "
                "are index-aligned, so they must have the same length. Re-download the published files "
                "(weixuan-wang123/ReMaKE, data/MzsRE/) or leave that language out."
            )
    requests = []
    for i in range(len(ref)):
        en = ref[i].get("en")
        views: dict[str, FactView] = {"en": record_view(en, f"{ref_file.name}, case {i}, 'en'")}
        for lang, table in tables.items():
            entry = table[i]
            where = f"{files[lang].name}, case {i}"
            other = entry.get("en")
            if english_key(other) != english_key(en):
                raise DatasetLayoutError(
                    f"{where} is not aligned with {ref_file.name}: its English record differs "
                    f"({brief(other)} vs {brief(en)}). MzsRE files must be index-aligned as published "
                    "(weixuan-wang123/ReMaKE, data/MzsRE/); re-download that file or leave its language out."
                )
            if lang in langs:
                if lang not in entry:
                    raise DatasetLayoutError(f"{where} has no {lang!r} record (keys: {sorted(entry)}).")
                views[lang] = record_view(entry[lang], f"{where}, {lang!r}")
        requests.append(edit_request(views, str(i), f"{ref_file.name}, case {i}"))
    return select(requests, start, limit)


def is_mzsre(root: Path) -> bool:
    """Whether `root` is an MzsRE file or a folder holding one."""
    return any(MZSRE_FILE.match(name) for name in json_names(root))
