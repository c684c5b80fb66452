"""Unbounded string ids and words into fixed embedding buckets.

Stable across processes and machines (blake2b, not Python's salted hash()), so
the trainer and every server map an id to the same rows. Several hashes per id
make a collision of two popular ids in all their rows unlikely.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np


@functools.lru_cache(maxsize=1 << 20)
def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def bucket_ids(text: str, buckets: int, hashes: int) -> list[int]:
    """`hashes` bucket numbers in [1, buckets) for one string; 0 is the padding row."""
    digest = _digest(text)
    return [1 + int.from_bytes(digest[4 * k : 4 * k + 4], "little") % (buckets - 1) for k in range(hashes)]


def bucket_matrix(texts: list[str], buckets: int, hashes: int) -> np.ndarray:
    """[len(texts), hashes] int64 bucket numbers."""
    out = np.zeros((len(texts), hashes), dtype=np.int64)
    for row, text in enumerate(texts):
        out[row] = bucket_ids(text, buckets, hashes)
    return out
