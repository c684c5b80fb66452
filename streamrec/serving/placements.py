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

REFRESH_S = 60.0  # items age with the clock: an age-bound rule's rows are recomputed at least this often
MAX_CACHED = 64  # rules whose rows are kept (placements in use at once)
MAX_LOGGED = 1_000_000  # touched rows remembered; beyond, the log restarts and every rule is recomputed once


class RuleRows:
    """Per rule, the rows its filters let through; each answer ANDs them with
    the index's own bitmap (stock, stale rows), which changes more often.

    The index logs every row the catalog touches (`touched`); a rule's rows
    are brought up to date from the log, row by row (a stock change in a
    million-item catalog costs one row, not a million), and recomputed whole
    only when most rows changed or its age bound may have moved."""

    def __init__(self) -> None:
        self.touched: list[int] = []
        self._cache: dict[Rule, tuple[int, float, AllowBitmap]] = {}  # rule -> (log position, computed at, rows)

    def touch(self, rows: list[int]) -> None:
        if len(self.touched) + len(rows) > MAX_LOGGED:
            self.touched, self._cache = [], {}
        self.touched.extend(rows)

    def allowed(
        self, rule: Rule | None, base: AllowBitmap, row_ids: list[str], items: Mapping[str, Item]
    ) -> AllowBitmap:
        """`base` narrowed to the rows `rule`'s filters let through."""
        if rule is None or not rule.filters:
            return base
        rows = self._rows(rule, row_ids, items).bits
        both = np.zeros_like(base.bits)  # rows past the rule's bitmap are off: none passes unlogged
        shared = min(len(both), len(rows))
        both[:shared] = base.bits[:shared] & rows[:shared]
        return AllowBitmap.of(both)

    def _rows(self, rule: Rule, row_ids: list[str], items: Mapping[str, Item]) -> AllowBitmap:
        now, logged = time.time(), len(self.touched)
        cached = self._cache.get(rule)
        aged = cached is not None and rule.max_age_days is not None and now - cached[1] > REFRESH_S
        if cached is None or aged or logged - cached[0] > len(row_ids) // 4:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            cached = (logged, now, _passing(rule, range(len(row_ids)), row_ids, items, now))
        elif cached[0] < logged:
            touched = sorted(set(self.touched[cached[0] :]))
            passing = _passing(rule, touched, row_ids, items, now)
            rows = cached[2]
            rows.grow(len(row_ids))
            rows.set(touched, True)
            rows.set([row for row in touched if not passing.allows(row)], False)
            cached = (logged, cached[1], rows)
        self._cache[rule] = cached
        return cached[2]


def _passing(rule: Rule, rows, row_ids: list[str], items: Mapping[str, Item], now: float) -> AllowBitmap:
    """A bitmap of `rows` whose items pass the rule's filters (every other row off)."""
    bitmap = AllowBitmap(len(row_ids))
    bitmap.set([row for row in rows if (item := items.get(row_ids[row])) is not None and rule.allows(item, now)], True)
    return bitmap


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
