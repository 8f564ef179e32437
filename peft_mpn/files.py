"""Writing files so that a crash or a failed write never leaves half a file where a whole one was, and so that
processes changing the same file take turns."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write ``path`` through a temporary file in the same folder, then rename it over ``path``.

    ``write(temporary_path)`` produces the content (e.g. ``lambda p: fig.savefig(p)``). The file is flushed to
    disk before the rename and keeps the mode of the file it replaces (a new file gets ``0o666`` less the umask,
    as ``open`` gives, not ``mkstemp``'s owner-only ``0o600``).
    If ``write`` raises, ``path`` keeps what it held and the temporary file is removed. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        with temporary.open("rb+") as file:
            os.fsync(file.fileno())
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_UMASK
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """`atomic_write` of ``text``."""
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding=encoding))


@contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` against other processes, e.g. to read, change and rewrite it.

    The lock is ``fcntl.flock`` on a hidden ``.<name>.lock`` file beside ``path``, removed again on release. It
    is advisory (only writers that take it take turns) and not reentrant; without ``fcntl`` (Windows) nothing
    is locked.
    """
    if fcntl is None:
        yield
        return
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    while True:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = os.path.samestat(os.fstat(handle), os.stat(lock))
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(handle)
            raise
        if current:
            break
        os.close(handle)  # the holder before removed that lock file after this process opened it: take the new one
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # still holding it: whoever waits on this file sees it gone and retries
        os.close(handle)


__all__ = ["atomic_write", "atomic_write_text", "locked"]
