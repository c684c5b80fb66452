"""What a served index knows of its rows besides their vectors: which rows may
be answered (the allow-bitmap FAISS searches through) and which rows' titles
hold a word (the exact matches of a search)."""

from __future__ import annotations

import numpy as np

from streamrec.embeddings.text import words

MAX_EXACT_MATCHES = 1000  # title-word matches considered per search


class AllowBitmap:
    """One bit a row, as FAISS's IDSelectorBitmap reads it (row r: byte r >> 3,
    bit r & 7); every row starts off."""

    def __init__(self, rows: int = 0):
        self.bits = np.zeros(0, dtype=np.uint8)
        self.grow(rows)

    @classmethod
    def of(cls, bits: np.ndarray) -> AllowBitmap:
        """A bitmap over bits computed elsewhere (a placement's rows)."""
        bitmap = cls()
        bitmap.bits = bits
        return bitmap

    def grow(self, rows: int) -> None:
        """Room for `rows` rows, doubling, so that adding rows one at a time stays cheap."""
        needed = (rows + 7) // 8
        if needed > len(self.bits):
            grown = np.zeros(max(needed, 2 * len(self.bits)), dtype=np.uint8)
            grown[: len(self.bits)] = self.bits
            self.bits = grown

    def set(self, rows: np.ndarray | list[int], allowed: bool) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        masks = (1 << (rows & 7)).astype(np.uint8)
        if allowed:
            np.bitwise_or.at(self.bits, rows >> 3, masks)
        else:
            np.bitwise_and.at(self.bits, rows >> 3, ~masks)

    def allows(self, row: int) -> bool:
        return bool(self.bits[row >> 3] >> (row & 7) & 1)

    def allows_each(self, rows: np.ndarray) -> np.ndarray:
        """A boolean per row of `rows`."""
        return (self.bits[rows >> 3] >> (rows & 7) & 1).astype(bool)


class TitleWords:
    """The rows whose title holds each word."""

    def __init__(self) -> None:
        self._rows: dict[str, set[int]] = {}

    def add(self, row: int, title: str) -> None:
        for word in set(words(title)):
            self._rows.setdefault(word, set()).add(row)

    def matches(self, query: str) -> set[int]:
        """The rows whose titles hold every word of `query` (none for a query without words)."""
        terms = set(words(query))
        if not terms:
            return set()
        return set.intersection(*sorted((self._rows.get(term, set()) for term in terms), key=len))
