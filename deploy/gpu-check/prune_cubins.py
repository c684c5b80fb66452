"""Keep one GPU architecture's machine code in CUDA shared libraries.

A library built for many GPUs carries, per kernel file, a fatbin with one
cubin per architecture and PTX. This zeroes every payload but the cubins of
the architecture kept (headers stay, so the file's layout does not change):
the CUDA runtime loads the entry that matches the device and never reads the
others, and runs of zeros compress to almost nothing. faiss-gpu-cu13-cuvs and
libcuvs for sm_75 to sm_120 shrink to about their sm_90 share this way.

    python prune_cubins.py 90 lib1.so lib2.so ...   # prints what each kept
"""

from __future__ import annotations

import struct
import sys
from collections import Counter
from pathlib import Path

MAGIC = struct.pack("<I", 0xBA55ED50)
CUBIN, PTX = 2, 1


def entries(data: bytearray, at: int) -> list[tuple[int, int, int, int]] | None:
    """(kind, arch, payload start, payload size) of the fatbin at `at`; None if it does not parse."""
    version, header_size, fat_size = struct.unpack_from("<HHQ", data, at + 4)
    if version != 1 or header_size != 16 or at + 16 + fat_size > len(data):
        return None
    found, entry, end = [], at + 16, at + 16 + fat_size
    while entry < end:
        kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
        arch = struct.unpack_from("<I", data, entry + 28)[0]
        if kind not in (CUBIN, PTX) or not 16 <= entry_header <= 512 or entry + entry_header + payload > end:
            return None
        found.append((kind, arch, entry + entry_header, payload))
        entry += entry_header + payload
    return found


def prune(data: bytearray, keep_arch: int) -> Counter:
    """Zero every payload but `keep_arch`'s cubins; bytes kept and zeroed, per (kind, arch)."""
    tally: Counter = Counter()
    at = data.find(MAGIC)
    while at >= 0:
        found = entries(data, at)
        if found is None:
            at = data.find(MAGIC, at + 4)
            continue
        for kind, arch, start, size in found:
            kept = kind == CUBIN and arch == keep_arch
            if not kept:
                data[start : start + size] = bytes(size)
            tally["kept" if kept else "zeroed", "cubin" if kind == CUBIN else "ptx", arch] += size
        at = data.find(MAGIC, found[-1][2] + found[-1][3] if found else at + 4)
    return tally


def main(keep_arch: int, paths: list[Path]) -> None:
    """Prune each library that has GPU code; say what was kept (a library with none for the architecture fails)."""
    for path in paths:
        data = bytearray(path.read_bytes())
        tally = prune(data, keep_arch)
        if not tally:
            continue  # no GPU code: a host library
        kept = sum(v for (what, _, _), v in tally.items() if what == "kept")
        zeroed = sum(v for (what, _, _), v in tally.items() if what == "zeroed")
        if not kept:
            sys.exit(f"{path}: no sm_{keep_arch} cubins among {sorted({a for _, _, a in tally})}: nothing would run")
        path.write_bytes(data)
        print(f"{path.name}: kept {kept / 2**20:.1f} MiB of sm_{keep_arch} cubins, zeroed {zeroed / 2**20:.1f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
