"""A weighted partition assignor: members take partitions in proportion to their capacity weight.

Each member advertises its weight in the group protocol's user data (JSON ``{"weight": w}``), so a
GPU worker (default weight 4) takes about four times the partitions of a CPU worker (weight 1).
Two members with weights 3 and 1 over 8 partitions get 6 and 2. Shares are rounded with the
largest-remainder method (ties go to the larger weight, then the lower member id), per topic, and
each member gets a contiguous run of partitions. Weight 0 makes a standby member with no partitions
(unless every member has weight 0, then all count as 1).

Use it with aiokafka: ``AIOKafkaConsumer(..., partition_assignment_strategy=(WeightedAssignor(3),))``.
List it alone: aiokafka 0.14 sends one JoinGroup per listed strategy (its ``perform_group_join``
loops over the assignors around the send), and the second JoinGroup, whose protocol list differs,
restarts the rebalance; two members doing so can keep failing each other's SyncGroup for minutes.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

from aiaas.schemas.envelope import json_loads

log = logging.getLogger(__name__)


def default_weight(gpu_weight: float = 4.0, cpu_weight: float = 1.0) -> float:
    """``gpu_weight`` when onnxruntime can use CUDA here, else ``cpu_weight``."""
    try:
        import onnxruntime
    except ImportError:
        return cpu_weight
    return gpu_weight if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else cpu_weight


def shares(weights: Mapping[str, float], count: int) -> dict[str, int]:
    """How many of ``count`` items each member gets, in proportion to its weight."""
    if not weights:
        return {}
    w = {m: max(0.0, float(x)) for m, x in weights.items()}
    total = sum(w.values())
    if total <= 0:
        w = dict.fromkeys(w, 1.0)
        total = float(len(w))
    exact = {m: count * x / total for m, x in w.items()}
    out = {m: math.floor(e) for m, e in exact.items()}
    left = count - sum(out.values())
    order = sorted(w, key=lambda m: (-(exact[m] - out[m]), -w[m], m))
    for m in order[:left]:
        out[m] += 1
    return out


def decode_weight(user_data: bytes | None) -> float:
    """A member's advertised weight; members that advertise nothing (or junk) count as 1."""
    try:
        value = json_loads(user_data or b"{}").get("weight", 1.0)
        return float(value) if math.isfinite(float(value)) else 1.0
    except (ValueError, AttributeError, TypeError):
        return 1.0


class WeightedAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """Partitions in proportion to each member's advertised capacity weight."""

    name = "weighted"
    version = 0

    def __init__(self, weight: float = 1.0) -> None:
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight must be a finite number >= 0, got {weight}")
        self.weight = weight

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        data = json.dumps({"weight": self.weight}).encode()
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), data)

    def assign(
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        weights = {m: decode_weight(meta.user_data) for m, meta in members.items()}
        by_topic: dict[str, list[str]] = defaultdict(list)
        for member, meta in sorted(members.items()):
            for topic in meta.subscription:
                by_topic[topic].append(member)
        plan: dict[str, dict[str, list[int]]] = {m: {} for m in members}
        for topic, subscribers in sorted(by_topic.items()):
            partitions = sorted(cluster.partitions_for_topic(topic) or ())
            if not partitions:
                log.warning("no partition metadata for topic %s", topic)
                continue
            counts = shares({m: weights[m] for m in subscribers}, len(partitions))
            start = 0
            for member in subscribers:
                n = counts[member]
                plan[member][topic] = partitions[start : start + n]
                start += n
        return {
            m: ConsumerProtocolMemberAssignment(
                self.version, sorted((t, ps) for t, ps in topics.items() if ps), b""
            )
            for m, topics in plan.items()
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        """Nothing to remember: the assignment is a pure function of the weights."""
