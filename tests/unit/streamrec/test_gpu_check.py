"""The GPU check's packing: a fatbin keeps its headers and the kept
architecture's cubins byte for byte; every other payload is zeroed."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "gpu-check" / "prune_cubins.py"
spec = importlib.util.spec_from_file_location("prune_cubins", SCRIPT)
prune_cubins = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prune_cubins)


def _entry(kind: int, arch: int, payload: bytes) -> bytes:
    header = struct.pack("<HHIQIIHHI", kind, 0x0101, 64, len(payload), 0, 0, 0, 8, arch)
    return header.ljust(64, b"\0") + payload


def _fatbin(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


def test_only_the_kept_architectures_cubins_survive(tmp_path):
    sm75, sm90, ptx = b"A" * 100, b"B" * 120, b"C" * 80
    library = b"host code" + _fatbin(_entry(2, 75, sm75), _entry(2, 90, sm90), _entry(1, 120, ptx)) + b"more host"
    library += _fatbin(_entry(2, 90, b"D" * 50))
    path = tmp_path / "libexample.so"
    path.write_bytes(library)
    prune_cubins.main(90, [path])
    pruned = path.read_bytes()
    assert len(pruned) == len(library) and pruned.startswith(b"host code") and b"more host" in pruned
    assert b"A" not in pruned and b"C" * 2 not in pruned  # sm_75 and the PTX are zeros
    assert sm90 in pruned and b"D" * 50 in pruned  # both fatbins' sm_90 cubins, untouched


def test_a_library_without_the_architecture_is_refused(tmp_path):
    path = tmp_path / "libold.so"
    path.write_bytes(_fatbin(_entry(2, 75, b"A" * 10)))
    with pytest.raises(SystemExit, match="no sm_90 cubins"):
        prune_cubins.main(90, [path])
    assert b"A" * 10 in path.read_bytes()  # left as it was


def test_bytes_that_only_look_like_a_fatbin_are_left_alone(tmp_path):
    path = tmp_path / "libhost.so"
    data = b"x" + struct.pack("<IHHQ", 0xBA55ED50, 7, 16, 1 << 40) + b"y" * 40
    path.write_bytes(data)
    prune_cubins.main(90, [path])
    assert path.read_bytes() == data
