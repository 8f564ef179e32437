"""peft's generic tuner checks of saving, loading, adapters, training and dtypes, for MPN and LAFN.

The equivalents of peft's ``PeftCommonTester`` checks (peft's ``tests/testing_common.py``) and of the dtype checks
of its custom-model tests, run on tiny Llama, GPT-2 and BERT (``conformance_tiny.CASES``); the merge, unload and
disable checks are in ``test_peft_conformance_merge.py``.
"""

from __future__ import annotations

import json
import re
import warnings
from operator import attrgetter

import pytest
import torch
import yaml
from conformance_tiny import (
    CASES,
    PREFIX,
    adapter_parameters,
    base_model,
    generate_kwargs,
    inputs,
    is_decoder,
    make_config,
    output,
    peft_model,
)
from peft import (
    PeftModel,
    get_base_model_state_dict,
    get_peft_model,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    prepare_model_for_kbit_training,
    set_base_model_state_dict,
)
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import ModulesToSaveWrapper
from safetensors.torch import load_file

from peft_mpn.tuners.ffn import ffn_blocks


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state (base and adapter), as peft's tests compare it."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(one: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> None:
    assert one.keys() == other.keys()
    assert all(torch.allclose(one[k], other[k]) for k in one)


# -- the PeftModel a tuner makes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_model_attributes_and_adapter_name(tuner, arch):
    model = peft_model(tuner, arch, adapter_name="test-adapter")
    assert all(hasattr(model, name) for name in ("save_pretrained", "from_pretrained", "push_to_hub"))
    assert any("test-adapter" in name for name, _ in model.named_parameters())
    model(inputs_embeds=model.get_input_embeddings()(inputs(arch)["input_ids"]))  # inputs_embeds work


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_prepare_for_training(tuner, arch):
    ids = inputs(arch)["input_ids"]
    model = peft_model(tuner, arch)
    assert not model.get_input_embeddings()(ids).requires_grad
    base = prepare_model_for_kbit_training(base_model(arch))
    assert not any(p.requires_grad for p in base.parameters())
    model = get_peft_model(base, make_config(tuner, arch))
    model.enable_input_require_grads()
    assert model.get_input_embeddings()(ids).requires_grad


# -- saving and loading -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("tuner", "arch"), CASES)
@pytest.mark.parametrize("safe_serialization", [True, False])
def test_save_pretrained_and_from_pretrained(tuner, arch, safe_serialization, tmp_path):
    model = peft_model(tuner, arch)
    model.save_pretrained(tmp_path, safe_serialization=safe_serialization)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = PeftModel.from_pretrained(base_model(arch), tmp_path)
    assert not any("Found missing adapter keys" in str(w.message) for w in caught)
    _assert_same_state(_state(model), _state(loaded))
    weights = "adapter_model.safetensors" if safe_serialization else "adapter_model.bin"
    assert {weights, "adapter_config.json", "README.md"} <= {p.name for p in tmp_path.iterdir()}
    assert not (tmp_path / "model.safetensors").exists() and not (tmp_path / "config.json").exists()
    card = yaml.safe_load(re.search(r"---\n(.*?)\n---", (tmp_path / "README.md").read_text(), re.DOTALL).group(1))
    assert card["library_name"] == "peft"
    assert card["base_model"] == model.config.to_dict()["_name_or_path"]
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == (model.config.to_dict()["_name_or_path"] or None)


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_trained_adapter_round_trips_through_safetensors(tuner, arch, tmp_path):
    batch = inputs(arch)
    model = peft_model(tuner, arch).train()
    (model(**batch).logits ** 2).sum().backward()
    params = list(adapter_parameters(model, tuner).values())
    torch.optim.SGD(params, lr=0.1).step()
    expected = output(model.eval(), batch)
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert "adapter_model.bin" not in {p.name for p in tmp_path.iterdir()}
    loaded = PeftModel.from_pretrained(base_model(arch), tmp_path, device_map={"": "cpu"})
    torch.testing.assert_close(output(loaded, batch), expected, atol=1e-6, rtol=1e-6)
    assert not any(p.requires_grad for p in loaded.parameters())  # loaded for inference, as peft does


@pytest.mark.parametrize(("tuner", "arch"), CASES)
@pytest.mark.parametrize("safe_serialization", [True, False])
def test_save_pretrained_selected_adapters(tuner, arch, safe_serialization, tmp_path):
    model = peft_model(tuner, arch)
    torch.manual_seed(1)
    model.add_adapter("new_adapter", make_config(tuner, arch))
    model.save_pretrained(tmp_path, safe_serialization=safe_serialization)
    weights = "adapter_model.safetensors" if safe_serialization else "adapter_model.bin"
    for folder in (tmp_path, tmp_path / "new_adapter"):
        assert (folder / weights).exists() and (folder / "adapter_config.json").exists()
        assert not (folder / "model.safetensors").exists() and not (folder / "config.json").exists()
    loaded = PeftModel.from_pretrained(base_model(arch), tmp_path)
    loaded.load_adapter(tmp_path / "new_adapter", "new_adapter")
    _assert_same_state(_state(model), _state(loaded))

    model.save_pretrained(tmp_path / "only", selected_adapters=["default"])
    only = PeftModel.from_pretrained(base_model(arch), tmp_path / "only")
    assert set(only.peft_config) == {"default"}


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_save_pretrained_adapter_name_substring(tuner, arch, tmp_path):
    model = peft_model(tuner, arch)
    expected = len(get_peft_model_state_dict(model))
    for name in ("default2", "other_default", "foodefault_bar", "efaul"):
        model.add_adapter(name, make_config(tuner, arch))
    model.save_pretrained(tmp_path, selected_adapters=["default"])
    assert len(load_file(tmp_path / "adapter_model.safetensors")) == expected


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_from_pretrained_with_a_config_object(tuner, arch, tmp_path):
    config = make_config(tuner, arch)
    get_peft_model(base_model(arch), config).save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(base_model(arch), tmp_path, is_trainable=False, config=config)
    assert loaded.peft_config["default"] is config and config.inference_mode


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_load_multiple_adapters_and_low_cpu_mem_usage(tuner, arch, tmp_path):
    peft_model(tuner, arch).save_pretrained(tmp_path)
    for low_cpu_mem_usage in (False, True):
        model = PeftModel.from_pretrained(base_model(arch), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage)
        for name in ("other", "yet-another"):
            result = model.load_adapter(tmp_path, adapter_name=name, low_cpu_mem_usage=low_cpu_mem_usage)
            assert result.missing_keys == []
        assert {p.device.type for p in model.parameters()} == {"cpu"}
        state = _state(model)
        for name in ("other", "yet-another"):
            ours = {k: v for k, v in state.items() if f".{name}" in k}
            assert ours and all(torch.equal(v, state[k.replace(f".{name}", ".default")]) for k, v in ours.items())
    model = base_model(arch)
    inject_adapter_in_model(make_config(tuner, arch), model, low_cpu_mem_usage=True)
    assert "meta" in {p.device.type for p in model.parameters()}


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_get_and_set_base_model_state_dict(tuner, arch):
    model = base_model(arch)
    original = _state(model)
    model = get_peft_model(model, make_config(tuner, arch))
    _assert_same_state(get_base_model_state_dict(model), original)
    with torch.no_grad():
        for param in model.get_base_model().parameters():
            param.add_(torch.randn_like(param) * 0.1)
    result = set_base_model_state_dict(model, original, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    _assert_same_state(get_base_model_state_dict(model), original)


# -- several adapters -----------------------------------------------------------------------------------------------
def _assert_no_trace_of(model: PeftModel, name: str) -> None:
    for module in model.modules():
        for attr in getattr(module, "adapter_layer_names", ()) + getattr(module, "other_param_names", ()):
            assert name not in attrgetter(attr)(module)
        if isinstance(module, ModulesToSaveWrapper):
            assert name not in module.modules_to_save


@pytest.mark.parametrize(("tuner", "arch"), CASES)
@pytest.mark.parametrize("activate", [True, False])
def test_delete_adapter(tuner, arch, activate):
    model = peft_model(tuner, arch)
    model.add_adapter("delete_me", make_config(tuner, arch))
    if activate:
        model.set_adapter("delete_me")
        with pytest.warns(UserWarning, match="Adapter delete_me was active which is now deleted"):
            model.delete_adapter("delete_me")
    else:
        model.delete_adapter("delete_me")
    assert "delete_me" not in model.peft_config and model.active_adapters == ["default"]
    _assert_no_trace_of(model, "delete_me")
    model.delete_adapter("default")
    assert "default" not in model.peft_config and model.active_adapters == []
    _assert_no_trace_of(model, "default")
    model.base_model(**inputs(arch))  # runs without any adapter
    with pytest.raises(ValueError, match="Adapter unknown-adapter does not exist"):
        model.delete_adapter("unknown-adapter")


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_add_and_set_adapter(tuner, arch):
    model = peft_model(tuner, arch)
    batch = inputs(arch)
    first = output(model, batch)
    torch.manual_seed(1)
    model.add_adapter("adapter-2", make_config(tuner, arch))
    containers = (torch.nn.ParameterDict, torch.nn.ModuleDict, BufferDict)
    holders = [m for m in model.modules() if isinstance(m, containers)]
    assert sum("default" in m for m in holders) == sum("adapter-2" in m for m in holders) > 0
    torch.testing.assert_close(output(model, batch), first)  # adding does not activate
    model.set_adapter("adapter-2")
    second = output(model, batch)
    assert not torch.allclose(first, second, atol=1e-3, rtol=1e-3)
    model.set_adapter("default")
    torch.testing.assert_close(output(model, batch), first)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".default" in name for name in trainable)


# -- dtypes ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("tuner", "arch"), CASES)
@pytest.mark.parametrize(
    ("dtype", "autocast"), [(torch.bfloat16, True), (torch.bfloat16, False), (torch.float16, False)]
)
def test_adapter_dtype_follows_autocast_adapter_dtype(tuner, arch, dtype, autocast, tmp_path):
    """Adapter weights in the model's dtype, upcast to float32 unless autocast_adapter_dtype=False (as peft's)."""
    expected = torch.float32 if autocast else dtype
    first_layer_only = {"neurons": {0: [3, 17, 40]}} if tuner == "lafn" else {}
    config = make_config(tuner, arch, **first_layer_only)
    model = get_peft_model(base_model(arch, dtype), config, autocast_adapter_dtype=autocast)
    if tuner == "lafn":
        model.base_model.add_neurons(-1, [1, 5])  # a new LAFN layer takes the dtype of the adapter's other deltas
    model.add_adapter("other", make_config(tuner, arch), autocast_adapter_dtype=autocast)
    params = adapter_parameters(model, tuner)
    assert params and {p.dtype for p in params.values()} == {expected}
    model.save_pretrained(tmp_path)

    for low_cpu_mem_usage in (False, True):
        loaded = PeftModel.from_pretrained(
            base_model(arch, dtype), tmp_path, autocast_adapter_dtype=autocast, low_cpu_mem_usage=low_cpu_mem_usage
        )
        loaded.load_adapter(
            tmp_path / "other", "other", autocast_adapter_dtype=autocast, low_cpu_mem_usage=low_cpu_mem_usage
        )
        loaded_params = adapter_parameters(loaded, tuner)
        assert loaded_params.keys() == params.keys()
        assert {p.dtype for p in loaded_params.values()} == {expected}
        assert all(torch.equal(loaded_params[k], params[k]) for k in params)


@pytest.mark.parametrize(("tuner", "arch"), CASES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_forward_and_merge_without_autocast(tuner, arch, dtype):
    batch = inputs(arch)
    model = get_peft_model(base_model(arch, dtype), make_config(tuner, arch), autocast_adapter_dtype=False).eval()
    assert {p.dtype for n, p in model.named_parameters() if PREFIX[tuner] in n} == {dtype}
    with torch.no_grad():
        adapted = model(**batch).logits
        assert adapted.dtype == dtype and torch.isfinite(adapted).all()
        if (tuner, arch) == ("mpn", "llama"):
            return  # MPN cannot merge into a gated FFN
        for safe_merge in (False, True):
            model.merge_adapter(safe_merge=safe_merge)
            model(**batch)
            model.unmerge_adapter()
            torch.testing.assert_close(model(**batch).logits, adapted, atol=0, rtol=0)
        model.merge_and_unload()(**batch)


# -- modules_to_save -------------------------------------------------------------------------------------------
#: a module of each tiny model to save with the adapter; BERT's SEQ_CLS task type adds its classifier by itself
EXTRA_MODULE = {"llama": "model.norm", "gpt2": "ln_f", "bert": "classifier"}


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_modules_to_save_are_trained_and_saved_with_the_adapter(tuner, arch, tmp_path):
    batch = inputs(arch)
    name = EXTRA_MODULE[arch]
    model = peft_model(tuner, arch, **({} if arch == "bert" else {"modules_to_save": [name]}))
    assert name in model.peft_config["default"].modules_to_save
    wrappers = {key: m for key, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)}
    assert len(wrappers) == 1 and next(iter(wrappers)).endswith(name)

    model(**batch).logits.sum().backward()
    trained = {key for key, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(".modules_to_save.default." in key for key in trained)
    assert all(PREFIX[tuner] in key or ".modules_to_save.default." in key for key in trained)

    wrapper = next(iter(wrappers.values()))
    with torch.no_grad():  # a trained head: no longer the base model's
        for param in wrapper.modules_to_save["default"].parameters():
            param.add_(0.5)
    expected = output(model, batch)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert any(f"{name}." in key for key in saved)
    loaded = PeftModel.from_pretrained(base_model(arch), tmp_path)
    torch.testing.assert_close(output(loaded, batch), expected, atol=1e-6, rtol=1e-6)


# -- training ----------------------------------------------------------------------------------------------------
def _backward(model: torch.nn.Module, arch: str) -> None:
    (model(**inputs(arch)).logits ** 2).sum().backward()


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_training_gradients_reach_the_adapter_only(tuner, arch):
    model = peft_model(tuner, arch, modules_to_save=None, task_type=None).train()
    _backward(model, arch)
    for name, param in model.named_parameters():
        if PREFIX[tuner] in name:
            assert param.requires_grad and param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_identity_init_is_the_base_model_and_every_adapter_weight_trains(tuner, arch):
    """Like LoRA's B = 0: the model is unchanged, yet it trains: MPN's values (LoRA's B) get a gradient at once,
    the keys and biases (LoRA's A) from the first step on; LAFN's zero deltas all get one at once."""
    identity = {"init_patches": True} if tuner == "mpn" else {"init_lafn_weights": True}
    model = peft_model(tuner, arch, **identity)
    assert torch.equal(output(model, inputs(arch)), output(base_model(arch), inputs(arch)))
    model.train()
    params = adapter_parameters(model, tuner)
    assert params and all(p.numel() > 0 for p in params.values())

    _backward(model, arch)
    moved = {name for name, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0}
    assert moved == {name for name in params if tuner == "lafn" or "mpn_values" in name}
    torch.optim.SGD(params.values(), lr=0.1).step()
    model.zero_grad()
    _backward(model, arch)
    for name, param in params.items():
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize(("tuner", "arch"), CASES)
def test_training_layer_indexing(tuner, arch, tmp_path):
    if tuner == "lafn":
        pytest.skip("LAFN has no layers_to_transform: the layers it adapts are the keys of `neurons`")
    batch = inputs(arch)
    model = peft_model(tuner, arch, layers_to_transform=[0], modules_to_save=None, task_type=None).train()
    _backward(model, arch)
    trained = {name for name, p in model.named_parameters() if p.grad is not None}
    assert trained == set(adapter_parameters(model, tuner))
    expected = output(model.eval(), batch)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(base_model(arch), tmp_path)
    torch.testing.assert_close(output(loaded, batch), expected, atol=1e-6, rtol=1e-6)
    every_block = peft_model(tuner, arch, layers_to_transform=ffn_blocks(base_model(arch)).layers)
    assert len(trained) < len(adapter_parameters(every_block, tuner))


@pytest.mark.parametrize(("tuner", "arch"), CASES)
@pytest.mark.parametrize("use_reentrant", [True, False])
def test_training_with_gradient_checkpointing(tuner, arch, use_reentrant):
    model = peft_model(tuner, arch, modules_to_save=None, task_type=None).train()
    for module in model.modules():  # no dropout: both passes must see the same function
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    params = adapter_parameters(model, tuner)
    calls = []
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.register_forward_pre_hook(lambda *_: calls.append(1))
    _backward(model, arch)
    normal = {name: p.grad.clone() for name, p in params.items()}
    normal_calls = len(calls)
    model.zero_grad()
    model.prepare_model_for_gradient_checkpointing(model)
    model.activation_checkpointing_enable({"use_reentrant": use_reentrant})
    _backward(model, arch)
    assert len(calls) == 3 * normal_calls  # the backward pass ran the adapter layers again
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())
    for name, param in params.items():
        torch.testing.assert_close(param.grad, normal[name], atol=1e-6, rtol=1e-5, msg=name)
    assert all(p.grad is None for name, p in model.named_parameters() if name not in params)


# -- generation ------------------------------------------------------------------------------------------------
DECODER_CASES = [case for case in CASES if is_decoder(case.values[1])]


@pytest.mark.parametrize(("tuner", "arch"), DECODER_CASES)
def test_generate(tuner, arch):
    model = peft_model(tuner, arch)
    batch = inputs(arch)
    with torch.no_grad():
        by_keyword = model.generate(**generate_kwargs(batch))
        by_position = model.generate(batch["input_ids"], **generate_kwargs({}))  # positional input_ids work too
    assert by_keyword.shape[1] > batch["input_ids"].shape[1]
    assert torch.equal(by_position[1:], by_keyword[1:])  # the unpadded row: the same without attention_mask


@pytest.mark.parametrize(("tuner", "arch"), DECODER_CASES)
def test_generate_half_precision(tuner, arch):
    model = get_peft_model(base_model(arch, torch.bfloat16), make_config(tuner, arch)).eval()
    input_ids = torch.LongTensor([[1, 1, 1], [2, 1, 2]])
    attention_mask = torch.LongTensor([[1, 1, 1], [1, 0, 1]])
    with torch.no_grad():
        model.generate(**generate_kwargs({"input_ids": input_ids, "attention_mask": attention_mask}))
