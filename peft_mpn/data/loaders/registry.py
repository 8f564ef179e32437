"""The benchmarks, each declared once: its loader, the options that loader takes, its languages, its kind.

[`load_edit_requests`][peft_mpn.data.load_edit_requests] and [`detect_layout`][peft_mpn.data.detect_layout]
dispatch through this table; [`DATASETS`][peft_mpn.data.DATASETS] (the `--dataset` choices) is its names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ..requests import EditRequest
from .bizsre import BIZSRE_LANGUAGES, is_bizsre, load_bizsre
from .bmike53 import BMIKE53_LANGUAGES, is_bmike53, load_bmike53
from .mzsre import MZSRE_LANGUAGES, is_mzsre, load_mzsre
from .reading import JSON_SUFFIXES, JSONL_SUFFIXES, TSV_SUFFIXES, DatasetLayoutError, PathLike, resolve
from .xfever import XFEVER_LABELS, XFEVER_LANGUAGES, is_xfever, load_xfever
from .xnli import XNLI_LABELS, XNLI_LANGUAGES, is_xnli, load_xnli


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """One benchmark as `load_edit_requests` and `detect_layout` see it: declared once, in `registry.py`.

    Attributes:
        name: the `dataset=` value and `--dataset` choice, e.g. `"bmike53"`.
        title: the benchmark's name in messages, e.g. `"BMIKE-53"`.
        load: the loader, called as `load(path, **options)`.
        task: `"generation"` (the requests' `target` is a string) or `"classification"` (an int label).
        languages: the published languages, English first (a loader offers what the files hold).
        options: the keyword arguments `load` takes, each with what it means for this benchmark.
        layout: the published file layout, as `detect_layout`'s error describes it.
        suffixes: the file suffixes of that layout, plain and gzip'd.
        detect: whether a path (resolved, existing) is in this layout.
        detect_order: `detect_layout` asks the benchmarks in this order, lowest first.
        labels: the label names by id (classification only).
    """

    name: str
    title: str
    load: Callable[..., list[EditRequest]] = field(repr=False)
    task: Literal["generation", "classification"]
    languages: tuple[str, ...]
    options: Mapping[str, str]
    layout: str
    suffixes: tuple[str, ...]
    detect: Callable[[Path], bool] = field(repr=False)
    detect_order: int
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def is_generation(self) -> bool:
        """Whether the requests are generation cases (a string `target`), not classification (a label)."""
        return self.task == "generation"


_START = "the first case kept (default 0), counted after the languages are aligned"
_LIMIT = "how many cases to keep from `start` (default: all)"

# detect_order: XNLI and XFEVER are told by their TSV/JSON Lines names before the JSON layouts are tried;
# MzsRE before Bi-ZsRE; BMIKE-53's `<split>_test.json` would also match `bizsre_test.json`, so it comes last.
_SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        name="mzsre",
        title="MzsRE",
        load=load_mzsre,
        task="generation",
        languages=MZSRE_LANGUAGES,
        options={
            "languages": "which mzsre_test_duplicate_en{xx} files to read (default: all found); English always",
            "start": f"{_START}; cases are in file order, `case_id` is the index",
            "limit": _LIMIT,
        },
        layout="a folder of mzsre_test_duplicate_en{xx}.json[.gz] (or one such file)",
        suffixes=JSON_SUFFIXES,
        detect=is_mzsre,
        detect_order=2,
    ),
    DatasetSpec(
        name="bmike53",
        title="BMIKE-53",
        load=load_bmike53,
        task="generation",
        languages=BMIKE53_LANGUAGES,
        options={
            "split": "the split, e.g. `zsre` or `counterfact` (any <split>_test_<lang> prefix); needed only "
            "when `path` holds several; `zsre+counterfact` joins splits (case ids `<split>/<case_id>`)",
            "languages": "which <split>_test_<lang> files to read (default: all found); English always",
            "start": f"{_START}; cases are in file order, aligned by `case_id`",
            "limit": _LIMIT,
            "strict": "raise instead of dropping (with a warning) the cases missing in a requested language",
        },
        layout="a split folder of <split>_test_<lang>.json[.gz] (or the folder above the splits, or one file)",
        suffixes=JSON_SUFFIXES,
        detect=is_bmike53,
        detect_order=4,
    ),
    DatasetSpec(
        name="bizsre",
        title="Bi-ZsRE",
        load=load_bizsre,
        task="generation",
        languages=BIZSRE_LANGUAGES,
        options={
            "languages": "`en` and/or `zh` (default: both); English always",
            "start": f"{_START}; cases are in file order, `case_id` is the index",
            "limit": _LIMIT,
        },
        layout="bizsre_test.json[.gz] (or its folder)",
        suffixes=JSON_SUFFIXES,
        detect=is_bizsre,
        detect_order=3,
    ),
    DatasetSpec(
        name="xnli",
        title="XNLI",
        load=load_xnli,
        task="classification",
        languages=XNLI_LANGUAGES,
        options={
            "split": "`test` (default) or `validation` (`dev`): the XNLI-1.0 file or the `datasets` split",
            "languages": "which of the source's languages to load (default: all); English always",
            "start": f"{_START}; `case_id` is the `pairID` (the TSVs) or the row index (`datasets`)",
            "limit": _LIMIT,
            "template": "how premise and hypothesis become one input (default `XNLI_TEMPLATE`)",
        },
        layout="the XNLI-1.0 folder of xnli.dev.tsv/xnli.test.tsv[.gz] (or one of them)",
        suffixes=TSV_SUFFIXES,
        detect=is_xnli,
        detect_order=0,
        labels=XNLI_LABELS,
    ),
    DatasetSpec(
        name="xfever",
        title="XFEVER",
        load=load_xfever,
        task="classification",
        languages=XFEVER_LANGUAGES,
        options={
            "split": "which <lang>/<split>.jsonl file to read (default `test`)",
            "languages": "which language files to read (default: all found); English always",
            "start": f"{_START}; cases are in the English file's order, aligned by `id`",
            "limit": _LIMIT,
            "template": "how claim and evidence become one input (default `XFEVER_TEMPLATE`)",
            "evidence": "`False`: the claim alone, without its evidence",
        },
        layout="a folder of <lang>/<split>.jsonl[.gz] (or of <lang>.jsonl[.gz])",
        suffixes=JSONL_SUFFIXES,
        detect=is_xfever,
        detect_order=1,
        labels=XFEVER_LABELS,
    ),
)
_BY_NAME = {spec.name: spec for spec in _SPECS}

DATASETS = tuple(_BY_NAME)
"""The benchmark names `dataset=` and `peft-mpn bench --dataset` accept: mzsre, bmike53, bizsre, xnli, xfever."""


def _normalized(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of a benchmark (`"BMIKE-53"`, `"bmike_53"` and `"bmike53"` are one name).

    Raises:
        DatasetLayoutError: for a name that is not one of [`DATASETS`][peft_mpn.data.DATASETS].
    """
    key = _normalized(name)
    if key not in _BY_NAME:
        raise DatasetLayoutError(f"Unknown dataset {key!r}; expected one of {', '.join(DATASETS)}.")
    return _BY_NAME[key]


def dataset_options(name: str) -> frozenset[str]:
    """The keyword arguments the benchmark's loader takes besides the path, e.g. whether it takes `split`."""
    return frozenset(dataset_spec(name).options)


def detect_layout(path: PathLike) -> str:
    """`"mzsre"`, `"bmike53"`, `"bizsre"`, `"xnli"` or `"xfever"` from the file names at `path`."""
    root = resolve(path, tuple(dict.fromkeys(suffix for spec in _SPECS for suffix in spec.suffixes)))
    for spec in sorted(_SPECS, key=lambda spec: spec.detect_order):
        if spec.detect(root):
            return spec.name
    names = [root.name] if root.is_file() else sorted(os.listdir(root))
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else "nothing"
    expected = "; ".join(f"{spec.title}: {spec.layout}" for spec in _SPECS)
    raise DatasetLayoutError(
        f"Unknown benchmark layout at {root} (found: {shown}). Expected one of: {expected}. "
        f"Rename the files as published or pass dataset= (one of {', '.join(DATASETS)})."
    )


def load_edit_requests(path: PathLike, dataset: str | None = None, **kwargs: Any) -> list[EditRequest]:
    """Load any supported benchmark from `path`; `dataset` (one of `DATASETS`) or detected.

    `kwargs` go to the loader (`languages`, `limit`, `start`; `split`/`strict` for BMIKE-53;
    `split`/`template` for XNLI and XFEVER, `evidence` for XFEVER):
    [`dataset_options`][peft_mpn.data.dataset_options] says which a benchmark takes.
    """
    if dataset is None:
        spec = _BY_NAME[detect_layout(path)]
    else:
        key = _normalized(dataset)
        if key not in _BY_NAME:
            raise DatasetLayoutError(f"Unknown dataset {key!r}; expected one of {', '.join(DATASETS)} or None.")
        spec = _BY_NAME[key]
    return spec.load(path, **kwargs)
