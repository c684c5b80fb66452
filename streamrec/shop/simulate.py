"""A synthetic shop with a planted structure that a good model can learn.

What is planted, and why it is learnable:

- categories with their own title vocabularies (search has signal);
- items with a latent style vector and a long-tailed (Zipf) popularity;
- users with a taste over a few categories that drifts over time, and a
  latent style: within a category a user picks items by popularity times
  `exp(sharpness * user_style . item_style)`, so the best model knows more
  than category popularity;
- sessions of clicks in one category, purchases as a fraction of clicks,
  new items appearing over time (cold start) with a burst of novelty.

Seeded and deterministic: the same config gives the same events, ids and
timestamps (the simulated clock) in the same order. `ground_truth()` tells
each item's category and style and each user's current taste.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np

from streamrec.foundation.schema import Event, Item
from streamrec.shop.producer import ShopProducer

CATEGORY_NAMES = (
    "books",
    "garden",
    "kitchen",
    "toys",
    "sports",
    "music",
    "beauty",
    "outdoor",
    "office",
    "pets",
    "games",
    "tools",
    "baby",
    "shoes",
    "jewelry",
    "grocery",
    "electronics",
    "furniture",
    "automotive",
    "crafts",
)
_SYLLABLES = ("ka", "lo", "mi", "ru", "te", "sa", "no", "vi", "da", "pe", "zu", "fo", "ri", "ga", "bel", "tor")
_GENERIC_WORDS = ("classic", "new", "deluxe", "mini", "pro", "smart", "eco", "premium", "basic", "plus")
NOVELTY_EVENTS = 2000.0  # events over which a new item's popularity boost fades
SIM_START_TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the simulated clock's origin


@dataclass(frozen=True)
class ShopConfig:
    """The shape of the simulated shop; every field is a `simulate` flag."""

    users: int = 2000
    items: int = 2000
    categories: int = 12
    style_dim: int = 8
    seed: int = 7
    mean_session_clicks: float = 5.0
    purchase_rate: float = 0.08  # purchases per click
    tastes_per_user: int = 3
    taste_drift: float = 0.03  # chance per session that a taste moves to another category
    style_sharpness: float = 2.5
    zipf_exponent: float = 1.1
    new_item_every: int = 500  # events between new items (0: none)
    query_rate: float = 0.2  # clicks that came from a search
    events_per_sim_second: float = 20.0  # pace of the simulated clock


class Shop:
    """Generates catalog items and events; pure, no I/O."""

    def __init__(self, config: ShopConfig):
        if config.categories > 200 or config.categories < 1:
            raise ValueError("categories must be between 1 and 200")
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.clock = SIM_START_TS
        self.emitted = 0
        self._events_made = 0
        self.categories = [self._category_name(c) for c in range(config.categories)]
        self.vocabularies = [self._vocabulary(c) for c in range(config.categories)]
        self.items: list[Item] = []
        self._item_style = np.zeros((max(1, config.items), config.style_dim))
        self._item_weight = np.zeros(max(1, config.items))
        self._item_born = np.zeros(max(1, config.items))
        self._category_items: list[list[int]] = [[] for _ in self.categories]
        self._index: dict[str, tuple[int, int]] = {}  # item id -> (row, category)
        self._reactions = np.random.default_rng(config.seed + 1)  # apart: the stream stays reproducible
        for _ in range(config.items):
            self._new_item()
        self._user_style = self.rng.normal(size=(config.users, config.style_dim)) / math.sqrt(config.style_dim)
        self._user_tastes = [self._initial_taste() for _ in range(config.users)]
        activity = self.rng.permutation(1.0 / np.arange(1, config.users + 1) ** 0.8)
        self._user_activity_cdf = np.cumsum(activity / activity.sum())

    # --- the world ----------------------------------------------------------

    def _category_name(self, index: int) -> str:
        return CATEGORY_NAMES[index] if index < len(CATEGORY_NAMES) else f"category-{index}"

    def _vocabulary(self, category: int) -> list[str]:
        words: set[str] = set()
        while len(words) < 24:
            n = int(self.rng.integers(2, 4))
            words.add("".join(self.rng.choice(_SYLLABLES, size=n)) + self.categories[category][0])
        return sorted(words)

    def _new_item(self) -> Item:
        config, rng = self.config, self.rng
        index = len(self.items)
        category = int(rng.integers(config.categories))
        words = [*rng.choice(self.vocabularies[category], size=3, replace=False), rng.choice(_GENERIC_WORDS)]
        price = round(float(rng.lognormal(3.0 + 0.1 * category, 0.6)), 2)
        item = Item(
            f"i{index}",
            " ".join(str(w) for w in words).capitalize(),
            self.categories[category],
            price=price,
            ts=self.clock,
        )
        if index == len(self._item_style):  # grow by doubling: items keep arriving
            self._item_style = np.vstack([self._item_style, np.zeros_like(self._item_style)])
            self._item_weight = np.concatenate([self._item_weight, np.zeros_like(self._item_weight)])
            self._item_born = np.concatenate([self._item_born, np.zeros_like(self._item_born)])
        self._item_style[index] = rng.normal(size=config.style_dim) / math.sqrt(config.style_dim)
        # Long tail: weight 1/rank^s for a random rank within a category-sized list.
        rank = int(rng.integers(1, max(2, config.items // config.categories) + 1))
        self._item_weight[index] = 1.0 / rank**config.zipf_exponent
        self._item_born[index] = self.emitted
        self.items.append(item)
        self._category_items[category].append(index)
        self._index[item.item_id] = (index, category)
        return item

    def _popularity(self, candidates: np.ndarray) -> np.ndarray:
        """Base popularity; a new item's novelty boost fades over NOVELTY_EVENTS."""
        age = self.emitted - self._item_born[candidates]
        return self._item_weight[candidates] * (
            1.0 + 2.0 * np.exp(-age / NOVELTY_EVENTS) * (self._item_born[candidates] > 0)
        )

    def _initial_taste(self) -> np.ndarray:
        config = self.config
        taste = np.zeros(config.categories)
        favourites = self.rng.choice(
            config.categories, size=min(config.tastes_per_user, config.categories), replace=False
        )
        taste[favourites] = self.rng.dirichlet(np.ones(len(favourites)) * 2.0)
        return taste

    # --- the stream ---------------------------------------------------------

    def catalog(self) -> list[Item]:
        """The items that exist before the first event."""
        return list(self.items)

    def stream(self, max_events: int | None = None) -> Iterator[Item | Event]:
        """Events in time order, interleaved with newly created items."""
        config = self.config
        next_new_item = config.new_item_every or None
        while max_events is None or self.emitted < max_events:
            user = min(int(np.searchsorted(self._user_activity_cdf, self.rng.random())), config.users - 1)
            for record in self._session(user):
                if max_events is not None and self.emitted >= max_events:
                    return
                yield record
                self.emitted += 1
                if next_new_item is not None and self.emitted >= next_new_item:
                    next_new_item += config.new_item_every
                    yield self._new_item()

    def _session(self, user: int) -> list[Event]:
        config, rng = self.config, self.rng
        taste = self._user_tastes[user]
        if rng.random() < config.taste_drift:
            self._drift(taste)
        category = _draw(rng, taste, 1)[0]
        candidates = np.asarray(self._category_items[category])
        affinity = self._item_style[candidates] @ self._user_style[user]
        weights = self._popularity(candidates) * np.exp(config.style_sharpness * (affinity - affinity.max()))
        clicks = int(rng.geometric(1.0 / config.mean_session_clicks))
        picks = _draw(rng, weights, clicks)
        session_id = f"s{config.seed}-{self._events_made}"
        events = []
        for pick in picks:
            item = int(candidates[pick])
            query = self._query(item) if rng.random() < config.query_rate else None
            events.append(self._event("click", user, item, session_id, query))
        if rng.binomial(clicks, min(1.0, config.purchase_rate)):
            liked = int(candidates[picks[int(np.argmax(affinity[picks]))]])
            events.append(self._event("purchase", user, liked, session_id, None))
        return events

    def item(self, item_id: str) -> Item | None:
        found = self._index.get(item_id)
        return None if found is None else self.items[found[0]]

    def react(self, user_id: str, shown: list[str]) -> tuple[str | None, bool]:
        """What the shopper `user_id` does with the items shown: the one they
        click (None: none) and whether they buy it. An item appeals as much as
        the user likes its category, more the closer its style is to theirs;
        so a better answer draws more clicks."""
        known = [(item_id, *self._index[item_id]) for item_id in shown if item_id in self._index]
        user = int(user_id[1:]) if user_id[1:].isdigit() else -1
        if not known or not 0 <= user < self.config.users:
            return None, False
        taste, style = self._user_tastes[user], self._user_style[user]
        rows = np.asarray([row for _, row, _ in known])
        appeal = taste[[category for *_, category in known]] * np.exp(
            self.config.style_sharpness * (self._item_style[rows] @ style)
        )
        chances = np.minimum(0.5, 0.3 * appeal)
        rng = self._reactions
        if rng.random() >= 1.0 - np.prod(1.0 - chances):
            return None, False
        clicked = known[int(_draw(rng, chances, 1)[0])][0]
        return clicked, bool(rng.random() < self.config.purchase_rate * 2)

    def _query(self, item: int) -> str:
        """One or two words of the item's title, as a shopper would type them."""
        words = self.items[item].title.lower().split()[:3]
        first = int(self.rng.integers(len(words)))
        if self.rng.random() < 0.5:
            return words[first]
        return f"{words[first]} {words[(first + 1) % len(words)]}"

    def _drift(self, taste: np.ndarray) -> None:
        """Move one favourite category's weight to a category not yet liked."""
        liked = np.flatnonzero(taste)
        unliked = np.flatnonzero(taste == 0)
        if not len(unliked):
            return
        source = int(self.rng.choice(liked))
        target = int(self.rng.choice(unliked))
        taste[target], taste[source] = taste[source], 0.0

    def _event(self, kind: str, user: int, item: int, session_id: str, query: str | None) -> Event:
        self.clock += float(self.rng.exponential(1.0 / self.config.events_per_sim_second))
        self._events_made += 1
        return Event(
            event_id=f"e{self.config.seed}-{self._events_made}",
            type=kind,
            user_id=f"u{user}",
            item_id=self.items[item].item_id,
            ts=round(self.clock, 3),
            session_id=session_id,
            price=self.items[item].price if kind == "purchase" else None,
            quantity=1 if kind == "purchase" else None,
            query=query,
        )

    # --- what a model is scored against ---------------------------------------

    def ground_truth(self) -> dict:
        return {
            "config": asdict(self.config),
            "categories": self.categories,
            "items": {
                item.item_id: {"category": item.category, "style": [round(float(x), 4) for x in style]}
                for item, style in zip(self.items, self._item_style[: len(self.items)], strict=True)
            },
            "users": {
                f"u{u}": {
                    "taste": {self.categories[c]: round(float(w), 4) for c, w in enumerate(taste) if w > 0},
                    "style": [round(float(x), 4) for x in self._user_style[u]],
                }
                for u, taste in enumerate(self._user_tastes)
            },
        }


async def send_traffic(
    shop: Shop,
    producer: ShopProducer,
    *,
    max_events: int | None,
    rate: float | None,
    on_progress: Callable[[int], None] = lambda sent: None,
) -> int:
    """Send the catalog, then the stream; returns the events sent.

    With a `rate` (events/s) events carry the wall clock, as live traffic
    would; without one they go as fast as the producer takes them and keep the
    simulated clock, so that a run is reproducible to the timestamp.
    """
    await producer.send_catalog(shop.catalog())
    sent = 0
    started = time.monotonic()
    for record in shop.stream(max_events):
        if isinstance(record, Item):
            await producer.send_item(record)
            continue
        if rate:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            record = replace(record, ts=round(time.time(), 3))
        await producer.send_event(record)
        sent += 1
        if sent % 1000 == 0:
            on_progress(sent)
    await producer.flush()
    on_progress(sent)
    return sent


def _draw(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """n indices drawn with probability proportional to `weights` (with replacement);
    a cumulative sum and a binary search, much faster than `rng.choice(p=...)`."""
    cumulative = np.cumsum(weights)
    picks = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
    return np.minimum(picks, len(weights) - 1)
