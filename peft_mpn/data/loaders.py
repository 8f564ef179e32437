"""Read the multilingual knowledge-editing benchmarks, in their original layouts, into edit requests.

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

import gzip
import json
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .requests import EditRequest, EditRequestError, FactView

if TYPE_CHECKING:
    from datasets import Dataset

PathLike = str | Path

MZSRE_LANGUAGES = ("en", "cz", "de", "du", "es", "fr", "pt", "ru", "th", "tr", "vi", "zh")
BIZSRE_LANGUAGES = ("en", "zh")
BUNDLED_SAMPLE_LANGUAGES = ("en", "de", "es", "fr", "ru", "zh", "pt", "it", "ja")
DATASETS = ("mzsre", "bmike53", "bizsre")

_SUFFIXES = (".json", ".json.gz")
_MZSRE_RE = re.compile(r"^mzsre_test_duplicate_en(?P<lang>[A-Za-z-]+)\.json(?:\.gz)?$")
_BMIKE_RE = re.compile(r"^(?P<split>.+?)_test(?:_(?P<lang>[A-Za-z-]+))?\.json(?:\.gz)?$")
_BIZSRE_RE = re.compile(r"^bizsre_test\.json(?:\.gz)?$")
_NQ_PREFIX = "nq question: "
_SAMPLE_FILE = "bmike53_sample.json"
_SAMPLE_FIELDS = ("subject", "src", "rephrase", "alt", "loc", "loc_ans")

_EXPECTED_LAYOUTS = (
    "MzsRE: a folder of mzsre_test_duplicate_en{xx}.json[.gz] (or one such file); "
    "BMIKE-53: a split folder of <split>_test_<lang>.json[.gz] (or the folder above the splits, "
    "or one file); "
    "Bi-ZsRE: bizsre_test.json[.gz] (or its folder)"
)


class DatasetLayoutError(ValueError):
    """Benchmark files that are missing, misnamed, misaligned or not in the published layout."""


# --------------------------------------------------------------------------------------------- files


def _resolve(path: PathLike) -> Path:
    """``path`` itself, else the same name with the other of ``.json``/``.json.gz`` (or either appended)."""
    path = Path(path).expanduser()
    if path.exists():
        return path
    name = path.name
    stem = name[: -len(".gz")] if name.endswith(".json.gz") else name
    stem = stem[: -len(".json")] if stem.endswith(".json") else stem
    for suffix in _SUFFIXES:
        candidate = path.with_name(stem + suffix)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"No file or folder at {path} (also tried {stem}.json and {stem}.json.gz).")


def _stem(name: str) -> str:
    return name[: -len(".json.gz")] if name.endswith(".json.gz") else name.removesuffix(".json")


def _json_files(directory: Path) -> list[Path]:
    """``*.json``/``*.json.gz`` files in ``directory``, preferring the plain file where both exist."""
    by_stem: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name.endswith(_SUFFIXES):
            stem = _stem(path.name)
            if stem not in by_stem or path.name.endswith(".json"):
                by_stem[stem] = path
    return [by_stem[stem] for stem in sorted(by_stem)]


def _read_records(path: Path) -> list[dict[str, Any]]:
    """A benchmark file: a JSON list of ``{language: record}`` objects."""
    with path.open("rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetLayoutError(f"{path}: not readable as JSON ({err}).") from err
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise DatasetLayoutError(
            f"{path}: expected a JSON list of {{language: record}} objects, got {type(data).__name__}."
        )
    return data


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


def _select(items: list[EditRequest], start: int, limit: int | None) -> list[EditRequest]:
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


# ------------------------------------------------------------------------------------------- generic


def detect_layout(path: PathLike) -> str:
    """``"mzsre"``, ``"bmike53"`` or ``"bizsre"`` from the file names at ``path``."""
    root = _resolve(path)
    names = [root.name] if root.is_file() else [file.name for file in _json_files(root)]
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
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else "no .json[.gz] file"
    raise DatasetLayoutError(
        f"Unknown benchmark layout at {root} (found: {shown}). Expected one of: {_EXPECTED_LAYOUTS}. "
        f"Rename the files as published or pass dataset= (one of {', '.join(DATASETS)})."
    )


def load_edit_requests(path: PathLike, dataset: str | None = None, **kwargs: Any) -> list[EditRequest]:
    """Load any supported benchmark; ``dataset`` (``"mzsre"``, ``"bmike53"``, ``"bizsre"``) or detected.

    ``kwargs`` go to the loader (``languages``, ``limit``, ``start``; ``split``/``strict`` for BMIKE-53).
    """
    dataset = detect_layout(path) if dataset is None else dataset.lower().replace("-", "").replace("_", "")
    loaders = {"mzsre": load_mzsre, "bmike53": load_bmike53, "bizsre": load_bizsre}
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
    "DatasetLayoutError",
    "build_bmike53_sample",
    "dataset_to_requests",
    "detect_layout",
    "load_bizsre",
    "load_bmike53",
    "load_bundled_sample",
    "load_edit_requests",
    "load_mzsre",
    "requests_to_dataset",
]
