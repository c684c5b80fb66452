"""The shop client SDK: what a shop's Python code imports to feed streamrec.

    from streamrec.shop import ShopProducer

    async with ShopProducer("127.0.0.1:9092") as shop:
        await shop.click("u7", "i42", query="red mug")

Events are keyed and partitioned as the workers expect (murmur2 of the
user id); `Shop` simulates a shop's traffic and `read_events`/`send_replay`
turn an interaction log into events. With pseudonymisation on, a consumer
of `recs.recommendations` finds its users' answers under
`Pseudonyms(key)(user_id)`.
"""

from streamrec.foundation.privacy import Pseudonyms
from streamrec.shop.producer import ProduceError, ShopProducer
from streamrec.shop.replay import EventColumns, ItemColumns, ReplayError, read_events, read_items, send_replay
from streamrec.shop.simulate import Shop, ShopConfig, send_traffic

__all__ = [
    "EventColumns",
    "ItemColumns",
    "ProduceError",
    "Pseudonyms",
    "ReplayError",
    "Shop",
    "ShopConfig",
    "ShopProducer",
    "read_events",
    "read_items",
    "send_replay",
    "send_traffic",
]
