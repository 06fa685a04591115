"""Envelope encryption of record values with tenant data keys (AES-256-GCM).

A sealed value is ``MAGIC | nonce (12 bytes) | ciphertext and tag``; the id of the data key travels
in the ``data-key`` header and is bound to the ciphertext as associated data, so a value moved under
another key id, or altered by one bit, does not open. Keys come from a ``KeyProvider``
(``aiaas.streams.keyring``). Only values are sealed: keys, headers (request ids, deadlines, reply
topics) stay readable so records can be routed, answered and dead-lettered without the key
(docs/security.md, "Payload encryption").
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aiaas.schemas.errors import EnvelopeError, ErrorCode
from aiaas.streams import headers as h
from aiaas.streams.keyring import KeyProvider, Keyring, KeySettings, load_keyring

RawHeaders = Mapping[str, str | bytes] | Sequence[tuple[str, bytes]] | None
MAGIC = b"\xffAE1"  # never the start of JSON, a frame or a tensor record (a length this big is refused)
NONCE_BYTES = 12
OVERHEAD = len(MAGIC) + NONCE_BYTES + 16


def is_sealed(value: bytes | None) -> bool:
    return value is not None and value[:len(MAGIC)] == MAGIC


def _aad(key_id: str) -> bytes:
    return MAGIC + key_id.encode()


class Sealer:
    """Seals and opens values with the keys of one provider; ``tenant``: whose key seals by default."""

    def __init__(self, keys: KeyProvider, tenant: str | None = None) -> None:
        self.keys = keys
        self.tenant = tenant
        self._ciphers: dict[str, AESGCM] = {}

    def key_for(self, tenant: str | None = None) -> str | None:
        """The key id that seals ``tenant``'s records (else the default tenant's); None: clear."""
        who = tenant or self.tenant
        return self.keys.active(who) if who is not None else None

    def seal(self, value: bytes, key_id: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + nonce + self._cipher(key_id).encrypt(nonce, value, _aad(key_id))

    def open(self, value: bytes | None, key_id: str) -> bytes:
        """The clear value; EnvelopeError (naming the key id) when it cannot be opened."""
        cipher = self._cipher(key_id)
        if value is None or not is_sealed(value) or len(value) < OVERHEAD:
            raise EnvelopeError("record value is not a sealed envelope", data_key=key_id)
        nonce = value[len(MAGIC):len(MAGIC) + NONCE_BYTES]
        try:
            return cipher.decrypt(nonce, value[len(MAGIC) + NONCE_BYTES:], _aad(key_id))
        except InvalidTag:
            raise EnvelopeError("record value does not open with its data key (wrong key, or the bytes "
                                "were altered)", data_key=key_id) from None

    def open_record(self, value: bytes | None, headers: RawHeaders) -> bytes | None:
        """A record's clear value: opened when its headers (a dict, or aiokafka's or faust's list of
        pairs) name a data key, else as it is."""
        kid = data_key_of(headers)
        return value if kid is None else self.open(value, kid)

    def seal_record(self, value: bytes, headers: list[tuple[str, bytes]], key_id: str | None,
                    ids: Sequence[str] = ()) -> tuple[bytes, list[tuple[str, bytes]]]:
        """``value`` sealed under ``key_id`` and the headers that say so (``ids``: a frame's request
        ids, kept readable so a worker without the key can still answer each one)."""
        if key_id is None:
            return value, headers
        return self.seal(value, key_id), [*headers, *h.sealed(key_id, ids)]

    def _cipher(self, key_id: str) -> AESGCM:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            secret = self.keys.secret(key_id)
            if secret is None:
                raise EnvelopeError("data key not known here", code=ErrorCode.FORBIDDEN, data_key=key_id)
            cipher = self._ciphers[key_id] = AESGCM(secret)
        return cipher


def sealed_ids(headers: dict[str, str]) -> list[str]:
    """The request ids a sealed frame's ``sealed-ids`` header lists ([] when absent or malformed)."""
    try:
        ids = json.loads(headers.get(h.SEALED_IDS) or "[]")
    except ValueError:
        return []
    return [i for i in ids if isinstance(i, str)][:4096] if isinstance(ids, list) else []


def data_key_of(headers: RawHeaders) -> str | None:
    """The ``data-key`` header of a record, in whichever form its reader gives headers."""
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in items:
        if name == h.DATA_KEY:
            return value.decode() if isinstance(value, bytes) else value
    return None


def configured(opening_only: bool = False) -> Sealer:
    """The sealer of this process's ``AIAAS_DATA_KEYS_FILE`` / ``AIAAS_DATA_KEYS``, sealing for
    ``AIAAS_DATA_KEY_TENANT``; with no keys set it seals nothing and refuses sealed records (403).
    Reads a file: call at start, not in a constructor."""
    cfg = KeySettings()
    keys = load_keyring(cfg) or Keyring([])
    return Sealer(keys, None if opening_only else cfg.data_key_tenant)
