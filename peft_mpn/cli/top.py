"""The ``peft-mpn`` command's top level, in the standard library alone.

The console script (``peft_mpn_cli``, installed beside the package) loads this file by its path, without importing
``peft_mpn``: ``import peft_mpn`` registers the PEFT types, which imports peft, transformers and torch (seconds).
So ``peft-mpn --help`` and ``--version`` answer at once, and the environment those libraries read when they are
imported (Hub access, OpenMP's waiting) is settled before they are. Keep this module free of package imports.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from pathlib import Path

PROG = "peft-mpn"
DEBUG_VARIABLE = "PEFT_MPN_DEBUG"
"""Set to 1 for the traceback of an error in the arguments, data or files, as `--debug` does."""

#: Each subcommand's line in ``peft-mpn --help``, in that order.
COMMAND_HELP = {
    "demo": "edit real facts in English with MPN and T-Patcher; judge and show every language",
    "bench": "edit seeded benchmark cases with one method; judge every language before and after",
    "edit": "edit facts into an adapter folder (adapter, edit manifest, model card)",
    "evaluate": "judge an adapter on its facts in every language, teacher-forced and greedy",
    "push": "push an adapter folder to the Hub in one commit",
    "list": "list the edits an adapter folder or repo holds",
    "compose": "combine edit adapters into one adapter folder",
}

#: Options whose value is a local path or free text, never a Hub id (`names_hub` skips them).
_LOCAL_VALUES = {"--output", "--facts", "--unrelated", "--data", "--judge-cache", "--prompt", "--target"}
_REPO_ID = re.compile(r"^[\w][\w.-]*/[\w.-]+$")


def names_hub(argv: Sequence[str]) -> bool:
    """Whether the command needs the Hub: a push, or a model / adapter named like ``org/name`` that is not a
    local path. Read from the raw arguments: Hub access must be settled before huggingface_hub is imported."""
    words = [word for word in argv if not word.startswith("-")]
    if words[:1] == ["push"]:
        return True
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in _LOCAL_VALUES:
            skip = True
        elif _REPO_ID.match(word) and not Path(word).expanduser().exists():
            return True
    return False


def settle_environment(argv: Sequence[str]) -> None:
    """Hub access off unless the command names the Hub or says ``--online`` (a Hub miss on a machine without the
    internet hangs before it fails), and OpenMP's passive waiting (its spin-waiting makes CPU forwards several
    times slower on a busy machine). Both are read when huggingface_hub and torch are imported: call this first.
    What the environment already sets wins."""
    if "--online" not in argv and not names_hub(argv):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def version() -> str:
    """The installed distribution's version, from its metadata."""
    from importlib import metadata

    try:
        return metadata.version("peft-mpn")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "(not installed)"


def with_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--online`` and ``--debug``; on a subcommand they default to unset, so they never undo the top level's."""
    top = parser.prog == PROG
    default = False if top else argparse.SUPPRESS
    parser.add_argument(
        "--online",
        action="store_true",
        default=default,
        help="allow Hugging Face Hub access (default: on for push and for Hub ids named like org/name; otherwise off, "
        "as a Hub miss on a machine without the internet hangs before it fails)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show the traceback of an error in the arguments, data or files (default: one line, 'peft-mpn: "
        f"error: ...', exit status 2); {DEBUG_VARIABLE}=1 does the same",
    )
    return parser


def top_level_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """The ``peft-mpn`` parser and its (still empty) subcommands: add each with `add_command`."""
    parser = argparse.ArgumentParser(prog=PROG, description="Cross-lingual knowledge editing with PEFT.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    with_flags(parser)
    return parser, parser.add_subparsers(dest="command", required=True)


def add_command(commands: argparse._SubParsersAction, name: str, **kwargs: object) -> argparse.ArgumentParser:
    """Subcommand `name` with its line of `COMMAND_HELP` (`kwargs` go to ``add_parser``)."""
    return commands.add_parser(name, help=COMMAND_HELP[name], **kwargs)


def answers_alone(argv: Sequence[str]) -> bool:
    """Whether `answer` can handle `argv` without the package: the top level's help or version, no subcommand."""
    return not any(word in COMMAND_HELP for word in argv) and any(w in ("-h", "--help", "--version") for w in argv)


def answer(argv: Sequence[str]) -> int:
    """``peft-mpn --help`` / ``--version``: the top-level parser with every subcommand's line (it exits)."""
    parser, commands = top_level_parser()
    for name in COMMAND_HELP:
        add_command(commands, name)
    parser.parse_args(list(argv))
    return 0
