"""The one atomic write: the old file or the new one, never half of one, nothing left over."""

from __future__ import annotations

import os

import pytest

from nsfw_tui.core.atomic import atomic_path, atomic_write, atomic_write_bytes


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "labels.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]


def test_a_clean_write_replaces_with_the_usual_permissions(tmp_path):
    target = tmp_path / "model.onnx"
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.")
        tmp.write_bytes(b"newer")
        assert target.read_bytes() == b"new"  # not yet
    assert target.read_bytes() == b"newer" and len(list(tmp_path.iterdir())) == 1
