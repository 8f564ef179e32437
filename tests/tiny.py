"""Tiny models built from config and a byte-level tokenizer built with `tokenizers`: no network, no files."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertConfig,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    XLMRobertaConfig,
)

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
#: Word-level vocabulary: every word the tests use is one token, so one-token targets make edits decidable.
WORDS = sorted(
    {
        *"the capital of france is paris lyon berlin rome madrid germany italy spain city river".split(),
        *"die hauptstadt von frankreich ist deutschland".split(),
        *"la capitale de est le fleuve ville".split(),
        *"a cat sat on mat weather nice today numbers go up hello world again dog runs in park".split(),
        *"sun shines over hills music plays loud book lies table bird sings morning rain falls".split(),
        *"who wrote hamlet shakespeare what colour sky blue where flows north south".split(),
        *"true false yes no and or but not with for from to at by an this that these those".split(),
    }
)
VOCAB = len(SPECIALS) + len(WORDS)
HIDDEN = 32


def make_tokenizer(encoder: bool = False) -> PreTrainedTokenizerFast:
    """A word-level tokenizer from the ``tokenizers`` library (``<bos>`` first, like Gemma's and BERT's [CLS])."""
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <eos> $B", special_tokens=[("<bos>", 1), ("<eos>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        cls_token="<bos>" if encoder else None,
        padding_side="right" if encoder else "left",
    )


_COMMON = dict(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64, num_attention_heads=4, initializer_range=0.2
)

DECODER_CONFIGS = {
    "llama": lambda: LlamaConfig(**_COMMON, num_hidden_layers=3, num_key_value_heads=2, head_dim=8),
    "gemma3_text": lambda: Gemma3TextConfig(
        **_COMMON,
        num_hidden_layers=3,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        tie_word_embeddings=False,
    ),
    "qwen2": lambda: Qwen2Config(**_COMMON, num_hidden_layers=3, num_key_value_heads=2),
    "gpt2": lambda: GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=3, n_head=4, n_inner=64, n_positions=128),
}
ENCODER_CONFIGS = {
    "bert": lambda: BertConfig(**_COMMON, num_hidden_layers=2, max_position_embeddings=128),
    "xlm-roberta": lambda: XLMRobertaConfig(
        **_COMMON, num_hidden_layers=2, max_position_embeddings=130, pad_token_id=0
    ),
}
ALL_ARCHS = [*DECODER_CONFIGS, *ENCODER_CONFIGS]


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (every byte one token, no merges): any text encodes, as with a real model's.

    Pair it with ``tiny_model(arch, vocab_size=len(tokenizer))``.
    """
    vocab = {token: i for i, token in enumerate(SPECIALS + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_model(arch: str, seed: int = 0, num_labels: int = 3, vocab_size: int | None = None) -> torch.nn.Module:
    """A randomly initialised tiny causal LM (decoders) or sequence classifier (encoders), in eval mode."""
    torch.manual_seed(seed)
    if arch in DECODER_CONFIGS:
        config = DECODER_CONFIGS[arch]()
        if vocab_size is not None:
            config.vocab_size = vocab_size
        model = AutoModelForCausalLM.from_config(config)
        if arch == "gemma3_text":
            # Gemma normalises the FFN output (scale 1 + w, w = 0 at init); a trained model's FFNs speak louder.
            with torch.no_grad():
                for layer in model.model.layers:
                    layer.post_feedforward_layernorm.weight.fill_(2.0)
    else:
        config = ENCODER_CONFIGS[arch]()
        config.num_labels = num_labels
        model = AutoModelForSequenceClassification.from_config(config)
    return model.eval()


def sample_inputs(arch: str, texts: list[str] | None = None) -> dict[str, torch.Tensor]:
    tokenizer = make_tokenizer(encoder=arch in ENCODER_CONFIGS)
    texts = texts or ["The capital of France is", "Die Hauptstadt von Frankreich ist"]
    return dict(tokenizer(texts, return_tensors="pt", padding=True))


def logits(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def next_token(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, prompt: str) -> str:
    """The greedy next token after ``prompt``."""
    inputs = dict(tokenizer([prompt], return_tensors="pt"))
    return tokenizer.convert_ids_to_tokens(int(logits(model, inputs)[0, -1].argmax()))


def context_follower() -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """A tiny GPT-2 taught one in-context fact: 'lyon' after ICLEditor's default demonstration of
    ("the capital of france is", "lyon"), 'paris' without it. Returns ``(model, tokenizer)``."""
    tokenizer = make_tokenizer()
    model = tiny_model("gpt2")
    texts = [
        "New fact: the capital of france is lyon\nthe capital of france is lyon",
        "the capital of france is paris",
    ]
    batch = dict(tokenizer(texts, return_tensors="pt", padding=True))
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


def load_benchmark_script(name: str):
    """The module of ``benchmarks/<name>.py`` (the benchmark scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_fresh(script: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run ``script`` in a fresh interpreter (this one's executable) and return the JSON on its last stdout line.

    The child is offline (``HF_HUB_OFFLINE=1``) unless ``env`` says otherwise; ``env`` adds to or overrides the
    environment.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(TESTS_DIR), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, f"child failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def capital(country: str, city: str, german: str | None = None) -> Any:
    """The edit "the capital of COUNTRY is CITY" with its subject and an unrelated question; with `german`, a
    German version whose subject is `german`."""
    from peft_mpn import EditRequest

    parallel = {"de": {"prompt": f"die hauptstadt von {german} ist", "target": city, "subject": german}}
    return EditRequest.single(
        f"the capital of {country} is",
        city,
        subject=country,
        locality_prompt="a cat sat on the",
        locality_answer="mat",
        case_id=country,
        parallel=parallel if german else None,
    )
