"""PEFT tuners: what an edited model *is*."""

from .ffn import FFN_SPECS, FFNSpec, UnsupportedArchitectureError, ffn_spec
from .mpn import MPNConfig, MPNLayer, MPNModel, PatchSet

__all__ = [
    "FFN_SPECS",
    "FFNSpec",
    "MPNConfig",
    "MPNLayer",
    "MPNModel",
    "PatchSet",
    "UnsupportedArchitectureError",
    "ffn_spec",
]
