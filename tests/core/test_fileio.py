"""l3.core.fileio: atomic writes leave the old file or the new one, never a partial one."""

import hashlib
import json
import os

import numpy as np
import pytest

from l3.core import fileio


def _siblings(folder):
    return sorted(os.listdir(folder))


def test_write_json_converts_numpy_and_is_complete(tmp_path):
    path = tmp_path / "sub" / "r.json"
    fileio.write_json(str(path), {"a": np.float32(0.5), "b": np.arange(3)})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2]}
    assert _siblings(path.parent) == ["r.json"]


def test_error_mid_write_keeps_old_file_and_removes_temp(tmp_path):
    path = tmp_path / "r.json"
    fileio.write_json(str(path), {"old": 1})
    with pytest.raises(TypeError):
        fileio.write_json(str(path), {"new": object()})  # not serialisable, fails mid-dump
    assert json.loads(path.read_text()) == {"old": 1}
    assert _siblings(tmp_path) == ["r.json"]


def test_atomic_write_binary_and_jsonl(tmp_path):
    with fileio.atomic_write(str(tmp_path / "b.bin"), "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    fileio.write_jsonl(str(tmp_path / "x.jsonl"), [{"b": 1, "a": 2}, {"c": 3}])
    assert (tmp_path / "x.jsonl").read_text() == '{"a": 2, "b": 1}\n{"c": 3}\n'
    with pytest.raises(ValueError):
        with fileio.atomic_write(str(tmp_path / "y"), "a"):
            pass


def test_written_files_get_open_permissions_and_sidecar_format(tmp_path):
    old = os.umask(0o027)
    try:
        with open(tmp_path / "plain", "w") as f:
            f.write("x")
        fileio.write_json(str(tmp_path / "r.json"), {"b": [1], "a": 2}, indent=1, sort_keys=True)
    finally:
        os.umask(old)
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "r.json") == mode(tmp_path / "plain") == 0o640
    # The builder's sidecars and summary: indent 1, sorted keys, final newline.
    assert (tmp_path / "r.json").read_text() == '{\n "a": 2,\n "b": [\n  1\n ]\n}\n'


def test_digests_change_with_content(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one"); b.write_bytes(b"two")
    d1 = fileio.files_digest([str(a), str(b)])
    assert d1 == fileio.files_digest([str(b), str(a)])  # order-free
    b.write_bytes(b"twp")
    assert fileio.files_digest([str(a), str(b)]) != d1
    assert fileio.file_sha256(str(a)) == hashlib.sha256(b"one").hexdigest()
    x = [np.zeros(3, np.float32), np.ones(2, np.float32)]
    assert fileio.arrays_digest(x) != fileio.arrays_digest([x[1], x[0]])
