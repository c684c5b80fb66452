"""The co-partitioned assignor: one owner per partition, balanced, sticky."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from streamrec.streams.assignor import CopartitionedAssignor, Owner, advertised, balanced_owners


@given(
    st.integers(1, 64),
    st.dictionaries(
        st.text("abc", min_size=1, max_size=3), st.lists(st.integers(0, 70), max_size=10), min_size=1, max_size=8
    ),
)
def test_every_partition_has_one_owner_and_load_is_balanced(n, held):
    owners = balanced_owners(list(range(n)), held)
    assert sorted(owners) == list(range(n))
    loads = [sum(1 for o in owners.values() if o == m) for m in held]
    assert max(loads) - min(loads) <= 1


def test_partitions_stay_with_their_owner_when_a_member_joins():
    before = balanced_owners(list(range(8)), {"a": [], "b": []})
    held = {m: [p for p, o in before.items() if o == m] for m in ("a", "b")}
    after = balanced_owners(list(range(8)), {**held, "c": []})
    moved = [p for p in range(8) if before[p] != after[p]]
    assert len(moved) == 2  # only what the newcomer needs (8 // 3 rounded down)


def test_a_member_advertises_its_url_in_either_engines_metadata():
    batch = CopartitionedAssignor("http://w1:8001", "sig1").metadata(["clicks"]).user_data
    assert advertised(batch) == Owner("http://w1:8001", "sig1")
    faust = json.dumps({"url": "http://w2:8002/sig2", "assignment": {}, "changelog_distribution": {}}).encode()
    assert advertised(faust) == Owner("http://w2:8002", "sig2")
    for stranger in (b"", b"\xc1 not json", b"[1]", b'{"url": 7}', b'{"other": "x"}'):
        assert advertised(stranger) is None
