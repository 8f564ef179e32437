from ..._registration import register
from .config import MPNConfig
from .layer import MPNLayer, PatchSet
from .model import MPNModel

__all__ = ["MPNConfig", "MPNLayer", "MPNModel", "PatchSet"]

register("mpn", config_cls=MPNConfig, model_cls=MPNModel, prefix=MPNModel.prefix)
