"""What a compiled source decoder gives back for a batch of record values.

Decoders take the raw values of a poll (``list[bytes]``) and return numpy batches; a record that
cannot be decoded is not an exception but a ``Rejection`` naming the field and the reason, so the
caller dead-letters it and goes on with the rest of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Rejection:
    index: int  # position of the record in the batch given to decode
    field: str  # the field path at fault ("" when the record as a whole is unreadable)
    reason: str  # e.g. "missing", "not a number", "not in vocabulary", "unknown schema id 7"


@dataclass
class Decoded:
    x: np.ndarray  # float32 [len(ok), source.width()]
    ok: np.ndarray  # int64 indices (into the batch) of the decoded records, in order
    y: np.ndarray | None = None  # labels of the ok records (float32, or int64 class index)
    passthrough: list[dict[str, Any]] = field(default_factory=list)  # per ok record, when asked
    rejected: list[Rejection] = field(default_factory=list)
    schema_ids: set[int] = field(default_factory=set)  # Avro writer schemas seen (lineage)
    keys: list[Any] | None = None  # per ok record, the value at source.key (None where absent)


class Decoder(Protocol):
    def decode(self, values: Sequence[bytes]) -> Decoded: ...
