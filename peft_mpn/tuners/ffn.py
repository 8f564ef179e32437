"""Where the feed-forward network lives in each supported architecture: the one table both tuners read.

Paths are relative to one transformer block (`model.layers.<i>` for Llama, `bert.encoder.layer.<i>` for
BERT). `block` is the module the tuners wrap: its forward receives the FFN input `h` (argument `input_arg`)
and its output contains the FFN output. What an adapter adds goes to the output of `down_proj`, so it sits
inside the FFN, before any dropout, residual or LayerNorm.

The weight-orientation helpers at the end (`neuron_dim`, `neuron_rows`, `ffn_width`, `model_width`,
`append_neurons`, `drop_neurons`, `align_ffn_widths`) are the one place that knows GPT-2's `Conv1D` stores its
weight as `[in, out]` where `nn.Linear` stores `[out, in]`; `width_key` is the one place that knows which config
field holds the FFN width.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


@dataclass(frozen=True)
class FFNSpec:
    """Where one architecture's FFN is, relative to a transformer block: a row of `FFN_SPECS`."""

    layers: str  # name of the ModuleList that holds the blocks ("layers", "h", "layer")
    block: str  # module that MPN wraps, relative to a block
    input_arg: int  # position of the FFN input in `block.forward`
    input_kwarg: str  # its keyword name
    up_proj: str  # input projection (d -> F), relative to a block
    down_proj: str  # output projection (F -> d), relative to a block
    gate_proj: str | None = None  # gate projection of gated FFNs, relative to a block
    activation_keys: tuple[str, ...] = ("hidden_act",)  # model-config attributes naming the activation
    width_key: str = "intermediate_size"  # model-config attribute holding the FFN width (number of neurons)
    exclude: tuple[str, ...] = ()  # modules whose name ends like `block` but are not the FFN
    encoder: bool = False  # bidirectional encoder: a classifier decides at the first ([CLS]) position
    attention: str | None = None  # the block's self-attention (its one module that mixes positions), if known

    @property
    def is_gated(self) -> bool:
        return self.gate_proj is not None

    def relative_to_block(self, path: str) -> str:
        """`path` (relative to a block) made relative to the wrapped `block` module."""
        prefix = self.block + "."
        if not path.startswith(prefix):
            raise ValueError(f"{path!r} is not inside {self.block!r}")
        return path[len(prefix) :]

    def projection(self, block: nn.Module, ffn: nn.Module, path: str) -> nn.Module:
        """The module at `path` (relative to a block): inside `ffn`, the unwrapped FFN block, or beside it.

        BERT's input projection (`intermediate.dense`) is a sibling of the wrapped `output` module, so it is
        looked up in the transformer `block` instead. Raises `AttributeError` when there is no such module.
        """
        if path.startswith(self.block + "."):
            return ffn.get_submodule(self.relative_to_block(path))
        return block.get_submodule(path)


_GATED_DECODER = FFNSpec(
    layers="layers",
    block="mlp",
    input_arg=0,
    input_kwarg="x",
    up_proj="mlp.up_proj",
    down_proj="mlp.down_proj",
    gate_proj="mlp.gate_proj",
    activation_keys=("hidden_activation", "hidden_act"),
    attention="self_attn",
)
_BERT_LIKE = FFNSpec(
    layers="layer",
    block="output",
    input_arg=1,
    input_kwarg="input_tensor",
    up_proj="intermediate.dense",
    down_proj="output.dense",
    activation_keys=("hidden_act",),
    exclude=("attention.output",),
    encoder=True,
)
_GPT2 = FFNSpec(
    layers="h",
    block="mlp",
    input_arg=0,
    input_kwarg="hidden_states",
    up_proj="mlp.c_fc",
    down_proj="mlp.c_proj",
    activation_keys=("activation_function",),
    width_key="n_inner",
    attention="attn",
)

#: model_type -> where its FFN is. Add an architecture by adding a row.
FFN_SPECS: dict[str, FFNSpec] = {
    "llama": _GATED_DECODER,
    "mistral": _GATED_DECODER,
    "qwen2": _GATED_DECODER,
    "qwen3": _GATED_DECODER,
    "gemma": _GATED_DECODER,
    "gemma2": _GATED_DECODER,
    "gemma3_text": _GATED_DECODER,
    "gpt2": _GPT2,
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
}


class UnsupportedArchitectureError(ValueError):
    """The model's FFN layout is not in `FFN_SPECS` and cannot be found."""


def model_config_dict(model_or_config: Any) -> dict[str, Any]:
    if isinstance(model_or_config, Mapping):
        return dict(model_or_config)
    config = getattr(model_or_config, "config", model_or_config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise UnsupportedArchitectureError("The model has no transformers config; pass target_modules explicitly.")


def ffn_spec(model_or_config: Any) -> FFNSpec:
    """The FFN layout for a model (or its config / config dict)."""
    config = model_config_dict(model_or_config)
    model_type = config.get("model_type")
    if model_type not in FFN_SPECS:
        raise UnsupportedArchitectureError(
            f"No FFN layout is known for model_type={model_type!r}. Supported: {', '.join(sorted(FFN_SPECS))}. "
            "Add a row to peft_mpn.tuners.ffn.FFN_SPECS for this architecture."
        )
    return FFN_SPECS[model_type]


def num_layers(model_or_config: Any) -> int:
    config = model_config_dict(model_or_config)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(config.get(key), int):
            return config[key]
    raise UnsupportedArchitectureError("Cannot tell how many layers the model has (no num_hidden_layers in config).")


def activation_name(model_or_config: Any) -> str:
    """The FFN activation named by the model config (e.g. `gelu_pytorch_tanh` for Gemma 3)."""
    config = model_config_dict(model_or_config)
    spec = ffn_spec(config)
    for key in spec.activation_keys:
        if isinstance(config.get(key), str):
            return config[key]
    raise UnsupportedArchitectureError(
        f"The config names no FFN activation (looked for {spec.activation_keys}); set `activation` explicitly."
    )


_BLOCK_KEY = re.compile(r"^(?P<stack>.*?)\.?(?P<index>\d+)\.(?P<rest>.+)$")


@dataclass(frozen=True)
class BlockLocation:
    """A module key split into the ModuleList of blocks, the block index and the path inside the block."""

    stack: str
    index: int
    inner: str


def locate_block(module_key: str) -> BlockLocation:
    """Split `model.layers.17.mlp` into (`model.layers`, 17, `mlp`)."""
    match = _BLOCK_KEY.match(module_key)
    if match is None:
        raise UnsupportedArchitectureError(f"{module_key!r} is not inside a numbered stack of blocks.")
    return BlockLocation(match["stack"], int(match["index"]), match["rest"])


def get_block(model: nn.Module, module_key: str) -> nn.Module:
    """The transformer block that contains `module_key`."""
    location = locate_block(module_key)
    stack = model.get_submodule(location.stack)
    return stack[location.index]


# -- the FFNs of a model instance ------------------------------------------------------------------------------
def base_model(model: nn.Module) -> nn.Module:
    """The transformers model under a PeftModel (or a peft tuner); the model itself otherwise."""
    if hasattr(model, "get_base_model"):
        return model.get_base_model()
    inner = getattr(model, "model", None)
    if hasattr(model, "peft_config") and isinstance(inner, nn.Module):
        return inner
    return model


def _strip_wrappers(name: str) -> str:
    return ".".join(part for part in name.split(".") if part != "base_layer")


def _block_stack(model: nn.Module, spec: FFNSpec) -> nn.ModuleList:
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] == spec.layers:
            return module
    raise UnsupportedArchitectureError(
        f"Found no ModuleList of transformer blocks named {spec.layers!r} in {type(model).__name__}."
    )


def _innermost(block: nn.Module, path: str, layer: int) -> nn.Module:
    """The innermost module of `block` at `path` (relative to a block), under any adapter wrappers."""
    matches = [(name, m) for name, m in block.named_modules() if name and _strip_wrappers(name) == path]
    if not matches:
        raise UnsupportedArchitectureError(f"Layer {layer} has no FFN projection {path!r}.")
    return max(matches, key=lambda item: item[0].count("."))[1]


def _down_projection(block: nn.Module, spec: FFNSpec, layer: int) -> nn.Module:
    """The innermost module that is the block's down projection (under any adapter wrappers)."""
    return _innermost(block, spec.down_proj, layer)


@dataclass
class FFNBlocks:
    """The FFNs of chosen layers of one model instance (see `ffn_blocks`)."""

    model: nn.Module  # the transformers model (under any PeftModel)
    spec: FFNSpec
    num_layers: int  # blocks in the model
    layers: list[int]  # the chosen layers, non-negative and sorted
    downs: dict[int, nn.Module]  # layer -> its down projection (the innermost module, under adapter wrappers)


def ffn_blocks(model: nn.Module, layers: Sequence[int] | None = None) -> FFNBlocks:
    """The down projections of `layers` (default: every layer; negative indices count from the end).

    Works through a PeftModel and through adapter wrappers (the base layer's module is returned), so hooks and
    weights found here are the transformers model's own. Raises `ValueError` for layers out of range and
    `UnsupportedArchitectureError` for a layout not in `FFN_SPECS`.
    """
    base = base_model(model)
    spec = ffn_spec(base)
    stack = _block_stack(base, spec)
    total = len(stack)
    if layers is None:
        chosen = list(range(total))
    else:
        bad = [layer for layer in layers if not -total <= layer < total]
        if bad:
            raise ValueError(
                f"Layers {bad} are out of range for this {total}-layer model "
                f"(valid: 0..{total - 1}, or -{total}..-1 from the end)."
            )
        chosen = sorted({layer % total for layer in layers})
    downs = {layer: _down_projection(stack[layer], spec, layer) for layer in chosen}
    return FFNBlocks(base, spec, total, chosen, downs)


# -- weight orientation: Linear stores [out, in], GPT-2's Conv1D [in, out] -----------------------------------------
def neuron_dim(proj: nn.Module, *, down: bool) -> int:
    """The dimension of `proj.weight` that indexes FFN neurons.

    Neurons are the rows of a Linear up/gate projection's weight and the columns of a Linear down projection's;
    GPT-2's `Conv1D` stores weights transposed, so there it is the other way round.

    Args:
        proj: an FFN projection, `nn.Linear` or `Conv1D`.
        down: whether `proj` is the down projection (F -> d) rather than an up or gate projection (d -> F).
    """
    return int(isinstance(proj, Conv1D) != down)


def neuron_rows(proj: nn.Module, *, down: bool, index: torch.Tensor | None = None) -> torch.Tensor:
    """`proj`'s weight neuron-major, `[F, d]` (a view), or only the `[n, d]` rows of the neurons `index`.

    For an up or gate projection a row is a neuron's input weights; for the down projection its output weights.
    """
    dim = neuron_dim(proj, down=down)
    rows = proj.weight if index is None else proj.weight.index_select(dim, index)
    return rows if dim == 0 else rows.T


def ffn_width(down_proj: nn.Module) -> int:
    """Number of FFN neurons (the intermediate size F): the down projection's input width."""
    return down_proj.weight.shape[neuron_dim(down_proj, down=True)]


def model_width(down_proj: nn.Module) -> int:
    """The model width d: the down projection's output width."""
    return down_proj.weight.shape[1 - neuron_dim(down_proj, down=True)]


def _count_attribute(proj: nn.Module, down: bool) -> str:
    """The attribute that holds `proj`'s number of neurons (its input width for down, output width otherwise)."""
    if isinstance(proj, Conv1D):
        return "nx" if down else "nf"
    return "in_features" if down else "out_features"


def append_neurons(proj: nn.Module, rows: torch.Tensor, *, down: bool, bias: torch.Tensor | None = None) -> None:
    """Widen `proj` by `len(rows)` neurons with the neuron-major `[n, d]` weights `rows` (trainable as `proj` was).

    Args:
        proj: an FFN projection, `nn.Linear` or `Conv1D`; its weight (and bias) are replaced.
        rows: the new neurons' weights, in `proj.weight`'s dtype.
        down: whether `proj` is the down projection.
        bias: the new neurons' biases, for an up projection (a down projection's bias is per output, unchanged).
    """
    dim = neuron_dim(proj, down=down)
    proj.weight = nn.Parameter(
        torch.cat([proj.weight.data, rows if dim == 0 else rows.T], dim=dim), requires_grad=proj.weight.requires_grad
    )
    if bias is not None:
        proj.bias = nn.Parameter(torch.cat([proj.bias.data, bias]), requires_grad=proj.bias.requires_grad)
    attribute = _count_attribute(proj, down)
    setattr(proj, attribute, getattr(proj, attribute) + len(rows))


def drop_neurons(proj: nn.Module, count: int, *, down: bool) -> None:
    """Undo `append_neurons`: remove `proj`'s last `count` neurons (and, for an up projection, their biases)."""
    if count == 0:
        return
    weight = proj.weight.data
    kept = weight[:-count] if neuron_dim(proj, down=down) == 0 else weight[:, :-count]
    proj.weight = nn.Parameter(kept.clone(), requires_grad=proj.weight.requires_grad)
    if not down and proj.bias is not None:
        proj.bias = nn.Parameter(proj.bias.data[:-count].clone(), requires_grad=proj.bias.requires_grad)
    attribute = _count_attribute(proj, down)
    setattr(proj, attribute, getattr(proj, attribute) - count)


def align_ffn_widths(model: nn.Module) -> int:
    """Give every FFN of the transformers `model` the widest one's width and record it in the model config.

    An MPN merge widens the FFNs it patched (64 -> 66), but a transformers config holds one FFN width for every
    layer (`FFNSpec.width_key`: `intermediate_size`, GPT-2's `n_inner`), so the merged model's own
    `save_pretrained` folder would not load back. The narrower FFNs get inert neurons (zero input weights, bias
    and output weights: they add exactly zero), then the config field is set. Returns the common width.
    """
    spec = ffn_spec(model)
    stack = _block_stack(model, spec)
    downs = {layer: _down_projection(block, spec, layer) for layer, block in enumerate(stack)}
    width = max(ffn_width(down) for down in downs.values())
    for layer, down in downs.items():
        missing = width - ffn_width(down)
        if missing == 0:
            continue
        zeros = down.weight.new_zeros(missing, model_width(down))
        for path in (spec.up_proj, spec.gate_proj):
            if path is not None:
                proj = _innermost(stack[layer], path, layer)
                bias = None if getattr(proj, "bias", None) is None else proj.bias.new_zeros(missing)
                append_neurons(proj, zeros, down=False, bias=bias)
        append_neurons(down, zeros, down=True)
    if getattr(model.config, spec.width_key, None) != width:
        setattr(model.config, spec.width_key, width)
    return width
