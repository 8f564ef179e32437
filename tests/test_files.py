import os
import stat

import pytest

from peft_mpn.files import atomic_write, atomic_write_text


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_gets_the_umask_mode_not_owner_only(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "sub" / "report.json", "{}\n")
    finally:
        os.umask(umask)
    assert path.read_text(encoding="utf-8") == "{}\n"
    assert _mode(path) == 0o666 & ~umask
    assert _mode(path) & stat.S_IRGRP  # mkstemp alone would leave 0o600


def test_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "page.md"
    path.write_text("old", encoding="utf-8")
    path.chmod(0o640)
    atomic_write_text(path, "new")
    assert path.read_text(encoding="utf-8") == "new" and _mode(path) == 0o640


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")

    def fail(temporary):
        temporary.write_bytes(b"half")
        raise RuntimeError("no space")

    with pytest.raises(RuntimeError, match="no space"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_the_temporary_keeps_the_suffix_for_writers_that_read_it(tmp_path):
    seen = []
    atomic_write(tmp_path / "plot.png", lambda temporary: (seen.append(temporary.suffix), temporary.write_bytes(b"x")))
    assert seen == [".png"]
