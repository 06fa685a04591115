"""Envelope encryption of record values (aiaas.streams.envelope) and where its keys come from
(aiaas.streams.keyring): round trip, tamper and key-swap detection, errors that name the key id and
never the key, key files that are refused in one line."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from aiaas.schemas.errors import AiaasError, EnvelopeError
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.envelope import OVERHEAD, Sealer, configured, data_key_of, is_sealed, sealed_ids
from aiaas.streams.keyring import DataKey, Keyring, KeySettings, key_file_json, load_keyring, new_key

A1, A2, B1 = new_key("acme", "acme-1"), new_key("acme", "acme-2"), new_key("bolt", "bolt-1")
RING = Keyring([A1, A2, B1])


def test_round_trip_and_the_newest_key_of_a_tenant_seals() -> None:
    sealer = Sealer(RING, "acme")
    assert sealer.key_for() == "acme-2" and sealer.key_for("bolt") == "bolt-1" and sealer.key_for("x") is None
    value = b'{"inputs": [1234.5678]}' * 10
    sealed = sealer.seal(value, "acme-2")
    assert is_sealed(sealed) and len(sealed) == len(value) + OVERHEAD and b"1234.5678" not in sealed
    assert sealer.open(sealed, "acme-2") == value
    assert sealer.seal(value, "acme-2") != sealed  # a fresh nonce every time
    assert Sealer(Keyring([A1])).open(Sealer(RING).seal(b"old", "acme-1"), "acme-1") == b"old"  # rotation


def test_altered_bytes_or_another_key_id_do_not_open() -> None:
    sealer = Sealer(RING)
    sealed = sealer.seal(b"payload", "acme-1")
    flipped = bytearray(sealed)
    flipped[-3] ^= 1
    cases = ((bytes(flipped), "acme-1"), (sealed, "acme-2"), (sealed[:20], "acme-1"), (b"clear", "acme-1"))
    for bad, kid in cases:
        with pytest.raises(EnvelopeError) as err:
            sealer.open(bad, kid)
        assert err.value.status_code == 400 and err.value.details == {"data_key": kid}
    # the same id with another secret (a client with the wrong key file) is refused alike
    other = Sealer(Keyring([DataKey(id="acme-1", tenant="acme", key=new_key("acme", "x").key)]))
    with pytest.raises(EnvelopeError, match="wrong key"):
        other.open(sealed, "acme-1")


def test_an_unknown_key_is_403_and_no_message_holds_a_secret() -> None:
    with pytest.raises(EnvelopeError) as err:
        Sealer(Keyring([A1])).open(Sealer(RING).seal(b"x", "bolt-1"), "bolt-1")
    assert err.value.status_code == 403 and err.value.details == {"data_key": "bolt-1"}
    secret = A1.key.get_secret_value()
    assert secret not in repr(A1) and secret not in str(A1.model_dump())  # SecretStr: shown masked


def test_seal_record_adds_the_headers_and_open_record_reads_any_header_form() -> None:
    sealer = Sealer(RING, "bolt")
    value, kind = frame.encode([frame.Entry(["r1", "r2"], {}, {}, {})])
    sealed, headers = sealer.seal_record(value, list(kind), sealer.key_for(), ["r1", "r2"])
    as_dict = h.decode(headers)
    assert as_dict[h.DATA_KEY] == "bolt-1" and sealed_ids(as_dict) == ["r1", "r2"]
    for form in (headers, as_dict, dict(headers)):
        assert data_key_of(form) == "bolt-1"
        assert sealer.open_record(sealed, form) == value
    assert sealer.seal_record(value, [], None) == (value, [])  # no key: clear, no header
    assert sealer.open_record(b"clear", []) == b"clear"
    assert sealed_ids({h.SEALED_IDS: "not json"}) == [] and sealed_ids({}) == []


def test_key_files_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys.json"
    path.write_text(key_file_json([A1, B1]))
    ring = load_keyring(KeySettings(data_keys_file=path))
    assert ring is not None and ring.active("acme") == "acme-1" and ring.secret("bolt-1") == B1.secret()
    assert load_keyring(KeySettings()) is None
    monkeypatch.setenv("AIAAS_DATA_KEYS", key_file_json([A2]))
    monkeypatch.setenv("AIAAS_DATA_KEY_TENANT", "acme")
    assert configured().key_for() == "acme-2" and configured(opening_only=True).key_for() is None
    monkeypatch.delenv("AIAAS_DATA_KEYS")
    with pytest.raises(EnvelopeError) as err:  # no keys: sealed records are refused, not guessed at
        configured().open(Sealer(RING).seal(b"x", "acme-2"), "acme-2")
    assert err.value.status_code == 403


K32 = base64.b64encode(b"k" * 32).decode()


@pytest.mark.parametrize("text", [
    "not json", json.dumps({"keys": [{"id": "a b", "tenant": "t", "key": K32}]}),
    json.dumps({"keys": [{"id": "a", "tenant": "t", "key": base64.b64encode(b"short").decode()}]}),
    json.dumps({"keys": [{"id": "a", "tenant": "t", "key": "%%%"}]}),
])
def test_malformed_keys_are_refused_in_one_line_without_the_key(text: str, tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(text)
    with pytest.raises(AiaasError) as err:
        load_keyring(KeySettings(data_keys_file=path))
    assert err.value.reason == "data keys are malformed" and K32 not in str(err.value.details)
    with pytest.raises(AiaasError, match="cannot be read"):
        load_keyring(KeySettings(data_keys_file=tmp_path / "missing.json"))
