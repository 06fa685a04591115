"""Split payloads larger than one record into chunks and put them back together, checked by sha256.

Chunks of one payload go to one partition, in order, each with headers ``chunk-id``,
``chunk-index``, ``chunk-count``, ``chunk-sha256`` (of the whole payload). The reassembler keeps
a bounded number of partial payloads and reports truncated or corrupt ones as errors.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field

from aiaas.schemas.errors import ChunkError
from aiaas.streams import headers as h


@dataclass(slots=True)
class Chunk:
    data: bytes
    headers: h.Headers


class Pieces:
    """A payload held as the consecutive pieces it is made of (a tensor record's header and views
    of the arrays it carries: ``aiaas.streams.codecs.pack_pieces``), never joined in full: the
    producer cuts its chunks from the pieces, so a sender holds the arrays and the chunks in
    flight, not a record-sized copy beside them. The pieces must not change until it is sent."""

    __slots__ = ("nbytes", "parts")

    def __init__(self, parts: Iterable[bytes | memoryview]) -> None:
        self.parts = [memoryview(p).cast("B") for p in parts]
        self.nbytes = sum(p.nbytes for p in self.parts)

    def __len__(self) -> int:
        return self.nbytes

    def join(self) -> bytes:
        """The payload as one bytes object (for one that fits a record: a copy)."""
        return b"".join(self.parts)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for part in self.parts:
            digest.update(part)
        return digest.hexdigest()

    def slices(self, size: int) -> Iterator[bytes | memoryview]:
        """Consecutive slices of ``size`` bytes (the last shorter): a view where one piece holds
        the whole slice, else the bytes of the pieces it spans (one slice's copy at a time)."""
        held: list[memoryview] = []
        have = 0
        for part in self.parts:
            while part.nbytes:
                take = min(size - have, part.nbytes)
                held.append(part[:take])
                part, have = part[take:], have + take
                if have == size:
                    yield held[0] if len(held) == 1 else b"".join(held)
                    held, have = [], 0
        if held:
            yield held[0] if len(held) == 1 else b"".join(held)


def split(payload: bytes, chunk_bytes: int) -> list[Chunk]:
    """Cut ``payload`` into chunks of at most ``chunk_bytes`` (one chunk if it fits)."""
    return [Chunk(bytes(data), headers) for data, headers in iter_chunks(payload, chunk_bytes)]


def iter_chunks(payload: bytes | Pieces, chunk_bytes: int) -> Iterator[tuple[bytes | memoryview, h.Headers]]:
    """``split`` without copies: each chunk is a view of ``payload``, made when asked for, so a
    sender holds the payload and the chunks its producer has not sent yet, not a second copy
    (``Pieces``: a view of one piece, or the bytes of a chunk that spans two)."""
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be positive")
    pieces = payload if isinstance(payload, Pieces) else Pieces([payload])
    digest = pieces.sha256()
    cid = uuid.uuid4().hex
    count = max(1, -(-len(pieces) // chunk_bytes))
    data = pieces.slices(chunk_bytes) if len(pieces) else iter([b""])
    for i, chunk in enumerate(data):
        yield chunk, h.encode(
            {h.CHUNK_ID: cid, h.CHUNK_INDEX: i, h.CHUNK_COUNT: count, h.CHUNK_SHA256: digest})


def chunk_info(values: dict[str, str]) -> tuple[str, int, int, str] | None:
    """(id, index, count, sha256) of a chunk record, None for a plain record."""
    cid = values.get(h.CHUNK_ID)
    if cid is None:
        return None
    try:
        index, count = int(values[h.CHUNK_INDEX]), int(values[h.CHUNK_COUNT])
        digest = values[h.CHUNK_SHA256]
    except (KeyError, ValueError) as exc:
        raise ChunkError("malformed chunk headers", chunk_id=cid) from exc
    if not (0 <= index < count) or count > 100_000:
        raise ChunkError("chunk index out of range", chunk_id=cid, index=index, count=count)
    return cid, index, count, digest


@dataclass
class _Partial:
    """A payload being put back together: its chunks are written into one buffer as they come (the
    records go at once), sized from the first chunk (every chunk but the last has its size)."""

    count: int
    digest: str
    first_offset: int
    buf: bytearray
    step: int
    received: int = 0
    size: int = 0
    started: float = field(default_factory=time.monotonic)


class Reassembler:
    """Collect chunks per (partition, chunk id); yields the payload when the last chunk arrives."""

    def __init__(self, max_pending: int = 64, max_bytes: int = 1 << 30, timeout_s: float = 60.0) -> None:
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._pending: dict[tuple[Hashable, str], _Partial] = {}

    def pending_first_offset(self, partition: Hashable) -> int | None:
        """Lowest offset of an unfinished payload on ``partition`` (commits must not pass it)."""
        offs = [p.first_offset for (part, _), p in self._pending.items() if part == partition]
        return min(offs) if offs else None

    def expire(self, now: float | None = None) -> list[tuple[Hashable, int, ChunkError]]:
        """Give up on payloads whose chunks stopped coming: (partition, first offset, error)."""
        now = time.monotonic() if now is None else now
        out: list[tuple[Hashable, int, ChunkError]] = []
        for key, part in list(self._pending.items()):
            if now - part.started > self.timeout_s:
                del self._pending[key]
                err = ChunkError(
                    "truncated chunked payload: missing chunks",
                    chunk_id=key[1], received=part.received, expected=part.count,
                )
                out.append((key[0], part.first_offset, err))
        return out

    def drop_partition(self, partition: Hashable) -> None:
        for key in [k for k in self._pending if k[0] == partition]:
            del self._pending[key]

    def add(
        self, partition: Hashable, offset: int, values: dict[str, str], data: bytes
    ) -> tuple[bytes, int] | None:
        """Add one chunk; returns (payload, first offset) when complete, else None. A completed
        chunked payload's chunk headers are dropped from ``values``: they described the pieces."""
        done = self.add_into(partition, offset, values, data)
        if done is None or isinstance(done[0], bytes):
            return done  # type: ignore[return-value]  # bytes, as checked
        return bytes(done[0]), done[1]

    def add_into(
        self, partition: Hashable, offset: int, values: dict[str, str], data: bytes
    ) -> tuple[bytes | bytearray, int] | None:
        """``add``, a chunked payload returned as the buffer it was assembled in (no final copy:
        for readers of parameter-sized payloads, which decode it into views)."""
        info = chunk_info(values)
        if info is None:
            return data, offset
        cid, index, count, digest = info
        key = (partition, cid)
        part = self._part(key, index, count, digest, offset, len(data))
        if len(data) > part.step or (index < count - 1 and len(data) != part.step):
            del self._pending[key]
            raise ChunkError("chunk size does not fit its payload", chunk_id=cid, index=index)
        part.buf[index * part.step : index * part.step + len(data)] = data
        part.received, part.size = part.received + 1, part.size + len(data)
        if part.size > self.max_bytes:
            del self._pending[key]
            raise ChunkError("reassembled payload over the limit", chunk_id=cid, limit=self.max_bytes)
        if part.received < part.count:
            return None
        del self._pending[key]
        payload = part.buf
        del payload[part.size :]  # the last chunk's unused tail (never written: never resident)
        if hashlib.sha256(payload).hexdigest() != part.digest:
            raise ChunkError("sha256 mismatch after reassembly", chunk_id=cid)
        for name in (h.CHUNK_ID, h.CHUNK_INDEX, h.CHUNK_COUNT, h.CHUNK_SHA256):
            values.pop(name, None)
        return payload, part.first_offset

    def _part(self, key: tuple[Hashable, str], index: int, count: int, digest: str, offset: int,
              step: int) -> _Partial:
        """The partial payload ``index`` belongs to (a new one for a first chunk)."""
        part = self._pending.get(key)
        if index == 0 and part is not None:  # re-delivery after a rebalance: start over
            del self._pending[key]
            part = None
        if part is None:
            if index != 0:
                raise ChunkError("chunk arrived without its first chunk", chunk_id=key[1], index=index)
            if count * step > self.max_bytes + step:
                raise ChunkError("reassembled payload over the limit", chunk_id=key[1], limit=self.max_bytes)
            if len(self._pending) >= self.max_pending:
                oldest = min(self._pending, key=lambda k: self._pending[k].started)
                del self._pending[oldest]
            part = self._pending[key] = _Partial(count, digest, offset, bytearray(count * step), step)
        elif index != part.received or count != part.count:
            del self._pending[key]
            raise ChunkError("chunk out of order or count changed", chunk_id=key[1], index=index)
        return part


CHUNK_KEY = b"#chunk"  # a chunk's record key: the payload's key, this, the chunk's index


def chunk_key(key: bytes, index: int) -> bytes:
    return key + CHUNK_KEY + str(index).encode()


def base_key(key: bytes | None) -> bytes:
    """The key a chunk's record was sent under (``latest#chunk3`` -> ``latest``; others as they are)."""
    head, sep, _ = (key or b"").rpartition(CHUNK_KEY)
    return head if sep else key or b""
