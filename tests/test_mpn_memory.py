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
