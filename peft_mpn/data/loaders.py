"""Read the multilingual knowledge-editing benchmarks, in their original layouts, into edit requests.

Generation benchmarks: MzsRE, BMIKE-53 and Bi-ZsRE. Classification benchmarks: XNLI and XFEVER, whose
requests carry an int label as ``target`` and, as locality, another case's input (see :func:`load_xnli`).

Every loader returns ``list[EditRequest]`` with ``edit_language="en"`` and one :class:`FactView` per
language (English is always included: it is the edit). Files may be plain ``.json`` (as downloaded) or
gzip'd ``.json.gz``; a name given with either suffix (or none) finds the other.

Record fields map onto :class:`FactView` as ``src`` → ``prompt``, ``alt`` → ``target``, ``rephrase`` →
``rephrases`` (one, kept even where it equals ``src``), ``old`` → ``true_answer``, ``loc``/``loc_ans`` →
``locality_prompt``/``locality_answer`` (the ``"nq question: "`` prefix of MzsRE/Bi-ZsRE is dropped), and
``port``/``port_ans`` or ``portability{"New Question","New Answer"}`` → the portability pair. Surrounding
whitespace is stripped from every text (some targets start with a space).

``start``/``limit`` select ``cases[start:start + limit]`` after the languages are aligned, so a selection
is deterministic for a given set of files and languages.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from .requests import EditRequest, EditRequestError, FactView

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

PathLike = str | Path

MZSRE_LANGUAGES = ("en", "cz", "de", "du", "es", "fr", "pt", "ru", "th", "tr", "vi", "zh")
BIZSRE_LANGUAGES = ("en", "zh")
BUNDLED_SAMPLE_LANGUAGES = ("en", "de", "es", "fr", "ru", "zh", "pt", "it", "ja")
XNLI_LANGUAGES = ("en", "ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
XNLI_LABELS = ("entailment", "neutral", "contradiction")
"""XNLI's label ids, as in ``facebook/xnli``."""
XNLI_TEMPLATE = "{premise}\n{hypothesis}"
"""How an XNLI pair becomes one classifier input (language-neutral: no words to translate)."""
XFEVER_LANGUAGES = ("en", "es", "fr", "id", "ja", "zh")
XFEVER_LABELS = ("SUPPORTS", "REFUTES", "NOT ENOUGH INFO")
"""XFEVER's label ids, in the order of its code (S, R, N)."""
XFEVER_TEMPLATE = "{claim}\n{evidence}"
"""How an XFEVER claim and its evidence become one classifier input."""
DATASETS = ("mzsre", "bmike53", "bizsre", "xnli", "xfever")

_SUFFIXES = (".json", ".json.gz")
_TSV_SUFFIXES = (".tsv", ".tsv.gz")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
_MZSRE_RE = re.compile(r"^mzsre_test_duplicate_en(?P<lang>[A-Za-z-]+)\.json(?:\.gz)?$")
_BMIKE_RE = re.compile(r"^(?P<split>.+?)_test(?:_(?P<lang>[A-Za-z-]+))?\.json(?:\.gz)?$")
_BIZSRE_RE = re.compile(r"^bizsre_test\.json(?:\.gz)?$")
_NQ_PREFIX = "nq question: "
_XNLI_TSV_RE = re.compile(r"^xnli\.(?:dev|test)\.tsv(?:\.gz)?$")
_XNLI_COLUMNS = ("language", "gold_label", "sentence1", "sentence2", "pairID")
_LANG_RE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z]{2,4})?$")
_FEVER_ESCAPES = (
    ("-LRB-", "("),
    ("-RRB-", ")"),
    ("-LSB-", "["),
    ("-RSB-", "]"),
    ("-COLON-", ":"),
    ("``", '"'),
    ("''", '"'),
)
_SAMPLE_FILE = "bmike53_sample.json"
_SAMPLE_FIELDS = ("subject", "src", "rephrase", "alt", "loc", "loc_ans")

_EXPECTED_LAYOUTS = (
    "MzsRE: a folder of mzsre_test_duplicate_en{xx}.json[.gz] (or one such file); "
    "BMIKE-53: a split folder of <split>_test_<lang>.json[.gz] (or the folder above the splits, "
    "or one file); "
    "Bi-ZsRE: bizsre_test.json[.gz] (or its folder); "
    "XNLI: the XNLI-1.0 folder of xnli.dev.tsv/xnli.test.tsv[.gz] (or one of them); "
    "XFEVER: a folder of <lang>/<split>.jsonl[.gz] (or of <lang>.jsonl[.gz])"
)


class DatasetLayoutError(ValueError):
    """Benchmark files that are missing, misnamed, misaligned or not in the published layout."""


# --------------------------------------------------------------------------------------------- files


def _resolve(path: PathLike, suffixes: Sequence[str] = _SUFFIXES) -> Path:
    """``path`` itself, else the same name with another of ``suffixes`` (plain or ``.gz``, or one appended)."""
    path = Path(path).expanduser()
    if path.exists():
        return path
    stem = _stem(path.name, suffixes)
    for suffix in suffixes:
        candidate = path.with_name(stem + suffix)
        if candidate.exists():
            return candidate
    tried = " and ".join(stem + suffix for suffix in suffixes)
    raise FileNotFoundError(f"No file or folder at {path} (also tried {tried}).")


def _stem(name: str, suffixes: Sequence[str] = _SUFFIXES) -> str:
    for suffix in sorted(suffixes, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _data_files(directory: Path, suffixes: Sequence[str] = _SUFFIXES) -> list[Path]:
    """Files in ``directory`` ending in one of ``suffixes``, preferring the plain file where both exist."""
    by_stem: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name.endswith(tuple(suffixes)):
            stem = _stem(path.name, suffixes)
            if stem not in by_stem or not path.name.endswith(".gz"):
                by_stem[stem] = path
    return [by_stem[stem] for stem in sorted(by_stem)]


def _json_files(directory: Path) -> list[Path]:
    """``*.json``/``*.json.gz`` files in ``directory``, preferring the plain file where both exist."""
    return _data_files(directory, _SUFFIXES)


def _open_text(path: Path) -> IO[str]:
    """``path`` opened for reading UTF-8 text, gunzipped if it is gzip'd (whatever its name says)."""
    with path.open("rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _read_records(path: Path) -> list[dict[str, Any]]:
    """A benchmark file: a JSON list of ``{language: record}`` objects."""
    try:
        with _open_text(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetLayoutError(f"{path}: not readable as JSON ({err}).") from err
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise DatasetLayoutError(
            f"{path}: expected a JSON list of {{language: record}} objects, got {type(data).__name__}."
        )
    return data


def _check_template(template: str, fields: Sequence[str], dataset: str, default: str) -> None:
    """A clear error for a template that names something other than ``fields`` (a bare KeyError otherwise)."""
    import string

    try:
        named = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ValueError(f"The {dataset} template {template!r} is not a format string: {error}.") from error
    if not named or not named <= set(fields):
        wanted = " and/or ".join("{" + field + "}" for field in fields)
        raise ValueError(
            f"The {dataset} template {template!r} must use {wanted} and nothing else (it names {sorted(named)}); "
            f"the default is {default!r}. Write a literal brace as {{{{ or }}}}."
        )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """A JSON Lines file: one object per line (blank lines skipped)."""
    records = []
    try:
        with _open_text(path) as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DatasetLayoutError(f"{path}, line {number}: not a JSON object ({err}).") from err
                if not isinstance(record, dict):
                    raise DatasetLayoutError(
                        f"{path}, line {number}: expected a JSON object, got {type(record).__name__}."
                    )
                records.append(record)
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetLayoutError(f"{path}: not readable as UTF-8 JSON Lines ({err}).") from err
    return records


# ------------------------------------------------------------------------------------------- records


def _text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _view(record: Any, where: str) -> FactView:
    """One language's record (MzsRE, Bi-ZsRE or BMIKE-53 fields) as a :class:`FactView`."""
    if not isinstance(record, Mapping):
        raise DatasetLayoutError(f"{where}: expected a record object, got {type(record).__name__}.")
    prompt, target = _text(record, "src"), _text(record, "alt")
    for key, value in (("src", prompt), ("alt", target)):
        if value is None:
            raise DatasetLayoutError(f"{where}: the record has no {key!r} (fields: {sorted(record)}).")
    locality = _text(record, "loc")
    if locality is not None and locality.startswith(_NQ_PREFIX):
        locality = locality[len(_NQ_PREFIX) :].strip() or None
    portability = record.get("portability")
    if isinstance(portability, Mapping):
        port_q, port_a = _text(portability, "New Question"), _text(portability, "New Answer")
    else:
        port_q, port_a = _text(record, "port"), _text(record, "port_ans")
    rephrase = _text(record, "rephrase")
    return FactView(
        prompt=prompt,
        target=target,
        rephrases=(rephrase,) if rephrase else (),
        subject=_text(record, "subject"),
        true_answer=_text(record, "old"),
        locality_prompt=locality,
        locality_answer=_text(record, "loc_ans"),
        portability_question=port_q,
        portability_answer=port_a,
    )


def _request(views: dict[str, FactView], case_id: str, where: str) -> EditRequest:
    try:
        return EditRequest(views=views, edit_language="en", case_id=case_id)
    except EditRequestError as err:
        raise DatasetLayoutError(f"{where}: {err}") from err


def _languages(
    requested: str | Iterable[str] | None, available: Sequence[str], dataset: str, where: Path, fix: str
) -> list[str]:
    """The languages to load, English first; unknown ones raise a :class:`DatasetLayoutError`."""
    if requested is None:
        chosen = list(available)
    else:
        chosen = [requested] if isinstance(requested, str) else list(requested)
        missing = [lang for lang in chosen if lang not in available]
        if missing:
            raise DatasetLayoutError(
                f"{dataset} at {where} has no {', '.join(repr(m) for m in missing)} version; available: "
                f"{', '.join(available)}. Pick languages from that list, or {fix}."
            )
    return ["en", *(lang for lang in dict.fromkeys(chosen) if lang != "en")]


_Item = TypeVar("_Item")


def _select(items: list[_Item], start: int, limit: int | None) -> list[_Item]:
    if start < 0 or (limit is not None and limit < 0):
        raise ValueError(f"start and limit must be >= 0 (got start={start}, limit={limit}).")
    return items[start:] if limit is None else items[start : start + limit]


# --------------------------------------------------------------------------------------------- MzsRE


def load_mzsre(
    path: PathLike,
    languages: str | Iterable[str] | None = None,
    *,
    limit: int | None = None,
    start: int = 0,
) -> list[EditRequest]:
    """Load MzsRE (ReMaKE): a folder of ``mzsre_test_duplicate_en{xx}.json[.gz]``, or one such file.

    The files are index-aligned (case ``i`` is entry ``i`` of every file; ``case_id = str(i)``); the English
    record of each entry is checked against the other files and a mismatch raises a
    :class:`DatasetLayoutError`. Languages default to all found (en + cz de du es fr pt ru th tr vi zh).
    """
    root = _resolve(path)
    files: dict[str, Path] = {}
    for file in [root] if root.is_file() else _json_files(root):
        match = _MZSRE_RE.match(file.name)
        if match:
            files[match["lang"]] = file
    if not files:
        raise DatasetLayoutError(
            f"No MzsRE file at {root}; expected mzsre_test_duplicate_en{{xx}}.json[.gz] "
            "(xx in cz de du es fr pt ru th tr vi zh)."
        )
    order = {lang: i for i, lang in enumerate(MZSRE_LANGUAGES)}
    available = ["en", *sorted(files, key=lambda lang: (order.get(lang, len(order)), lang))]
    langs = _languages(
        languages,
        available,
        "MzsRE",
        root,
        "add the file mzsre_test_duplicate_en{xx}.json[.gz] to the folder",
    )
    to_read = [lang for lang in langs if lang != "en"] or [available[1]]
    tables = {lang: _read_records(files[lang]) for lang in to_read}

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
        views: dict[str, FactView] = {"en": _view(en, f"{ref_file.name}, case {i}, 'en'")}
        for lang, table in tables.items():
            entry = table[i]
            where = f"{files[lang].name}, case {i}"
            other = entry.get("en")
            if _key(other) != _key(en):
                raise DatasetLayoutError(
                    f"{where} is not aligned with {ref_file.name}: its English record differs "
                    f"({_brief(other)} vs {_brief(en)}). MzsRE files must be index-aligned as published "
                    "(weixuan-wang123/ReMaKE, data/MzsRE/); re-download that file or leave its language out."
                )
            if lang in langs:
                if lang not in entry:
                    raise DatasetLayoutError(f"{where} has no {lang!r} record (keys: {sorted(entry)}).")
                views[lang] = _view(entry[lang], f"{where}, {lang!r}")
        requests.append(_request(views, str(i), f"{ref_file.name}, case {i}"))
    return _select(requests, start, limit)


def _key(record: Any) -> tuple[Any, Any] | None:
    """What must agree between the English records of one case in different files."""
    return (record.get("src"), record.get("alt")) if isinstance(record, Mapping) else None


def _brief(record: Any) -> str:
    if not isinstance(record, Mapping):
        return repr(record)
    return f"src={record.get('src')!r}, alt={record.get('alt')!r}"


# ------------------------------------------------------------------------------------------ BMIKE-53


def _bmike_files(directory: Path) -> dict[str, dict[str | None, Path]]:
    """``{split: {language or None (English-only file): path}}`` for the BMIKE-53 files in ``directory``."""
    splits: dict[str, dict[str | None, Path]] = {}
    for file in _json_files(directory):
        match = _BMIKE_RE.match(file.name)
        if match and not _MZSRE_RE.match(file.name) and not _BIZSRE_RE.match(file.name):
            splits.setdefault(match["split"], {})[match["lang"]] = file
    return splits


def _find_bmike_split(root: Path, split: str | None) -> tuple[str, dict[str | None, Path]]:
    if root.is_file():
        match = _BMIKE_RE.match(root.name)
        if not match:
            raise DatasetLayoutError(f"{root.name} is not a BMIKE-53 file; expected <split>_test_<lang>.json[.gz].")
        return match["split"], {match["lang"]: root}
    splits = _bmike_files(root)
    if not splits:  # the folder above the split folders (bmike53/zsre, bmike53/counterfact)
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            for name, files in _bmike_files(sub).items():
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
    """Load a BMIKE-53 split: a folder of ``<split>_test_<lang>.json[.gz]`` (any split name).

    ``split`` is inferred from the file names when there is one; ``path`` may also be the folder above the
    split folders (then give ``split`` if there are several) or a single file. ``<split>_test.json`` is
    English-only and optional. ``<split>_test_en.json`` is not a language of its own (in the published data
    it is a copy of the German file); English comes from the ``"en"`` record of every file, and the English
    records are checked to agree across files.

    Cases are aligned by ``case_id``. A case with no version in some requested language (e.g. 39 zsRE cases
    in Hebrew) is dropped with a warning giving the counts; ``strict=True`` raises instead.
    """
    root = _resolve(path)
    split, files = _find_bmike_split(root, split)
    available = ["en", *sorted(lang for lang in files if lang not in (None, "en"))]
    langs = _languages(
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
        for i, entry in enumerate(_read_records(file)):
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
                if _key(first) != _key(en):
                    raise DatasetLayoutError(
                        f"{where}: the English record differs from {first_where} "
                        f"({_brief(en)} vs {_brief(first)}); BMIKE-53 files must share their English records "
                        "per case_id. Re-download the published files (ercong21/MultiKnow, data/BMIKE53/) or "
                        "leave that language out."
                    )
            else:
                english[case_id] = (en, where)
                order[case_id] = None
            if lang is not None and entry.get(lang) is not None:
                version = entry[lang]
                if isinstance(version, Mapping) and str(version.get("case_id", case_id)) != case_id:
                    raise DatasetLayoutError(
                        f"{where}: the {lang!r} record has case_id {version['case_id']!r}; "
                        "it must match the English one."
                    )
                versions[lang][case_id] = version

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
        views = {"en": _view(en, f"{where}, 'en'")}
        views.update((lang, _view(found[case_id], f"{where}, {lang!r}")) for lang, found in versions.items())
        requests.append(_request(views, case_id, where))
    return _select(requests, start, limit)


# ------------------------------------------------------------------------------------------- Bi-ZsRE


def load_bizsre(
    path: PathLike,
    languages: str | Iterable[str] | None = None,
    *,
    limit: int | None = None,
    start: int = 0,
) -> list[EditRequest]:
    """Load the Bi-ZsRE test set: ``bizsre_test.json[.gz]`` (or its folder), a list of ``{"en", "zh"}``."""
    root = _resolve(path)
    if root.is_dir():
        found = [file for file in _json_files(root) if _BIZSRE_RE.match(file.name)]
        if not found:
            raise DatasetLayoutError(f"No bizsre_test.json[.gz] in {root}.")
        root = found[0]
    langs = _languages(languages, list(BIZSRE_LANGUAGES), "Bi-ZsRE", root, "use another benchmark")
    requests = []
    for i, entry in enumerate(_read_records(root)):
        where = f"{root.name}, case {i}"
        absent = [lang for lang in langs if lang not in entry]
        if absent:
            raise DatasetLayoutError(f"{where} has no {absent} record (keys: {sorted(entry)}).")
        views = {lang: _view(entry[lang], f"{where}, {lang!r}") for lang in langs}
        requests.append(_request(views, str(i), where))
    return _select(requests, start, limit)


# ------------------------------------------------------------------------------------ classification


Case = tuple[str, dict[str, FactView]]  # (case_id, {language: view}); locality is filled in afterwards


def _classification_requests(cases: Sequence[Case], where: str, locality_step: int = 1) -> list[EditRequest]:
    """Classification requests from ``(case_id, {language: view})``, with locality from a neighbouring case.

    Locality for a classifier is another case's input: every view's ``locality_prompt`` becomes the prompt, in
    the same language, of the case ``locality_step`` places further on (wrapping round; none if that is the
    case itself). ``locality_answer`` stays ``None``: locality is agreement with the unedited prediction.
    """
    requests = []
    for i, (case_id, views) in enumerate(cases):
        j = (i + locality_step) % len(cases)
        neighbour = cases[j][1] if j != i else {}
        views = {
            lang: replace(view, locality_prompt=neighbour[lang].prompt if lang in neighbour else None)
            for lang, view in views.items()
        }
        requests.append(_request(views, case_id, f"{where}, case {case_id}"))
    return requests


def _label_id(value: Any, names: Sequence[str], where: str, aliases: Mapping[str, int] | None = None) -> int:
    """A label given as its id or its name (or a short form in ``aliases``) as the id."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return value
    if isinstance(value, str):
        key = value.strip()
        if key in names:
            return names.index(key)
        if aliases and key in aliases:
            return aliases[key]
    raise DatasetLayoutError(
        f"{where}: unknown label {value!r}; expected one of {', '.join(names)} (or their ids 0-{len(names) - 1})."
    )


def _check_parallel(case_id: str, versions: Mapping[str, FactView], langs: Sequence[str], where: str, fix: str):
    """Every requested language present, all with one label: otherwise the languages are misaligned."""
    absent = [lang for lang in langs if lang not in versions]
    if absent:
        raise DatasetLayoutError(
            f"{where}: case {case_id!r} has no {', '.join(repr(a) for a in absent)} version; the languages are "
            f"not aligned. {fix}"
        )
    labels = {lang: versions[lang].target for lang in langs}
    if len(set(labels.values())) > 1:
        raise DatasetLayoutError(
            f"{where}: case {case_id!r} has different labels across languages ({labels}); the languages are not "
            f"aligned. {fix}"
        )


def _ordered_languages(found: Iterable[str], order: Sequence[str], dataset: str, where: Path) -> list[str]:
    """English first, then ``order``'s languages, then any others; no English is an error."""
    rank = {lang: i for i, lang in enumerate(order)}
    found = sorted(set(found), key=lambda lang: (rank.get(lang, len(rank)), lang))
    if "en" not in found:
        raise DatasetLayoutError(
            f"{dataset} at {where} has no English version (languages: {', '.join(found) or 'none'}); edits are "
            "made in English, so add the English file."
        )
    return ["en", *(lang for lang in found if lang != "en")]


# --------------------------------------------------------------------------------------------- XNLI


def _xnli_split(split: str) -> str:
    """The ``datasets`` split name (``"dev"``, XNLI-1.0's file name, is ``"validation"``)."""
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
    """Load XNLI as classification edit requests (``target``: 0/1/2 = entailment/neutral/contradiction).

    ``source`` is one of:

    - ``None``: the Hub's ``facebook/xnli``, ``datasets.load_dataset("facebook/xnli", lang, split=split)`` per
      language (needs internet; languages default to all 15);
    - the XNLI-1.0 folder (``xnli.dev.tsv``/``xnli.test.tsv``, plain or ``.gz``; ``split`` picks the file) or
      one such file: rows are aligned across languages by ``pairID``, which becomes the ``case_id``;
    - a folder written by ``save_to_disk``, or a loaded ``Dataset``/``DatasetDict``: the ``all_languages``
      config (``premise`` holds every language), a ``DatasetDict`` keyed by split (``split`` picks one) or by
      language, or a ``{language: Dataset}`` mapping of the per-language configs; those are index-aligned and
      the ``case_id`` is the row index.

    Each view's ``prompt`` is ``template`` filled with ``premise`` and ``hypothesis`` (default: one per line,
    the same in every language); ``locality_prompt`` is the next selected case's input. A case whose label
    differs across languages, or that lacks a requested language, raises a :class:`DatasetLayoutError`.
    ``start``/``limit`` select ``cases[start:start + limit]``.
    """
    _check_template(template, ("premise", "hypothesis"), "XNLI", XNLI_TEMPLATE)
    if source is None:
        from datasets import load_dataset

        langs = _languages(languages, list(XNLI_LANGUAGES), "XNLI", Path("facebook/xnli"), "use another dataset")
        source = {lang: load_dataset("facebook/xnli", lang, split=_xnli_split(split)) for lang in langs}
    elif isinstance(source, (str, Path)):
        root = _resolve(source, _TSV_SUFFIXES)
        if not (root.is_dir() and any((root / name).is_file() for name in ("dataset_dict.json", "state.json"))):
            cases = _xnli_tsv_cases(root, languages, split, template)
            return _classification_requests(_select(cases, start, limit), root.name)
        from datasets import load_from_disk

        source = load_from_disk(str(root))
    cases = _xnli_dataset_cases(source, languages, split, start, limit, template)
    return _classification_requests(cases, "XNLI dataset")


def _xnli_tsv_cases(root: Path, languages: Any, split: str, template: str) -> list[Case]:
    path = root
    if root.is_dir():
        name = {"test": "xnli.test", "validation": "xnli.dev"}.get(_xnli_split(split))
        if name is None:
            raise DatasetLayoutError(f"XNLI-1.0 has the splits 'test' and 'validation' ('dev'), not {split!r}.")
        try:
            path = _resolve(root / f"{name}.tsv", _TSV_SUFFIXES)
        except FileNotFoundError as err:
            raise DatasetLayoutError(
                f"No {name}.tsv[.gz] in {root}; point at the XNLI-1.0 folder of XNLI-1.0.zip or pass another split."
            ) from err
    cases: dict[str, dict[str, FactView]] = {}
    try:
        with _open_text(path) as fh:
            reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = [column for column in _XNLI_COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise DatasetLayoutError(
                    f"{path.name}: no column(s) {missing} (header: {reader.fieldnames}); expected the XNLI-1.0 TSV "
                    "(language, gold_label, ..., sentence1, sentence2, ..., pairID, ...)."
                )
            for line, row in enumerate(reader, start=2):
                where = f"{path.name}, line {line}"
                label = _label_id(row["gold_label"], XNLI_LABELS, where)
                text = template.format(premise=row["sentence1"].strip(), hypothesis=row["sentence2"].strip())
                versions = cases.setdefault(row["pairID"], {})
                if row["language"] in versions:
                    raise DatasetLayoutError(f"{where}: pairID {row['pairID']} appears twice in {row['language']!r}.")
                versions[row["language"]] = FactView(prompt=text, target=label)
    except (UnicodeDecodeError, csv.Error) as err:
        raise DatasetLayoutError(f"{path}: not readable as a UTF-8 TSV ({err}).") from err
    found = {lang for versions in cases.values() for lang in versions}
    langs = _languages(
        languages, _ordered_languages(found, XNLI_LANGUAGES, "XNLI", path), "XNLI", path, "use the full XNLI-1.0 file"
    )
    fix = "Re-download XNLI-1.0.zip (every pairID has a row in all 15 languages) or leave that language out."
    for pair_id, versions in cases.items():
        _check_parallel(pair_id, versions, langs, path.name, fix)
    return [(pair_id, {lang: versions[lang] for lang in langs}) for pair_id, versions in cases.items()]


def _xnli_dataset_cases(
    source: Any, languages: Any, split: str, start: int, limit: int | None, template: str
) -> list[Case]:
    from datasets import ClassLabel, Dataset

    def in_split(item: Any) -> Any:
        if isinstance(item, Mapping) and not isinstance(item, Dataset):
            if _xnli_split(split) not in item:
                raise DatasetLayoutError(f"No split {split!r} in the XNLI DatasetDict (splits: {sorted(item)}).")
            return item[_xnli_split(split)]
        return item

    if isinstance(source, Mapping) and (set(source) & {"train", "validation", "test"}):
        source = in_split(source)  # a DatasetDict keyed by split
    where = Path("XNLI dataset")
    if isinstance(source, Mapping):  # {language: per-language config}
        tables = {str(lang): in_split(table) for lang, table in source.items()}
        langs = _languages(
            languages, _ordered_languages(tables, XNLI_LANGUAGES, "XNLI", where), "XNLI", where, "add it"
        )
        sizes = {lang: len(tables[lang]) for lang in langs}
        if len(set(sizes.values())) > 1:
            raise DatasetLayoutError(
                f"The per-language XNLI datasets have different lengths ({sizes}); they are index-aligned, so they "
                "must come from the same split of facebook/xnli."
            )
        indices = _select(list(range(sizes["en"])), start, limit)
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
        langs = _languages(
            languages, _ordered_languages(premise.languages, XNLI_LANGUAGES, "XNLI", where), "XNLI", where, "add it"
        )
        indices = _select(list(range(len(source))), start, limit)
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
            label = _label_id(label, XNLI_LABELS, f"XNLI case {case_id}, {lang!r}")
            text = template.format(premise=premise_text.strip(), hypothesis=hypothesis.strip())
            versions[lang] = FactView(prompt=text, target=label)
        _check_parallel(case_id, versions, langs, "XNLI dataset", fix)
        cases.append((case_id, versions))
    return cases


# ------------------------------------------------------------------------------------------- XFEVER


def _fever_text(text: str) -> str:
    """FEVER's Penn-Treebank escapes (``-LRB-`` ...) as the characters they stand for."""
    for escaped, char in _FEVER_ESCAPES:
        text = text.replace(escaped, char)
    return " ".join(text.split())


def _xfever_files(root: Path, split: str) -> dict[str, Path]:
    """``{language: file}``: ``<root>/<lang>/<split>.jsonl[.gz]`` (as published) or ``<root>/<lang>.jsonl[.gz]``."""
    if root.is_file():
        stem = _stem(root.name, _JSONL_SUFFIXES)
        lang = stem if _LANG_RE.match(stem) else root.parent.name
        if not _LANG_RE.match(lang):
            raise DatasetLayoutError(
                f"{root} is neither <lang>.jsonl nor <lang>/<split>.jsonl; XFEVER files are named by language."
            )
        return {lang: root}
    files = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and _LANG_RE.match(p.name)):
        found = [f for f in _data_files(sub, _JSONL_SUFFIXES) if _stem(f.name, _JSONL_SUFFIXES) == split]
        if found:
            files[sub.name] = found[0]
    if not files:
        for file in _data_files(root, _JSONL_SUFFIXES):
            stem = _stem(file.name, _JSONL_SUFFIXES)
            if _LANG_RE.match(stem):
                files[stem] = file
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
    """Load XFEVER as classification edit requests (``target``: 0/1/2 = SUPPORTS/REFUTES/NOT ENOUGH INFO).

    ``path`` is the data folder as published (``<lang>/<split>.jsonl``, lang in en es fr id ja zh; ``split``
    picks the file), a split folder of ``<lang>.jsonl``, or one file; files may be gzip'd. Every line is
    ``{"id", "claim", "label", "evidence"?, "page"?}``; languages are aligned by ``id`` (``case_id``), in the
    English file's order. The label is the name (or its first letter, as XFEVER's code reads it) or the id.

    ``prompt`` is the claim alone when ``evidence=False`` or a line has none, else ``template`` filled with the
    claim and ``"<page> : <evidence>"`` (XFEVER's input); FEVER's ``-LRB-``-style escapes are undone.
    ``locality_prompt`` is the next selected case's input. An id missing in a requested language, or labelled
    differently, raises a :class:`DatasetLayoutError`.
    """
    if evidence:
        _check_template(template, ("claim", "evidence"), "XFEVER", XFEVER_TEMPLATE)
    root = _resolve(path, _JSONL_SUFFIXES)
    files = _xfever_files(root, split)
    fix = f"add {{lang}}/{split}.jsonl to {root}" if root.is_dir() else "point at the folder of all languages"
    langs = _languages(languages, _ordered_languages(files, XFEVER_LANGUAGES, "XFEVER", root), "XFEVER", root, fix)
    aliases = {name[0]: i for i, name in enumerate(XFEVER_LABELS)}
    tables: dict[str, dict[str, FactView]] = {}
    for lang in langs:
        table: dict[str, FactView] = {}
        for number, record in enumerate(_read_jsonl(files[lang]), start=1):
            where = f"{files[lang].name} ({lang}), line {number}"
            claim = _text(record, "claim")
            if record.get("id") is None or claim is None or record.get("label") is None:
                raise DatasetLayoutError(
                    f"{where}: every line needs 'id', 'claim' and 'label' (has {sorted(record)})."
                )
            case_id = str(record["id"])
            if case_id in table:
                raise DatasetLayoutError(f"{where}: id {case_id} appears twice; ids must be unique within a file.")
            text = _fever_text(claim)
            proof = _text(record, "evidence") if evidence else None
            if proof is not None:
                page = _text(record, "page")
                proof = _fever_text(f"{page.replace('_', ' ')} : {proof}" if page else proof)
                text = template.format(claim=text, evidence=proof)
            table[case_id] = FactView(prompt=text, target=_label_id(record["label"], XFEVER_LABELS, where, aliases))
        tables[lang] = table
    fix = "Use the files of one XFEVER release and split, or leave that language out."
    cases = []
    for case_id in tables["en"]:
        versions = {lang: tables[lang][case_id] for lang in langs if case_id in tables[lang]}
        _check_parallel(case_id, versions, langs, files["en"].parent.name or str(root), fix)
        cases.append((case_id, versions))
    for lang in langs:
        extra = [case_id for case_id in tables[lang] if case_id not in tables["en"]]
        if extra:
            raise DatasetLayoutError(
                f"{files[lang]}: {len(extra)} id(s) not in the English file (first: {extra[0]}); the languages are "
                f"not aligned. {fix}"
            )
    return _classification_requests(_select(cases, start, limit), str(root.name))


# ------------------------------------------------------------------------------------------- generic


def _is_xfever_folder(root: Path) -> bool:
    try:
        return bool(_xfever_files(root, "test")) or any(
            _data_files(sub, _JSONL_SUFFIXES) for sub in root.iterdir() if sub.is_dir() and _LANG_RE.match(sub.name)
        )
    except DatasetLayoutError:
        return False


def detect_layout(path: PathLike) -> str:
    """``"mzsre"``, ``"bmike53"``, ``"bizsre"``, ``"xnli"`` or ``"xfever"`` from the file names at ``path``."""
    root = _resolve(path, _SUFFIXES + _TSV_SUFFIXES + _JSONL_SUFFIXES)
    names = [root.name] if root.is_file() else [file.name for file in _json_files(root)]
    if any(_XNLI_TSV_RE.match(name) for name in ([root.name] if root.is_file() else os.listdir(root))):
        return "xnli"
    if root.name.endswith(_JSONL_SUFFIXES) or (root.is_dir() and _is_xfever_folder(root)):
        return "xfever"
    if any(_MZSRE_RE.match(name) for name in names):
        return "mzsre"
    if any(_BIZSRE_RE.match(name) for name in names):
        return "bizsre"
    if root.is_file() and _BMIKE_RE.match(root.name):
        return "bmike53"
    if root.is_dir():
        subdirs = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
        if any(lang for sub in subdirs for files in _bmike_files(sub).values() for lang in files):
            return "bmike53"
    names = names if root.is_file() else sorted(os.listdir(root))
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else "nothing"
    raise DatasetLayoutError(
        f"Unknown benchmark layout at {root} (found: {shown}). Expected one of: {_EXPECTED_LAYOUTS}. "
        f"Rename the files as published or pass dataset= (one of {', '.join(DATASETS)})."
    )


def load_edit_requests(path: PathLike, dataset: str | None = None, **kwargs: Any) -> list[EditRequest]:
    """Load any supported benchmark from ``path``; ``dataset`` (one of :data:`DATASETS`) or detected.

    ``kwargs`` go to the loader (``languages``, ``limit``, ``start``; ``split``/``strict`` for BMIKE-53;
    ``split``/``template`` for XNLI and XFEVER, ``evidence`` for XFEVER).
    """
    dataset = detect_layout(path) if dataset is None else dataset.lower().replace("-", "").replace("_", "")
    loaders = {
        "mzsre": load_mzsre,
        "bmike53": load_bmike53,
        "bizsre": load_bizsre,
        "xnli": load_xnli,
        "xfever": load_xfever,
    }
    if dataset not in loaders:
        raise DatasetLayoutError(f"Unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)} or None.")
    return loaders[dataset](path, **kwargs)


# ------------------------------------------------------------------------------------- bundled sample


def load_bundled_sample(languages: str | Iterable[str] | None = None) -> list[EditRequest]:
    """The 24-case BMIKE-53 zsRE sample shipped with the package (en de es fr ru zh pt it ja; MIT).

    It has no portability questions (left out to keep the file small). See
    ``peft_mpn/resources/BMIKE53_SAMPLE_LICENSE.md`` for its source and :func:`build_bmike53_sample`.
    """
    text = resources.files("peft_mpn").joinpath("resources", _SAMPLE_FILE).read_text(encoding="utf-8")
    sample = json.loads(text)
    fields, where = sample["fields"], Path(f"peft_mpn/resources/{_SAMPLE_FILE}")
    langs = _languages(languages, sample["languages"], "The bundled BMIKE-53 sample", where, "load BMIKE-53 itself")
    requests = []
    for case in sample["cases"]:
        views = {lang: _view(dict(zip(fields, case[lang])), f"{where.name}, {case['case_id']}") for lang in langs}
        requests.append(_request(views, str(case["case_id"]), where.name))
    return requests


def build_bmike53_sample(
    split_dir: PathLike,
    out: PathLike | None = None,
    *,
    n: int = 24,
    languages: Sequence[str] = BUNDLED_SAMPLE_LANGUAGES,
    max_target_words: int = 3,
) -> dict[str, Any]:
    """Rebuild the bundled sample from BMIKE-53's zsRE split folder (writes it to ``out`` if given).

    Selection: in file order, the first ``n`` case_ids present in all ``languages`` whose English target has
    at most ``max_target_words`` words. Portability is left out to keep the file under 60 KB.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = load_bmike53(split_dir, "zsre", languages)
    chosen = [req for req in cases if len(req.edit.target.split()) <= max_target_words][:n]

    def row(view: FactView) -> list[str | None]:  # in the order of _SAMPLE_FIELDS
        rephrase = view.rephrases[0] if view.rephrases else None
        return [view.subject, view.prompt, rephrase, view.target, view.locality_prompt, view.locality_answer]

    sample = {
        "source": "BMIKE-53 (github.com/ercong21/MultiKnow, data/BMIKE53/), zsRE split; MIT per the authors",
        "selection": f"first {n} case_ids present in all languages with an English target of "
        f"<= {max_target_words} words; texts stripped; portability left out",
        "languages": list(languages),
        "fields": list(_SAMPLE_FIELDS),
        "cases": [{"case_id": req.case_id, **{lang: row(req.views[lang]) for lang in languages}} for req in chosen],
    }
    if out is not None:
        head = json.dumps({k: v for k, v in sample.items() if k != "cases"}, ensure_ascii=False)[:-1]
        lines = ",\n".join(json.dumps(case, ensure_ascii=False, separators=(",", ":")) for case in sample["cases"])
        Path(out).write_text(f'{head}, "cases": [\n{lines}\n]}}\n', encoding="utf-8")
    return sample


# ------------------------------------------------------------------------------------------ datasets


def requests_to_dataset(requests: Sequence[EditRequest]) -> Dataset:
    """A :class:`datasets.Dataset` with columns ``case_id``, ``edit_language`` and ``views``.

    ``views`` is a struct with one field per language (the union over the requests, ``None`` where a request
    has no version), each a :class:`FactView` struct. Targets must all be strings or all int labels.
    """
    from datasets import Dataset, Features, List, Value

    if not requests:
        raise ValueError("No requests to convert; a Dataset needs at least one to fix its schema.")
    kinds = {req.is_generation for req in requests}
    if len(kinds) > 1:
        raise EditRequestError("Mixed generation and classification requests cannot share one Dataset schema.")
    string = Value("string")
    view = {
        "prompt": string,
        "target": string if kinds == {True} else Value("int64"),
        "rephrases": List(string),
        **{
            name: string
            for name in (
                "subject",
                "true_answer",
                "locality_prompt",
                "locality_answer",
                "portability_question",
                "portability_answer",
            )
        },
    }
    languages = list(dict.fromkeys(lang for req in requests for lang in req.views))
    features = Features(
        {"case_id": string, "edit_language": string, "views": {lang: dict(view) for lang in languages}}
    )
    rows = []
    for req in requests:
        record = req.to_dict()
        record["views"] = {lang: record["views"].get(lang) for lang in languages}
        rows.append(record)
    return Dataset.from_list(rows, features=features)


def dataset_to_requests(dataset: Iterable[Mapping[str, Any]]) -> list[EditRequest]:
    """Inverse of :func:`requests_to_dataset` (any iterable of such rows)."""
    return [EditRequest.from_dict(row) for row in dataset]


__all__ = [
    "BIZSRE_LANGUAGES",
    "BUNDLED_SAMPLE_LANGUAGES",
    "DATASETS",
    "MZSRE_LANGUAGES",
    "XFEVER_LABELS",
    "XFEVER_LANGUAGES",
    "XFEVER_TEMPLATE",
    "XNLI_LABELS",
    "XNLI_LANGUAGES",
    "XNLI_TEMPLATE",
    "DatasetLayoutError",
    "build_bmike53_sample",
    "dataset_to_requests",
    "detect_layout",
    "load_bizsre",
    "load_bmike53",
    "load_bundled_sample",
    "load_edit_requests",
    "load_mzsre",
    "load_xfever",
    "load_xnli",
    "requests_to_dataset",
]
