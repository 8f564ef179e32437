"""PEFT tuners: what an edited model *is*."""

from .ffn import FFN_SPECS, FFNSpec, UnsupportedArchitectureError, ffn_spec
from .lafn import LAFNConfig, LAFNLayer, LAFNModel, NeuronAddition
from .mpn import MPNConfig, MPNLayer, MPNModel, PatchSet

__all__ = [
    "FFN_SPECS",
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
    "ffn_spec",
]
