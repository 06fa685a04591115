"""Weighted assignor: proportional shares, contiguous runs, every partition assigned exactly once."""

from __future__ import annotations

import json

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from hypothesis import given
from hypothesis import strategies as st

from aiaas.streams.assignors import WeightedAssignor, decode_weight, shares


class Cluster:
    """Just the one call an assignor makes on cluster metadata."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        n = self.partitions.get(topic)
        return None if n is None else set(range(n))


def member(weight: float | None, topics: list[str]) -> ConsumerProtocolMemberMetadata:
    data = b"" if weight is None else json.dumps({"weight": weight}).encode()
    return ConsumerProtocolMemberMetadata(0, topics, data)


def test_three_to_one_over_eight_gives_six_and_two() -> None:
    members = {"a": member(3, ["t"]), "b": member(1, ["t"])}
    out = WeightedAssignor(1).assign(Cluster({"t": 8}), members)  # type: ignore[arg-type]
    assert out["a"].partitions() and len(out["a"].partitions()) == 6
    assert [tp.partition for tp in out["b"].partitions()] == [6, 7]


def test_metadata_advertises_the_weight_and_bad_user_data_counts_as_one() -> None:
    meta = WeightedAssignor(2.5).metadata(["x", "a"])
    assert decode_weight(meta.user_data) == 2.5 and meta.subscription == ["a", "x"]
    assert decode_weight(b"junk") == decode_weight(b"") == decode_weight(b'{"weight": "nan"}') == 1.0
    with pytest.raises(ValueError):
        WeightedAssignor(-1)


def test_members_only_get_topics_they_subscribe_and_zero_weight_is_standby() -> None:
    members = {"a": member(1, ["t", "u"]), "b": member(0, ["t"]), "c": member(None, ["u"])}
    out = WeightedAssignor().assign(Cluster({"t": 4, "u": 2}), members)  # type: ignore[arg-type]
    got = {m: sorted((tp.topic, tp.partition) for tp in a.partitions()) for m, a in out.items()}
    assert got["a"] == [("t", 0), ("t", 1), ("t", 2), ("t", 3), ("u", 0)]
    assert got["b"] == [] and got["c"] == [("u", 1)]


def test_all_zero_weights_share_equally() -> None:
    assert shares({"a": 0, "b": 0}, 4) == {"a": 2, "b": 2}


@given(st.dictionaries(st.text(min_size=1, max_size=4), st.floats(0.01, 100), min_size=1, max_size=8),
       st.integers(0, 64))
def test_shares_are_proportional_within_one(weights: dict[str, float], count: int) -> None:
    out = shares(weights, count)
    assert sum(out.values()) == count
    total = sum(weights.values())
    for m, n in out.items():
        assert abs(n - count * weights[m] / total) < 1.0 + 1e-9
