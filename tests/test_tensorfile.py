"""probsae.tensorfile: checksummed safetensors files, header checks before any allocation."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from probsae.errors import SAEFileError
from probsae.tensorfile import CHECKSUM_KEY, load_tensors, nonfinite_names, read_header, save_tensors


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {"W": torch.randn(3, 5, generator=g), "flag": torch.tensor(True), "idx": torch.arange(7),
            "half": torch.randn(4, generator=g).to(torch.bfloat16), "empty": torch.zeros(0, 3),
            "mask": torch.tensor([True, False, True])}


def test_round_trip_and_any_safetensors_reader_opens_it(tmp_path):
    save_tensors(path := tmp_path / "t.safetensors", _tensors(), {"note": "hi"})
    ours, meta = load_tensors(path)
    theirs = load_file(str(path))
    for k, v in _tensors().items():
        assert torch.equal(ours[k], v) and torch.equal(theirs[k], v) and ours[k].dtype == v.dtype
    assert meta["note"] == "hi" and len(meta[CHECKSUM_KEY]) == 8


def test_every_flipped_byte_is_detected(tmp_path):
    save_tensors(path := tmp_path / "t.safetensors", {"W": torch.randn(4, 4), "b": torch.randn(4)}, {"note": "x"})
    data = path.read_bytes()
    header_len = 8 + int.from_bytes(data[:8], "little")
    for pos in range(0, len(data), 3):
        if header_len - 8 <= pos < header_len and data[pos:pos + 1] == b" ":
            continue  # header padding carries no information
        bad = bytearray(data)
        bad[pos] ^= 0x10
        path.write_bytes(bytes(bad))
        with pytest.raises(SAEFileError):
            load_tensors(path, checksum=True)


def test_files_of_other_writers_are_structure_checked_only(tmp_path):
    save_file({"W": torch.ones(2, 2)}, str(tmp_path / "f.safetensors"))
    tensors, meta = load_tensors(tmp_path / "f.safetensors")
    assert CHECKSUM_KEY not in meta and torch.equal(tensors["W"], torch.ones(2, 2))
    with pytest.raises(SAEFileError, match="carries no probsae_crc32"):
        load_tensors(tmp_path / "f.safetensors", checksum=True)
    crc = save_tensors(tmp_path / "g.safetensors", {"W": torch.ones(2, 2)})
    load_tensors(tmp_path / "g.safetensors", checksum=crc)
    with pytest.raises(SAEFileError, match="was recorded for it"):
        load_tensors(tmp_path / "g.safetensors", checksum="00000000")


def test_expected_shapes_are_checked_from_the_header_alone(tmp_path, monkeypatch):
    save_tensors(path := tmp_path / "t.safetensors", {"W": torch.zeros(2, 3)})
    monkeypatch.setattr("probsae.tensorfile.mmap.mmap", lambda *a, **k: pytest.fail("data was read before the shape check"))
    with pytest.raises(SAEFileError, match=r"'W' has shape \[2, 3\], expected \[5000000, 3\]"):
        load_tensors(path, expect={"W": ((5_000_000, 3), torch.float32)})
    with pytest.raises(SAEFileError, match="missing \\['b'\\], unexpected \\[\\]"):
        load_tensors(path, expect={"W": ((2, 3), None), "b": ((3,), None)})
    with pytest.raises(SAEFileError, match="dtype torch.float32, expected torch.float16"):
        load_tensors(path, expect={"W": ((2, 3), torch.float16)})


def test_non_float_and_non_finite_values_are_refused(tmp_path):
    save_tensors(p := tmp_path / "i.safetensors", {"W_enc": torch.zeros(2, 2, dtype=torch.int32)})
    with pytest.raises(SAEFileError, match="'W_enc' has dtype torch.int32, expected floating point"):
        load_tensors(p, floating=True)
    w = torch.ones(3)
    w[1] = float("nan")
    save_tensors(p := tmp_path / "n.safetensors", {"W_dec": w})
    with pytest.raises(SAEFileError, match="'W_dec'.*NaN/inf"):
        load_tensors(p, finite=True)
    # −inf is a legitimate log 0 (a JumpReLU threshold of exactly 0); +inf is not
    assert nonfinite_names({"log_threshold": torch.tensor([-float("inf"), 0.0])}) == []
    assert nonfinite_names({"log_threshold": torch.tensor([float("inf")])}) == ["log_threshold"]


@pytest.mark.parametrize("damage", ["truncate", "header_size", "garbage"])
def test_malformed_files_say_what_is_wrong(tmp_path, damage):
    save_tensors(path := tmp_path / "t.safetensors", {"W": torch.zeros(8, 8)})
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:-5], "header_size": (10**9).to_bytes(8, "little") + data[8:],
                      "garbage": b"\x00garbage" * 10}[damage])
    with pytest.raises(SAEFileError, match="is not a valid safetensors file"):
        read_header(path)
