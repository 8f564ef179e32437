"""The ``peft-mpn`` console script, installed next to ``peft_mpn`` so that it runs before the package is imported.

``import peft_mpn`` registers the PEFT types, which imports peft, transformers and torch: seconds, and the point
where huggingface_hub and OpenMP read their environment. This module loads ``peft_mpn/cli/top.py`` by its path
(standard library only; finding a package's folder does not import it), settles that environment, answers
``peft-mpn --help`` and ``--version`` alone, and hands every other command to ``peft_mpn.cli.main``.
"""

import importlib.util
import sys
from pathlib import Path


def _top():
    package = importlib.util.find_spec("peft_mpn")
    path = Path(next(iter(package.submodule_search_locations))) / "cli" / "top.py"
    spec = importlib.util.spec_from_file_location("_peft_mpn_cli_top", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    arguments = sys.argv[1:] if argv is None else list(argv)
    top = _top()
    top.settle_environment(arguments)
    if top.answers_alone(arguments):
        return top.answer(arguments)
    from peft_mpn.cli import main as run

    return run(arguments)


if __name__ == "__main__":
    sys.exit(main())
