"""Behaviour of the LAFN PEFT tuner (masked neuron deltas) on tiny models of every supported architecture.

Through the surfaces a user touches: ``peft.get_peft_model``, ``PeftModel``, ``save_pretrained``/
``from_pretrained`` (also in a fresh interpreter), merging, several adapters, and the editor interface of the
tuner (``lafn_layers``, ``neuron_sets``, ``add_neurons``, ``delta_parameters``).
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from peft import PeftConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import PeftType
from safetensors.torch import load_file
from tiny import ALL_ARCHS, DECODER_CONFIGS, HIDDEN, logits, run_fresh, sample_inputs, tiny_model
from transformers import AutoModelForCausalLM

import peft_mpn
from peft_mpn import LAFNConfig, LAFNLayer, LAFNModel, NeuronAddition

WIDTH = 64  # intermediate_size of every tiny model

#: arch -> (ModuleList of blocks, FFN block module inside a block, number of blocks) as the tiny models have them.
LAYOUT = {
    "llama": ("model.layers", "mlp", 3),
    "gemma3_text": ("model.layers", "mlp", 3),
    "qwen2": ("model.layers", "mlp", 3),
    "gpt2": ("transformer.h", "mlp", 3),
    "bert": ("bert.encoder.layer", "output", 2),
    "xlm-roberta": ("roberta.encoder.layer", "output", 2),
}
DECODERS = list(DECODER_CONFIGS)
#: the located neurons the tests use: in the first and the last block
NEURONS = {0: [3, 17, 40], -1: [1, 5, 9, 63]}


# -- helpers -------------------------------------------------------------------------------------------------
def ffn_name(arch: str, index: int) -> str:
    stack, block, total = LAYOUT[arch]
    return f"{stack}.{index % total}.{block}"


def normalised(arch: str, neurons: dict[int, list[int]]) -> dict[int, list[int]]:
    return dict(sorted((layer % LAYOUT[arch][2], list(indices)) for layer, indices in neurons.items()))


def adapted(arch: str, neurons: dict | None = None, randomise: bool = False, **config_kwargs):
    """(peft model, inputs, base logits); ``randomise`` fills the deltas with seeded noise."""
    base = tiny_model(arch)
    inputs = sample_inputs(arch)
    reference = logits(base, inputs)
    model = get_peft_model(base, LAFNConfig(neurons=dict(neurons or NEURONS), **config_kwargs))
    if randomise:
        fill_random(model, seed=1)
    return model, inputs, reference


def fill_random(model: PeftModel, seed: int, adapter_name: str | None = None, scale: float = 1.0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for delta in model.base_model.delta_parameters(adapter_name):
            delta.copy_(torch.randn(delta.shape, generator=generator) * scale / delta.shape[1] ** 0.5)


def module_types(model: torch.nn.Module) -> dict[str, type]:
    return {name: type(module) for name, module in model.named_modules()}


def forward_hook_counts(model: torch.nn.Module) -> dict[str, int]:
    return {name: len(module._forward_hooks) for name, module in model.named_modules()}


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(model: torch.nn.Module, types: dict, reference: torch.Tensor, inputs, weights: dict) -> None:
    """A refused adapter creation left the model exactly as it was."""
    assert not any(isinstance(module, BaseTunerLayer) for module in model.modules())
    assert module_types(model) == types
    after = model.state_dict()
    assert after.keys() == weights.keys() and all(torch.equal(after[k], weights[k]) for k in weights)
    assert torch.equal(logits(model, inputs), reference)


def changed_neurons(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """For every tensor that changed: the FFN neurons (indices along its dimension of size WIDTH) that changed."""
    assert before.keys() == after.keys()
    changed = {}
    for key, old in before.items():
        new = after[key]
        assert new.shape == old.shape, key
        if torch.equal(new, old):
            continue
        assert WIDTH in old.shape and old.dim() == 2, f"{key} {tuple(old.shape)} changed but holds no FFN neurons"
        dim = list(old.shape).index(WIDTH)
        rows = (new != old).any(dim=1 - dim)
        changed[key] = rows.nonzero().flatten().tolist()
    return changed


def ffn_outputs(model: torch.nn.Module, layer_name: str, inputs) -> torch.Tensor:
    """The output of the FFN block ``layer_name`` (first element if a tuple) for ``inputs``."""
    captured = []
    root = model.get_base_model() if isinstance(model, PeftModel) else model
    handle = root.get_submodule(layer_name).register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        logits(model, inputs)
    finally:
        handle.remove()
    return captured[0][0] if isinstance(captured[0], tuple) else captured[0]


# -- 1. registration and config --------------------------------------------------------------------------------
def test_registered_as_a_peft_type():
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    member = PeftType.LAFN
    assert member.value == "LAFN" and PeftType("LAFN") is member
    assert PEFT_TYPE_TO_TUNER_MAPPING[member] is LAFNModel
    assert PEFT_TYPE_TO_CONFIG_MAPPING[member] is LAFNConfig
    assert PEFT_TYPE_TO_PREFIX_MAPPING[member] == "lafn_"
    assert LAFNConfig(neurons={1: [2]}).peft_type is member
    assert peft_mpn.LAFNLayer is LAFNLayer and peft_mpn.NeuronAddition is NeuronAddition


def test_config_normalises_json_keys_and_documents_every_field():
    config = LAFNConfig(neurons={"2": ["7", 3], "-1": [0]})
    assert config.neurons == {2: [7, 3], -1: [0]}
    assert all(isinstance(k, int) for k in config.neurons)
    from dataclasses import fields

    own = [f for f in fields(LAFNConfig) if f.name not in {f.name for f in fields(PeftConfig)}]
    assert {f.name for f in own} >= {"neurons", "update_input", "cached", "activation_threshold", "init_lafn_weights"}
    assert all(f.metadata.get("help") for f in own)


@pytest.mark.parametrize(
    "neurons, match",
    [
        ({}, "at least one located neuron"),
        ({1: []}, "neuron set of layer 1 is empty"),
        ({1: [-2]}, "negative"),
        ({1: [3, 3]}, "more than once"),
        ({"x": [1]}, "not an integer"),
    ],
)
def test_bad_neuron_sets_are_refused_by_the_config(neurons, match):
    with pytest.raises(ValueError, match=match):
        LAFNConfig(neurons=neurons)


def test_cached_needs_a_threshold():
    with pytest.raises(ValueError, match="activation_threshold"):
        LAFNConfig(neurons={0: [1]}, cached=True)
    with pytest.raises(ValueError, match=">= 0"):
        LAFNConfig(neurons={0: [1]}, cached=True, activation_threshold=-1.0)


# -- 2. what is adapted --------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_targets_the_ffn_blocks_of_the_named_layers(arch, tmp_path):
    model, _, _ = adapted(arch, update_input=True)
    tuner = model.base_model
    layers = tuner.lafn_layers()
    assert list(layers) == [ffn_name(arch, 0), ffn_name(arch, -1)]
    assert tuner.neuron_sets() == normalised(arch, NEURONS)
    for layer in layers.values():
        assert layer.lafn_indices["default"].dtype == torch.int64
        assert layer.width == WIDTH and layer.hidden_size == HIDDEN
    # The deltas are the only trainable parameters: down columns, up rows and (gated) gate rows of the located neurons.
    trainable = {n.rsplit(".", 2)[-2] for n, p in model.named_parameters() if p.requires_grad}
    gated = arch in ("llama", "gemma3_text", "qwen2")
    assert trainable == ({"lafn_down", "lafn_up", "lafn_gate"} if gated else {"lafn_down", "lafn_up"})
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 7 * HIDDEN * (3 if gated else 2)

    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LAFN"
    assert saved["neurons"] == {str(k): v for k, v in normalised(arch, NEURONS).items()}
    assert saved["target_modules"] == [LAYOUT[arch][1]]
    assert saved["layers_pattern"] == LAYOUT[arch][0].rsplit(".", 1)[-1]
    assert (saved["intermediate_size"], saved["hidden_size"]) == (WIDTH, HIDDEN)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    indices = {k: v for k, v in tensors.items() if k.endswith("lafn_indices")}
    assert len(indices) == 2 and all(v.dtype == torch.int64 for v in indices.values())
    assert sorted(v.tolist() for v in indices.values()) == sorted(normalised(arch, NEURONS).values())


def test_explicit_target_modules_still_follow_the_neuron_layers():
    model, _, _ = adapted("bert", neurons={1: [2]}, target_modules=["output"])
    assert list(model.base_model.lafn_layers()) == [ffn_name("bert", 1)]  # never attention.output
    regex, _, _ = adapted("llama", neurons={1: [2]}, target_modules=r".*\.mlp")
    assert list(regex.base_model.lafn_layers()) == [ffn_name("llama", 1)]


# -- 3. exactness ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_zero_deltas_and_disabled_adapters_are_the_base_model(arch):
    for kwargs in ({}, {"update_input": True}, {"cached": True, "activation_threshold": 0.0}):
        fresh, inputs, reference = adapted(arch, **kwargs)
        assert torch.equal(logits(fresh, inputs), reference), kwargs

    model, inputs, reference = adapted(arch, update_input=True, randomise=True)
    base_state = {k: v.clone() for k, v in model.get_base_model().state_dict().items() if "lafn_" not in k}
    out = logits(model, inputs)
    assert not torch.allclose(out, reference, atol=1e-3)
    with model.disable_adapter():
        assert torch.equal(logits(model, inputs), reference)
    assert torch.equal(logits(model, inputs), out)
    after = {k: v for k, v in model.get_base_model().state_dict().items() if "lafn_" not in k}
    assert all(torch.equal(after[k], base_state[k]) for k in base_state)  # the change lives in the deltas only

    random_init, _, _ = adapted(arch, init_lafn_weights=False)
    assert not torch.allclose(logits(random_init, inputs), reference, atol=1e-3)


@pytest.mark.parametrize("update_input", [False, True])
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_merge_is_exact_and_touches_only_the_located_neurons(arch, update_input):
    model, inputs, _ = adapted(arch, update_input=update_input, randomise=True)
    expected = logits(model, inputs)
    weights = snapshot(model.get_base_model())

    model.merge_adapter()
    torch.testing.assert_close(logits(model, inputs), expected, atol=1e-5, rtol=0)
    model.unmerge_adapter()
    after = model.get_base_model().state_dict()
    assert all(torch.equal(after[k], weights[k]) for k in weights)  # bit-exact restore
    assert torch.equal(logits(model, inputs), expected)

    base_weights = {k.replace(".base_layer", ""): v for k, v in weights.items() if "lafn_" not in k}
    merged = model.merge_and_unload()
    assert not any(isinstance(module, BaseTunerLayer) for module in merged.modules())
    assert not any("lafn_" in name for name in merged.state_dict())
    torch.testing.assert_close(logits(merged, inputs), expected, atol=1e-5, rtol=0)

    changed = changed_neurons(base_weights, snapshot(merged))
    stack, block, _ = LAYOUT[arch]
    expected_changes = {}
    for layer, indices in normalised(arch, NEURONS).items():
        for proj, is_input in zip(*_projections(arch)):
            if update_input or not is_input:
                expected_changes[f"{stack}.{layer}.{proj}.weight"] = sorted(indices)
    assert changed == expected_changes


def _projections(arch: str) -> tuple[list[str], list[bool]]:
    """(FFN projections relative to a block, whether each is an input projection) for ``arch``."""
    spec = peft_mpn.FFN_SPECS[arch]
    paths = [spec.down_proj, spec.up_proj] + ([spec.gate_proj] if spec.gate_proj else [])
    return paths, [False, True, True][: len(paths)]


# -- 4. the cached update --------------------------------------------------------------------------------------
def _scores(model: PeftModel, layer_name: str, inputs) -> torch.Tensor:
    """Per-token firing statistic of the located neurons on the base model, ``[batch, seq]``."""
    layer = model.base_model.lafn_layers()[layer_name]
    captured = []
    handle = layer.down_proj.register_forward_hook(lambda m, i, o: captured.append(i[0]))
    try:
        with model.disable_adapter():
            logits(model, inputs)
    finally:
        handle.remove()
    return layer.activation_score(captured[0][..., layer.lafn_indices["default"]])


@pytest.mark.parametrize("update_input", [False, True])
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_cached_delta_applies_only_where_the_located_neurons_fire(arch, update_input):
    neurons = {0: [3, 17, 40, 41]}
    layer_name = ffn_name(arch, 0)
    always, inputs, _ = adapted(arch, neurons, update_input=update_input, randomise=True)
    scores = _scores(always, layer_name, inputs)
    threshold = float(scores.flatten().median())
    cached, _, _ = adapted(arch, neurons, update_input=update_input, cached=True, activation_threshold=threshold)
    cached.load_state_dict(always.state_dict())  # the same deltas

    base_out = ffn_outputs(tiny_model(arch), layer_name, inputs)
    always_out = ffn_outputs(always, layer_name, inputs)
    cached_out = ffn_outputs(cached, layer_name, inputs)
    fires = scores > threshold
    assert fires.any() and (~fires).any()
    assert not torch.allclose(always_out[fires], base_out[fires], atol=1e-4)
    assert torch.equal(cached_out[fires], always_out[fires])
    assert torch.equal(cached_out[~fires], base_out[~fires])


@pytest.mark.parametrize("arch", DECODERS)
def test_cached_edit_changes_the_prompt_that_activates_the_neurons_only(arch):
    """Two prompts, a threshold between their last-token scores: the edit reaches one next-token prediction."""
    prompts = ["the capital of france is", "a cat sat on the mat"]
    inputs = sample_inputs(arch, prompts)
    last = ffn_name(arch, -1)
    always, _, _ = adapted(arch, {-1: [3, 17, 40, 41]}, randomise=True)
    final_scores = _scores(always, last, inputs)[:, -1]
    hi = int(final_scores.argmax())
    threshold = float(final_scores.mean())
    cached, _, reference = adapted(arch, {-1: [3, 17, 40, 41]}, cached=True, activation_threshold=threshold)
    cached.load_state_dict(always.state_dict())
    reference, edited, out = logits(tiny_model(arch), inputs), logits(always, inputs), logits(cached, inputs)
    assert torch.equal(out[hi, -1], edited[hi, -1]) and not torch.allclose(out[hi, -1], reference[hi, -1])
    assert torch.equal(out[1 - hi, -1], reference[1 - hi, -1])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_cached_adapters_are_never_merged(arch):
    model, inputs, _ = adapted(arch, randomise=True, cached=True, activation_threshold=0.01)
    expected = logits(model, inputs)
    weights = snapshot(model)
    for merge in (model.merge_and_unload, model.merge_adapter):
        with pytest.raises(ValueError, match="cached"):
            merge()
    after = model.state_dict()
    assert all(torch.equal(after[k], weights[k]) for k in weights)
    assert list(model.base_model.lafn_layers()) == [ffn_name(arch, 0), ffn_name(arch, -1)]
    assert torch.equal(logits(model, inputs), expected)


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


# -- 9. bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "neurons, match",
    [
        ({1: [2, 64, 99]}, r"\[64, 99\] are out of range for layer 1, whose FFN has width 64"),
        ({-1: [70]}, r"out of range for layer 2, whose FFN has width 64"),
        ({3: [1]}, r"layers \[3\] out of range for a 3-layer model"),
        ({-4: [1]}, r"layers \[-4\] out of range"),
        ({2: [1], -1: [2]}, "same layer twice"),
    ],
)
def test_out_of_range_neurons_are_refused_and_the_model_untouched(neurons, match):
    model = tiny_model("llama")
    inputs = sample_inputs("llama")
    reference, types, weights = logits(model, inputs), module_types(model), snapshot(model)
    with pytest.raises(ValueError, match=match):
        get_peft_model(model, LAFNConfig(neurons=neurons))
    assert_untouched(model, types, reference, inputs, weights)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
def test_targets_that_are_not_ffn_blocks_are_refused(arch):
    model = tiny_model(arch)
    inputs = sample_inputs(arch)
    reference, types, weights = logits(model, inputs), module_types(model), snapshot(model)
    attention = {"llama": "self_attn", "gpt2": "attn", "bert": "attention"}[arch]
    with pytest.raises(ValueError, match="not an FFN block"):
        get_peft_model(model, LAFNConfig(neurons={0: [1]}, target_modules=[attention]))
    assert_untouched(model, types, reference, inputs, weights)


def test_adapter_for_another_ffn_width_is_refused(tmp_path):
    small, _, _ = adapted("llama", {1: [3, 50]}, randomise=True)
    small.save_pretrained(tmp_path)
    saved = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    config = DECODER_CONFIGS["llama"]()
    config.intermediate_size = 48
    torch.manual_seed(0)
    narrow = AutoModelForCausalLM.from_config(config).eval()
    inputs = sample_inputs("llama")
    reference, types, weights = logits(narrow, inputs), module_types(narrow), snapshot(narrow)

    with pytest.raises(ValueError, match="width 64") as error:
        PeftModel.from_pretrained(narrow, tmp_path)
    assert "layer 1's FFN has width 48" in str(error.value)
    with pytest.raises(ValueError, match="width 64"):
        narrow.load_adapter(str(tmp_path))
    with pytest.raises(ValueError, match="whose FFN has width 48"):
        get_peft_model(narrow, LAFNConfig(neurons={1: [3, 50]}))
    assert_untouched(narrow, types, reference, inputs, weights)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == saved
