"""The worker's side of payload encryption (docs/security.md, "Payload encryption").

A request whose ``data-key`` header names a tenant data key is opened in memory as it is polled
(never written anywhere clear); its replies, error replies included, are sealed with the same key
(``seal_out``), and its dead letters keep ciphertext (``protect`` seals again what a dead letter
would hold clear). A request that does not open (key unknown here, wrong key, altered bytes) is
refused, not crashed on: a clear error reply naming the key id to each of its request ids, and a
dead letter of its sealed bytes.
"""

from __future__ import annotations

import dataclasses

from aiaas.agents.inference.intake import request_id
from aiaas.schemas.errors import EnvelopeError
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.envelope import Sealer, configured, data_key_of, is_sealed, sealed_ids
from aiaas.streams.keyring import Keyring
from aiaas.streams.record import Record

Refused = tuple[Record, list[str], EnvelopeError]  # the record (key header dropped), its ids, why


class WorkerSealing:
    def __init__(self, sealer: Sealer | None = None) -> None:
        self.sealer = sealer or Sealer(Keyring([]))  # no keys: sealed requests are refused (403)
        self.opened = 0

    def load(self) -> None:
        """Take the keys of ``AIAAS_DATA_KEYS_FILE`` / ``AIAAS_DATA_KEYS`` (reads a file: at start)."""
        self.sealer = configured(opening_only=True)

    def open(self, records: list[Record]) -> tuple[list[Record], list[Refused]]:
        """The poll's records with sealed values opened, and those that did not open."""
        if not any(h.DATA_KEY in r.headers for r in records):
            return records, []
        out: list[Record] = []
        refused: list[Refused] = []
        for rec in records:
            kid = rec.headers.get(h.DATA_KEY)
            if kid is None:
                out.append(rec)
                continue
            try:
                out.append(dataclasses.replace(rec, value=self.sealer.open(rec.value, kid)))
                self.opened += 1
            except EnvelopeError as exc:
                refused.append(self._refused(rec, exc))
        return out, refused

    @staticmethod
    def _refused(rec: Record, exc: EnvelopeError) -> Refused:
        """Answered in clear (the key is not to be had), so the key header goes; the error names it."""
        headers = {k: v for k, v in rec.headers.items() if k != h.DATA_KEY}
        ids = sealed_ids(rec.headers) if frame.is_frame(rec.headers) else [request_id(rec)]
        return dataclasses.replace(rec, headers=headers), ids, exc

    def protect(self, rec: Record) -> Record:
        """What a dead letter may hold: a value opened here is sealed again under its key (a chunk
        the consumer could not put back together is a piece of ciphertext already)."""
        kid = rec.headers.get(h.DATA_KEY)
        if kid is None or rec.value is None or is_sealed(rec.value) or h.CHUNK_ID in rec.headers:
            return rec
        return dataclasses.replace(rec, value=self.sealer.seal(rec.value, kid))

    def seal_out(self, value: bytes, headers: list[tuple[str, bytes]]) -> bytes:
        """A reply value sealed under the key its headers name (the request's), else as it is."""
        kid = data_key_of(headers)
        return value if kid is None else self.sealer.seal(value, kid)
