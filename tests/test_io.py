"""probsae.io: the one atomic-write helper."""

import errno
import json
import math
import os
import stat
import time
from pathlib import Path

import pytest

from probsae.errors import ConfigError, FileIOError
from probsae.io import (
    TMP_GLOB, atomic_write, atomic_write_json, atomic_write_text, check_output_dir, check_writable_dir,
    clean_stale_tmp, ensure_dir, error_number, read_json,
)


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

    with pytest.raises(FileIOError, match="f.txt"):
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
    # the writer's pid must be one that cannot be alive (pid 123 can be, e.g. in a container, and a
    # live writer's fresh temporary is kept): 999999999 is above Linux's largest pid_max (2**22)
    (tmp_path / ".x.json.probsae-tmp-999999999-abcd").write_text("torn")
    (tmp_path / "keep.json").write_text("{}")
    assert clean_stale_tmp(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


# ---- OS failures become one-line errors naming the file and the cause -------------------------------


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk full"), (errno.EACCES, "permission denied"),
                                         (errno.EROFS, "read-only file system"), (errno.EFBIG, "file too large")])
def test_os_failures_are_named(tmp_path, monkeypatch, code, words):
    dest = tmp_path / "ckpt.bin"
    atomic_write_text(dest, "old")

    def full(tmp):
        Path(tmp).write_bytes(b"partial")
        raise OSError(code, os.strerror(code))

    with pytest.raises(FileIOError, match=f"cannot write {dest} \\({words}"):
        atomic_write(dest, full)
    assert dest.read_text() == "old" and not list(tmp_path.glob(TMP_GLOB))


def test_a_library_wrapping_the_os_error_still_says_disk_full(tmp_path):
    def wrapped(tmp):  # what torch.save / safetensors raise on a full disk
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull }) (os error 28)")

    assert error_number(RuntimeError("x (os error 28)")) == errno.ENOSPC
    with pytest.raises(FileIOError, match="disk full"):
        atomic_write(tmp_path / "f", wrapped)


def test_read_json_names_what_is_wrong(tmp_path):
    p = tmp_path / "config.json"
    p.write_text("[1, 2]")
    with pytest.raises(FileIOError, match="config.json holds a list where an object was expected"):
        read_json(p)
    p.write_bytes(b"\x80\x81 binary")
    with pytest.raises(FileIOError, match="config.json is not UTF-8 text: invalid byte 0x80 at byte 0"):
        read_json(p)
    p.write_text('{"a": ')
    with pytest.raises(FileIOError, match="config.json is not valid JSON"):
        read_json(p)
    with pytest.raises(FileIOError, match="no such file"):
        read_json(tmp_path / "missing.json")


def test_directories_in_the_way(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(FileIOError, match="is a file, not a directory"):
        ensure_dir(f)
    with pytest.raises(FileIOError, match="a part of the path is a file"):
        ensure_dir(f / "sub")
    with pytest.raises(FileIOError, match="is a file, not a directory"):
        check_output_dir(f, lambda p: True, False, "run")


def test_check_output_dir_refuses_a_foreign_non_empty_directory(tmp_path):
    mine = tmp_path / "d"
    mine.mkdir()
    assert check_output_dir(mine, lambda p: False, False, "run") == mine  # empty: fine
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(ConfigError, match="not empty \\(notes.txt\\).*--force"):
        check_output_dir(mine, lambda p: False, False, "probsae run directory")
    check_output_dir(mine, lambda p: True, False, "run")  # ours
    check_output_dir(mine, lambda p: False, True, "run")  # forced
    check_output_dir(tmp_path / "new", lambda p: False, False, "run")  # does not exist yet


@pytest.mark.skipif(os.geteuid() == 0, reason="root is not denied by directory permissions")
def test_unwritable_directory_is_found_before_work(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(FileIOError, match="permission denied"):
            check_writable_dir(d)
    finally:
        d.chmod(0o755)


def test_clean_stale_tmp_keeps_temporaries_of_live_writers(tmp_path):
    dead = tmp_path / ".a.json.probsae-tmp-999999999-abcd"  # no such pid
    live = tmp_path / f".b.json.probsae-tmp-{os.getpid()}-abcd"
    old_live = tmp_path / f".c.json.probsae-tmp-{os.getpid()}-abcd"
    for f in (dead, live, old_live):
        f.write_text("x")
    os.utime(old_live, (time.time() - 7200, time.time() - 7200))
    assert clean_stale_tmp(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == [live.name]


def test_every_write_in_the_package_goes_through_probsae_io():
    """Source scan: a file write outside probsae/io.py must write into atomic_write's temporary."""
    import re

    import probsae

    raw = re.compile(r"(?<!atomic_)\b(write_text|write_bytes|savefig)\(|\bopen\([^)]*[\"'](w|a|wb|ab|w\+)[\"']"
                     r"|torch\.save\(|\bsave_file\(|json\.dump\(")
    root = Path(probsae.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "io.py" and path.parent == root:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if raw.search(line) and "tmp" not in line:
                offenders.append(f"{path.relative_to(root)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_read_jsonl_drops_a_torn_last_line_and_names_any_other_bad_line(tmp_path):
    from probsae.errors import SAEFileError
    from probsae.io import read_jsonl

    log = tmp_path / "log.jsonl"
    assert read_jsonl(log) == []  # no file: no records
    log.write_text('{"event": "start"}\n\n{"step": 1}\n{"step": 2, "lo')
    assert read_jsonl(log) == [{"event": "start"}, {"step": 1}]
    log.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(FileIOError, match="log.jsonl line 2 is not valid JSON"):
        read_jsonl(log)
    log.write_text('[1, 2]\n{"step": 3}\n')
    with pytest.raises(SAEFileError, match="log.jsonl line 1 is not a JSON object: the log is corrupt"):
        read_jsonl(log, SAEFileError)
    log.write_text('{"step": 1}\n{"step": -3}\n')
    with pytest.raises(FileIOError, match="log.jsonl line 2: negative: the log is corrupt"):
        read_jsonl(log, check=lambda r: "negative" if r["step"] < 0 else None)
