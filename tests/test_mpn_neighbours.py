"""Neighbour questions: an MPN edit keys on its fact, not on the relation's wording."""

from __future__ import annotations

import pytest
import torch
from tiny import capital, make_tokenizer, tiny_model

from peft_mpn import EditRequest
from peft_mpn.editing import MPNEditor
from peft_mpn.editing.mpn.config import MPNEditorConfig
from peft_mpn.editing.mpn.neighbours import SubjectPool, neighbour_prompts
from peft_mpn.editing.mpn.planning import EditRows, PlannedPatch
from peft_mpn.metrics import score_targets
from peft_mpn.tuners.mpn import PatchSet


def neighbour_answers(model, tokenizer) -> list[tuple[int, ...]]:
    pairs = [(f"the capital of {country} is", "paris") for country in ("germany", "italy")]
    return [score.predicted for score in score_targets(model, tokenizer, pairs)]


def edit_france(neighbour_negatives: int, **config_fields) -> tuple[list, list, MPNEditor]:
    tokenizer = make_tokenizer()
    model = tiny_model("llama", seed=1)
    before = neighbour_answers(model, tokenizer)
    config = MPNEditorConfig(neighbour_negatives=neighbour_negatives, augment_languages=[], **config_fields)
    editor = MPNEditor(model, tokenizer, config, progress=False)
    editor.add_unrelated_from_requests([capital("germany", "berlin"), capital("italy", "rome")])
    assert editor.edit(capital("france", "lyon")).success
    return before, neighbour_answers(editor.model, tokenizer), editor


def test_without_neighbours_the_patch_fires_on_the_same_question_about_other_subjects():
    before, after, _ = edit_france(neighbour_negatives=0, warm_start=False, subject_gate_depth=None)
    assert before != after  # Transformer-Patcher's training: "the capital of germany is" changes too


def test_subject_gates_alone_keep_the_other_subjects_answers():
    before, after, editor = edit_france(neighbour_negatives=0, warm_start=False)  # the same edit, gated
    assert before == after
    patches = editor.layer.patches(editor.adapter_name)
    assert patches.gated and bool(patches.gate_keys.any(-1).all())  # every patch got a gate


@pytest.mark.parametrize("fields", [{}, {"subject_gate_depth": None}], ids=["to-the-gate", "to-the-key"])
def test_neighbour_questions_keep_the_other_subjects_answers(fields):
    before, after, editor = edit_france(neighbour_negatives=8, **fields)
    assert before == after
    assert editor.subjects.subjects("en") == ["germany", "italy", "france"]  # the edit's subject joins the pool
    editor.reset()
    assert editor.subjects.subjects("en") == ["germany", "italy"]


def test_neighbour_prompts_replace_the_subject_with_others():
    generator = torch.Generator().manual_seed(0)
    prompts = neighbour_prompts("Where was Ada Lovelace born?", "Ada Lovelace", ["Alan Turing", "Ada"], 5, generator)
    assert prompts == ["Where was Alan Turing born?"]  # "Ada" is part of the subject: not a neighbour
    assert neighbour_prompts("Where was she born?", "Ada Lovelace", ["Alan Turing"], 5, generator) == []
    assert neighbour_prompts("Where was Ada born?", None, ["Alan Turing"], 5, generator) == []
    assert len(neighbour_prompts("x is y", "x", [f"s{i}" for i in range(20)], 3, generator)) == 3
    inflected = neighbour_prompts("Какой город побратим Праги?", "Прага", ["Куско", "Прага"], 5, generator)
    assert inflected == ["Какой город побратим Куско?"]  # found declined, replaced where it is
    pool = SubjectPool()
    pool.add_unrelated([capital("germany", "berlin")])
    pool.add_edits([capital("france", "lyon"), capital("germany", "rome")])
    assert pool.subjects("en") == ["germany", "france"] and len(pool) == 2


def test_a_version_that_does_not_mention_its_subject_as_written_still_gets_a_gate():
    """'frankreich' is not 'france' written any way `find_subject` knows (like a transliteration): its gate reads
    the token of the German question most like the subject in the English one."""
    request = EditRequest.single(
        "the capital of france is",
        "lyon",
        subject="france",
        parallel={"de": {"prompt": "die hauptstadt von frankreich ist", "target": "lyon", "subject": "france"}},
    )
    gated = {}
    for by_likeness in (True, False):
        config = MPNEditorConfig(augment_languages=["de"], patch_plan="per_language", subject_by_likeness=by_likeness)
        editor = MPNEditor(tiny_model("llama", seed=1), make_tokenizer(), config, progress=False)
        editor.add_unrelated_from_requests([capital("germany", "berlin"), capital("italy", "rome")])
        assert editor.edit(request).success
        gated[by_likeness] = editor.layer.patches(editor.adapter_name).gate_keys.any(-1).tolist()
        pairs = [(view.prompt, "lyon") for view in request.views.values()]
        assert all(score.exact for score in score_targets(editor.model, editor.tokenizer, pairs))  # still edited
    assert all(gated[True]) and not all(gated[False])


def south_france_answers(**config_fields) -> tuple[list, list]:
    """'the capital of south france is' (and of 'france') before and after editing 'north france' on a tiny model
    whose gate, fitted without swapped first words, opened on 'south france'."""
    tokenizer = make_tokenizer()
    model = tiny_model("llama", seed=1)
    probes = [(f"the capital of {country} is", "paris") for country in ("south france", "france")]
    before = [score.predicted for score in score_targets(model, tokenizer, probes)]
    config = MPNEditorConfig(augment_languages=[], neighbour_negatives=0, **config_fields)
    editor = MPNEditor(model, tokenizer, config, progress=False)
    editor.add_unrelated_from_requests([capital("south italy", "rome"), capital("spain", "madrid")])
    assert editor.edit(capital("north france", "lyon")).success
    return before, [score.predicted for score in score_targets(editor.model, tokenizer, probes)]


def test_without_swapped_first_words_a_subject_with_the_same_last_word_opens_the_gate():
    before, after = south_france_answers(subject_gate_swaps=0)
    assert before[0] != after[0]


def test_a_subject_that_shares_the_last_word_keeps_its_answer():
    """The gate reads the subject's last token: "south france" ends as "north france" does, and must stay shut."""
    before, after = south_france_answers()
    assert before == after


def test_a_gate_opens_wherever_its_patch_fired_while_the_edit_trained():
    """Patches train ungated and are gated after. A patch planned for the German row that also fires on the English
    one carries the English edit there too; a gate fitted on the German subject alone shut it on the English
    prompt, and an edit reported to hold did not (BMIKE-53 CounterFact case 7925 on Gemma-3-270M)."""
    tokenizer = make_tokenizer()
    editor = MPNEditor(tiny_model("llama"), tokenizer, MPNEditorConfig(augment_languages=["de"]), progress=False)
    editor.add_unrelated_from_requests([capital("germany", "berlin"), capital("italy", "rome")])
    request = capital("france", "lyon", "frankreich")
    rows = EditRows(request=[0, 0], language=["en", "de"], is_edit=[True, False])
    d = editor.layer.hidden_size
    key = torch.nn.functional.normalize(torch.randn(d, generator=torch.Generator().manual_seed(0)), dim=0)
    inputs = torch.zeros(2, 4, d)
    inputs[:, 3] = 3 * key  # the patch fires at both rows' decision position
    positions = torch.tensor([[3], [3]])
    plan = [PlannedPatch(request=0, rows=torch.tensor([1]), anchors=inputs[1, 3:], edit_anchor=inputs[1, 3])]
    patches = PatchSet(key[None], torch.zeros(1), torch.zeros(1, d))
    english = editor.gates._subject_vectors([request.views["en"]], [0])[0]

    def opens_on_english(*known) -> bool:
        gated = editor.gates.fit(patches, plan, rows, [request], *known)
        return bool(english @ gated.gate_keys[0] + gated.gate_bias[0] > 0)

    assert not opens_on_english()  # fitted on the planned German row only
    assert opens_on_english(inputs, positions)
    inputs[0, 3] = -3 * key  # where the patch does not fire on the English row, its gate need not open there
    assert not opens_on_english(inputs, positions)
