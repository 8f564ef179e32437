"""What both plugin tuners share: they wrap whole FFN blocks rather than Linear layers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner
from peft.utils import AuxiliaryTrainingWrapper
from torch import nn

from .config import FFNBlockConfig
from .ffn import FFNSpec, activation_name, align_ffn_widths, ffn_spec


class FFNBlockTuner(BaseTuner):
    """A peft `BaseTuner` whose layers (`tuner_layer_cls`, an `FFNBlockLayer`) wrap FFN blocks."""

    @staticmethod
    def _default_targets(peft_config: FFNBlockConfig, spec: FFNSpec) -> bool:
        """Fill in the architecture's FFN block as `target_modules` when unset; returns whether it was unset.

        `exclude_modules` defaults to the architecture's modules that are named like its FFN block but are no
        FFN (BERT's `attention.output`), unless `target_modules` is one regex.
        """
        unset = peft_config.target_modules is None
        if unset:
            peft_config.target_modules = [spec.block]
        if peft_config.exclude_modules is None and spec.exclude and not isinstance(peft_config.target_modules, str):
            peft_config.exclude_modules = list(spec.exclude)
        return unset

    def _layer_kwargs(self, peft_config: PeftConfig, current_key: str) -> dict[str, Any]:
        """Extra constructor arguments of this tuner's layer."""
        return {}

    def _create_and_replace(
        self,
        peft_config: PeftConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: object,
    ) -> None:
        if isinstance(target, self.tuner_layer_cls):
            target.update_layer(adapter_name, peft_config)
            return
        new_module = self.tuner_layer_cls(
            target,
            adapter_name,
            config=peft_config,
            spec=ffn_spec(self.model),
            block=parent,  # the transformer block: BERT's input projection is a sibling of the wrapped module
            ffn_activation=activation_name(self.model),
            **self._layer_kwargs(peft_config, current_key),
        )
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def _replace_module(self, parent: nn.Module, child_name: str, new_module: nn.Module, child: nn.Module) -> None:
        # peft's version assumes a Linear (`.weight`); these tuners wrap whole FFN blocks.
        setattr(parent, child_name, new_module)

    @contextmanager
    def _enable_peft_forward_hooks(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        """peft's mixed adapter batches: `adapter_names=[...]` (one per row) given to the PeftModel's forward or
        generate reaches every tuner layer and `modules_to_save` copy, as with LoRA."""
        adapter_names = kwargs.pop("adapter_names", None)
        if adapter_names is None:
            yield
            return
        if self.training:
            raise ValueError("Cannot pass `adapter_names` when the model is in training mode.")
        if isinstance(adapter_names, str) or not all(isinstance(name, str) for name in adapter_names):
            raise TypeError(f"Got adapter names {adapter_names!r}, expected a list of str (one per batch row).")
        unknown = sorted({name for name in adapter_names if name != "__base__"} - set(self.peft_config))
        if unknown:
            raise ValueError(f"Trying to infer with non-existing adapter(s): {', '.join(unknown)}")
        # generate repeats every row num_beams (or num_return_sequences) times
        repeat = max(int(kwargs.get("num_beams") or 1), int(kwargs.get("num_return_sequences") or 1))
        names = [name for name in adapter_names for _ in range(repeat)]

        def pass_adapter_names(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            return args, {**kwargs, "adapter_names": names}

        handles = [
            module.register_forward_pre_hook(pass_adapter_names, with_kwargs=True)
            for module in self.model.modules()
            if isinstance(module, (self.tuner_layer_cls, AuxiliaryTrainingWrapper))
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _unload_and_optionally_merge(
        self,
        merge: bool = True,
        progressbar: bool = False,
        safe_merge: bool = False,
        adapter_names: list[str] | None = None,
    ) -> nn.Module:
        model = super()._unload_and_optionally_merge(
            merge=merge, progressbar=progressbar, safe_merge=safe_merge, adapter_names=adapter_names
        )
        if merge:
            # A merge may have widened some FFNs (MPN appends its patches as neurons): the config must say so, or
            # the merged model's own save_pretrained folder does not load back.
            align_ffn_widths(model)
        return model

    def resolve_adapter(self, adapter_name: str | None = None) -> str:
        """`adapter_name` checked to exist, or the single active adapter."""
        if adapter_name is not None:
            if adapter_name not in self.peft_config:
                raise KeyError(f"No adapter {adapter_name!r}; have {sorted(self.peft_config)}.")
            return adapter_name
        active = self.active_adapters
        if len(active) != 1:
            raise ValueError(f"Several adapters are active ({active}); name the one to use.")
        return active[0]

    def adapter_layers(self, layer_type: type, adapter_name: str | None = None) -> dict[str, nn.Module]:
        """The `layer_type` modules holding `adapter_name` (default: the active adapter), by module name."""
        adapter_name = self.resolve_adapter(adapter_name)
        return {
            name: module
            for name, module in self.model.named_modules()
            if isinstance(module, layer_type) and adapter_name in module._get_available_adapters()
        }
