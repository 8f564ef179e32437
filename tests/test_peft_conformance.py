"""peft's generic tuner checks of saving, loading, adapters, training and dtypes, for MPN and LAFN.

The equivalents of peft's ``PeftCommonTester`` checks (peft's ``tests/testing_common.py``) and of the dtype checks
of its custom-model tests, run on tiny Llama, GPT-2 and BERT (``conformance_tiny.CASES``); the merge, unload and
disable checks are in ``test_peft_conformance_merge.py``.
"""

from __future__ import annotations

import pytest
import torch
from conformance_tiny import (
    CASES,
    PREFIX,
    adapter_parameters,
    base_model,
    inputs,
    make_config,
    output,
    peft_model,
)
from peft import PeftModel, get_peft_model
from peft.utils import ModulesToSaveWrapper
from safetensors.torch import load_file


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
