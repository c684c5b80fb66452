"""Titles and search queries as bags of hashed tokens: words and character
trigrams, so that "mug", "mugs" and a typo still share most of their rows.
Nothing is downloaded: the vocabulary is the hash space."""

from __future__ import annotations

import re

import numpy as np

from streamrec.embeddings.hashing import bucket_ids

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def tokens(text: str) -> list[str]:
    """Words ("w:mug") and the character trigrams of each word ("t:#mu", "t:mug", "t:ug#")."""
    out = []
    for word in words(text):
        out.append(f"w:{word}")
        padded = f"#{word}#"
        out.extend(f"t:{padded[i : i + 3]}" for i in range(len(padded) - 2))
    return out


def token_matrix(texts: list[str], buckets: int, max_tokens: int) -> np.ndarray:
    """[len(texts), max_tokens] bucket numbers, 0-padded (words come first, so
    a long title is cut in its trigrams before its words)."""
    out = np.zeros((len(texts), max_tokens), dtype=np.int64)
    for row, text in enumerate(texts):
        toks = tokens(text)
        ordered = [t for t in toks if t.startswith("w:")] + [t for t in toks if t.startswith("t:")]
        ids = [bucket_ids(token, buckets, 1)[0] for token in ordered[:max_tokens]]
        out[row, : len(ids)] = ids
    return out
