"""The freshness benchmark's shop: clicks from random users, sent from a
process of their own.

A shop's producers never run inside a worker, and in the worker's process the
producer took about a quarter of the event loop the worker and its publisher
measure themselves on. The child imports no model and no index: it starts in
about a second and holds one core at most.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from multiprocessing.connection import Connection

import numpy as np

from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.schema import Event
from streamrec.foundation.settings import Settings
from streamrec.shop.producer import ShopProducer

STARTUP_TIMEOUT_S = 60.0


def random_click(rng: np.random.Generator, users: int, items: int, n: int) -> Event:
    return Event(
        f"f{n}-{uuid.uuid4().hex[:8]}", "click", f"u{rng.integers(users)}", f"i{rng.integers(items)}", time.time()
    )


async def send_paced(
    producer: ShopProducer, users: int, items: int, rate: float, seconds: float, rng: np.random.Generator, first: int
) -> int:
    """Clicks from random users at `rate` per second, stamped when sent."""
    tick, sent, started = 0.01, 0, time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        for _ in range(int(elapsed * rate) - sent):
            await producer.send_event(random_click(rng, users, items, first + sent))
            sent += 1
        await asyncio.sleep(tick)
    return sent


def random_clicks(rng: np.random.Generator, users: int, items: int, count: int, first: int) -> list[Event]:
    """A burst's clicks, made before it is timed: a shop's producers run on
    machines of their own, and making them was about half of this process's
    CPU during a burst, on the two cores the worker measures itself on."""
    return [random_click(rng, users, items, first + n) for n in range(count)]


async def send_burst(producer: ShopProducer, clicks: list[Event]) -> int:
    """The clicks as fast as the producer takes them, flushed."""
    for click in clicks:
        await producer.send_event(click)
    await producer.flush()
    return len(clicks)


class Traffic:
    """The shop's process, told what to send: `paced` and `burst` return how
    many clicks it sent, once they are sent; `prepare_burst` makes the
    burst's clicks beforehand (`random_clicks`)."""

    def __init__(self, settings: Settings, kafka: KafkaConnection, users: int, items: int, seed: int = 0):
        context = multiprocessing.get_context("spawn")  # no copy of the worker's loop and threads
        self._commands, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child_end, settings, kafka.to_child(), users, items, seed),
            name="bench-traffic",
            daemon=True,
        )

    async def __aenter__(self) -> Traffic:
        self._process.start()
        if not await asyncio.to_thread(self._commands.poll, STARTUP_TIMEOUT_S):
            raise RuntimeError(f"the traffic process did not start within {STARTUP_TIMEOUT_S:.0f} s")
        self._reply(self._commands.recv())
        return self

    async def __aexit__(self, *exc) -> None:
        if self._process.is_alive():
            self._commands.send(None)
            await asyncio.to_thread(self._process.join, 10.0)
        if self._process.is_alive():
            self._process.kill()

    async def paced(self, rate: float, seconds: float) -> int:
        return await self._ask(("paced", rate, seconds))

    async def prepare_burst(self, count: int) -> int:
        return await self._ask(("prepare", count))

    async def burst(self) -> int:
        return await self._ask(("burst",))

    async def _ask(self, command: tuple) -> int:
        self._commands.send(command)
        return self._reply(await asyncio.to_thread(self._commands.recv))

    @staticmethod
    def _reply(reply: tuple[str, object]):
        kind, value = reply
        if kind == "error":
            raise RuntimeError(f"the traffic process failed: {value}")
        return value


def _serve(
    commands: Connection, settings: Settings, kafka_sent: tuple[str, dict[str, bool]], users: int, items: int, seed: int
):
    kafka = KafkaConnection.from_parent(settings.kafka, kafka_sent)
    try:
        asyncio.run(_send_when_told(commands, settings, kafka, users, items, np.random.default_rng(seed)))
    except Exception as exc:  # the parent raises it
        commands.send(("error", repr(exc)))


async def _send_when_told(
    commands: Connection, settings: Settings, kafka: KafkaConnection, users: int, items: int, rng: np.random.Generator
) -> None:
    sent, burst = 0, []
    async with ShopProducer(kafka, settings) as producer:
        commands.send(("ready", 0))
        while (command := await asyncio.to_thread(commands.recv)) is not None:
            count = 0
            if command[0] == "paced":
                count = await send_paced(producer, users, items, *command[1:], rng, first=sent)
            elif command[0] == "prepare":
                burst = random_clicks(rng, users, items, command[1], first=sent)
            else:
                count, burst = await send_burst(producer, burst), []
            sent += count
            commands.send(("sent", count))
