"""One entry per editing method: the only place that knows methods by name.

`make_editor`, `peft-mpn bench` (its options, presets and help), the demo and `EditTrainer` read these entries;
adding a method is one package under `peft_mpn/editing/` and one [`EditorSpec`][peft_mpn.editing.registry.EditorSpec]
here (see the contributor page of the docs).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from ..data.requests import EditRequest
from ..locating import LocatorConfig
from ..tuners.mpn import MPNConfig
from .base import Editor, EditorConfig
from .finetune import FTEditor, FTEditorConfig
from .in_context import ICLEditor, ICLEditorConfig
from .lafn import LAFNEditor, LAFNEditorConfig
from .mpn import MPNEditor, MPNEditorConfig

#: The parallel versions MPN and LAFN train on when a run names none (where the data has them).
DEFAULT_AUGMENT = ("de", "fr", "es", "ru", "zh")


@dataclass(frozen=True)
class EditorSpec:
    """How one method is built, configured and run.

    Attributes:
        name: the method's name (`make_editor(name, ...)`, `peft-mpn bench --method name`).
        editor: the [`Editor`][peft_mpn.editing.base.Editor] subclass.
        config: the method's default config (a zero-argument callable).
        summary: one line for `--help` and the docs.
        fixed: config fields the method pins whatever config it is given (T-Patcher: no augmentation).
        bench_config: the benchmark's preset, if it differs from `config`.
        augments: whether the method trains on parallel versions (`--augment-languages`).
        augments_by_default: whether a run that names no augmentation languages gives it `DEFAULT_AUGMENT`.
        no_augment_reason: why `--augment-languages` is refused (when `augments` is False); `{languages}` is
            replaced by the languages given.
        set_layer: how `--layer` applies: `(config, layer) -> (config, editor kwargs)`; None: refused.
        no_layer_reason: why `--layer` is refused (when `set_layer` is None).
        other_facts: editor kwargs built from the run's other (not edited) facts, besides the unrelated text
            every editor with `uses_unrelated_text` takes from them.
        options_note: why an unknown `--editor-option` is refused, where more than "no such field" helps.
        adapter_config: the PEFT config class of the adapter the editor grows (`--adapter-option` sets its
            fields, e.g. MPN's patch `activation`); None: the method takes no adapter options.
    """

    name: str
    editor: type[Editor]
    config: Callable[[], EditorConfig]
    summary: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    bench_config: Callable[[], EditorConfig] | None = None
    augments: bool = True
    augments_by_default: bool = False
    no_augment_reason: str = ""
    set_layer: Callable[[EditorConfig, int], tuple[EditorConfig, dict[str, Any]]] | None = None
    no_layer_reason: str = ""
    other_facts: Callable[[list[EditRequest]], dict[str, Any]] | None = None
    options_note: str = ""
    adapter_config: type | None = None

    @property
    def config_class(self) -> type[EditorConfig]:
        return type(self.config())

    def default_config(self, *, bench: bool = False) -> EditorConfig:
        """The library default, or with `bench=True` the benchmark's preset; `fixed` applied."""
        factory = self.bench_config if bench and self.bench_config is not None else self.config
        return self.pin(factory())

    def pin(self, config: EditorConfig) -> EditorConfig:
        """`config` with this method's `fixed` fields (a given config of the right class is kept otherwise)."""
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{self.name} takes a {self.config_class.__name__}, got {type(config).__name__}; build it with "
                f"peft_mpn.editing.{self.config_class.__name__}(...) or leave config out."
            )
        return replace(config, **self.fixed) if self.fixed else config

    def build(self, model: Any, tokenizer: Any, config: EditorConfig | None = None, **kwargs: Any) -> Editor:
        """The editor, with `config` (default: the method's) and its `fixed` fields."""
        config = self.default_config() if config is None else self.pin(config)
        return self.editor(model, tokenizer, config, **kwargs)

    def editor_kwargs(
        self, config: EditorConfig, layer: int | None = None, adapter_options: Mapping[str, Any] | None = None
    ) -> tuple[EditorConfig, dict[str, Any]]:
        """`(config, editor kwargs)` for a run on block `layer` (None: the method's default) whose adapter config
        has `adapter_options` set; refused, naming the fix, where the method has no such block or adapter."""
        check_method_options(self.name, layer=layer, adapter_options=adapter_options)
        kwargs: dict[str, Any] = {}
        if layer is not None:
            config, kwargs = self.set_layer(config, layer)
        if adapter_options:
            adapter = kwargs.get("peft_config") or self.adapter_config()
            kwargs["peft_config"] = replace(adapter, **adapter_options)
        return config, kwargs


def _mpn_layer(config: EditorConfig, layer: int) -> tuple[EditorConfig, dict[str, Any]]:
    return config, {"peft_config": MPNConfig(layers_to_transform=[layer])}


def _ft_layer(config: EditorConfig, layer: int) -> tuple[EditorConfig, dict[str, Any]]:
    return replace(config, layer=layer), {}


def _lafn_bench_config() -> LAFNEditorConfig:
    # The settings of the LAFN editing study (docs/lafn_neurons.md): read every prompt at a template slot (without
    # it half the facts had no shared neuron), search the upper blocks (8-17 of Gemma-3-270M's 18), 25 steps.
    # MzsRE repeats the prompt as its "rephrase" in 17-26% of cases per language: locate on the single prompt
    # there instead of aborting the run (the locator refuses such a language by default).
    locator = LocatorConfig(
        template="Q: {prompt}\nA:",
        lowest_layer_fraction=0.45,
        language_vote=0.75,
        generic_facts_fraction=0.2,
        require_paraphrases=False,
    )
    return LAFNEditorConfig(locator=locator, max_steps=25)


_NO_BLOCK = "it locates its neurons across layers: LocatorConfig.layers"

SPECS: dict[str, EditorSpec] = {
    spec.name: spec
    for spec in (
        EditorSpec(
            "mpn",
            MPNEditor,
            MPNEditorConfig,
            "MPN: patch neurons in one FFN, trained on the edit and its parallel versions",
            augments_by_default=True,
            set_layer=_mpn_layer,
            adapter_config=MPNConfig,
        ),
        EditorSpec(
            "t-patcher",
            MPNEditor,
            MPNEditorConfig,
            "T-Patcher: MPN with the cross-lingual augmentation off",
            fixed={"augment_languages": [], "patch_plan": "edit"},  # one language: the plans coincide
            augments=False,
            no_augment_reason=(
                "T-Patcher is MPN with augmentation off; drop the augmentation languages {languages} or use 'mpn'."
            ),
            set_layer=_mpn_layer,
            adapter_config=MPNConfig,
        ),
        EditorSpec(
            "lafn",
            LAFNEditor,
            LAFNEditorConfig,
            "LAFN: deltas on the FFN neurons the fact activates in every language",
            bench_config=_lafn_bench_config,
            augments_by_default=True,
            no_layer_reason=_NO_BLOCK,
            other_facts=lambda facts: {"reference_requests": facts},
        ),
        EditorSpec(
            "ft-l",
            FTEditor,
            FTEditorConfig.ft_l,
            "FT-L: fine-tune one FFN down-projection on the target at the prompt's last position",
            fixed={"objective": "prompt_last"},
            set_layer=_ft_layer,
        ),
        EditorSpec(
            "ft-m",
            FTEditor,
            FTEditorConfig.ft_m,
            "FT-M: fine-tune one FFN down-projection on the teacher-forced target",
            fixed={"objective": "target_new"},
            set_layer=_ft_layer,
        ),
        EditorSpec(
            "icl",
            ICLEditor,
            ICLEditorConfig,
            "ICL: in-context editing, the stored fact put in front of every prompt",
            augments=False,
            no_augment_reason=(
                "In-context editing demonstrates the edit-language fact only; it has no use for the augmentation "
                "languages {languages}. Drop them (pass --augment-languages with no value)."
            ),
            no_layer_reason="in-context editing changes no weights",
            options_note="in-context editing trains nothing, it puts the fact in front of the prompt",
        ),
        EditorSpec(
            "icl-gated",
            ICLEditor,
            ICLEditorConfig.gated,
            "ICL behind a retrieval gate: the stored fact only where the input's middle-block state matches it",
            augments=False,
            no_augment_reason=(
                "In-context editing demonstrates the edit-language fact only; it has no use for the augmentation "
                "languages {languages}. Drop them (pass --augment-languages with no value)."
            ),
            no_layer_reason="in-context editing changes no weights",
            options_note="in-context editing trains nothing; the gate is calibrated on the unrelated cases",
        ),
    )
}

#: Editors selectable by name.
EDITORS = tuple(SPECS)


def editor_spec(name: str) -> EditorSpec:
    """The registry entry of method `name`."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"Unknown editor {name!r}; choose one of {', '.join(EDITORS)}.") from None


def make_editor(name: str, model: Any, tokenizer: Any, config: EditorConfig | None = None, **kwargs: Any) -> Editor:
    """Build an editor by name: `"mpn"`, `"t-patcher"`, `"lafn"`, `"ft-l"`, `"ft-m"`, `"icl"` or `"icl-gated"`.

    Args:
        name: the method (see `EDITORS`).
        model: the model to edit (adapter-based editors wrap it in place).
        tokenizer: its tokenizer.
        config: the method's config (default: its defaults); the method's pinned fields are applied.
        **kwargs: the editor's own keyword arguments (`progress`, `unrelated_texts`, ...).
    """
    return editor_spec(name).build(model, tokenizer, config, **kwargs)


def check_method_options(
    method: str,
    *,
    layer: int | None = None,
    augment_languages: Sequence[str] = (),
    adapter_options: Mapping[str, Any] | None = None,
) -> None:
    """Refuse `layer` / `augment_languages` / `adapter_options` where `method` has no use for them (before any
    work), and adapter options its adapter config has no field for."""
    spec = editor_spec(method)
    if layer is not None and spec.set_layer is None:
        with_block = ", ".join(name for name, other in SPECS.items() if other.set_layer is not None)
        raise ValueError(
            f"--layer picks the block that {with_block} edit; {method} has no such block ({spec.no_layer_reason}). "
            "Drop --layer."
        )
    if augment_languages and not spec.augments:
        raise ValueError(spec.no_augment_reason.format(languages=list(augment_languages)))
    if not adapter_options:
        return
    if spec.adapter_config is None:
        with_adapter = ", ".join(name for name, other in SPECS.items() if other.adapter_config is not None)
        raise ValueError(f"--adapter-option sets the adapter config of {with_adapter}; {method} takes none. Drop it.")
    names = {f.name for f in fields(spec.adapter_config)}
    unknown = sorted(set(adapter_options) - names)
    if unknown:
        raise ValueError(f"{spec.adapter_config.__name__} has no field(s) {unknown}; its fields are {sorted(names)}.")


def editor_config(method: str, config: EditorConfig | None = None, **overrides: Any) -> EditorConfig:
    """`config` (default: `method`'s benchmark preset) with `overrides` for the fields it has.

    A `None` override sets the field to None (e.g. `subject_gate_depth=None`: no gates), as
    `--editor-option subject_gate_depth=null` asks. A dotted key sets a field of a nested config
    (`locator.top_k=100` for LAFN's locator). An override the config has no field for raises, naming the fields.
    """
    spec = editor_spec(method)
    config = spec.default_config(bench=True) if config is None else spec.pin(config)
    names = {f.name for f in fields(config)}
    unknown = sorted({key.split(".")[0] for key in overrides} - names)
    if unknown and spec.options_note:
        raise ValueError(
            f"{unknown} are not applicable to {method}: {spec.options_note}. Drop them (its options are "
            f"{sorted(names)}, via --editor-option)."
        )
    if unknown:
        raise ValueError(f"{type(config).__name__} has no field(s) {unknown}; its fields are {sorted(names)}.")
    return spec.pin(_replace_fields(config, overrides))


def config_options(config: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """`(key, value, help)` for every field of `config`, nested configs' fields under dotted keys.

    These are exactly the keys `editor_config` (and `peft-mpn bench --editor-option KEY=VALUE`) accepts.
    """
    options = []
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            options += config_options(value, f"{prefix}{f.name}.")
        else:
            options.append((f"{prefix}{f.name}", value, f.metadata.get("help", "")))
    return options


def options_help(width: int = 100) -> str:
    """Every method's editor options with their help and the benchmark's value, grouped by config class."""
    groups: dict[type, list[EditorSpec]] = {}
    for spec in SPECS.values():
        groups.setdefault(spec.config_class, []).append(spec)
    lines = ["editor options (--editor-option KEY=VALUE; the value is read as JSON where it parses):"]
    for config_class, specs in groups.items():
        names = ", ".join(spec.name for spec in specs)
        lines += ["", f"  {names} ({config_class.__name__}):"]
        for key, value, text in config_options(specs[0].default_config(bench=True)):
            pinned = [spec.name for spec in specs if key in spec.fixed]
            note = f" [{', '.join(pinned)}: fixed]" if pinned else ""
            lines.append(f"    {key} = {value!r}{note}")
            lines += textwrap.wrap(text, width, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return "\n".join(lines)


def _replace_fields(config: Any, overrides: dict[str, Any]) -> Any:
    """`replace(config, ...)` where a key `"a.b"` sets field `b` of the nested config in field `a`."""
    flat = {key: value for key, value in overrides.items() if "." not in key}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if "." in key:
            head, rest = key.split(".", 1)
            nested.setdefault(head, {})[rest] = value
    for head, inner in nested.items():
        part = getattr(config, head)
        if not is_dataclass(part):
            raise ValueError(
                f"{type(config).__name__}.{head} is {type(part).__name__}, not a config with fields; "
                f"can't set {sorted(f'{head}.{key}' for key in inner)}."
            )
        unknown = sorted({key.split(".")[0] for key in inner} - {f.name for f in fields(part)})
        if unknown:
            raise ValueError(
                f"{type(part).__name__} ({type(config).__name__}.{head}) has no field(s) {unknown}; its fields are "
                f"{sorted(f.name for f in fields(part))}."
            )
        flat[head] = _replace_fields(part, inner)
    return replace(config, **flat)


__all__ = [
    "DEFAULT_AUGMENT",
    "EDITORS",
    "SPECS",
    "EditorSpec",
    "check_method_options",
    "config_options",
    "editor_config",
    "editor_spec",
    "make_editor",
    "options_help",
]
