"""Training from the user's topic on the real broker: records the source's decoder refuses, and a
label that is not one of the classifier's classes, go to ``train.<job>.dlq``, each a dead letter
naming the field and the reason with the record's bytes, and the job's held-out rows are read past
them (README, "Train from your topic")."""

from __future__ import annotations

import base64

from aiaas.agents.aggregator.fromsource import open_source
from aiaas.schemas.masking import Masking
from aiaas.streams.admin import ensure
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests.inferreads import letters_on
from tests.sourcestreams import digits_split, make_topic, produce, records, source_spec

BAD = {
    b"no-pixels": b'{"id": "b1", "image": {}, "label": 3}',
    b"text-label": b'{"id": "b2", "image": {"pixels": [' + b",".join([b"1"] * 64) + b']}, "label": "seven"}',
    b"short": b'{"id": "b3", "image": {"pixels": [1, 2, 3]}, "label": 1}',
    b"not-json": b"pixels: 1 2 3",
    b"class-12": b'{"id": "b5", "image": {"pixels": [' + b",".join([b"2"] * 64) + b']}, "label": 12}',
}


async def test_refused_training_records_are_dead_lettered_with_the_field(settings: Settings) -> None:
    topic = f"{settings.topic_prefix}user.dlq.digits"
    await make_topic(settings, topic, partitions=1)
    x, y, _, _ = digits_split()
    good = records(x, y, 0, 200)
    await produce(settings, topic, good[:100] + list(BAD.items()) + good[100:])
    spec = source_spec("topic-dlq", topic, epochs=1)
    topics = Topics(settings)
    await ensure(settings, [topics.train_test(spec.job_id)])
    opened = await open_source(settings, spec, wait_s=30)
    try:
        assert opened.test is not None and len(opened.test[0]) > 0  # the read went past them
        assert opened.holdout.reader.rejected == len(BAD) - 1  # class 12 decodes; a 10-class job refuses it
        letters = await letters_on(settings, topics.dlq(f"train.{spec.job_id}").name, len(BAD))
    finally:
        await opened.stop()
    by_key = {base64.b64decode(dl.key_b64 or ""): dl for dl in letters}
    assert sorted(by_key) == sorted(BAD)
    assert sorted(dl.source_offset for dl in letters) == [100, 101, 102, 103, 104]
    assert all(dl.source_topic == topic and dl.value_b64 for dl in letters)
    fields = {k: (dl.details["field"], dl.reason) for k, dl in by_key.items()}
    assert fields[b"no-pixels"][0] == "image.pixels[]" and "missing" in fields[b"no-pixels"][1]
    assert fields[b"text-label"][0] == "label" and "number" in fields[b"text-label"][1]
    assert fields[b"short"][0] == "image.pixels[]" and "length" in fields[b"short"][1]
    assert fields[b"not-json"][0] == "" and "not JSON" in fields[b"not-json"][1]
    assert fields[b"class-12"] == ("label", "field 'label': not a class index below 10 (got 12)")


async def test_a_masked_sources_refused_training_records_keep_no_personal_value(settings: Settings) -> None:
    topic = f"{settings.topic_prefix}user.dlq.masked"
    await make_topic(settings, topic, partitions=1)
    x, y, _, _ = digits_split()
    mark = "personal-marker-7c1"
    bad = [(b"k-short", b'{"id": "' + mark.encode() + b'", "image": {"pixels": [1, 2]}, "label": 1}'),
           (b"k-json", b'{"id": "' + mark.encode() + b'", "image": ')]
    await produce(settings, topic, records(x, y, 0, 100) + bad)
    spec = source_spec("topic-dlq-masked", topic, epochs=1)
    spec = spec.model_copy(update={"source": spec.source.model_copy(update={  # type: ignore[union-attr]
        "mask": Masking(drop=["id"])})})
    await ensure(settings, [Topics(settings).train_test(spec.job_id)])
    opened = await open_source(settings, spec, wait_s=30)
    try:
        letters = await letters_on(settings, Topics(settings).dlq(f"train.{spec.job_id}").name, len(bad))
    finally:
        await opened.stop()
    assert sorted(dl.source_offset for dl in letters) == [100, 101]  # both refused and kept...
    for dl in letters:  # ...without the dropped field's value anywhere in them
        assert mark not in dl.model_dump_json() and mark.encode() not in base64.b64decode(dl.value_b64 or "")
