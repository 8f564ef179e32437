"""The editor configurations `edit_speed.py` compares, and where its data is."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = "../shared/data/mzsre"


@dataclass(frozen=True)
class EditorVariant:
    """One editor configuration: prefix caching on or off, candidate vocabulary size (``None``: full), and the
    patches' start (``warm_start``: closed form, the default; False: Transformer-Patcher's)."""

    name: str
    prefix_cache: bool
    vocab_candidates: int | None
    warm_start: bool = True


VARIANTS = [
    EditorVariant("cached", True, 512),
    EditorVariant("t-patcher-start", True, 512, warm_start=False),
    EditorVariant("no-prefix-cache", False, 512),
    EditorVariant("full-vocab", True, None),
    EditorVariant("baseline", False, None),
]
REFERENCE = "cached"
#: Pairs that differ only in prefix caching, which is supposed to change nothing but speed.
EXACTNESS_PAIRS = [("cached", "no-prefix-cache"), ("full-vocab", "baseline")]


def data_folder(args: argparse.Namespace) -> Path:
    """The MzsRE folder: ``--data``, else ``DEFAULT_DATA`` relative to the repository root."""
    return Path(args.data) if args.data else REPO_ROOT / DEFAULT_DATA
