"""The real Gemma-3-270M: one English MzsRE edit with MPN holds, and unrelated facts keep their answers."""

from __future__ import annotations

import pytest
from conftest import SHARED_DATA

from peft_mpn import MPNConfig
from peft_mpn.data import load_bundled_sample, load_mzsre
from peft_mpn.editing import MPNEditor, MPNEditorConfig
from peft_mpn.metrics import score_targets

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("all_threads")]


def facts():
    """(the fact to edit, facts for the memory bank, facts to judge locality on): three disjoint sets."""
    folder = SHARED_DATA / "mzsre"
    languages = ["en", "de", "fr", "es"]
    if folder.exists():
        return (
            load_mzsre(folder, languages=languages, limit=1)[0],
            load_mzsre(folder, languages=languages, start=400, limit=40),
            load_mzsre(folder, languages=["en"], start=100, limit=30),
        )
    sample = load_bundled_sample(languages=languages)
    return sample[0], sample[12:24], sample[1:12]


def test_one_english_mzsre_edit_with_mpn(gemma):
    model, tokenizer = gemma
    request, memory_facts, locality_facts = facts()
    editor = MPNEditor(
        model,
        tokenizer,
        MPNEditorConfig(augment_languages=["de", "fr", "es"], seed=0),
        peft_config=MPNConfig(layers_to_transform=[-1]),
        progress=False,
    )
    editor.add_unrelated_from_requests(memory_facts)
    locality_pairs = [(f.edit.locality_prompt, f.edit.locality_answer) for f in locality_facts]
    english = (request.edit.prompt, request.edit.target)
    before = score_targets(editor.model, tokenizer, [english, *locality_pairs])
    assert not before[0].exact, "the new answer should not win before the edit"

    result = editor.edit(request)

    after = score_targets(editor.model, tokenizer, [english, *locality_pairs])
    assert result.status == "edited", result
    assert after[0].exact, "the new answer wins in English"
    kept = sum(a == b for pre, post in zip(before[1:], after[1:]) for a, b in zip(pre.predicted, post.predicted))
    total = sum(len(pre.predicted) for pre in before[1:])
    # measured 142/150 = 0.95 on MzsRE; the simple baselines of METHODS.md §4 keep 0.44-0.82
    assert kept / total >= 0.9, f"locality {kept}/{total}"
    editor.reset()
