from ..._registration import register
from .config import LAFNConfig
from .layer import LAFNLayer
from .model import LAFNModel, NeuronAddition

__all__ = ["LAFNConfig", "LAFNLayer", "LAFNModel", "NeuronAddition"]

register("lafn", config_cls=LAFNConfig, model_cls=LAFNModel, prefix=LAFNModel.prefix)
