"""Consumer-group assignment that keeps co-partitioned topics together and
tells every worker who owns which partition.

Partition number p of every subscribed topic goes to the same worker, so a
user's clicks, purchases and state (changelog partition p) are never split.
Each member advertises its HTTP URL (with a signature proving it holds an
admin key, when keys are set) and the partitions it holds; the leader keeps
partitions where they are as far as balance allows (fewer restores on a
rebalance) and sends everyone the full owner map, which the worker's HTTP
endpoint uses to forward a request for a user held elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

log = logging.getLogger(__name__)


class Owner(NamedTuple):
    """A partition's owner as it advertised itself: its URL and signature."""

    url: str
    signature: str

    @classmethod
    def from_canonical_url(cls, url: str) -> Owner:
        """Faust's members advertise one URL, with the signature as its path."""
        parts = urlsplit(url)
        return cls(f"{parts.scheme}://{parts.netloc}", parts.path.strip("/"))


def advertised(user_data: bytes) -> Owner | None:
    """The worker a member's metadata advertises: this assignor's `url` and
    `sig`, or a Faust member's canonical URL; None for anything else."""
    try:
        info = json.loads(user_data or b"{}")
    except ValueError:
        return None
    url = info.get("url") if isinstance(info, dict) else None
    if not isinstance(url, str) or not url:
        return None
    return Owner(url, str(info["sig"])) if "sig" in info else Owner.from_canonical_url(url)


async def group_workers(admin: AIOKafkaAdminClient, group: str) -> list[Owner]:
    """The workers in the group now, as each advertised itself (the console's
    workers table; the caller decides which URLs it trusts)."""
    workers: list[Owner] = []
    for response in await admin.describe_consumer_groups([group]):
        for described in response.groups:
            for member in described[5]:  # (member_id, client_id, client_host, metadata, assignment)
                with contextlib.suppress(Exception):  # a member that is not a worker is left out
                    owner = advertised(ConsumerProtocolMemberMetadata.decode(member[3]).user_data)
                    if owner is not None:
                        workers.append(owner)
    return workers


def balanced_owners(partitions: list[int], members: Mapping[str, list[int]]) -> dict[int, str]:
    """Owner of each partition: every member gets floor or ceil of its share,
    keeping the partitions it already held where that fits.

    `members` maps member id to the partitions it held before.
    """
    ids = sorted(members)
    base, extra = divmod(len(partitions), len(ids))
    quota = {member: base + (1 if i < extra else 0) for i, member in enumerate(ids)}
    owners: dict[int, str] = {}
    wanted = set(partitions)
    for member in ids:
        for partition in sorted(members[member]):
            if partition in wanted and partition not in owners and quota[member] > 0:
                owners[partition] = member
                quota[member] -= 1
    free = iter(sorted(p for p in partitions if p not in owners))
    for member in ids:
        for _ in range(quota[member]):
            owners[next(free)] = member
    return owners


class CopartitionedAssignor(AbstractPartitionAssignor):
    """One instance per worker: it carries that worker's URL and, after each
    rebalance, the group's owner map."""

    name = "streamrec-copartitioned"
    version = 0

    def __init__(self, url: str, signature: str = ""):
        self.url = url
        self.signature = signature
        self.held: list[int] = []
        self.owners: dict[int, Owner] = {}

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:  # type: ignore[override]
        user_data = json.dumps({"url": self.url, "sig": self.signature, "held": self.held}).encode()
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), user_data)

    def assign(  # type: ignore[override]
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        info = {member: json.loads(meta.user_data or b"{}") for member, meta in members.items()}
        topics = sorted({topic for meta in members.values() for topic in meta.subscription})
        numbers = sorted({p for topic in topics for p in (cluster.partitions_for_topic(topic) or ())})
        owners = balanced_owners(numbers, {m: info[m].get("held", []) for m in members})
        advertised = {p: [info[owner].get("url", ""), info[owner].get("sig", "")] for p, owner in owners.items()}
        user_data = json.dumps({"owners": advertised}).encode()
        assignment = {}
        for member in members:
            mine = {p for p, owner in owners.items() if owner == member}
            per_topic = [
                (topic, sorted(mine & (cluster.partitions_for_topic(topic) or set())))
                for topic in topics
                if topic in members[member].subscription
            ]
            assignment[member] = ConsumerProtocolMemberAssignment(self.version, per_topic, user_data)
        log.info(
            "assigned partitions: %s",
            {info[m].get("url"): sorted(p for p, o in owners.items() if o == m) for m in members},
        )
        return assignment

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:  # type: ignore[override]
        owners = json.loads(assignment.user_data or b"{}").get("owners", {})
        self.owners = {int(p): Owner(str(url), str(sig)) for p, (url, sig) in owners.items()}
        self.held = sorted({p for _, partitions in assignment.assignment for p in partitions})
