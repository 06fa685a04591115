"""Chunking: split/reassemble round trips, sha256 checks, truncation and disorder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiaas.schemas.errors import ChunkError
from aiaas.streams import chunking
from aiaas.streams import headers as h


def feed(r: chunking.Reassembler, chunks: list[chunking.Chunk], partition: int = 0) -> list[bytes]:
    out = []
    for offset, c in enumerate(chunks):
        done = r.add(partition, offset, h.decode(c.headers), c.data)
        if done is not None:
            out.append(done[0])
    return out


@given(payload=st.binary(max_size=5000), size=st.integers(1, 700))
@settings(max_examples=100, deadline=None)
def test_round_trip(payload: bytes, size: int) -> None:
    chunks = chunking.split(payload, size)
    assert all(len(c.data) <= size for c in chunks)
    assert feed(chunking.Reassembler(), chunks) == [payload]


def test_interleaved_payloads_on_one_partition() -> None:
    a, b = chunking.split(b"a" * 100, 30), chunking.split(b"b" * 70, 30)
    mixed = [a[0], b[0], a[1], b[1], a[2], b[2], a[3]]
    assert sorted(feed(chunking.Reassembler(), mixed)) == [b"a" * 100, b"b" * 70]


def test_corrupt_chunk_fails_sha256() -> None:
    chunks = chunking.split(b"x" * 100, 40)
    chunks[1] = chunking.Chunk(b"y" * 40, chunks[1].headers)
    with pytest.raises(chunking.ChunkError, match="sha256"):
        feed(chunking.Reassembler(), chunks)


def test_missing_first_chunk_and_disorder() -> None:
    chunks = chunking.split(b"x" * 100, 40)
    with pytest.raises(chunking.ChunkError, match="first chunk"):
        feed(chunking.Reassembler(), chunks[1:])
    with pytest.raises(chunking.ChunkError, match="out of order"):
        feed(chunking.Reassembler(), [chunks[0], chunks[2]])


def test_truncated_payload_expires_and_unblocks_commits() -> None:
    r = chunking.Reassembler(timeout_s=10)
    chunks = chunking.split(b"x" * 100, 40)
    assert feed(r, chunks[:2]) == []
    assert r.pending_first_offset(0) == 0
    assert r.expire(now=0.0) == []
    (partition, first, err), = r.expire(now=1e12)
    assert (partition, first) == (0, 0) and "truncated" in err.reason
    assert r.pending_first_offset(0) is None


def test_redelivered_first_chunk_restarts() -> None:
    r = chunking.Reassembler()
    chunks = chunking.split(b"z" * 90, 40)
    feed(r, chunks[:2])
    assert feed(r, chunks) == [b"z" * 90]


@pytest.mark.parametrize("bad", [
    {h.CHUNK_ID: "c", h.CHUNK_INDEX: "x", h.CHUNK_COUNT: "2", h.CHUNK_SHA256: "0"},
    {h.CHUNK_ID: "c", h.CHUNK_INDEX: "3", h.CHUNK_COUNT: "2", h.CHUNK_SHA256: "0"},
    {h.CHUNK_ID: "c", h.CHUNK_INDEX: "0"},
])
def test_malformed_chunk_headers(bad: dict[str, str]) -> None:
    with pytest.raises(chunking.ChunkError):
        chunking.Reassembler().add(0, 0, bad, b"data")


def test_a_completed_payload_leaves_no_chunk_headers_behind() -> None:
    r = chunking.Reassembler()
    chunks = chunking.split(b"x" * 50, 20)
    values = [h.decode(c.headers) for c in chunks]
    done = [r.add(0, i, v, c.data) for i, (v, c) in enumerate(zip(values, chunks, strict=True))]
    assert done[-1] is not None and done[-1][0] == b"x" * 50
    assert not any(name.startswith("chunk-") for name in values[-1]), values[-1]
    assert h.CHUNK_ID in values[0]  # only the record that completed it is the payload's


def test_add_into_returns_the_assembly_buffer_and_checks_chunk_sizes() -> None:
    payload = bytes(range(256)) * 10
    r = chunking.Reassembler()
    chunks = chunking.split(payload, 700)
    outs = [r.add_into(0, i, h.decode(c.headers), c.data) for i, c in enumerate(chunks)]
    assert outs[:-1] == [None] * (len(chunks) - 1)
    assert outs[-1] is not None and isinstance(outs[-1][0], bytearray) and outs[-1][0] == payload
    bad = chunking.split(payload, 700)
    r.add(0, 0, h.decode(bad[0].headers), bad[0].data)
    with pytest.raises(ChunkError, match="size"):
        r.add(0, 1, h.decode(bad[1].headers), bad[1].data[:-1])  # a middle chunk shorter than the first


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=6), st.integers(min_value=1, max_value=50))
def test_pieces_chunk_like_their_joined_payload(parts: list[bytes], size: int) -> None:
    pieces = chunking.Pieces(parts)
    joined = b"".join(parts)
    assert len(pieces) == len(joined) and pieces.join() == joined
    got = list(chunking.iter_chunks(pieces, size))
    want = list(chunking.iter_chunks(joined, size))
    assert [bytes(c) for c, _ in got] == [bytes(c) for c, _ in want]
    digest = [dict(h.decode(hd))[h.CHUNK_SHA256] for _, hd in got + want]
    assert len(set(digest)) == 1
    r = chunking.Reassembler()
    done = [r.add("p", i, h.decode(hd), bytes(c)) for i, (c, hd) in enumerate(got)]
    assert done[-1] == (joined, 0)


def test_pieces_slice_views_within_a_piece_and_copy_only_across_pieces() -> None:
    big = bytearray(range(10)) * 3  # 30 bytes
    pieces = chunking.Pieces([b"ab", big])
    slices = list(pieces.slices(8))
    assert bytes(slices[0]) == b"ab" + bytes(big[:6]) and isinstance(slices[0], bytes)
    assert all(isinstance(s, memoryview) for s in slices[1:])  # inside ``big``: views, no copy
    assert b"".join(bytes(s) for s in slices) == b"ab" + bytes(big)
