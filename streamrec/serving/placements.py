"""A placement's rule applied to a served index: the rows its filters allow
(a bitmap the search goes through, so a filtered item is never found, however
narrow the filter), then the boosts' order and the promoted slot."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from streamrec.foundation.rules import Rule
from streamrec.foundation.schema import Item, ScoredItem
from streamrec.serving.rows import AllowBitmap

REFRESH_S = 60.0  # items age with the clock: a rule's rows are recomputed at least this often
MAX_CACHED = 64  # rules whose rows are kept (placements in use at once)


class RuleRows:
    """Per rule, the rows its filters let through, recomputed when the
    catalog changed (`generation`) or REFRESH_S passed; each answer ANDs them
    with the index's own bitmap (stock, stale rows), which changes more often."""

    def __init__(self) -> None:
        self._cache: dict[Rule, tuple[int, float, np.ndarray]] = {}

    def allowed(
        self, rule: Rule | None, base: AllowBitmap, row_ids: list[str], items: Mapping[str, Item], generation: int
    ) -> AllowBitmap:
        if rule is None or not rule.filters:
            return base
        now = time.time()
        cached = self._cache.get(rule)
        if cached is None or cached[0] != generation or now - cached[1] > REFRESH_S or len(cached[2]) < len(base.bits):
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            cached = self._cache[rule] = (generation, now, _rule_bits(rule, row_ids, items, now, len(base.bits)))
        return AllowBitmap.of(base.bits & cached[2][: len(base.bits)])


def _rule_bits(rule: Rule, row_ids: list[str], items: Mapping[str, Item], now: float, size: int) -> np.ndarray:
    """One bit per row (FAISS's bitmap layout): whether the row's item passes the rule's filters."""
    passes = np.fromiter(
        ((item := items.get(item_id)) is not None and rule.allows(item, now) for item_id in row_ids),
        dtype=bool,
        count=len(row_ids),
    )
    bits = np.packbits(passes, bitorder="little")
    return np.concatenate([bits, np.zeros(max(0, size - len(bits)), dtype=np.uint8)])


def boosted(found: list[ScoredItem], rule: Rule | None, item_of: Callable[[str], Item | None]) -> list[ScoredItem]:
    """`found` reordered by score plus each matched boost's weight times the
    candidates' score spread (a weight of 1 outranks every unmatched candidate)."""
    if rule is None or not rule.boosts or not found:
        return found
    now = time.time()
    scores = [s.score for s in found]
    spread = (max(scores) - min(scores)) or 1.0
    lifted = [replace(s, score=s.score + spread * rule.boost(item_of(s.item_id), now)) for s in found]
    return sorted(lifted, key=lambda s: -s.score)


def promoted(answer: list[ScoredItem], rule: Rule | None, k: int, may_show: Callable[[str], bool]) -> list[ScoredItem]:
    """The rule's promoted items that `may_show` (in stock, allowed, not the
    user's purchases) placed from its slot on (or as the answer's last items,
    where the slot is beyond k), each once, marked `promoted`."""
    if rule is None or not rule.promoted:
        return answer
    shown = [item_id for item_id in dict.fromkeys(rule.promoted) if may_show(item_id)][:k]
    if not shown:
        return answer
    rest = [s for s in answer if s.item_id not in shown]
    slot = max(0, min(rule.promoted_slot, len(rest), k - len(shown)))  # a slot past k is the last ones
    score = rest[slot - 1].score if slot else (rest[0].score if rest else 1.0)
    placed = [ScoredItem(item_id, score, source="promoted") for item_id in shown]
    return [*rest[:slot], *placed, *rest[slot:]][:k]
