"""aiaas.registry.versionclaims: the first claim of a number in log order wins it; every reader agrees."""

from __future__ import annotations

from aiaas.registry.versionclaims import Numbering
from aiaas.schemas.registry import ModelVersion, TensorSignature, VersionClaim

SHA = "ab" * 32


def version(name: str, number: int) -> ModelVersion:
    sig = [TensorSignature(name="input", datatype="FP32", shape=[None, 4])]
    return ModelVersion(name=name, version=number, sha256=SHA, size_bytes=1, inputs=sig, outputs=sig)


def claim(name: str, number: int, claim_id: str) -> VersionClaim:
    return VersionClaim(name=name, version=number, claim_id=claim_id, sha256=SHA)


async def test_two_claims_of_one_number_the_first_in_the_log_wins() -> None:
    a, b = Numbering(), Numbering()  # two publishers, each with its own reader
    for n in (a, b):
        n.saw_version(version("m", 1))
    mine_a, won_a = a.new_claim("m", SHA)
    mine_b, won_b = b.new_claim("m", SHA)
    assert mine_a.version == mine_b.version == 2  # both propose the next number they know of
    log = [mine_a, mine_b]  # the partition's order
    for reader in (a, b):
        assert [reader.saw_claim(c) for c in log] == [True, False]
    assert won_a.result() is True and won_b.result() is False
    again, won_again = b.new_claim("m", SHA)  # the loser proposes one above what it has read
    assert again.version == 3
    assert a.saw_claim(again) and b.saw_claim(again) and won_again.result()


async def test_numbers_are_per_name_and_a_later_reader_agrees() -> None:
    log = [claim("m", 1, "1" * 32), claim("other", 1, "2" * 32), claim("m", 1, "3" * 32),
           claim("m", 2, "4" * 32)]
    late = Numbering()
    assert [late.saw_claim(c) for c in log] == [True, True, False, True]
    assert late.top == {"m": 2, "other": 1}


async def test_compaction_moving_a_version_record_later_keeps_what_claims_won() -> None:
    """Version 5 written by an older registry (no claim), a claim of 6, then version 5 rewritten
    (promoted): compaction drops the first copy. A reader of the compacted log still has claim 6
    winning and proposes 7 next."""
    full = [version("m", n) for n in range(1, 6)] + [claim("m", 6, "a" * 32), version("m", 5)]
    compacted = full[:4] + full[5:]
    for log in (full, compacted):
        reader = Numbering()
        won = []
        for rec in log:
            if isinstance(rec, VersionClaim):
                won.append(reader.saw_claim(rec))
            else:
                reader.saw_version(rec)
        assert won == [True] and reader.top["m"] == 6
        nxt, _ = reader.new_claim("m", SHA)
        assert nxt.version == 7
