"""The text encoder's tokens: words and trigrams."""

from __future__ import annotations

from streamrec.embeddings.text import tokens


def test_text_tokens_share_trigrams_between_close_words():
    mug, mugs = set(tokens("Red Mug")), set(tokens("red mugs!"))
    assert {"w:red", "w:mug", "t:#mu", "t:mug"} <= mug
    assert len(mug & mugs) >= 6
