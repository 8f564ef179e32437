"""Make MPN and LAFN first-class PEFT types.

peft's ``register_peft_method`` only accepts names that are already members of the closed ``PeftType``
enum, and transformers reads ``peft_config.peft_type.value``: a plain string key is not enough. So we add a
real enum member first, then register. Both steps are idempotent, so importing the plugin twice (or
reloading it) is harmless.
"""

from __future__ import annotations

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils import PeftType, register_peft_method


def add_peft_type(name: str) -> PeftType:
    """Return ``PeftType[name]``, adding it to the enum first when peft does not know it."""
    if name in PeftType.__members__:
        return PeftType[name]
    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = PeftType
    member.__init__(name)
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    # Enum's metaclass refuses to set members as attributes; the class dict is where lookups go.
    type.__setattr__(PeftType, name, member)
    return member


def register(name: str, config_cls: type, model_cls: type, prefix: str) -> PeftType:
    """Register a tuner under ``name`` (lower case) unless the same classes are already registered."""
    peft_type = add_peft_type(name.upper())
    registered = PEFT_TYPE_TO_TUNER_MAPPING.get(peft_type)
    if registered is not None:
        if registered.__qualname__ != model_cls.__qualname__:
            raise RuntimeError(f"PEFT type {peft_type.value} is already registered by {registered!r}")
        # A reloaded module brings new class objects: point peft at them.
        PEFT_TYPE_TO_TUNER_MAPPING[peft_type] = model_cls
        PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] = config_cls
        PEFT_TYPE_TO_PREFIX_MAPPING[peft_type] = prefix
        return peft_type
    register_peft_method(name=name, config_cls=config_cls, model_cls=model_cls, prefix=prefix)
    return peft_type
