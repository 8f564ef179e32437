"""Edit requests and the benchmark loaders that produce them."""

from .requests import EditRequest, EditRequestError, FactView

__all__ = ["EditRequest", "EditRequestError", "FactView"]
