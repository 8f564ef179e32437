"""The editor registry and contract: every method is built, configured and refused through one entry."""

from __future__ import annotations

import pytest
from tiny import make_tokenizer, tiny_model

from peft_mpn import EditRequest
from peft_mpn.cli import main
from peft_mpn.editing import (
    EDITORS,
    Editor,
    EditResult,
    FTEditorConfig,
    MPNEditorConfig,
    editor_config,
    editor_spec,
    make_editor,
)
from peft_mpn.editing.registry import check_method_options, config_options

REQUEST = EditRequest.single(
    "the capital of france is",
    "lyon",
    rephrases=["the city of france is"],
    parallel={"de": {"prompt": "die hauptstadt von frankreich ist", "target": "lyon", "rephrases": ["die stadt"]}},
)


@pytest.mark.parametrize("name", EDITORS)
def test_every_registered_method_builds_an_editor_that_follows_the_contract(name):
    editor = make_editor(name, tiny_model("llama"), make_tokenizer(), progress=False)
    assert isinstance(editor, Editor)
    if editor.uses_unrelated_text:
        editor.add_unrelated_texts(["a cat sat on the mat", "the sun shines over hills", "music plays loud"])
    result = editor.edit(REQUEST)
    assert isinstance(result, EditResult) and result.status in ("edited", "skipped", "unfixed", "collided")
    assert result.case_ids == [REQUEST.case_id]
    editor.reset()
    assert editor.training_languages(REQUEST)[0] == "en"


def test_a_method_that_pins_fields_keeps_them_whatever_config_it_is_given():
    t_patcher = make_editor(
        "t-patcher", tiny_model("llama"), make_tokenizer(), MPNEditorConfig(augment_languages=["de"]), progress=False
    )
    assert t_patcher.config.augment_languages == []
    assert t_patcher.training_languages(REQUEST) == ["en"]
    ft_m = make_editor("ft-m", tiny_model("llama"), make_tokenizer(), FTEditorConfig.ft_l(max_steps=3))
    assert (ft_m.config.objective, ft_m.config.max_steps) == ("target_new", 3)


def test_a_config_of_another_method_or_an_unknown_method_is_refused_with_the_fix():
    with pytest.raises(TypeError, match="takes a MPNEditorConfig.*leave config out"):
        make_editor("mpn", tiny_model("llama"), make_tokenizer(), FTEditorConfig())
    with pytest.raises(ValueError, match="Unknown editor 'rome'; choose one of mpn, t-patcher"):
        make_editor("rome", tiny_model("llama"), make_tokenizer())


def test_editor_options_are_the_config_fields_and_nested_ones_take_dotted_keys():
    config = editor_config("lafn", max_steps=3, **{"locator.top_k": 7})
    assert (config.max_steps, config.locator.top_k) == (3, 7)
    keys = [key for key, _, _ in config_options(config)]
    assert "locator.top_k" in keys and "max_steps" in keys
    with pytest.raises(ValueError, match=r"has no field\(s\) \['no_such'\]"):
        editor_config("mpn", no_such=1)
    # an explicit None is a value (`--editor-option subject_gate_depth=null`: no subject gates), not "unset"
    assert editor_config("mpn", subject_gate_depth=None).subject_gate_depth is None
    assert editor_config("mpn").subject_gate_depth == 0.25


def test_options_a_method_has_no_use_for_are_refused_before_any_work():
    with pytest.raises(ValueError, match="lafn has no such block"):
        check_method_options("lafn", layer=3)
    with pytest.raises(ValueError, match=r"augmentation off; drop the augmentation languages \['de'\]"):
        check_method_options("t-patcher", augment_languages=["de"])
    check_method_options("ft-m", layer=3)  # a block it tunes
    check_method_options("mpn", layer=3, augment_languages=["de"])


def test_adapter_options_reach_the_adapter_and_are_refused_where_there_is_none():
    spec = editor_spec("t-patcher")
    config, kwargs = spec.editor_kwargs(spec.default_config(), 0, {"activation": "ffn"})
    editor = spec.build(tiny_model("gpt2"), make_tokenizer(), config, progress=False, **kwargs)
    adapter = editor.model.peft_config["default"]
    assert (adapter.activation, adapter.layers_to_transform) == ("gelu_new", [0])  # the FFN's own, on block 0
    assert make_editor("mpn", tiny_model("gpt2"), make_tokenizer(), progress=False).layer.mpn_activation == {
        "default": "relu"
    }
    with pytest.raises(ValueError, match="lafn takes none"):
        check_method_options("lafn", adapter_options={"activation": "ffn"})
    with pytest.raises(ValueError, match=r"MPNConfig has no field\(s\) \['no_such'\]"):
        check_method_options("mpn", adapter_options={"no_such": 1})


def test_editors_without_unrelated_text_say_so_instead_of_ignoring_it():
    editor = make_editor("ft-l", tiny_model("llama"), make_tokenizer())
    assert not editor.uses_unrelated_text
    with pytest.raises(TypeError, match="uses no unrelated text"):
        editor.add_unrelated_texts(["a cat sat on the mat"])
    with pytest.raises(TypeError, match="no Trainer objective"):
        editor.trainer_objective([REQUEST])
    assert editor_spec("mpn").editor.uses_unrelated_text and editor_spec("lafn").editor.uses_unrelated_text


def test_bench_help_documents_every_editor_option(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    for name in EDITORS:
        assert f"  {name}" in text
        for key, _, _ in config_options(editor_spec(name).default_config(bench=True)):
            assert f"    {key} = " in text, key
