"""Writing files and folders so that a crash or a failed write never leaves half of one where a whole one was, and
so that processes changing the same file take turns."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
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
        # still holding it: whoever waits on this file sees it gone and retries. Only if the path still names this
        # lock file: a folder swapped in meanwhile (`replace_folder`) may hold another process's lock there.
        try:
            mine = os.path.samestat(os.fstat(handle), os.stat(lock))
        except FileNotFoundError:
            mine = False
        if mine:
            lock.unlink(missing_ok=True)
        os.close(handle)


def _leftovers(folder: Path, pattern: str) -> list[Path]:
    """Folders beside `folder` named ``.<name>.<pattern>`` (`replace_folder`'s own), least recently renamed first."""
    name = re.compile(re.escape(f".{folder.name}.") + pattern)
    found = []
    for path in folder.parent.iterdir():
        if name.fullmatch(path.name) and not path.is_symlink():
            try:
                found.append((path.stat().st_ctime, path))
            except FileNotFoundError:  # removed meanwhile by the replacement that left it
                continue
    return [path for _, path in sorted(found) if path.is_dir()]


_OLD = r"old-[0-9a-f]{12}"
_STAGING = r"staging-[a-z0-9_]{8}"  # mkdtemp's suffix


def _recover(folder: Path) -> None:
    """Holding `folder`'s lock: put back the old folder a killed swap left aside; remove what killed runs left."""
    olds = _leftovers(folder, _OLD)
    if olds and not os.path.lexists(folder):
        os.rename(olds.pop(), folder)  # killed between moving the old folder aside and the new one in
    for path in olds + _leftovers(folder, _STAGING):  # no replacement is under way: the lock is held
        shutil.rmtree(path, ignore_errors=True)


def recover_folder(folder: str | os.PathLike) -> None:
    """Put back a folder a killed `replace_folder` left aside: if ``folder`` is missing and its old content lies
    beside it (``.<name>.old-*``), rename it back. Loaders call it before reading a local folder; it does nothing
    (and takes no lock) when nothing was left aside, or when the folder's parent cannot be written."""
    folder = Path(folder).expanduser()
    if os.path.lexists(folder) or not folder.parent.is_dir() or not _leftovers(folder, _OLD):
        return
    try:
        with locked(folder):
            _recover(folder)
    except OSError:
        pass  # a read-only place: the loader reports the folder missing


def _link(source: str, target: str) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)


def _carry_over(old: Path, new: Path, drop: set[str]) -> None:
    """Entries of `old` that `new` lacks, into `new`: hard links where the file system allows, else copies."""
    for entry in os.scandir(old):
        if entry.name in drop or os.path.lexists(new / entry.name):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(entry.path, new / entry.name, symlinks=True, copy_function=_link)
        else:
            _link(entry.path, str(new / entry.name))


def _sync_tree(root: Path) -> None:
    """Flush a folder's files and the folder entries themselves to disk, before it is renamed into place."""
    for where, _folders, files in os.walk(root):
        for name in files:
            path = os.path.join(where, name)
            if not os.path.islink(path):
                descriptor = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
        _sync_dir(where)


def _sync_dir(path: str | os.PathLike) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no directory handles (Windows)
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _swap(folder: Path, staging: Path) -> Path | None:
    """Rename `staging` to `folder`, the old `folder` aside first; returns where the old one now is."""
    if not os.path.lexists(folder):
        os.rename(staging, folder)
        return None
    aside = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:12]}")
    os.rename(folder, aside)
    try:
        os.rename(staging, folder)
    except BaseException:
        os.rename(aside, folder)
        raise
    return aside


def replace_folder(
    folder: str | os.PathLike, build: Callable[[Path], None], *, drop: Iterable[str] = (), hold: str | None = None
) -> Path:
    """Replace the folder ``folder`` as a whole by the one ``build(staging)`` writes, so that ``folder`` holds
    either its complete old content or the complete new one, whenever the process is killed.

    ``build`` fills a staging folder beside ``folder`` (``.<name>.staging-*``). Entries of the old folder that the
    new one lacks are carried into it (hard links where possible), except the names in ``drop``. Then the old
    folder is renamed aside (``.<name>.old-*``), the new one into place, and the old one deleted. A process killed
    between the two renames leaves ``folder`` missing and its old content aside: `recover_folder`, and the next
    ``replace_folder``, put it back; the next ``replace_folder`` also removes the staging and old folders of killed
    runs. Replacements of the same folder take turns (a lock file ``.<name>.lock`` beside it); ``hold`` names a
    file inside the folder whose `locked` lock is held too while the folders are swapped. If ``build`` raises,
    ``folder`` is untouched and the staging folder removed. Returns ``folder``.
    """
    folder = Path(folder)
    if folder.is_symlink():  # replace what it points to; the link stays
        folder = Path(os.path.realpath(folder))
    folder.parent.mkdir(parents=True, exist_ok=True)
    with locked(folder):
        _recover(folder)
        if os.path.lexists(folder) and not folder.is_dir():
            raise NotADirectoryError(f"{str(folder)!r} exists and is not a folder; give a folder path.")
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.staging-", dir=folder.parent))
        try:
            build(staging)
            os.chmod(staging, stat.S_IMODE(folder.stat().st_mode) if folder.is_dir() else 0o777 & ~_UMASK)
            with locked(folder / hold) if hold and folder.is_dir() else nullcontext():
                if folder.is_dir():
                    _carry_over(folder, staging, {*drop, *([f".{hold}.lock"] if hold else [])})
                _sync_tree(staging)
                aside = _swap(folder, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _sync_dir(folder.parent)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    return folder


__all__ = ["atomic_write", "atomic_write_text", "locked", "recover_folder", "replace_folder"]
