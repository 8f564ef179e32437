"""PEFT tuners: what an edited model *is*."""

from .base import FFNBlockTuner
from .config import AdapterCompositionError, FFNBlockConfig, NeuronCollisionError
from .ffn import FFN_SPECS, FFNBlocks, FFNSpec, UnsupportedArchitectureError, ffn_blocks, ffn_spec
from .lafn import LAFNConfig, LAFNLayer, LAFNModel, NeuronAddition
from .layer import FFNBlockLayer
from .mpn import MPNConfig, MPNLayer, MPNModel, PatchSet

__all__ = [
    "FFN_SPECS",
    "AdapterCompositionError",
    "FFNBlockConfig",
    "FFNBlockLayer",
    "FFNBlockTuner",
    "FFNBlocks",
    "FFNSpec",
    "LAFNConfig",
    "LAFNLayer",
    "LAFNModel",
    "MPNConfig",
    "MPNLayer",
    "MPNModel",
    "NeuronAddition",
    "NeuronCollisionError",
    "PatchSet",
    "UnsupportedArchitectureError",
    "ffn_blocks",
    "ffn_spec",
]
