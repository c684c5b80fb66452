"""Every faust-streaming internal the faust engine relies on, in one place.

Faust offers no public hook for seven things the engine needs, so it reaches
into faust-streaming 0.15's private API here and nowhere else:

1. `Consumer._commit`: flush the tables' changed rows before offsets are
   committed, commit what the agents folded at a clean stop, and hold
   commits (the fault tests);
2. `Consumer._commit_offsets` and `_committed_offset`: a commit the group
   refused is not taken as done (see `forget_refused_commits`);
3. `Producer._ensure_producer()`: the aiokafka producer under Faust's, whose
   record batches carry those rows;
4. `Consumer.highwaters`: where a restore ends (tansu's ListOffsets answers a
   batch short);
5. `Consumer._read_offset`: how far an agent has read, for the lag;
6. `Table._new_store()`: the store that holds the batch engine's rows;
7. `Consumer._thread._consumer`: the aiokafka consumer under Faust's, to
   leave the group on tansu (see `streamrec.foundation.kafka.leave_even_at_generation_zero`).

`check_installed()` refuses a faust-streaming outside the tested range with
a message that says what to install, instead of failing somewhere inside.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from typing import Any

import faust

from streamrec.foundation.kafka import leave_even_at_generation_zero

TESTED = (0, 15)  # faust-streaming 0.15.x: the pin of pyproject.toml's faust extra


class FaustVersionError(RuntimeError):
    """The installed faust-streaming is outside the range the engine was tested with."""


def check_installed(version: str | None = None) -> None:
    """Fail with a clear message unless faust-streaming 0.15.x is installed."""
    version = version or metadata.version("faust-streaming")
    major_minor = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if major_minor != TESTED:
        raise FaustVersionError(
            f"the faust engine relies on faust-streaming {TESTED[0]}.{TESTED[1]}.x internals "
            f"(streams/faust_compat.py) and found {version}: pip install 'faust-streaming>=0.15,<0.16'"
        )


def commit_after(consumer: Any, before: Callable[[Any], Awaitable[None]]) -> None:
    """Every offset commit of `consumer` first awaits `before(producer)`, with
    the app's aiokafka producer; if that raises, the commit fails."""
    commit = consumer._commit
    producer = consumer.app.producer

    async def flush_then_commit(offsets: Any) -> bool:
        await before(producer._ensure_producer())
        return await commit(offsets)

    consumer._commit = flush_then_commit


def forget_refused_commits(consumer: Any) -> None:
    """A commit the group refused leaves its partitions' committed offsets
    unknown, as after a fresh assignment. Faust records the offsets as
    committed even when the broker refused them ("already rebalanced", a
    rebalance under way); the events redelivered after that rebalance fell
    below the recorded offset, their acks were dropped, they were never
    committed, and the next owner of the partition met them again."""
    commit_offsets = consumer._commit_offsets

    async def commit_or_forget(offsets: Any, start_new_transaction: bool = True) -> bool:
        did_commit = await commit_offsets(offsets, start_new_transaction=start_new_transaction)
        if not did_commit:
            for tp in offsets:
                consumer._committed_offset.pop(tp, None)
        return did_commit

    consumer._commit_offsets = commit_or_forget


async def commit_positions(consumer: Any, positions: Mapping[Any, int]) -> bool:
    """Commit these next offsets of the partitions still assigned, after the
    flush of `commit_after` (Faust crashes on a commit of no offsets)."""
    assigned = consumer.assignment()
    offsets = {tp: offset for tp, offset in positions.items() if tp in assigned}
    return bool(offsets) and await consumer._commit(offsets)


def hold_commits(consumer: Any) -> None:
    """From now on `consumer` commits nothing (what a killed process leaves)."""

    async def no_commit(offsets: Any) -> bool:
        return False

    consumer._commit = no_commit


def leave_on_stop(consumer: Any) -> None:
    """`consumer`'s stop leaves its group even at tansu's generation 0."""
    underlying = consumer._thread._consumer
    if underlying is not None:
        leave_even_at_generation_zero(underlying)


def restore_to(consumer: Any, highwaters: Callable[..., Awaitable[dict]]) -> None:
    """Table restores read each changelog partition up to what `highwaters(*tps)` answers."""
    consumer.highwaters = highwaters


def read_offset(consumer: Any, tp: Any) -> int | None:
    """The offset an agent last read in `tp` (None before the first)."""
    return consumer._read_offset.get(tp)


class StoreTable(faust.Table):
    """A Faust table whose store comes from `make_store()`, the one hook a subclass fills."""

    def make_store(self) -> Any:
        raise NotImplementedError

    def _new_store(self) -> Any:
        return self.make_store()
