"""Simulated shoppers who answer the served recommendations.

Each asks the API for a placement's answer, clicks what appeals to them
(`Shop.react`) and buys some of it, sending the answer's recommendation id
back with each event, as a shop's front end would. The demo runs them beside
its traffic with an experiment on their placement, so the console shows each
variant's click-through and conversion live.
"""

from __future__ import annotations

import asyncio
import logging
import random

import httpx

from streamrec.shop.producer import ShopProducer
from streamrec.shop.simulate import Shop

log = logging.getLogger(__name__)

PLACEMENT = "home"
EXPERIMENT = {  # the model's own answer against a more diverse one
    "name": "diversity",
    "variants": [{"name": "as-ranked", "share": 0.5}, {"name": "diverse", "share": 0.5, "diversity": 0.6}],
}
SHOWN = 5  # items a shopper looks at


async def start_experiment(http: httpx.AsyncClient, stop: asyncio.Event) -> None:
    """The demo's experiment on PLACEMENT, tried each second until the server takes it."""
    while not stop.is_set():
        try:
            answer = await http.put(f"/experiments/{PLACEMENT}", json=EXPERIMENT)
            if answer.is_success:
                return
            log.debug("the experiment was not taken yet: %s", answer.text[:200])
        except httpx.HTTPError:
            pass  # the server is not up yet
        await asyncio.sleep(1.0)


async def shop_from_answers(
    shop: Shop, producer: ShopProducer, http: httpx.AsyncClient, stop: asyncio.Event, per_s: float = 20.0
) -> None:
    """Shoppers (active ones more often) each shown PLACEMENT's answer, `per_s` times a second."""
    await start_experiment(http, stop)
    draw = random.Random(shop.config.seed)
    while not stop.is_set():
        await asyncio.sleep(1.0 / per_s)
        user = f"u{draw.randrange(shop.config.users)}"
        try:
            answer = await http.get(f"/recommendations/{user}", params={"placement": PLACEMENT, "k": SHOWN})
        except httpx.HTTPError:
            continue
        if not answer.is_success:
            continue
        body = answer.json()
        clicked, bought = shop.react(user, [item["item_id"] for item in body["items"]])
        if clicked is None:
            continue
        answered = body["recommendation_id"]
        await producer.click(user, clicked, recommendation_id=answered)
        item = shop.item(clicked)
        if bought and item is not None:
            await producer.purchase(user, clicked, recommendation_id=answered, price=item.price, quantity=1)
