"""Composing edit adapters made on the same base model into one adapter."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

from peft import PeftConfig, PeftModel
from transformers import PreTrainedModel

from ..tuners import AdapterCompositionError, LAFNConfig, MPNConfig
from .manifest import EDITS_ATTRIBUTE, EditManifestNotFoundError, list_edits


def _revisions(sources: Sequence[Any], revision: str | Sequence[str | None] | None) -> list[str | None]:
    if revision is None or isinstance(revision, str):
        return [revision] * len(sources)
    revisions = list(revision)
    if len(revisions) != len(sources):
        raise AdapterCompositionError(f"Got {len(revisions)} revisions for {len(sources)} sources; give one each.")
    return revisions


def _describe(source: Any, revision: str | None) -> str:
    return f"{str(source)!r}" + (f" (revision {revision})" if revision else "")


def _check_same(configs: list[PeftConfig], names: list[str], fields: Sequence[str]) -> None:
    for field in fields:
        first = getattr(configs[0], field)
        for config, name in zip(configs[1:], names[1:]):
            if getattr(config, field) != first:
                raise AdapterCompositionError(
                    f"Cannot compose {names[0]} and {name}: their {field} differ ({first!r} vs "
                    f"{getattr(config, field)!r}). Only adapters that agree on it combine into one."
                )


def _check_lafn_collisions(configs: list[LAFNConfig], names: list[str]) -> None:
    owner: dict[tuple[int, int], str] = {}
    for config, name in zip(configs, names):
        clashes: dict[tuple[str, int], list[int]] = {}
        for layer, indices in config.neurons.items():
            for neuron in indices:
                key = (int(layer), int(neuron))
                if key in owner:
                    clashes.setdefault((owner[key], int(layer)), []).append(int(neuron))
                else:
                    owner[key] = name
        if clashes:
            detail = "; ".join(
                f"layer {layer}: neurons {sorted(neurons)[:10]} also in {other}"
                for (other, layer), neurons in sorted(clashes.items(), key=lambda item: item[0][1])
            )
            raise AdapterCompositionError(
                f"Cannot compose LAFN adapters: {name} edits neurons another source already edits ({detail}). "
                "A neuron holds one delta only: re-edit one of the facts onto the other adapter, or keep them apart."
            )


def compose_adapters(
    base_model: PreTrainedModel,
    sources: Sequence[str | os.PathLike],
    adapter_name: str = "default",
    *,
    revision: str | Sequence[str | None] | None = None,
    token: str | bool | None = None,
) -> PeftModel:
    """Combine several edit adapters made on the same base model into one adapter, `adapter_name`.

    MPN adapters (same layers and patch activation) combine into one whose patches are the union; LAFN adapters
    (same settings) into one whose neuron sets are the union, provided no neuron is edited by two sources
    (a collision raises `AdapterCompositionError` naming the layer, the neurons and both sources). The
    manifests are merged (each record gains `source`) and left on the returned model, so `save_edit` and
    `push_edit_to_hub` write them without `edits=`.

    Args:
        base_model: the base model the adapters were made for (it is wrapped in place, as by `from_pretrained`).
        sources: local adapter folders or Hub repo ids, at least one.
        adapter_name: the name of the combined adapter.
        revision: one Hub revision for every source, or one per source (`None` for local folders).
        token: Hub token for private repos.

    Example:

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
    configs = [
        PeftConfig.from_pretrained(str(source), revision=rev, token=token) for source, rev in zip(sources, revisions)
    ]
    types = {str(config.peft_type.value) for config in configs}
    if len(types) > 1:
        described = ", ".join(f"{name}: {config.peft_type.value}" for name, config in zip(names, configs))
        raise AdapterCompositionError(f"Cannot compose adapters of different methods ({described}).")
    if not isinstance(configs[0], (MPNConfig, LAFNConfig)):
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
    if isinstance(configs[0], MPNConfig):
        _check_same(configs, names, ("target_modules", "layers_to_transform", "activation", "hidden_size"))
    else:
        _check_same(
            configs, names, ("update_input", "cached", "activation_threshold", "intermediate_size", "hidden_size")
        )
        _check_lafn_collisions(configs, names)

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

    model = PeftModel.from_pretrained(
        base_model, str(sources[0]), adapter_name=adapter_name, revision=revisions[0], token=token
    )
    for position, (source, rev) in enumerate(zip(sources[1:], revisions[1:]), start=1):
        incoming = f"{adapter_name}__compose_{position}"
        model.load_adapter(str(source), adapter_name=incoming, revision=rev, token=token)
        try:
            model.base_model.absorb_adapter(incoming, adapter_name)
        finally:
            model.delete_adapter(incoming)
    model.set_adapter(adapter_name)
    setattr(model, EDITS_ATTRIBUTE, records)
    return model
