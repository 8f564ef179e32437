"""The memory bank stays bounded over a stream of edits and keeps a uniform sample of them."""

from __future__ import annotations

import logging

import torch
from tiny import make_tokenizer, tiny_model

from peft_mpn import EditRequest
from peft_mpn.editing import MPNEditor, MPNEditorConfig
from peft_mpn.editing.mpn import MemoryBank


def test_past_edits_beyond_the_bound_are_a_uniform_sample_and_the_log_says_so(caplog):
    bank = MemoryBank(max_size=10, seed=0, max_edit_size=100)
    bank.add_unrelated(torch.zeros(5, 3))
    with caplog.at_level(logging.INFO, logger="peft_mpn.editing.mpn.memory"):
        for edit in range(50):
            bank.add_edit(torch.full((10, 3), float(edit)))  # edit i's vectors hold the value i
    assert len(bank) == 5 + 100 and bank.edit_vectors_seen == 500
    assert sum("uniform sample" in record.message for record in caplog.records) == 1  # said once, when it starts
    kept = bank.vectors[5:, 0]
    early, late = int((kept < 25).sum()), int((kept >= 25).sum())
    assert 30 <= early <= 70 and 30 <= late <= 70  # both halves of the stream stay represented
    bank.clear_edits()
    assert len(bank) == 5 and bank.edit_vectors_seen == 0


def test_a_stream_of_edits_keeps_the_memory_bank_within_memory_size():
    tokenizer = make_tokenizer()
    config = MPNEditorConfig(augment_languages=[], memory_size=10, neighbour_negatives=0)
    editor = MPNEditor(tiny_model("llama"), tokenizer, config, progress=False)
    editor.add_unrelated_texts(["a cat sat on the mat", "the sky is blue", "who wrote hamlet"] * 10)
    for country, city in [("france", "lyon"), ("germany", "rome"), ("italy", "paris"), ("spain", "berlin")]:
        editor.edit(EditRequest.single(f"the capital of {country} is", city))
    assert editor.memory.edit_vectors_seen > 10  # the stream added more than the bound
    assert len(editor.memory) == 10 + 10  # unrelated text and past edits, each at the bound


def test_a_prompt_formats_shared_prefix_enters_the_memory_bank_once():
    # Twenty texts that start with the same 10 words (as a prompt format's answered questions do): the bank holds
    # those 10 (+ <bos>) vectors once and every text's own tokens, with the values a plain left-padded pass gives.
    prefix = "the capital of france is paris and the capital of germany is berlin"
    endings = ["a cat sat on the mat", "the dog runs in the park", "numbers go up", "hello world again"] * 5
    texts = [f"{prefix} {ending}" for ending in endings]
    tokenizer = make_tokenizer()
    editor = MPNEditor(tiny_model("llama"), tokenizer, MPNEditorConfig(memory_batch_size=8), progress=False)
    editor.add_unrelated_texts(texts)
    shared = len(tokenizer(prefix)["input_ids"])
    own = sum(len(tokenizer(text)["input_ids"]) - shared for text in texts)
    assert len(editor.memory.vectors) == shared + own  # not 20 copies of the prefix

    plain = MPNEditor(tiny_model("llama"), tokenizer, progress=False)
    inputs = plain._encode_texts(texts)
    from peft_mpn.editing.prefix import capture_ffn_inputs

    with torch.no_grad():
        h = capture_ffn_inputs(plain.model, plain.layer, inputs)
    every = h[inputs["attention_mask"].bool()].float()  # 20 copies of the prefix, then each text's tokens
    distances = torch.cdist(editor.memory.vectors, every, compute_mode="donot_use_mm_for_euclid_dist")
    # every vector the plain pass gives is in the bank, and the bank holds nothing else
    assert distances.min(0).values.max() < 1e-3 and distances.min(1).values.max() < 1e-3
