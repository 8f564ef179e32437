"""The LAFN tuner's adapters as files and PEFT objects: save and load (also in a fresh interpreter), loading
without `import peft_mpn`, several adapters and growing neuron sets.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from lafn_tiny import (
    LAYOUT,
    adapted,
    ffn_name,
    fill_random,
    forward_hook_counts,
    module_types,
    normalised,
    snapshot,
)
from peft import PeftModel, get_peft_model
from tiny import ALL_ARCHS, HIDDEN, logits, run_fresh, sample_inputs, tiny_model

from peft_mpn import LAFNConfig, NeuronAddition

# -- 5. save, then load in a fresh interpreter -----------------------------------------------------------------
FRESH_LOAD_SCRIPT = """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    import torch
    import peft_mpn
    from peft import PeftModel
    from tiny import logits, sample_inputs, tiny_model

    root = Path(sys.argv[2])
    results = {}
    for arch in sys.argv[3:]:
        model = PeftModel.from_pretrained(tiny_model(arch, seed=0), str(root / arch))
        got = logits(model, sample_inputs(arch))
        expected = torch.load(root / f"{arch}.pt")
        layers = model.base_model.lafn_layers()
        results[arch] = {
            "equal": bool(torch.equal(got, expected)),
            "max_diff": float((got - expected).abs().max()),
            "neuron_sets": {str(k): v for k, v in model.base_model.neuron_sets().items()},
            "config_neurons": {str(k): v for k, v in model.peft_config["default"].neurons.items()},
            "layers": sorted(layers),
            "index_dtypes": sorted({str(layer.lafn_indices["default"].dtype) for layer in layers.values()}),
        }
    print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def saved_in_parent_loaded_in_child(tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh_load")
    expected = {}
    for seed, arch in enumerate(ALL_ARCHS):
        model, inputs, reference = adapted(arch, update_input=True)
        model.base_model.add_neurons(-1, [9, 30, 31])  # 9 is already there; the set grows by two
        fill_random(model, seed=10 + seed)
        out = logits(model, inputs)
        assert not torch.allclose(out, reference, atol=1e-4)
        torch.save(out, root / f"{arch}.pt")
        model.save_pretrained(root / arch)
        expected[arch] = (sorted(model.base_model.lafn_layers()), model.base_model.neuron_sets())
    return root, expected, run_fresh(FRESH_LOAD_SCRIPT, str(root), *ALL_ARCHS)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_saved_adapter_reproduces_logits_in_a_fresh_process(arch, saved_in_parent_loaded_in_child):
    root, expected, results = saved_in_parent_loaded_in_child
    result = results[arch]
    layers, neuron_sets = expected[arch]
    assert result["equal"], f"max |Δlogits| = {result['max_diff']}"
    assert result["layers"] == layers
    as_json = {str(k): v for k, v in neuron_sets.items()}
    assert result["neuron_sets"] == as_json and result["config_neurons"] == as_json
    assert as_json[str(LAYOUT[arch][2] - 1)] == [1, 5, 9, 63, 30, 31]
    assert result["index_dtypes"] == ["torch.int64"]


# -- 6. loading without `import peft_mpn` ---------------------------------------------------------------------
NOT_IMPORTED_SCRIPT = """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from peft import PeftConfig, PeftModel
    from tiny import tiny_model

    path = sys.argv[2]
    attempts = {
        "PeftModel.from_pretrained": lambda: PeftModel.from_pretrained(tiny_model("gpt2"), path),
        "PeftConfig.from_pretrained": lambda: PeftConfig.from_pretrained(path),
        "transformers load_adapter": lambda: tiny_model("gpt2").load_adapter(path),
    }
    results = {}
    for name, attempt in attempts.items():
        assert "peft_mpn" not in sys.modules
        try:
            attempt()
            results[name] = None
        except Exception as error:
            results[name] = f"{type(error).__name__}: {error}"
    import peft_mpn
    results["after import"] = peft_mpn.from_pretrained(tiny_model("gpt2"), path).base_model.neuron_sets()
    print(json.dumps(results))
"""


@pytest.mark.skipif(
    importlib.util.find_spec("_peft_mpn_hint") is None,
    reason="the start-up hook (_peft_mpn_hint via peft_mpn_hint.pth) is not installed in this environment",
)
def test_loading_without_import_names_the_fix(tmp_path):
    model, _, _ = adapted("gpt2", randomise=True)
    model.save_pretrained(tmp_path)
    results = run_fresh(NOT_IMPORTED_SCRIPT, str(tmp_path))
    for name in ("PeftModel.from_pretrained", "PeftConfig.from_pretrained", "transformers load_adapter"):
        assert results[name] is not None, f"{name} loaded a LAFN adapter without the plugin"
        assert "import peft_mpn" in results[name], f"{name}: {results[name]}"
    assert results["after import"] == {"0": [3, 17, 40], "2": [1, 5, 9, 63]}


# -- 7. several adapters, unload -------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_several_adapters_switch_delete_and_unload(arch, tmp_path):
    base = tiny_model(arch)
    inputs = sample_inputs(arch)
    reference = logits(base, inputs)
    types = module_types(base)
    hooks = forward_hook_counts(base)

    model = get_peft_model(base, LAFNConfig(neurons={-1: [1, 2, 3]}))
    fill_random(model, seed=5)
    model.add_adapter("second", LAFNConfig(neurons={0: [4], -1: [3, 50]}, update_input=True))
    fill_random(model, seed=6, adapter_name="second")
    assert model.base_model.neuron_sets("second") == normalised(arch, {0: [4], -1: [3, 50]})
    assert not any(p.requires_grad for p in model.base_model.delta_parameters("second"))

    first_out = logits(model, inputs)  # "default" is still the active adapter
    model.set_adapter("second")
    assert all(p.requires_grad for p in model.base_model.delta_parameters("second"))
    second_out = logits(model, inputs)
    assert not torch.allclose(first_out, second_out, atol=1e-4)
    assert not torch.allclose(second_out, reference, atol=1e-4)
    model.set_adapter("default")
    assert torch.equal(logits(model, inputs), first_out)

    model.save_pretrained(tmp_path)  # "default" at the root, "second" in a sub-folder
    model.load_adapter(tmp_path / "second", adapter_name="second_reloaded")
    model.set_adapter("second_reloaded")
    assert torch.equal(logits(model, inputs), second_out)

    model.delete_adapter("second")
    assert "second" not in model.peft_config
    for layer in model.base_model.lafn_layers("default").values():
        stores = layer.adapter_layer_names + layer.other_param_names
        assert all("second" not in getattr(layer, store) for store in stores)
    with pytest.raises((KeyError, ValueError)):
        model.set_adapter("second")
    model.set_adapter("default")
    assert torch.equal(logits(model, inputs), first_out)

    unloaded = model.unload()
    assert unloaded is base
    assert module_types(unloaded) == types
    assert forward_hook_counts(unloaded) == hooks
    assert torch.equal(logits(unloaded, inputs), reference)


def test_transformers_load_adapter(tmp_path):
    model, inputs, reference = adapted("qwen2", update_input=True, randomise=True)
    expected = logits(model, inputs)
    model.save_pretrained(tmp_path)
    plain = tiny_model("qwen2")
    plain.load_adapter(str(tmp_path), adapter_name="edits")
    assert torch.equal(logits(plain, inputs), expected)
    plain.disable_adapters()
    assert torch.equal(logits(plain, inputs), reference)


# -- 8. growing neuron sets (batch / sequential editing) -------------------------------------------------------
@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
def test_add_neurons_keeps_deltas_reports_collisions_and_updates_the_config(arch, tmp_path):
    model, inputs, _ = adapted(arch, {0: [3, 17]}, update_input=True, randomise=True)
    tuner = model.base_model
    layer = tuner.lafn_layers()[ffn_name(arch, 0)]
    before = {k: v.detach().clone() for k, v in layer.lafn_down.items()}["default"]
    out = logits(model, inputs)

    result = tuner.add_neurons(0, [17, 20, 20, 3, 21])
    assert result == NeuronAddition(layer=0, added=[20, 21], collisions=[17, 3])
    assert tuner.neuron_sets() == {0: [3, 17, 20, 21]} == model.peft_config["default"].neurons
    down = layer.lafn_down["default"]
    assert torch.equal(down[:2], before) and torch.equal(down[2:], torch.zeros(2, HIDDEN))
    assert down.requires_grad and layer.lafn_up["default"].shape == (4, HIDDEN)
    # New neurons start at zero: they add nothing (up to the summation order of a longer matmul).
    torch.testing.assert_close(logits(model, inputs), out, atol=1e-5, rtol=0)

    assert tuner.add_neurons(0, [3]) == NeuronAddition(layer=0, added=[], collisions=[3])

    new_layer = tuner.add_neurons(-1, [7, 8])  # a layer the adapter did not adapt yet
    assert new_layer.added == [7, 8] and new_layer.collisions == []
    last = LAYOUT[arch][2] - 1
    assert tuner.neuron_sets() == {0: [3, 17, 20, 21], last: [7, 8]} == model.peft_config["default"].neurons
    assert list(tuner.lafn_layers()) == [ffn_name(arch, 0), ffn_name(arch, -1)]
    assert all(p.requires_grad for p in tuner.delta_parameters())
    torch.testing.assert_close(logits(model, inputs), out, atol=1e-5, rtol=0)

    fill_random(model, seed=3)
    expected = logits(model, inputs)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(tiny_model(arch), tmp_path)
    assert loaded.base_model.neuron_sets() == {0: [3, 17, 20, 21], last: [7, 8]}
    assert torch.equal(logits(loaded, inputs), expected)


def test_add_neurons_refuses_bad_input_and_changes_nothing():
    model, inputs, _ = adapted("llama", {0: [3]}, randomise=True)
    tuner = model.base_model
    out = logits(model, inputs)
    state = snapshot(model)
    with pytest.raises(ValueError, match=r"out of range for layer 0, whose FFN has width 64"):
        tuner.add_neurons(0, [5, 64])
    with pytest.raises(ValueError, match=r"out of range for layer 2, whose FFN has width 64"):
        tuner.add_neurons(2, [-1])
    with pytest.raises(ValueError, match="out of range for a 3-layer model"):
        tuner.add_neurons(3, [1])
    with pytest.raises(ValueError, match="No neuron indices"):
        tuner.add_neurons(0, [])
    with pytest.raises(KeyError, match="No adapter"):
        tuner.add_neurons(0, [1], adapter_name="nope")
    assert tuner.neuron_sets() == {0: [3]} == model.peft_config["default"].neurons
    assert snapshot(model).keys() == state.keys()
    assert torch.equal(logits(model, inputs), out)
    model.merge_adapter()
    with pytest.raises(RuntimeError, match="Unmerge"):
        tuner.add_neurons(0, [4])
