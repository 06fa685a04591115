"""The worker's side of payload encryption without a broker (agents/inference/sealing.py, outbox):
sealed records open in memory and the ones that do not are refused with their ids; reply frames are
gathered per data key and each sealed under its own; a dead letter never holds an opened value."""

from __future__ import annotations

from aiaas.agents.inference.outbox import Outbox
from aiaas.agents.inference.sealing import WorkerSealing
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.envelope import Sealer, is_sealed, sealed_ids
from aiaas.streams.keyring import Keyring, new_key
from aiaas.streams.record import Record
from tests.unit.test_replier import Sends

A, B = new_key("acme", "acme-1"), new_key("bolt", "bolt-1")
WORKER = WorkerSealing(Sealer(Keyring([A, B])))


def sealed_frame(ids: list[str], key_id: str, sealer: Sealer = WORKER.sealer) -> Record:
    value, kind = frame.encode([frame.Entry([i], {}, {}, {}) for i in ids])
    value, headers = sealer.seal_record(value, [*kind, (h.REPLY_TO, b"rep")], key_id, ids)
    return Record("req", 0, 7, ids[0].encode(), value, h.decode(headers))


def test_open_gives_clear_values_and_refuses_with_the_frames_ids() -> None:
    good = sealed_frame(["r1", "r2"], "acme-1")
    clear = Record("req", 0, 8, b"k", b"{}", {h.CORRELATION_ID: "c"})
    wrong = sealed_frame(["w1", "w2"], "acme-1", Sealer(Keyring([new_key("acme", "acme-1")])))
    unknown = sealed_frame(["u1"], "ghost-1", Sealer(Keyring([new_key("ghost", "ghost-1")])))
    opened, refused = WORKER.open([good, clear, wrong, unknown])
    assert [r.offset for r in opened] == [7, 8] and opened[1] is clear
    assert frame.ids_of(opened[0].value, opened[0].headers) == ["r1", "r2"]
    assert [(ids, e.status_code, e.details["data_key"]) for _, ids, e in refused] == \
        [(["w1", "w2"], 400, "acme-1"), (["u1"], 403, "ghost-1")]
    # answered in clear (no key to seal with), the sealed bytes kept for the dead letter
    assert all(h.DATA_KEY not in rec.headers and is_sealed(rec.value) for rec, _, _ in refused)
    assert WORKER.open([clear]) == ([clear], [])


def test_dead_letters_keep_ciphertext() -> None:
    (opened,), _ = WORKER.open([sealed_frame(["r1"], "bolt-1")])
    kept = WORKER.protect(opened)
    assert is_sealed(kept.value) and WORKER.sealer.open(kept.value, "bolt-1") == opened.value
    refused = Record("req", 0, 1, None, WORKER.sealer.seal(b"x", "bolt-1"), {h.DATA_KEY: "bolt-1"})
    assert WORKER.protect(refused) is refused  # already sealed: kept as it came
    clear = Record("req", 0, 1, None, b"clear", {})
    assert WORKER.protect(clear) is clear


async def test_reply_frames_are_gathered_and_sealed_per_data_key() -> None:
    sends = Sends()

    async def send(topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]],
                   partition: int | None = None) -> object:
        return await sends(topic, WORKER.seal_out(value, headers), key, headers, partition)

    box = Outbox(send, 1 << 20)  # type: ignore[arg-type]
    kids = ("acme-1", "bolt-1", "")
    owners = {kid: Record("req", 0, 0, None, None, {h.DATA_KEY: kid} if kid else {}) for kid in kids}
    for i in range(6):
        entry = frame.Entry([f"r{i}"], {}, {h.STATUS_CODE: "200"})
        await box.add("rep", None, entry, (owners[kids[i % 3]], [f"r{i}"]))
    await box.flush()
    assert len(sends.records) == 3
    for topic, value, headers in sends.records:
        kid = h.decode(headers).get(h.DATA_KEY)
        clear = WORKER.sealer.open(value, kid) if kid else value
        assert topic == "rep" and is_sealed(value) == bool(kid)
        ids = frame.ids_of(clear, h.decode(headers))
        assert ids == [f"r{i}" for i in range(6) if ("acme-1", "bolt-1", None)[i % 3] == kid]
        # a sealed frame names its ids in clear (a next stage without the key answers each of them)
        assert sealed_ids(h.decode(headers)) == (ids if kid else [])
