"""The MPN tuner's adapters as files and PEFT objects: save and load (also in a fresh interpreter), loading
without `import peft_mpn`, several adapters, transformers' integrations, merging and patch counts.
"""

from __future__ import annotations

import importlib
import importlib.util
import json

import pytest
import torch
from mpn_tiny import (
    CAUSAL,
    GATED,
    UNGATED,
    adapted,
    ffn_name,
    forward_hook_counts,
    module_types,
    random_patches,
)
from peft import AutoPeftModelForCausalLM, PeftConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file
from tiny import ALL_ARCHS, HIDDEN, logits, run_fresh, sample_inputs, tiny_model

import peft_mpn
from peft_mpn import MPNConfig

# -- 4. save, then load in a fresh interpreter -----------------------------------------------------------------
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
        results[arch] = {
            "equal": bool(torch.equal(got, expected)),
            "max_diff": float((got - expected).abs().max()),
            "num_patches": model.peft_config["default"].num_patches,
            "layers": sorted(model.base_model.patch_layers()),
        }
    print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def saved_in_parent_loaded_in_child(tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh_load")
    expected = {}
    for seed, arch in enumerate(ALL_ARCHS):
        model, inputs, reference = adapted(arch, random_patches(3, seed=10 + seed))
        model.base_model.add_patches(ffn_name(arch, -1), random_patches(2, seed=20 + seed))
        out = logits(model, inputs)
        assert not torch.allclose(out, reference, atol=1e-4)
        torch.save(out, root / f"{arch}.pt")
        model.save_pretrained(root / arch)
        expected[arch] = sorted(model.base_model.patch_layers())
    return root, expected, run_fresh(FRESH_LOAD_SCRIPT, str(root), *ALL_ARCHS)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_saved_adapter_reproduces_logits_in_a_fresh_process(arch, saved_in_parent_loaded_in_child):
    root, layers, results = saved_in_parent_loaded_in_child
    result = results[arch]
    assert result["equal"], f"max |Δlogits| = {result['max_diff']}"
    assert result["num_patches"] == 5
    assert result["layers"] == layers[arch]

    saved = json.loads((root / arch / "adapter_config.json").read_text())
    assert saved["peft_type"] == "MPN"
    assert saved["num_patches"] == 5
    assert saved["hidden_size"] == HIDDEN


# -- 5. loading without `import peft_mpn` ---------------------------------------------------------------------
NOT_IMPORTED_SCRIPT = """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import torch
    from peft import PeftConfig, PeftModel
    from tiny import logits, sample_inputs, tiny_model

    path, expected_path = sys.argv[2], sys.argv[3]
    attempts = {
        "PeftModel.from_pretrained": lambda: PeftModel.from_pretrained(tiny_model("llama"), path),
        "PeftConfig.from_pretrained": lambda: PeftConfig.from_pretrained(path),
        "transformers load_adapter": lambda: tiny_model("llama").load_adapter(path),
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
    model = peft_mpn.from_pretrained(tiny_model("llama"), path)
    results["after import"] = bool(torch.equal(logits(model, sample_inputs("llama")), torch.load(expected_path)))
    print(json.dumps(results))
"""


@pytest.mark.skipif(
    importlib.util.find_spec("_peft_mpn_hint") is None,
    reason="the start-up hook (_peft_mpn_hint via peft_mpn_hint.pth) is not installed in this environment",
)
def test_loading_without_import_names_the_fix(tmp_path):
    model, inputs, _ = adapted("llama", random_patches(3, seed=3))
    model.save_pretrained(tmp_path / "adapter")
    torch.save(logits(model, inputs), tmp_path / "expected.pt")

    results = run_fresh(NOT_IMPORTED_SCRIPT, str(tmp_path / "adapter"), str(tmp_path / "expected.pt"))
    for name in ("PeftModel.from_pretrained", "PeftConfig.from_pretrained", "transformers load_adapter"):
        assert results[name] is not None, f"{name} loaded an MPN adapter without the plugin"
        assert "import peft_mpn" in results[name], f"{name}: {results[name]}"
    assert results["after import"] is True


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_peft_mpn_from_pretrained(arch, tmp_path):
    model, inputs, _ = adapted(arch, random_patches(3, seed=4))
    model.save_pretrained(tmp_path)
    loaded = peft_mpn.from_pretrained(tiny_model(arch), tmp_path)
    assert isinstance(loaded, PeftModel)
    assert torch.equal(logits(loaded, inputs), logits(model, inputs))
    assert not any(p.requires_grad for p in loaded.parameters())

    trainable = peft_mpn.from_pretrained(tiny_model(arch), tmp_path, adapter_name="edits", is_trainable=True)
    assert trainable.active_adapters == ["edits"]
    assert {n.rsplit(".", 1)[0].rsplit(".", 1)[-1] for n, p in trainable.named_parameters() if p.requires_grad} == {
        "mpn_keys",
        "mpn_bias",
        "mpn_values",
    }


# -- 6. several adapters, unload ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_several_adapters_switch_delete_and_unload(arch, tmp_path):
    base = tiny_model(arch)
    inputs = sample_inputs(arch)
    reference = logits(base, inputs)
    types = module_types(base)
    hooks = forward_hook_counts(base)

    model = get_peft_model(base, MPNConfig())
    last = ffn_name(arch, -1)
    model.base_model.add_patches(last, random_patches(3, seed=5))
    model.add_adapter("second", MPNConfig())
    model.base_model.add_patches(last, random_patches(2, seed=6), adapter_name="second")
    assert model.peft_config["default"].num_patches == 3
    assert model.peft_config["second"].num_patches == 2

    first_out = logits(model, inputs)  # "default" is still the active adapter
    model.set_adapter("second")
    second_out = logits(model, inputs)
    assert not torch.allclose(first_out, second_out, atol=1e-4)
    assert not torch.allclose(second_out, reference, atol=1e-4)
    model.set_adapter("default")
    assert torch.equal(logits(model, inputs), first_out)

    model.save_pretrained(tmp_path)  # saves both adapters: "default" at the root, "second" in a sub-folder
    model.load_adapter(tmp_path, adapter_name="reloaded")
    model.set_adapter("reloaded")
    assert torch.equal(logits(model, inputs), first_out)
    model.load_adapter(tmp_path / "second", adapter_name="second_reloaded")
    model.set_adapter("second_reloaded")
    assert torch.equal(logits(model, inputs), second_out)

    model.delete_adapter("second")
    assert "second" not in model.peft_config
    layer = model.base_model.patch_layers("default")[last]
    assert "second" not in layer.mpn_keys and "second" not in layer.mpn_activation
    with pytest.raises((KeyError, ValueError)):
        model.set_adapter("second")
    model.set_adapter("default")
    assert torch.equal(logits(model, inputs), first_out)

    unloaded = model.unload()
    assert unloaded is base
    assert not any(isinstance(module, BaseTunerLayer) for module in unloaded.modules())
    assert module_types(unloaded) == types
    assert forward_hook_counts(unloaded) == hooks  # no add-patch hook left on the down projection
    assert torch.equal(logits(unloaded, inputs), reference)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_no_forward_hook_outlives_a_forward_pass(arch):
    model, inputs, _ = adapted(arch, random_patches(2, seed=7))
    hooks = forward_hook_counts(model)
    logits(model, inputs)

    def fail(*_):
        raise RuntimeError("boom")

    layer = model.base_model.patch_layers()[ffn_name(arch, -1)]
    failing = layer.down_proj.register_forward_pre_hook(fail)  # the down projection raises mid-forward
    try:
        with pytest.raises(RuntimeError, match="boom"):
            logits(model, inputs)
    finally:
        failing.remove()
    assert forward_hook_counts(model) == hooks


# -- 7. transformers' integrations -----------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_transformers_load_adapter(arch, tmp_path):
    model, inputs, reference = adapted(arch, random_patches(3, seed=8))
    expected = logits(model, inputs)
    model.save_pretrained(tmp_path)

    plain = tiny_model(arch)
    plain.load_adapter(str(tmp_path), adapter_name="edits")
    assert plain.active_adapters() == ["edits"]
    assert torch.equal(logits(plain, inputs), expected)
    plain.disable_adapters()
    assert torch.equal(logits(plain, inputs), reference)
    plain.enable_adapters()
    assert torch.equal(logits(plain, inputs), expected)


@pytest.mark.parametrize("arch", CAUSAL)
def test_auto_peft_model_for_causal_lm(arch, tmp_path):
    base = tiny_model(arch)
    base.save_pretrained(tmp_path / "base")
    inputs = sample_inputs(arch)
    model = get_peft_model(base, MPNConfig())
    model.base_model.add_patches(ffn_name(arch, -1), random_patches(3, seed=9))
    model.peft_config["default"].base_model_name_or_path = str(tmp_path / "base")
    expected = logits(model, inputs)
    model.save_pretrained(tmp_path / "adapter")

    loaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter")
    assert isinstance(loaded, PeftModel)
    assert isinstance(loaded.peft_config["default"], MPNConfig)
    assert torch.equal(logits(loaded.eval(), inputs), expected)


# -- 8. merging ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", UNGATED)
def test_merge_and_unload_ungated(arch):
    model, inputs, reference = adapted(arch, random_patches(3, seed=11), activation="ffn")
    expected = logits(model, inputs)
    assert not torch.allclose(expected, reference, atol=1e-4)

    merged = model.merge_and_unload()
    assert not any(isinstance(module, BaseTunerLayer) for module in merged.modules())
    assert not any("mpn_" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged, inputs), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", UNGATED)
def test_merge_adapter_unmerge_adapter_round_trip(arch):
    model, inputs, _ = adapted(arch, random_patches(3, seed=12), activation="ffn")
    expected = logits(model, inputs)
    weights = {k: v.clone() for k, v in model.get_base_model().state_dict().items()}

    model.merge_adapter()
    torch.testing.assert_close(logits(model, inputs), expected, atol=1e-5, rtol=0)
    model.unmerge_adapter()
    after = model.get_base_model().state_dict()
    assert after.keys() == weights.keys()
    assert all(after[k].shape == weights[k].shape and torch.equal(after[k], weights[k]) for k in weights)
    assert torch.equal(logits(model, inputs), expected)


@pytest.mark.parametrize("arch", GATED)
def test_merge_refused_for_gated_ffns(arch):
    model, inputs, _ = adapted(arch, random_patches(3, seed=13))
    expected = logits(model, inputs)
    with pytest.raises(ValueError, match="gated"):
        model.merge_and_unload()
    with pytest.raises(ValueError, match="gated"):
        model.merge_adapter()
    # The refusal changed nothing: the adapter is still there and still works.
    assert list(model.base_model.patch_layers()) == [ffn_name(arch, -1)]
    assert torch.equal(logits(model, inputs), expected)


# -- 10. patch counts and self-describing save folders ---------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_patch_count_grows_and_is_saved(arch, tmp_path):
    model, inputs, _ = adapted(arch, layers_to_transform=[0, -1])
    first, last = ffn_name(arch, 0), ffn_name(arch, -1)
    model.base_model.add_patches(first, random_patches(2, seed=15))
    model.base_model.add_patches(first, random_patches(3, seed=16))
    assert model.peft_config["default"].num_patches == 5
    model.base_model.add_patches(last, random_patches(1, seed=17))
    assert model.peft_config["default"].num_patches == 6
    assert model.base_model.num_patches() == 6
    assert {layer.num_patches("default") for layer in model.base_model.patch_layers().values()} == {6}
    expected = logits(model, inputs)

    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["num_patches"] == 6
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    shapes = {name.rsplit(".", 1)[-1]: tuple(t.shape) for name, t in tensors.items()}
    assert shapes == {"mpn_keys": (6, HIDDEN), "mpn_bias": (6,), "mpn_values": (6, HIDDEN)}
    assert len(tensors) == 6  # keys, bias and values for each of the two targeted blocks

    config = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(config, MPNConfig) and config.num_patches == 6
    loaded = PeftModel.from_pretrained(tiny_model(arch), tmp_path)  # shapes come from the folder alone
    assert sorted(loaded.base_model.patch_layers()) == sorted([first, last])
    assert torch.equal(logits(loaded, inputs), expected)
