"""What both plugin tuners share: they wrap whole FFN blocks rather than Linear layers."""

from __future__ import annotations

from peft.tuners.tuners_utils import BaseTuner
from torch import nn


class FFNBlockTuner(BaseTuner):
    """A :class:`~peft.tuners.tuners_utils.BaseTuner` whose layers wrap FFN blocks."""

    def _replace_module(self, parent: nn.Module, child_name: str, new_module: nn.Module, child: nn.Module) -> None:
        # peft's version assumes a Linear (`.weight`); these tuners wrap whole FFN blocks.
        setattr(parent, child_name, new_module)

    def _mark_only_adapters_as_trainable(self, model: nn.Module) -> None:
        for name, param in model.named_parameters():
            if self.prefix not in name:
                param.requires_grad = False

    def resolve_adapter(self, adapter_name: str | None = None) -> str:
        """``adapter_name`` checked to exist, or the single active adapter."""
        if adapter_name is not None:
            if adapter_name not in self.peft_config:
                raise KeyError(f"No adapter {adapter_name!r}; have {sorted(self.peft_config)}.")
            return adapter_name
        active = self.active_adapters
        if len(active) != 1:
            raise ValueError(f"Several adapters are active ({active}); name the one to use.")
        return active[0]

    def adapter_layers(self, layer_type: type, adapter_name: str | None = None) -> dict[str, nn.Module]:
        """The ``layer_type`` modules holding ``adapter_name`` (default: the active adapter), by module name."""
        adapter_name = self.resolve_adapter(adapter_name)
        return {
            name: module
            for name, module in self.model.named_modules()
            if isinstance(module, layer_type) and adapter_name in module._get_available_adapters()
        }
