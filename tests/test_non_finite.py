"""A NaN or infinite setting, or a training run that diverges, never leaves a non-finite patch, delta or file."""

from __future__ import annotations

import math

import pytest
import torch
from peft import get_peft_model
from tiny import HIDDEN, logits, make_tokenizer, sample_inputs, tiny_model

from peft_mpn import EditRequest, MPNConfig, PatchSet, save_edit
from peft_mpn.cli import main
from peft_mpn.editing import FTEditorConfig, ICLEditorConfig, LAFNEditorConfig, MPNEditorConfig, make_editor
from peft_mpn.locating import LocatorConfig

NAN, INF = math.nan, math.inf
MEMORY = ["the weather is nice today", "a cat sat on the mat", "hello world again", "the sky is blue"]
FRANCE = EditRequest.single(
    "the capital of france is",
    "lyon",
    rephrases=["the city that is the capital of france is"],
    parallel={"de": {"prompt": "die hauptstadt von frankreich ist", "target": "lyon", "rephrases": ["die stadt"]}},
)


@pytest.mark.parametrize(
    ("config", "settings", "message"),
    [
        (MPNEditorConfig, {"learning_rate": INF}, "learning_rate must be a finite number"),
        (MPNEditorConfig, {"learning_rate": 0.0}, "learning_rate must be above 0"),
        (MPNEditorConfig, {"memory_weight": INF}, "memory_weight must be a finite number"),
        (MPNEditorConfig, {"activation_weight": NAN}, "activation_weight must be a finite number"),
        (MPNEditorConfig, {"amplifier_init": NAN}, "amplifier_init must be a finite number"),
        (MPNEditorConfig, {"max_grad_norm": NAN}, "max_grad_norm must be a finite number"),
        (MPNEditorConfig, {"memory_margin": NAN}, "memory_margin must be a finite number"),
        (MPNEditorConfig, {"memory_margin": INF}, "memory_margin must be a finite number"),
        (MPNEditorConfig, {"memory_size": 0}, "memory_size must be at least 1"),
        (MPNEditorConfig, {"vocab_candidates": 0}, "vocab_candidates must be at least 1"),
        (MPNEditorConfig, {"label_smoothing": 1.0}, "label_smoothing must be below 1"),
        (LAFNEditorConfig, {"norm_weight": NAN}, "norm_weight must be a finite number"),
        (LAFNEditorConfig, {"locality_weight": INF}, "locality_weight must be a finite number"),
        (LAFNEditorConfig, {"max_steps": 0}, "max_steps must be at least 1"),
        (LAFNEditorConfig, {"max_steps": -3}, "max_steps must be at least 1"),
        (LAFNEditorConfig, {"vocab_candidates": -1}, "vocab_candidates must be at least 1"),
        (FTEditorConfig, {"learning_rate": NAN}, "learning_rate must be a finite number"),
        (FTEditorConfig, {"norm_constraint": INF}, "norm_constraint must be a finite number"),
        (ICLEditorConfig, {"num_demonstrations": 0}, "num_demonstrations must be at least 1"),
    ],
)
def test_a_non_finite_or_out_of_range_setting_is_refused_at_config_time(config, settings, message):
    with pytest.raises(ValueError, match=f"{config.__name__}.{message}"):
        config(**settings)


def test_the_bench_refuses_an_infinite_learning_rate_before_loading_anything(tmp_path, capsys):
    args = ["bench", "--method", "mpn", "--dataset", "mzsre", "--data", str(tmp_path / "nowhere")]
    assert main([*args, "--learning-rate", "inf", "--output", str(tmp_path / "out.json")]) == 2
    assert "learning_rate must be a finite number, got inf" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_tuner_refuses_a_nan_patch_and_stays_as_it_was():
    model = get_peft_model(tiny_model("llama"), MPNConfig())
    inputs = sample_inputs("llama")
    before = logits(model, inputs)
    (layer,) = model.base_model.patch_layers()
    keys = torch.randn(1, HIDDEN)
    with pytest.raises(ValueError, match="NaN or infinite values and were not added"):
        model.base_model.add_patches(layer, PatchSet(keys, torch.tensor([NAN]), torch.randn(1, HIDDEN)))
    assert model.base_model.num_patches() == 0
    assert torch.equal(logits(model, inputs), before)


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("mpn", MPNEditorConfig(learning_rate=1e36, max_steps=5)),
        ("ft-m", FTEditorConfig.ft_m(learning_rate=1e36, norm_constraint=None, max_steps=5)),
        (
            "lafn",
            LAFNEditorConfig(learning_rate=1e36, max_steps=5, vocab_candidates=None, locator=LocatorConfig(top_k=16)),
        ),
    ],
)
def test_an_edit_that_diverges_leaves_the_model_finite_and_says_unfixed(name, config):
    kwargs = {"unrelated_texts": MEMORY} if name != "ft-m" else {}
    editor = make_editor(name, tiny_model("llama"), make_tokenizer(), config, progress=False, **kwargs)
    inputs = sample_inputs("llama")
    result = editor.edit(FRANCE)
    assert result.status == "unfixed"
    assert bool(torch.isfinite(logits(editor.model, inputs)).all())
    if name == "mpn":
        assert editor.tuner.num_patches() == 0


def test_save_edit_refuses_an_adapter_with_nan_weights_and_writes_nothing(tmp_path):
    model = get_peft_model(tiny_model("llama"), MPNConfig())
    (layer,) = model.base_model.patch_layers()
    model.base_model.add_patches(layer, PatchSet(torch.randn(1, HIDDEN), torch.zeros(1), torch.randn(1, HIDDEN)))
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "mpn_values" in n).fill_(NAN)
    folder = tmp_path / "edit"
    with pytest.raises(ValueError, match="NaN or infinite values .* nothing was saved"):
        save_edit(model, folder, [FRANCE])
    assert not folder.exists() or not list(folder.iterdir())
