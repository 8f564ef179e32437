"""Installed next to peft_mpn and run at interpreter start-up by ``peft_mpn_hint.pth``.

It imports nothing at start-up (``sys`` is already loaded): every interpreter of the environment runs it, so it
must cost nothing there. When peft's ``peft.mapping`` module is imported, its PEFT-type mappings are given a
``__missing__`` that explains, for the types this plugin provides, that ``import peft_mpn`` is needed, instead of
peft's bare ``KeyError: 'MPN'``. The finder is a plain object (``sys.meta_path`` needs only ``find_spec``), and
``importlib.util`` is imported only when ``peft.mapping`` is, since ``importlib.abc`` alone cost ~40 ms per
interpreter start on the development machine.
"""

import sys

PLUGIN_TYPES = ("MPN", "LAFN")
MAPPINGS = ("PEFT_TYPE_TO_CONFIG_MAPPING", "PEFT_TYPE_TO_TUNER_MAPPING", "PEFT_TYPE_TO_PREFIX_MAPPING")


def message(peft_type: str) -> str:
    return (
        f"PEFT type {peft_type!r} is provided by the peft-mpn plugin, which is installed but was not imported. "
        "Add `import peft_mpn` before loading this adapter (or load it with "
        "`peft_mpn.from_pretrained(base_model, adapter_path)`, which does it for you)."
    )


class PluginAwareMapping(dict):
    def __missing__(self, key):
        name = str(getattr(key, "value", key))
        if name in PLUGIN_TYPES:
            raise KeyError(message(name))
        raise KeyError(key)


class _MappingFinder:
    def find_spec(self, fullname, path, target=None):
        if fullname != "peft.mapping":
            return None
        import importlib.util  # only now: peft is being imported, and importlib is cheap next to it

        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            for name in MAPPINGS:
                if isinstance(getattr(module, name, None), dict):
                    setattr(module, name, PluginAwareMapping(getattr(module, name)))

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    if "peft.mapping" in sys.modules:  # too late to wrap before other modules bind the dicts
        return
    if not any(isinstance(finder, _MappingFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MappingFinder())


install()
