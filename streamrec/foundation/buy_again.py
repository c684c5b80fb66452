"""Buy again: a user's own purchases ranked for buying again.

Shops' customers re-buy (consumables, a wholesaler restocking), but the
recommendations rank items the user has not had (and are judged that way),
so "what will they buy again" is its own question with its own answer: each
item the user bought, scored by how often and how lately, in event time,
`times bought x 2^(-age / half-life)`. A long half-life ranks by frequency,
a short one by recency; the default sits between (`docs/serving.md`).
"""

from __future__ import annotations

import heapq

from streamrec.foundation.features import UserFeatures, decay


def buy_again(user: UserFeatures, half_life_s: float, k: int) -> list[tuple[str, float, int, float]]:
    """The user's top `k` purchases: (item id, score, times bought, last bought), best first. Ages
    count back from the user's latest event, so a replayed log ranks as it did when it was live."""
    scored = (
        (item, count * decay(user.last_ts - ts, half_life_s), count, ts)
        for item, count, ts in zip(user.purchased, user.purchase_counts, user.purchase_ts, strict=True)
    )
    return heapq.nlargest(k, scored, key=lambda entry: (entry[1], entry[3]))
