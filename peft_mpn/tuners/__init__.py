"""PEFT tuners: what an edited model *is*."""

from .ffn import FFN_SPECS, FFNBlocks, FFNSpec, UnsupportedArchitectureError, ffn_blocks, ffn_spec
from .lafn import LAFNConfig, LAFNLayer, LAFNModel, NeuronAddition
from .layer import FFNBlockLayer
from .mpn import MPNConfig, MPNLayer, MPNModel, PatchSet

__all__ = [
    "FFN_SPECS",
    "FFNBlockLayer",
    "FFNBlocks",
    "FFNSpec",
    "LAFNConfig",
    "LAFNLayer",
    "LAFNModel",
    "MPNConfig",
    "MPNLayer",
    "MPNModel",
    "NeuronAddition",
    "PatchSet",
    "UnsupportedArchitectureError",
    "ffn_blocks",
    "ffn_spec",
]
