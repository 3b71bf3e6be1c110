"""Atomic writes: the new file replaces the old whole, with an ordinary file mode."""

from __future__ import annotations

import os
import stat

import pytest

from edgetune.atomic import atomic_path, write_json


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "manifest.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "manifest.json").stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def _publish(root, stamp, n):
    from edgetune.atomic import publish_folder

    def fill(folder):
        for i in range(n):
            (folder / f"{i}.txt").write_text(stamp * 1000)

    return str(publish_folder(root, stamp, fill))


def test_a_folder_is_published_whole_however_many_ask_at_once(tmp_path):
    """Two runs (or two test workers) asking for the demo data at once: each sees the folder
    whole, never a file the other is still writing, and no half-built folder is left."""
    from concurrent.futures import ProcessPoolExecutor

    from edgetune.atomic import DONE

    root = tmp_path / "data"
    with ProcessPoolExecutor(4) as pool:
        assert set(pool.map(_publish, [root] * 4, ["a"] * 4, [200] * 4)) == {str(root)}
    assert sorted(p.name for p in root.iterdir()) == sorted([DONE] + [f"{i}.txt" for i in range(200)])
    assert all(p.read_text() == "a" * 1000 for p in root.glob("*.txt"))
    _publish(root, "b", 3)  # another stamp replaces the folder whole: no file of the old one lingers
    assert sorted(p.name for p in root.iterdir()) == sorted([DONE, "0.txt", "1.txt", "2.txt"])
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # nothing half-built beside it
