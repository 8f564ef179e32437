"""Behaviour of the MPN PEFT tuner on tiny models of every supported architecture.

Everything goes through the public surfaces a user touches: ``peft.get_peft_model``, ``PeftModel``,
``save_pretrained``/``from_pretrained``, transformers' ``load_adapter``, ``AutoPeftModelForCausalLM`` and the
``add_patches``/``patch_layers`` interface of the tuner. Loading in a fresh interpreter runs a small script with
``sys.executable`` (one subprocess per scenario, shared by all architectures).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from peft import AutoPeftModelForCausalLM, PeftConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import PeftType
from safetensors.torch import load_file
from tiny import ALL_ARCHS, DECODER_CONFIGS, HIDDEN, logits, run_fresh, sample_inputs, tiny_model
from transformers import AutoModelForCausalLM, OPTConfig

import peft_mpn
from peft_mpn import MPNConfig, MPNLayer, PatchSet, UnsupportedArchitectureError

#: arch -> (ModuleList of blocks, FFN block module inside a block, number of blocks) as the tiny models have them.
LAYOUT = {
    "llama": ("model.layers", "mlp", 3),
    "gemma3_text": ("model.layers", "mlp", 3),
    "qwen2": ("model.layers", "mlp", 3),
    "gpt2": ("transformer.h", "mlp", 3),
    "bert": ("bert.encoder.layer", "output", 2),
    "xlm-roberta": ("roberta.encoder.layer", "output", 2),
}
UNGATED = ["gpt2", "bert", "xlm-roberta"]
GATED = ["llama", "gemma3_text", "qwen2"]
CAUSAL = list(DECODER_CONFIGS)


# -- helpers -------------------------------------------------------------------------------------------------
def ffn_name(arch: str, index: int) -> str:
    stack, block, total = LAYOUT[arch]
    return f"{stack}.{index % total}.{block}"


def all_block_targets(arch: str) -> dict:
    """MPNConfig kwargs that target every block's FFN by name (BERT-likes must leave attention.output alone)."""
    if LAYOUT[arch][1] == "output":
        return {"target_modules": ["output"], "exclude_modules": ["attention.output"]}
    return {"target_modules": ["mlp"]}


def random_patches(n: int, seed: int, scale: float = 1.0, bias: float | None = None) -> PatchSet:
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, HIDDEN, generator=generator) / HIDDEN**0.5
    biases = torch.full((n,), bias) if bias is not None else torch.randn(n, generator=generator)
    values = torch.randn(n, HIDDEN, generator=generator) * scale
    return PatchSet(keys, biases, values)


def adapted(arch: str, patches: PatchSet | None = None, **config_kwargs):
    """(peft model, inputs, base logits) with ``patches`` on the default (last-block) FFN."""
    base = tiny_model(arch)
    inputs = sample_inputs(arch)
    reference = logits(base, inputs)
    model = get_peft_model(base, MPNConfig(**config_kwargs))
    if patches is not None:
        model.base_model.add_patches(next(iter(model.base_model.patch_layers())), patches)
    return model, inputs, reference


def module_types(model: torch.nn.Module) -> dict[str, type]:
    return {name: type(module) for name, module in model.named_modules()}


def forward_hook_counts(model: torch.nn.Module) -> dict[str, int]:
    return {name: len(module._forward_hooks) for name, module in model.named_modules()}


def assert_untouched(model: torch.nn.Module, types: dict[str, type], reference: torch.Tensor, inputs) -> None:
    """A failed adapter creation left the model exactly as it was."""
    assert not any(isinstance(module, BaseTunerLayer) for module in model.modules())
    assert module_types(model) == types
    assert torch.equal(logits(model, inputs), reference)


def tree_snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# -- 1. registration ---------------------------------------------------------------------------------------
def test_import_twice_and_reregister_are_harmless():
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    import peft_mpn._registration as registration

    member = PeftType.MPN
    assert importlib.import_module("peft_mpn") is peft_mpn
    importlib.reload(registration)
    assert registration.register("mpn", MPNConfig, peft_mpn.MPNModel, "mpn_") is member
    importlib.reload(importlib.import_module("peft_mpn.tuners.mpn"))  # runs register() again, same classes

    assert PeftType.MPN is member and member.value == "MPN"
    assert PeftType("MPN") is member and PeftType["MPN"] is member
    assert [m for m in PeftType if m.value == "MPN"] == [member]
    assert PEFT_TYPE_TO_TUNER_MAPPING[member] is peft_mpn.MPNModel
    assert PEFT_TYPE_TO_CONFIG_MAPPING[member] is MPNConfig
    assert MPNConfig().peft_type is member

    model, inputs, reference = adapted("llama")
    assert isinstance(model, PeftModel)
    assert torch.equal(logits(model, inputs), reference)


def test_reloading_every_tuner_module_in_a_fresh_process_is_harmless():
    result = run_fresh(
        """
        import importlib, json, sys
        sys.path.insert(0, sys.argv[1])
        import peft_mpn
        import peft_mpn
        import peft_mpn._registration, peft_mpn.tuners.mpn
        import peft_mpn.tuners.mpn.config, peft_mpn.tuners.mpn.layer, peft_mpn.tuners.mpn.model
        from peft import PeftConfig, get_peft_model
        from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
        from peft.utils import PeftType
        from tiny import logits, sample_inputs, tiny_model

        member = PeftType.MPN
        for name in ("_registration", "tuners.mpn.config", "tuners.mpn.layer", "tuners.mpn.model", "tuners.mpn"):
            importlib.reload(sys.modules["peft_mpn." + name])
        new = sys.modules["peft_mpn.tuners.mpn"]
        base = tiny_model("llama")
        inputs = sample_inputs("llama")
        reference = logits(base, inputs)
        model = get_peft_model(base, new.MPNConfig())
        print(json.dumps({
            "same_member": PeftType.MPN is member,
            "one_member": [m.value for m in PeftType].count("MPN"),
            "tuner_is_new_class": PEFT_TYPE_TO_TUNER_MAPPING[member] is new.MPNModel,
            "equal": bool((logits(model, inputs) == reference).all()),
            "old_config_class_still_works": get_peft_model(tiny_model("gpt2"), peft_mpn.MPNConfig()) is not None,
        }))
        """
    )
    assert result == {
        "same_member": True,
        "one_member": 1,
        "tuner_is_new_class": True,
        "equal": True,
        "old_config_class_still_works": True,
    }


# -- 2. which modules are patched ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_default_target_is_the_last_blocks_ffn(arch, tmp_path):
    model, _, _ = adapted(arch)
    last = LAYOUT[arch][2] - 1
    layers = model.base_model.patch_layers()
    assert list(layers) == [ffn_name(arch, last)]
    assert all(isinstance(layer, MPNLayer) for layer in layers.values())

    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["layers_to_transform"] == [last]
    assert saved["target_modules"] == [LAYOUT[arch][1]]


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_explicit_and_negative_layer_indices(arch, tmp_path):
    total = LAYOUT[arch][2]
    first, _, _ = adapted(arch, layers_to_transform=[0])
    assert list(first.base_model.patch_layers()) == [ffn_name(arch, 0)]

    as_int, _, _ = adapted(arch, layers_to_transform=0)
    assert list(as_int.base_model.patch_layers()) == [ffn_name(arch, 0)]

    negative, _, _ = adapted(arch, layers_to_transform=[-2, -1])
    assert list(negative.base_model.patch_layers()) == [ffn_name(arch, total - 2), ffn_name(arch, total - 1)]
    negative.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["layers_to_transform"] == [total - 2, total - 1]  # stored normalised, not as -2/-1


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_target_modules_override(arch):
    total = LAYOUT[arch][2]
    every, _, _ = adapted(arch, **all_block_targets(arch))
    assert list(every.base_model.patch_layers()) == [ffn_name(arch, i) for i in range(total)]

    names_and_index, _, _ = adapted(arch, **all_block_targets(arch), layers_to_transform=[1])
    assert list(names_and_index.base_model.patch_layers()) == [ffn_name(arch, 1)]

    regex, _, _ = adapted(arch, target_modules=rf".*\.1\.{LAYOUT[arch][1]}")
    assert list(regex.base_model.patch_layers()) == [ffn_name(arch, 1)]


# -- 3. what the patches do ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_fresh_and_zero_patches_reproduce_the_base_model(arch):
    fresh, inputs, reference = adapted(arch)
    assert fresh.peft_config["default"].num_patches == 0
    assert torch.equal(logits(fresh, inputs), reference)

    zeros, _, _ = adapted(arch, num_patches=4)  # init_patches=True: zero keys, biases and values
    assert all(layer.num_patches("default") == 4 for layer in zeros.base_model.patch_layers().values())
    assert torch.equal(logits(zeros, inputs), reference)

    fresh.base_model.add_patches(
        ffn_name(arch, -1), PatchSet(torch.zeros(3, HIDDEN), torch.zeros(3), torch.zeros(3, HIDDEN))
    )
    assert torch.equal(logits(fresh, inputs), reference)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_random_patches_change_the_output_and_disabling_restores_it(arch):
    model, inputs, reference = adapted(arch, random_patches(3, seed=1))
    base_state = {k: v.clone() for k, v in model.get_base_model().state_dict().items() if "mpn_" not in k}
    patched = logits(model, inputs)
    assert not torch.allclose(patched, reference, atol=1e-4)
    with model.disable_adapter():
        assert torch.equal(logits(model, inputs), reference)
    assert torch.equal(logits(model, inputs), patched)
    # The base model's own weights were not touched: the change lives in the patch tensors only.
    after = {k: v for k, v in model.get_base_model().state_dict().items() if "mpn_" not in k}
    assert after.keys() == base_state.keys()
    assert all(torch.equal(after[k], base_state[k]) for k in base_state)

    random_init, _, _ = adapted(arch, num_patches=2, init_patches=False)
    assert not torch.allclose(logits(random_init, inputs), reference, atol=1e-4)


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_output_changes_only_through_the_patch(arch, activation):
    """Patches that never fire (pre-activation ≈ -1e4 everywhere) leave the output exactly as it was,
    even with huge values: the patch adds act(h·Kᵀ+b)·V and nothing else."""
    silent = random_patches(4, seed=2, scale=1e3, bias=-1e4)
    model, inputs, reference = adapted(arch, silent, activation=activation)
    if activation is None:  # the FFN's own activation (silu, gelu, gelu_new, gelu_pytorch_tanh) is ~0 there too
        assert model.peft_config["default"].activation != "relu"
    assert torch.equal(logits(model, inputs), reference)

    # The same patches with the bias flipped do fire and do change the output.
    loud = PatchSet(silent.keys, -silent.bias, silent.values)
    model.base_model.add_patches(ffn_name(arch, -1), loud)
    assert not torch.allclose(logits(model, inputs), reference, atol=1e-3)


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
    model, inputs, reference = adapted(arch, random_patches(3, seed=11))
    expected = logits(model, inputs)
    assert not torch.allclose(expected, reference, atol=1e-4)

    merged = model.merge_and_unload()
    assert not any(isinstance(module, BaseTunerLayer) for module in merged.modules())
    assert not any("mpn_" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged, inputs), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", UNGATED)
def test_merge_adapter_unmerge_adapter_round_trip(arch):
    model, inputs, _ = adapted(arch, random_patches(3, seed=12))
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


# -- 9. bad input ----------------------------------------------------------------------------------------------
def _tiny_opt() -> torch.nn.Module:
    torch.manual_seed(0)
    config = OPTConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=2,
        ffn_dim=32,
        num_attention_heads=2,
        word_embed_proj_dim=16,
        max_position_embeddings=32,
    )
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("config_kwargs", [{}, {"target_modules": ["fc2"]}])
def test_unknown_architecture_is_refused(config_kwargs):
    model = _tiny_opt()
    inputs = {"input_ids": torch.tensor([[1, 5, 7, 9]])}
    reference = logits(model, inputs)
    types = module_types(model)
    with pytest.raises(UnsupportedArchitectureError, match="FFN_SPECS") as error:
        get_peft_model(model, MPNConfig(**config_kwargs))
    assert "opt" in str(error.value)
    assert_untouched(model, types, reference, inputs)


@pytest.mark.parametrize("target_modules", [["nonexistent_ffn"], r".*\.nonexistent_ffn"])
def test_target_modules_matching_nothing(target_modules):
    model = tiny_model("llama")
    inputs = sample_inputs("llama")
    reference = logits(model, inputs)
    types = module_types(model)
    with pytest.raises(ValueError, match="nonexistent_ffn") as error:
        get_peft_model(model, MPNConfig(target_modules=target_modules))
    assert "not found" in str(error.value)
    assert_untouched(model, types, reference, inputs)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
def test_target_modules_that_are_not_ffn_blocks(arch):
    model = tiny_model(arch)
    inputs = sample_inputs(arch)
    reference = logits(model, inputs)
    types = module_types(model)
    attention = {"llama": "self_attn", "gpt2": "attn", "bert": "attention"}[arch]
    with pytest.raises(ValueError, match="check target_modules"):
        get_peft_model(model, MPNConfig(target_modules=[attention]))
    assert_untouched(model, types, reference, inputs)


def test_bert_like_output_target_never_patches_attention_silently():
    model = tiny_model("bert")
    try:
        peft_model = get_peft_model(model, MPNConfig(target_modules=["output"]))
    except ValueError:
        return  # refusing is fine too
    assert list(peft_model.base_model.patch_layers()) == [ffn_name("bert", i) for i in range(2)]


def test_adapter_for_another_hidden_size_is_refused(tmp_path):
    small, _, _ = adapted("llama", random_patches(2, seed=14))
    small.save_pretrained(tmp_path)
    before = tree_snapshot(tmp_path)

    config = DECODER_CONFIGS["llama"]()
    config.hidden_size = 48
    torch.manual_seed(0)
    wide = AutoModelForCausalLM.from_config(config).eval()
    inputs = sample_inputs("llama")
    reference = logits(wide, inputs)
    types = module_types(wide)

    with pytest.raises(ValueError, match="hidden size") as error:
        PeftModel.from_pretrained(wide, tmp_path)
    assert "32" in str(error.value) and "48" in str(error.value)
    with pytest.raises(ValueError, match="hidden size"):
        wide.load_adapter(str(tmp_path))
    with pytest.raises(ValueError, match="hidden size"):
        get_peft_model(wide, MPNConfig(hidden_size=HIDDEN))
    assert_untouched(wide, types, reference, inputs)
    assert tree_snapshot(tmp_path) == before


@pytest.mark.parametrize("layers", [[3], [-4], [0, 7], 3])
def test_layers_to_transform_out_of_range(layers):
    model = tiny_model("llama")
    inputs = sample_inputs("llama")
    reference = logits(model, inputs)
    types = module_types(model)
    with pytest.raises(ValueError, match="out of range for a 3-layer model"):
        get_peft_model(model, MPNConfig(layers_to_transform=layers))
    assert_untouched(model, types, reference, inputs)


def test_negative_num_patches_is_refused():
    with pytest.raises(ValueError, match="num_patches must be >= 0"):
        MPNConfig(num_patches=-1)


def test_unknown_activation_is_refused():
    model = tiny_model("gpt2")
    inputs = sample_inputs("gpt2")
    reference = logits(model, inputs)
    types = module_types(model)
    with pytest.raises(ValueError, match="ACT2FN"):
        get_peft_model(model, MPNConfig(activation="no_such_activation"))
    assert_untouched(model, types, reference, inputs)


def test_mismatched_patch_shapes_are_refused():
    model, inputs, reference = adapted("llama")
    with pytest.raises(ValueError, match="shapes disagree"):
        PatchSet(torch.zeros(2, HIDDEN), torch.zeros(3), torch.zeros(2, HIDDEN))
    with pytest.raises(ValueError, match="width"):
        model.base_model.add_patches(
            ffn_name("llama", -1), PatchSet(torch.ones(2, 8), torch.ones(2), torch.ones(2, 8))
        )
    with pytest.raises(KeyError, match="No MPN layer"):
        model.base_model.add_patches(ffn_name("llama", 0), random_patches(1, seed=0))
    assert model.peft_config["default"].num_patches == 0
    assert torch.equal(logits(model, inputs), reference)


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
