"""What every loader shares: files (plain or gzip'd), JSON and JSON Lines, records to requests, languages.

A loader for another benchmark is written with these: resolve the path, read its records, turn each
language's record into a [`FactView`][peft_mpn.FactView] and each case into an
[`EditRequest`][peft_mpn.EditRequest], and raise [`DatasetLayoutError`][peft_mpn.data.DatasetLayoutError]
(naming the file and the fix) for anything that is not in the published layout.
"""

from __future__ import annotations

import gzip
import json
import string
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from ..requests import EditRequest, EditRequestError, FactView

PathLike = str | Path
"""A file or folder, as a string or a `Path` (`~` is expanded)."""

JSON_SUFFIXES = (".json", ".json.gz")
TSV_SUFFIXES = (".tsv", ".tsv.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")

_NQ_PREFIX = "nq question: "


class DatasetLayoutError(ValueError):
    """Benchmark files that are missing, misnamed, misaligned or not in the published layout."""


# --------------------------------------------------------------------------------------------- files


def resolve(path: PathLike, suffixes: Sequence[str] = JSON_SUFFIXES) -> Path:
    """`path` itself, else the same name with another of `suffixes` (plain or `.gz`, or one appended).

    Raises:
        FileNotFoundError: naming every name tried.
    """
    path = Path(path).expanduser()
    if path.exists():
        return path
    name = stem(path.name, suffixes)
    for suffix in suffixes:
        candidate = path.with_name(name + suffix)
        if candidate.exists():
            return candidate
    tried = " and ".join(name + suffix for suffix in suffixes)
    raise FileNotFoundError(f"No file or folder at {path} (also tried {tried}).")


def stem(name: str, suffixes: Sequence[str] = JSON_SUFFIXES) -> str:
    """`name` without the longest of `suffixes` it ends in (unchanged if none)."""
    for suffix in sorted(suffixes, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def data_files(directory: Path, suffixes: Sequence[str] = JSON_SUFFIXES) -> list[Path]:
    """Files in `directory` ending in one of `suffixes`, preferring the plain file where both exist."""
    by_stem: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name.endswith(tuple(suffixes)):
            key = stem(path.name, suffixes)
            if key not in by_stem or not path.name.endswith(".gz"):
                by_stem[key] = path
    return [by_stem[key] for key in sorted(by_stem)]


def json_files(directory: Path) -> list[Path]:
    """`*.json`/`*.json.gz` files in `directory`, preferring the plain file where both exist."""
    return data_files(directory, JSON_SUFFIXES)


def json_names(root: Path) -> list[str]:
    """The name of the file `root`, or of the JSON files in the folder `root`."""
    return [root.name] if root.is_file() else [file.name for file in json_files(root)]


def open_text(path: Path) -> IO[str]:
    """`path` opened for reading UTF-8 text, gunzipped if it is gzip'd (whatever its name says)."""
    with path.open("rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


@contextmanager
def readable(path: Path) -> Iterator[None]:
    """Reading `path` inside this turns a damaged file's error into a `DatasetLayoutError` naming it and the fix.

    Truncated or damaged gzip data, text that is not UTF-8, invalid or too deeply nested JSON, and unreadable
    files are covered; layout errors raised inside pass through.
    """
    try:
        yield
    except EOFError as err:
        raise DatasetLayoutError(f"{path} is truncated (its gzip data ends early); re-download it.") from err
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DatasetLayoutError(f"{path} is a damaged gzip file ({err}); re-download it.") from err
    except UnicodeDecodeError as err:
        raise DatasetLayoutError(
            f"{path} is not UTF-8 text ({err.reason}); re-download it, or save it as UTF-8."
        ) from err
    except json.JSONDecodeError as err:
        raise DatasetLayoutError(f"{path} is not valid JSON ({err}); re-download it.") from err
    except RecursionError as err:
        raise DatasetLayoutError(f"{path} is nested too deeply to be read as JSON; re-download it.") from err
    except OSError as err:
        raise DatasetLayoutError(f"{path} cannot be read ({err}); check that it is a readable file.") from err


def read_records(path: Path) -> list[dict[str, Any]]:
    """A benchmark file: a JSON list of `{language: record}` objects."""
    with readable(path), open_text(path) as fh:
        data = json.load(fh)
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise DatasetLayoutError(
            f"{path}: expected a JSON list of {{language: record}} objects, got {type(data).__name__}."
        )
    return data


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """A JSON Lines file: one object per line (blank lines skipped)."""
    records = []
    with readable(path), open_text(path) as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as err:
                raise DatasetLayoutError(
                    f"{path}, line {number}: not a JSON object ({err}); re-download the file."
                ) from err
            if not isinstance(record, dict):
                raise DatasetLayoutError(
                    f"{path}, line {number}: expected a JSON object, got {type(record).__name__}."
                )
            records.append(record)
    return records


def check_template(template: str, fields: Sequence[str], dataset: str, default: str) -> None:
    """A clear error for a template that names something other than `fields` (a bare `KeyError` otherwise)."""
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


# ------------------------------------------------------------------------------------------- records


def record_text(record: Mapping[str, Any], key: str) -> str | None:
    """`record[key]` as stripped text; `None` when absent, `None` or blank."""
    value = record.get(key)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def record_view(record: Any, where: str) -> FactView:
    """One language's record (MzsRE, Bi-ZsRE or BMIKE-53 fields) as a [`FactView`][peft_mpn.FactView].

    `where` names the record (file, case) in the error raised when it is not an object, or has no `src`/`alt` or
    an empty one.
    """
    if not isinstance(record, Mapping):
        raise DatasetLayoutError(f"{where}: expected a record object, got {type(record).__name__}.")
    prompt, target = record_text(record, "src"), record_text(record, "alt")
    for key, value, meaning in (("src", prompt, "the question"), ("alt", target, "the new answer")):
        if value is not None:
            continue
        if key not in record:
            raise DatasetLayoutError(f"{where}: the record has no {key!r} (fields: {sorted(record)}).")
        raise DatasetLayoutError(
            f"{where}: the record's {key!r} ({meaning}) is empty ({record[key]!r}); write it into the file, or "
            "leave this case out."
        )
    locality = record_text(record, "loc")
    if locality is not None and locality.startswith(_NQ_PREFIX):
        locality = locality[len(_NQ_PREFIX) :].strip() or None
    portability = record.get("portability")
    if isinstance(portability, Mapping):
        port_q, port_a = record_text(portability, "New Question"), record_text(portability, "New Answer")
    else:
        port_q, port_a = record_text(record, "port"), record_text(record, "port_ans")
    rephrase = record_text(record, "rephrase")
    return FactView(
        prompt=prompt,
        target=target,
        rephrases=(rephrase,) if rephrase else (),
        subject=record_text(record, "subject"),
        true_answer=record_text(record, "old"),
        locality_prompt=locality,
        locality_answer=record_text(record, "loc_ans"),
        portability_question=port_q,
        portability_answer=port_a,
    )


def edit_request(views: dict[str, FactView], case_id: str, where: str) -> EditRequest:
    """An English-edit request; an invalid one raises a `DatasetLayoutError` naming `where`."""
    try:
        return EditRequest(views=views, edit_language="en", case_id=case_id)
    except EditRequestError as err:
        raise DatasetLayoutError(f"{where}: {err}") from err


def english_key(record: Any) -> tuple[Any, Any] | None:
    """What must agree between the English records of one case in different files."""
    return (record.get("src"), record.get("alt")) if isinstance(record, Mapping) else None


def brief(record: Any) -> str:
    """A record's `src` and `alt`, for error messages."""
    if not isinstance(record, Mapping):
        return repr(record)
    return f"src={record.get('src')!r}, alt={record.get('alt')!r}"


# ----------------------------------------------------------------------------------------- languages


def choose_languages(
    requested: str | Iterable[str] | None, available: Sequence[str], dataset: str, where: Path, fix: str
) -> list[str]:
    """The languages to load, English first; unknown ones raise a `DatasetLayoutError` that suggests `fix`."""
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


def ordered_languages(found: Iterable[str], order: Sequence[str], dataset: str, where: Path) -> list[str]:
    """English first, then `order`'s languages, then any others; no English is an error."""
    rank = {lang: i for i, lang in enumerate(order)}
    found = sorted(set(found), key=lambda lang: (rank.get(lang, len(rank)), lang))
    if "en" not in found:
        raise DatasetLayoutError(
            f"{dataset} at {where} has no English version (languages: {', '.join(found) or 'none'}); edits are "
            "made in English, so add the English file."
        )
    return ["en", *(lang for lang in found if lang != "en")]


_Item = TypeVar("_Item")


def select(items: list[_Item], start: int, limit: int | None) -> list[_Item]:
    """`items[start:start + limit]` (all from `start` when `limit` is `None`); negative values raise."""
    if start < 0 or (limit is not None and limit < 0):
        raise ValueError(f"start and limit must be >= 0 (got start={start}, limit={limit}).")
    return items[start:] if limit is None else items[start : start + limit]
