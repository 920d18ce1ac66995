"""probsae.io: the one atomic-write helper."""

import json
import math
import os
import stat

import pytest

from probsae.io import TMP_GLOB, atomic_write, atomic_write_json, atomic_write_text, clean_stale_tmp


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    dest = tmp_path / "f.txt"
    atomic_write_text(dest, "old")
    atomic_write_text(dest, "new")
    assert dest.read_text() == "new"
    assert not list(tmp_path.glob(TMP_GLOB))


def test_failed_write_keeps_the_old_file(tmp_path):
    dest = tmp_path / "f.txt"
    atomic_write_text(dest, "old")

    def boom(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(dest, boom)
    assert dest.read_text() == "old"
    assert not list(tmp_path.glob(TMP_GLOB))


def test_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        dest = atomic_write_text(tmp_path / "w.bin", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644


def test_json_is_strict(tmp_path):
    dest = atomic_write_json(tmp_path / "m.json", {"a": math.nan, "b": [1.0, math.inf], "c": 2})
    text = dest.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": 2}


def test_clean_stale_tmp_removes_only_temporaries(tmp_path):
    (tmp_path / ".x.json.probsae-tmp-123-abcd").write_text("torn")
    (tmp_path / "keep.json").write_text("{}")
    assert clean_stale_tmp(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]
