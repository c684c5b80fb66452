"""Unbounded string ids and words into fixed embedding buckets.

Stable across processes and machines (blake2b, not Python's salted hash()), so
the trainer and every server map an id to the same rows. Several hashes per id
make a collision of two popular ids in all their rows unlikely.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

DIGEST_BYTES = 16  # four 4-byte words: up to four hashes per id


@functools.lru_cache(maxsize=1 << 20)
def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=DIGEST_BYTES).digest()


def bucket_ids(text: str, buckets: int, hashes: int) -> list[int]:
    """`hashes` bucket numbers in [1, buckets) for one string; 0 is the padding row."""
    digest = _digest(text)
    return [1 + int.from_bytes(digest[4 * k : 4 * k + 4], "little") % (buckets - 1) for k in range(hashes)]


def bucket_matrix(texts: list[str], buckets: int, hashes: int) -> np.ndarray:
    """[len(texts), hashes] int64 bucket numbers, the same as `bucket_ids` row
    by row, computed on all digests at once (per-row work was most of
    encoding a user for a real-time recommendation)."""
    if hashes > DIGEST_BYTES // 4:
        raise ValueError(f"at most {DIGEST_BYTES // 4} hashes per id")
    digests = np.frombuffer(b"".join(map(_digest, texts)), dtype="<u4").reshape(len(texts), DIGEST_BYTES // 4)
    return 1 + digests[:, :hashes].astype(np.int64) % (buckets - 1)
