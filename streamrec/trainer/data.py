"""What a refresh learns from: the cached event log, its catalog and its split
into training examples and held-out users, as the worker folds it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from streamrec.embeddings.neighbours import Neighbours
from streamrec.foundation.features import FeatureConfig, UserFeatures
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.privacy import Pseudonyms
from streamrec.foundation.schema import Event, Item
from streamrec.foundation.topics import Topics, ensure_topics
from streamrec.trainer.cache import InteractionCache, Refresh
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.examples import EventFilter, Split, build_examples


def cache_dir(data_dir: Path) -> Path:
    return data_dir / "trainer" / "cache"


def open_cache(settings: TrainerConfig) -> InteractionCache:
    window = settings.trainer
    return InteractionCache.open(cache_dir(settings.data_dir), window.max_events, window.cache_max_age_days * 86_400)


async def refresh_cache(
    settings: TrainerConfig,
    kafka: KafkaConnection,
    cache: InteractionCache,
    on_progress: Callable[[int], None] = lambda n: None,
) -> Refresh:
    """Read the records that arrived since the cache's offsets."""
    await ensure_topics(settings.kafka, kafka)
    topics = Topics.from_settings(settings.kafka)
    return await cache.refresh(
        kafka,
        topics,
        topics.trainer_group,
        settings.limits,
        Pseudonyms.from_settings(settings.access),
        on_progress,
    )


def catalog_of(cache: InteractionCache) -> list[Item]:
    """The catalog items, plus a bare item for every id seen only in events
    (a log replayed without an item file): the id alone still trains."""
    items = dict(cache.items)
    for event in cache.events:
        if event.item_id not in items:
            items[event.item_id] = Item(event.item_id, "", "")
    return list(items.values())


def split_of(
    events: list[Event], items: list[Item], features: FeatureConfig, teaches: EventFilter = lambda event: True
) -> Split:
    """Training, validation and test examples of the log, as the worker folds it."""
    return build_examples(
        events, {i.item_id: i for i in items}, features, purchase_weight=features.purchase_weight, teaches=teaches
    )


def neighbours_of(
    split: Split,
    items: list[Item],
    k: int,
    ease: float | None = None,
    transitions: float = 0.0,
    co_occurrence: str = "cosine",
) -> Neighbours | None:
    """Item neighbours from the training examples alone (no held-out window
    leaks in): EASE's weights at regularisation `ease` (with the next-click
    `transitions` at that share), else co-occurrence ("cosine" or "rp3beta")."""
    if k <= 0:
        return None
    row = {item.item_id: n for n, item in enumerate(items)}
    histories = [[row[i] for i in history if i in row] for history in split.histories.values()]
    if ease is not None:
        return Neighbours.from_ease(histories, len(items), k, ease, transitions)
    if co_occurrence == "rp3beta":
        return Neighbours.from_random_walks(histories, len(items), k)
    return Neighbours.from_histories(histories, len(items), k)


BASKET_GAP_S = 1800.0  # without session ids, a user's purchases each within this of the last are one basket
BOUGHT_TOGETHER_K = 50  # co-purchased items kept per item
BOUGHT_TOGETHER_MIN = 2  # baskets a pair must share: one basket is an accident, two are a habit


def baskets_of(events: list[Event]) -> list[list[str]]:
    """The items of each basket of two or more: a user's purchases in one
    session, or, for purchases without a session id, each within
    BASKET_GAP_S of the user's previous one (an invoice's lines share a time)."""
    open_baskets: dict[tuple[str, str | None], tuple[float, list[str]]] = {}
    baskets = []
    for event in sorted((e for e in events if e.type == "purchase"), key=lambda e: e.ts):
        key = (event.user_id, event.session_id)
        last = open_baskets.get(key)
        if last is None or (event.session_id is None and event.ts - last[0] > BASKET_GAP_S):
            basket: list[str] = []
            baskets.append(basket)
        else:
            basket = last[1]
        basket.append(event.item_id)
        open_baskets[key] = (event.ts, basket)
    return [basket for basket in baskets if len(set(basket)) > 1]


def bought_together_of(events: list[Event], items: list[Item], k: int = BOUGHT_TOGETHER_K) -> Neighbours | None:
    """Items bought in the same baskets (cosine of co-occurrence, pairs in
    at least BOUGHT_TOGETHER_MIN baskets), over the rows of `items`; None
    where the log has no basket of two."""
    row = {item.item_id: n for n, item in enumerate(items)}
    baskets = [[row[i] for i in basket if i in row] for basket in baskets_of(events)]
    if not baskets:
        return None
    return Neighbours.from_histories(baskets, len(items), k, min_together=BOUGHT_TOGETHER_MIN)


def latest_states(split: Split, n: int) -> list[UserFeatures]:
    """Up to `n` users' newest states known to the trainer: the queries a version's index is tuned with."""
    newest: dict[str, UserFeatures] = {}
    for state in reversed([*split.train.states, *split.valid.states, *split.test.states]):
        newest.setdefault(state.user_id, state)
        if len(newest) >= n:
            break
    return list(newest.values())
