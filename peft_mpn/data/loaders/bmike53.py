"""BMIKE-53 (Nie et al. 2024): split folders of `<split>_test_<lang>.json[.gz]`, aligned by `case_id`."""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..requests import EditRequest
from .bizsre import BIZSRE_FILE
from .mzsre import MZSRE_FILE
from .reading import (
    DatasetLayoutError,
    PathLike,
    brief,
    choose_languages,
    edit_request,
    english_key,
    json_files,
    read_records,
    record_view,
    resolve,
    select,
)

BMIKE53_LANGUAGES = (
    "en", "af", "ar", "az", "be", "bg", "bn", "ca", "ceb", "cs", "cy", "da", "de", "el", "es", "et", "eu", "fa",
    "fi", "fr", "ga", "gl", "he", "hi", "hr", "hu", "hy", "id", "it", "ja", "ka", "ko", "la", "lt", "lv", "ms",
    "nl", "pl", "pt", "ro", "ru", "sk", "sl", "sq", "sr", "sv", "ta", "th", "tr", "uk", "ur", "vi", "zh",
)  # fmt: skip
"""The 53 languages of the published zsRE and CounterFact splits (the loader offers whatever files it finds)."""
BMIKE53_FILE = re.compile(r"^(?P<split>.+?)_test(?:_(?P<lang>[A-Za-z-]+))?\.json(?:\.gz)?$")
"""A BMIKE-53 file name; `lang` is absent in the English-only `<split>_test.json`."""
_REDOWNLOAD = "re-download the published files (ercong21/MultiKnow, data/BMIKE53/)"


def _split_files(directory: Path) -> dict[str, dict[str | None, Path]]:
    """`{split: {language or None (English-only file): path}}` for the BMIKE-53 files in `directory`."""
    splits: dict[str, dict[str | None, Path]] = {}
    for file in json_files(directory):
        match = BMIKE53_FILE.match(file.name)
        if match and not MZSRE_FILE.match(file.name) and not BIZSRE_FILE.match(file.name):
            splits.setdefault(match["split"], {})[match["lang"]] = file
    return splits


def _find_split(root: Path, split: str | None) -> tuple[str, dict[str | None, Path]]:
    if root.is_file():
        match = BMIKE53_FILE.match(root.name)
        if not match:
            raise DatasetLayoutError(f"{root.name} is not a BMIKE-53 file; expected <split>_test_<lang>.json[.gz].")
        return match["split"], {match["lang"]: root}
    splits = _split_files(root)
    if not splits:  # the folder above the split folders (bmike53/zsre, bmike53/counterfact)
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            for name, files in _split_files(sub).items():
                splits.setdefault(name, files)
    if split is not None:
        if split not in splits:
            raise DatasetLayoutError(
                f"No BMIKE-53 split {split!r} at {root} (found: {sorted(splits) or 'none'}); expected files "
                f"named {split}_test_<lang>.json[.gz]."
            )
        return split, splits[split]
    if len(splits) != 1:
        found = f"several splits ({', '.join(sorted(splits))})" if splits else "no <split>_test_<lang>.json[.gz] file"
        raise DatasetLayoutError(f"Found {found} at {root}; pass split=... or point at one split folder.")
    return next(iter(splits.items()))


def load_bmike53(
    path: PathLike,
    split: str | None = None,
    languages: str | Iterable[str] | None = None,
    *,
    limit: int | None = None,
    start: int = 0,
    strict: bool = False,
) -> list[EditRequest]:
    """Load a BMIKE-53 split: a folder of `<split>_test_<lang>.json[.gz]` (any split name).

    Several splits joined by `+` (`"zsre+counterfact"`, from the folder above the split folders) load as one
    dataset: each split's cases in turn, their `case_id`s prefixed with the split's name (`"zsre/17"`), since
    the splits number their cases independently. A lifelong stream takes its 1,000 edits from both.

    `split` is inferred from the file names when there is one; `path` may also be the folder above the
    split folders (then give `split` if there are several) or a single file. `<split>_test.json` is
    English-only and optional. `<split>_test_en.json` is not a language of its own (in the published data
    it is a copy of the German file); English comes from the `"en"` record of every file, and the English
    records are checked to agree across files.

    Cases are aligned by `case_id`: each language's record is matched to its case by its own `case_id`, so a
    file whose records of that language are in another order than its English ones still loads aligned (a
    record without one is refused). A case with no version in some requested language (e.g. 39 zsRE cases
    in Hebrew) is dropped with a warning giving the counts; `strict=True` raises instead.
    """
    root = resolve(path)
    if split is not None and "+" in split:
        return select(_joined_splits(root, split, languages, strict), start, limit)
    split, files = _find_split(root, split)
    available = ["en", *sorted(lang for lang in files if lang not in (None, "en"))]
    langs = choose_languages(
        languages,
        available,
        f"BMIKE-53 split {split!r}",
        root,
        f"add {split}_test_<lang>.json[.gz] to the folder",
    )
    english_file = files.get(None) or files.get("en") or files[available[1]]
    to_read: list[tuple[str | None, Path]] = [(None, english_file)] if len(langs) == 1 else []
    to_read += [(lang, files[lang]) for lang in langs[1:]]

    order: dict[str, None] = {}
    english: dict[str, tuple[dict[str, Any], str]] = {}
    versions: dict[str, dict[str, dict[str, Any]]] = {lang: {} for lang in langs[1:]}
    for lang, file in to_read:
        seen: set[str] = set()
        by_case: dict[str, Any] = {}  # this file's `lang` records by their own case_id
        for i, entry in enumerate(read_records(file)):
            en = entry.get("en")
            if not isinstance(en, Mapping) or en.get("case_id") is None:
                raise DatasetLayoutError(f"{file.name}, entry {i}: no English record with a case_id.")
            case_id = str(en["case_id"])
            where = f"{file.name}, case_id {case_id}"
            if case_id in seen:
                raise DatasetLayoutError(f"{where} appears twice; case_ids must be unique within a file.")
            seen.add(case_id)
            if case_id in english:
                first, first_where = english[case_id]
                if english_key(first) != english_key(en):
                    raise DatasetLayoutError(
                        f"{where}: the English record differs from {first_where} "
                        f"({brief(en)} vs {brief(first)}); BMIKE-53 files must share their English records "
                        "per case_id. Re-download the published files (ercong21/MultiKnow, data/BMIKE53/) or "
                        "leave that language out."
                    )
            else:
                english[case_id] = (en, where)
                order[case_id] = None
            if lang is not None and entry.get(lang) is not None:
                version = entry[lang]
                if isinstance(version, Mapping) and version.get("case_id") is None:
                    raise DatasetLayoutError(
                        f"{where}: the {lang!r} record has no case_id, so nothing says which fact it translates; "
                        f"{_REDOWNLOAD}."
                    )
                own = str(version["case_id"]) if isinstance(version, Mapping) else case_id
                if own in by_case:
                    raise DatasetLayoutError(
                        f"{file.name}: the {lang!r} record of case_id {own} appears twice; {_REDOWNLOAD}."
                    )
                by_case[own] = version
        if lang is not None:
            strays = [own for own in by_case if own not in seen]
            if strays:
                raise DatasetLayoutError(
                    f"{file.name}: the {lang!r} record(s) of case_id(s) {strays[:5]} have no English record in that "
                    f"file; {_REDOWNLOAD}."
                )
            versions[lang] = by_case

    kept = [case_id for case_id in order if all(case_id in found for found in versions.values())]
    missing = {lang: sum(cid not in found for cid in order) for lang, found in versions.items()}
    counts = ", ".join(f"{lang}: {n}" for lang, n in missing.items() if n)
    if counts:
        message = f"BMIKE-53 {split!r}: of {len(order)} cases, some have no version in a requested language"
        if strict:
            raise DatasetLayoutError(
                f"{message} ({counts}). Leave those languages out, or pass strict=False to drop the cases."
            )
        warnings.warn(
            f"{message} ({counts}); keeping the {len(kept)} cases present in all of them "
            "(strict=True raises instead).",
            stacklevel=2,
        )
    requests = []
    for case_id in kept:
        en, where = english[case_id]
        views = {"en": record_view(en, f"{where}, 'en'")}
        views.update((lang, record_view(found[case_id], f"{where}, {lang!r}")) for lang, found in versions.items())
        requests.append(edit_request(views, case_id, where))
    return select(requests, start, limit)


def _joined_splits(root: Path, splits: str, languages: str | Iterable[str] | None, strict: bool) -> list[EditRequest]:
    """Every case of each `+`-joined split, in turn, with case ids `<split>/<case_id>`."""
    names = splits.split("+")
    if any(not name for name in names) or len(set(names)) != len(names):
        raise ValueError(
            f"Joined BMIKE-53 splits must be distinct names separated by '+' (e.g. 'zsre+counterfact'), "
            f"got {splits!r}."
        )
    if languages is not None and not isinstance(languages, str):
        languages = list(languages)  # read once per split
    joined: list[EditRequest] = []
    for name in names:
        for request in load_bmike53(root, name, languages, strict=strict):
            joined.append(dataclasses.replace(request, case_id=f"{name}/{request.case_id}"))
    return joined


def is_bmike53(root: Path) -> bool:
    """Whether `root` is a BMIKE-53 file, a split folder, or the folder above the split folders."""
    if root.is_file():
        return bool(BMIKE53_FILE.match(root.name))
    subdirs = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    return any(lang for sub in subdirs for files in _split_files(sub).values() for lang in files)
