"""Stable id hashing: the same buckets on every machine, never the padding row."""

from __future__ import annotations

from streamrec.embeddings.hashing import bucket_ids, bucket_matrix


def test_buckets_are_stable_in_range_and_never_padding():
    assert bucket_ids("item-42", 1024, 2) == bucket_ids("item-42", 1024, 2)
    assert bucket_ids("item-42", 1 << 18, 2) == [87395, 68780]  # the same on every machine
    assert all(1 <= b < 7 for text in map(str, range(500)) for b in bucket_ids(text, 7, 3))


def test_the_bucket_matrix_is_bucket_ids_row_by_row():
    texts = [f"item-{n}" for n in range(300)] + ["", "ünïcode"]
    for buckets, hashes in [(1 << 18, 2), (7, 3), (64, 1), (1 << 16, 4)]:
        assert bucket_matrix(texts, buckets, hashes).tolist() == [bucket_ids(t, buckets, hashes) for t in texts]
    assert bucket_matrix([], 64, 2).shape == (0, 2)
