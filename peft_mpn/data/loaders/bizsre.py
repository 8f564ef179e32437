"""Bi-ZsRE (Wang et al. 2023): `bizsre_test.json[.gz]`, a list of `{"en": record, "zh": record}`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ..requests import EditRequest
from .reading import (
    DatasetLayoutError,
    PathLike,
    choose_languages,
    edit_request,
    json_files,
    json_names,
    read_records,
    record_view,
    resolve,
    select,
)

BIZSRE_LANGUAGES = ("en", "zh")
BIZSRE_FILE = re.compile(r"^bizsre_test\.json(?:\.gz)?$")
"""The Bi-ZsRE test file's name."""


def load_bizsre(
    path: PathLike,
    languages: str | Iterable[str] | None = None,
    *,
    limit: int | None = None,
    start: int = 0,
) -> list[EditRequest]:
    """Load the Bi-ZsRE test set: `bizsre_test.json[.gz]` (or its folder), a list of `{"en", "zh"}`."""
    root = resolve(path)
    if root.is_dir():
        found = [file for file in json_files(root) if BIZSRE_FILE.match(file.name)]
        if not found:
            raise DatasetLayoutError(f"No bizsre_test.json[.gz] in {root}.")
        root = found[0]
    langs = choose_languages(languages, list(BIZSRE_LANGUAGES), "Bi-ZsRE", root, "use another benchmark")
    requests = []
    for i, entry in enumerate(read_records(root)):
        where = f"{root.name}, case {i}"
        absent = [lang for lang in langs if lang not in entry]
        if absent:
            raise DatasetLayoutError(f"{where} has no {absent} record (keys: {sorted(entry)}).")
        views = {lang: record_view(entry[lang], f"{where}, {lang!r}") for lang in langs}
        requests.append(edit_request(views, str(i), where))
    return select(requests, start, limit)


def is_bizsre(root: Path) -> bool:
    """Whether `root` is the Bi-ZsRE test file or a folder holding it."""
    return any(BIZSRE_FILE.match(name) for name in json_names(root))
