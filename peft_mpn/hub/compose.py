"""Composing edit adapters made on the same base model into one adapter."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peft import PeftConfig, PeftModel
from torch import nn
from transformers import PreTrainedModel

from ..tuners import AdapterCompositionError, FFNBlockConfig, NeuronCollisionError
from .manifest import (
    EDITS_ATTRIBUTE,
    EditManifestNotFoundError,
    check_adapter_folder,
    check_revision,
    list_edits,
    revision_errors,
)


def _revisions(sources: Sequence[Any], revision: str | Sequence[str | None] | None) -> list[str | None]:
    revisions = [revision] * len(sources) if revision is None or isinstance(revision, str) else list(revision)
    if len(revisions) != len(sources):
        raise AdapterCompositionError(f"Got {len(revisions)} revisions for {len(sources)} sources; give one each.")
    for rev in revisions:
        check_revision(rev)
    return revisions


def _source_key(source: Any, revision: str | None) -> tuple[str, str | None]:
    """What identifies a source: its resolved folder, or its repo id and revision."""
    path = Path(source).expanduser()
    return (str(path.resolve()), None) if path.exists() else (str(source), revision or "main")


def _describe(source: Any, revision: str | None) -> str:
    return f"{str(source)!r}" + (f" (revision {revision})" if revision else "")


def _check_composable(configs: list[FFNBlockConfig], names: list[str]) -> None:
    """Every source against every earlier one, by its method's rule (`composable_with`).

    Sources are checked in order, so when one shares LAFN neurons with earlier sources, those are disjoint and
    each shared neuron has one owner among them: the error names it, per layer.
    """
    for position in range(1, len(configs)):
        clashes: list[tuple[int, list[int], str]] = []
        for earlier in range(position):
            try:
                configs[earlier].composable_with(configs[position], names=(names[earlier], names[position]))
            except NeuronCollisionError as error:
                clashes += [(layer, neurons, names[earlier]) for layer, neurons in error.collisions.items()]
        if clashes:
            clashes.sort(key=lambda clash: clash[0])
            detail = "; ".join(
                f"layer {layer}: neurons {neurons[:10]} also in {owner}" for layer, neurons, owner in clashes
            )
            raise AdapterCompositionError(
                f"Cannot compose LAFN adapters: {names[position]} edits neurons another source already edits "
                f"({detail}). {NeuronCollisionError.fix}"
            )


@contextmanager
def _undone_on_failure(model: nn.Module) -> Iterator[None]:
    """Put `model` back as it was if the block raises: its submodules (loading wraps them in adapter layers), which
    parameters train, train/eval modes, and the attributes loading adds (`peft_config`)."""
    children = [(module, dict(module._modules)) for module in model.modules()]
    trainable = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    modes = [(module, module.training) for module in model.modules()]
    attributes = set(vars(model))
    try:
        yield
    except BaseException:
        for module, kept in children:
            module._modules.clear()
            module._modules.update(kept)
        for parameter, requires_grad in trainable:
            parameter.requires_grad_(requires_grad)
        for module, training in modes:
            module.training = training
        for name in set(vars(model)) - attributes:
            delattr(model, name)
        raise


def compose_adapters(
    base_model: PreTrainedModel,
    sources: Sequence[str | os.PathLike],
    adapter_name: str = "default",
    *,
    revision: str | Sequence[str | None] | None = None,
    token: str | bool | None = None,
) -> PeftModel:
    """Combine several edit adapters made on the same base model into one adapter, `adapter_name`.

    Which adapters combine is each method's rule, `MPNConfig.composable_with` / `LAFNConfig.composable_with`,
    checked on the configs before any weights are loaded: MPN adapters (same layers and patch activation)
    combine into one whose patches are the union; LAFN adapters (same settings) into one whose neuron sets are
    the union, provided no neuron is edited by two sources (a collision raises `AdapterCompositionError`
    naming the layer, the neurons and both sources). The manifests are merged (each
    record gains `source`) and left on the returned model, so `save_edit` and `push_edit_to_hub` write them
    without `edits=`. A local folder without its config or weights file is refused naming the missing file.
    Composing is all or nothing: if a source fails to load, `AdapterCompositionError` names it and `base_model`
    is left as it was, with no adapter attached.

    Args:
        base_model: the base model the adapters were made for (it is wrapped in place, as by `from_pretrained`).
        sources: local adapter folders or Hub repo ids, at least one.
        adapter_name: the name of the combined adapter.
        revision: one Hub revision for every source, or one per source (`None` for local folders).
        token: Hub token for private repos.

    Examples:
        ```py
        >>> model = compose_adapters(base_model, ["me/capitals", "me/rivers"])
        >>> save_edit(model, "capitals-and-rivers")
        ```
    """
    sources = list(sources)
    if not sources:
        raise AdapterCompositionError("No sources to compose; give at least one adapter folder or repo id.")
    revisions = _revisions(sources, revision)
    names = [_describe(source, rev) for source, rev in zip(sources, revisions)]
    seen: dict[tuple[str, str | None], str] = {}
    for name, key in zip(names, (_source_key(source, rev) for source, rev in zip(sources, revisions))):
        if key in seen:
            raise AdapterCompositionError(
                f"{name} is the same adapter as {seen[key]}: composing it twice would add its patches twice and "
                "double its effect. Give each source once."
            )
        seen[key] = name
    for source in sources:  # before any loads: peft would look a local folder's missing file up on the Hub
        check_adapter_folder(source)
    configs = []
    for source, rev in zip(sources, revisions):
        with revision_errors(source, rev):
            configs.append(PeftConfig.from_pretrained(str(source), revision=rev, token=token))
    types = {str(config.peft_type.value) for config in configs}
    if len(types) > 1:
        described = ", ".join(f"{name}: {config.peft_type.value}" for name, config in zip(names, configs))
        raise AdapterCompositionError(f"Cannot compose adapters of different methods ({described}).")
    if not isinstance(configs[0], FFNBlockConfig):
        raise AdapterCompositionError(
            f"{names[0]} is a {configs[0].peft_type.value} adapter; compose_adapters combines MPN or LAFN edit "
            "adapters."
        )
    bases = {name: config.base_model_name_or_path for name, config in zip(names, configs)}
    if len({base for base in bases.values() if base}) > 1:
        raise AdapterCompositionError(
            "Cannot compose adapters made on different base models: "
            + ", ".join(f"{name} on {base!r}" for name, base in bases.items())
            + "."
        )
    _check_composable(configs, names)

    records: list[dict[str, Any]] = []
    for source, rev in zip(sources, revisions):
        try:
            found = list_edits(source, revision=rev, token=token)
        except EditManifestNotFoundError:
            warnings.warn(
                f"{_describe(source, rev)} has no edit manifest (edits.json): the composed adapter's manifest will "
                "not list what that source changes. Save it with peft_mpn.hub.save_edit(..., edits=...) to keep one.",
                stacklevel=2,
            )
            found = []
        records += [{**record, "source": record.get("source") or str(source)} for record in found]

    loading = names[0]
    try:
        with _undone_on_failure(base_model):
            model = PeftModel.from_pretrained(
                base_model, str(sources[0]), adapter_name=adapter_name, revision=revisions[0], token=token
            )
            for position, (source, rev) in enumerate(zip(sources[1:], revisions[1:]), start=1):
                loading = names[position]
                incoming = f"{adapter_name}__compose_{position}"
                model.load_adapter(str(source), adapter_name=incoming, revision=rev, token=token)
                try:
                    model.base_model.absorb_adapter(incoming, adapter_name)
                finally:
                    model.delete_adapter(incoming)
    except Exception as error:
        raise AdapterCompositionError(
            f"Could not load {loading} ({type(error).__name__}: {error}); nothing was composed and the base model "
            "is left as it was (no adapter attached). Fix or remove that source and compose again."
        ) from error
    model.set_adapter(adapter_name)
    setattr(model, EDITS_ATTRIBUTE, records)
    return model
