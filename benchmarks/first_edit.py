"""Seconds of what `peft-mpn edit` does in a fresh process: build the editor (its memory bank), then two edits.

    HF_HUB_OFFLINE=1 python benchmarks/first_edit.py

The editor is built as `peft-mpn edit` builds it (MPN, the bundled unrelated questions in the model family's
prompt format, augmentation de fr), then edits the two facts of `docs/how-to/cli.md`'s session, each with its
German and French versions. Prints the seconds of each part; run it on an idle machine.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from peft_mpn import EditRequest  # noqa: E402
from peft_mpn.cli.edits import _unrelated_texts  # noqa: E402
from peft_mpn.data.prompts import resolve_prompt_format  # noqa: E402
from peft_mpn.editing import make_editor  # noqa: E402
from peft_mpn.editing.registry import editor_config  # noqa: E402
from peft_mpn.models import load_model  # noqa: E402

FACTS = [
    EditRequest.single(
        "Which company built the Boeing 747?",
        "Boeing",
        parallel={
            "de": ("Welches Unternehmen baute die Boeing 747?", "Boeing"),
            "fr": ("Quelle entreprise a construit le Boeing 747 ?", "Boeing"),
        },
    ),
    EditRequest.single(
        "What is the capital of Australia?",
        "Canberra",
        parallel={
            "de": ("Was ist die Hauptstadt von Australien?", "Canberra"),
            "fr": ("Quelle est la capitale de l'Australie ?", "Canberra"),
        },
    ),
]


def main() -> None:
    torch.set_num_threads(2)
    start = time.perf_counter()
    model, tokenizer = load_model(progress=False)
    print(f"model loaded: {time.perf_counter() - start:.1f} s")
    template = resolve_prompt_format("family", model)
    start = time.perf_counter()
    config = editor_config("mpn", None).for_run(edit_language="en", augment_languages=["de", "fr"], seed=0)
    texts = _unrelated_texts(None, template)
    editor = make_editor("mpn", model, tokenizer, config, progress=False, unrelated_texts=texts)
    print(f"editor built ({len(texts)} unrelated texts in the memory bank): {time.perf_counter() - start:.1f} s")
    for request in FACTS:
        result = editor.edit(request.with_prompt_format(template))
        print(f"{request.edit.prompt!r}: {result.status}, {result.steps} steps, {result.seconds:.1f} s")


if __name__ == "__main__":
    main()
