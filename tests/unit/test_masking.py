"""Masking personal fields (docs/security.md, "Masking"): drop, keyed hash, passthrough, keys,
headers, free text, and a source's decoder and dead letters (JSON and CSV)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from aiaas.schemas.errors import AiaasError, InvalidMessage
from aiaas.schemas.masking import Masking
from aiaas.schemas.sources import Source
from aiaas.sources import compile_source
from aiaas.sources.decoded import Decoded, Rejection
from aiaas.sources.masking import WITHHELD, MaskedDecoder, source_masker
from aiaas.streams.masking import MASKED, Masker, MaskSettings
from aiaas.streams.record import Record

KEY = b"k" * 32


def masker(**spec: object) -> Masker:
    return Masker(Masking.model_validate(spec), KEY)


def test_hash_is_keyed_hmac_truncated_and_stable() -> None:
    mk = masker(hash=["email"], hash_chars=20)
    want = hmac.new(KEY, b"ann@example.org", hashlib.sha256).hexdigest()[:20]
    assert mk.digest("ann@example.org") == want and mk.digest("ann@example.org") == want  # remembered
    long_key = Masker(Masking(hash=["e"], hash_chars=64), b"x" * 100)  # a key longer than a block
    assert long_key.digest("v") == hmac.new(b"x" * 100, b"v", hashlib.sha256).hexdigest()
    assert mk.digest(42) == mk.digest("42")  # a join on the value still matches
    assert Masker(Masking(hash=["email"]), b"other").digest("ann@example.org") != want[:16]


def test_drop_and_hash_nested_and_in_lists() -> None:
    mk = masker(drop=["user.name"], hash=["user.email", "contacts.phone"])
    doc = {"user": {"name": "Ann Lee", "email": "ann@x.org", "age": 41},
           "contacts": [{"phone": "555-0101"}, {"phone": "555-0102", "kind": "home"}], "n": 1}
    found = mk.apply(doc)
    assert doc == {"user": {"email": mk.digest("ann@x.org"), "age": 41},
                   "contacts": [{"phone": mk.digest("555-0101")},
                                {"phone": mk.digest("555-0102"), "kind": "home"}], "n": 1}
    assert {"Ann Lee", "ann@x.org", "555-0101", "555-0102"} <= set(found)


def test_passthrough_exact_inside_and_holding() -> None:
    mk = masker(drop=["user.ssn"], hash=["email"])
    row = {"email": "a@b.c", "user": {"ssn": "123-45-6789", "id": 7}, "id": "e1"}
    mk.passthrough(row)
    assert row == {"email": mk.digest("a@b.c"), "user": {"id": 7}, "id": "e1"}
    two = masker(drop=["user.ssn"], hash=["user.email"])
    both = two.passthrough({"user": {"ssn": "1", "email": "e", "id": 7}})
    assert both == {"user": {"email": two.digest("e"), "id": 7}}
    row2 = {"user.ssn": "123-45-6789", "email": None}
    assert mk.passthrough(row2) == {"email": None}
    row3 = {"user[]": [{"ssn": "1", "id": 1}], "email[]": ["a@b.c", None]}
    assert mk.passthrough(row3) == {"user[]": [{"id": 1}], "email[]": [mk.digest("a@b.c"), None]}


def test_key_headers_and_scrub() -> None:
    mk = masker(hash=["email"], drop=["ssn"], record_key="hash")
    assert mk.key(b"ann@x.org") == mk.digest("ann@x.org").encode()
    assert masker(drop=["x"], record_key="drop").key(b"k") is None
    assert masker(drop=["x"]).key(b"k") == b"k"
    assert mk.headers({"email": "a@b", "ssn": "1", "trace": "t"}) == {"email": mk.digest("a@b"), "trace": "t"}
    scrubbed = mk.scrub("bad value 'ann@x.org' in ann", ["ann@x.org", "ann"])
    assert scrubbed == f"bad value '{MASKED}' in {MASKED}"


def test_spec_rules_and_key_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="inside masked field"):
        Masking(drop=["user"], hash=["user.email"])
    with pytest.raises(ValidationError, match="declared drop"):
        Source(topic="t", features=["a"], passthrough=["email"], mask=Masking(drop=["email"]))
    with pytest.raises(AiaasError, match="AIAAS_MASK_KEY"):
        Masker.of(Masking(hash=["email"]), MaskSettings(key=None, key_file=None))
    no_key = MaskSettings(key=None, key_file=None)
    assert Masker.of(Masking(drop=["email"]), no_key) is not None  # dropping needs no key
    assert Masker.of(Masking(), MaskSettings()) is None
    (tmp_path / "k").write_bytes(b"file-key\n")
    monkeypatch.delenv("AIAAS_MASK_KEY", raising=False)
    monkeypatch.setenv("AIAAS_MASK_KEY_FILE", str(tmp_path / "k"))
    assert MaskSettings().secret() == b"file-key"


MARK = "zq-personal-7731"


def json_source() -> Source:
    return Source(topic="t", features=["a"], passthrough=["id", "email"],
                  mask=Masking(hash=["email"], drop=["name"], record_key="hash"))


def test_masked_decoder_passthrough_and_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIAAS_MASK_KEY", "test-key")
    dec = compile_source(json_source(), labels=False)
    values = [json.dumps({"id": "e1", "a": 1, "email": MARK, "name": MARK}).encode(),
              json.dumps({"id": "e2", "a": MARK, "email": MARK}).encode(),  # a: not a number
              b'{"id": "e3", "email": "' + MARK.encode()]  # not JSON
    got = dec.decode(values)
    assert [p["id"] for p in got.passthrough] == ["e1"]
    assert got.passthrough[0]["email"] not in (MARK, None) and len(got.passthrough[0]["email"]) == 16
    assert len(got.rejected) == 2 and all(MARK not in r.reason for r in got.rejected)


class Quoting:
    """A decoder whose reasons and errors quote the record (what MaskedDecoder must not let out)."""

    def decode(self, values: Sequence[bytes]) -> Decoded:
        if any(b"raise" in v for v in values):
            raise ValueError(f"cannot read {values[0]!r}")
        return Decoded(x=np.zeros((0, 1), np.float32), ok=np.zeros(0, np.int64),
                       rejected=[Rejection(i, "a", f"bad record {v.decode()}") for i, v in enumerate(values)]
                       + [Rejection(1, "", f"near {MARK}")])


def test_masked_decoder_scrubs_quoting_reasons_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIAAS_MASK_KEY", "test-key")
    masks = source_masker(json_source())
    assert masks is not None
    dec = MaskedDecoder(Quoting(), masks)
    got = dec.decode([json.dumps({"email": MARK, "a": "x"}).encode(), b'{"email": "' + MARK.encode()])
    readable, unreadable, near = (r.reason for r in got.rejected)
    assert readable == 'bad record {"email": "<masked>", "a": "x"}'
    assert unreadable == 'bad record {"email"'  # only what comes before the first ':' of a reason
    assert near == "near <masked>"  # "email": "..." found in the broken record
    with pytest.raises(AiaasError) as caught:
        dec.decode([b"raise " + MARK.encode()])
    assert MARK not in str(caught.value) and caught.value.__suppress_context__


def test_dead_letter_record_masked_json_and_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIAAS_MASK_KEY", "test-key")
    masks = source_masker(json_source())
    assert masks is not None
    raw = json.dumps({"a": "x", "email": MARK, "name": MARK, "k": 1}).encode()
    err = InvalidMessage(f"field 'a': bad {MARK}", field="a", why=f"bad {MARK}")
    rec = masks.record(Record("t", 0, 3, MARK.encode(), raw, {"email": MARK}), err)
    assert MARK not in repr(rec) and MARK not in str(err) and MARK not in repr(err.details)
    assert json.loads(rec.value or b"") == {"a": "x", "email": masks.masker.digest(MARK), "k": 1}
    why = InvalidMessage(f"not JSON near {MARK}")
    broken = masks.record(Record("t", 0, 4, None, b'{"email": "' + MARK.encode(), {}), why)
    assert broken.value is None and why.reason == f"not JSON near {MASKED}"
    csv_src = Source(topic="t", format="csv", csv={"columns": ["who", "v"]}, features=["v"],
                     mask=Masking(drop=["who"]))
    cm = source_masker(csv_src)
    assert cm is not None
    out = cm.record(Record("t", 0, 5, None, f"{MARK},oops".encode(), {}), InvalidMessage("v: not a number"))
    assert out.value == b",oops"
    e = InvalidMessage("x")
    assert cm.record(Record("t", 0, 6, None, b"only-one-cell", {}), e).value is None
    assert e.details["value"] == WITHHELD


def test_model_masking_is_the_union_of_its_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiaas.agents.bridge.masking import mask_parameters, model_masking
    from aiaas.schemas.registry import ModelVersion

    def mv(version: int, masking: Masking | None, name: str = "m") -> ModelVersion:
        return ModelVersion(name=name, version=version, sha256="0" * 64, size_bytes=1, inputs=[], outputs=[],
                            masking=masking)

    versions = [mv(1, Masking(hash=["customer.email", "ssn"])), mv(2, None),
                mv(3, Masking(drop=["ssn", "customer"])), mv(1, Masking(drop=["other"]), name="n")]
    assert model_masking(versions, "m") == Masking(drop=["customer", "ssn"])  # drop wins, covers inside
    assert model_masking(versions[:2], "m") == Masking(hash=["customer.email", "ssn"])
    assert model_masking(versions[1:2], "m") is None
    monkeypatch.setenv("AIAAS_MASK_KEY", "k")
    params = {"customer": {"email": MARK, "tier": "gold"}, "ssn": MARK, "threshold": 0.5}
    mask_parameters(params, versions[:2], "m")
    assert MARK not in json.dumps(params) and params["customer"]["tier"] == "gold"  # type: ignore[index]
    assert params["threshold"] == 0.5 and len(str(params["ssn"])) == 16
