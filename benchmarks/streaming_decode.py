"""Source decoding speed: records/s of a compiled ``aiaas.sources`` decoder, one core, warm.

    python -m benchmarks.streaming_decode [--quick]

Records carry 64 numeric features, decoded in batches of ``BATCH`` (one poll's worth) by the same
``compile_source`` decoder the scoring worker and training from a topic use (docs/sources.md); no
broker: this is the decoder's own cost, in this process, on one thread. Values are made once, then
each format is decoded for ``--seconds`` after a warm-up; the best of three rounds is reported, as
records per CPU-second of this process (the machine may be shared: wall time would count the
seconds other processes held the core; the decoder runs on one thread, so this is per core).

- ``decode_json_per_s``: JSON objects with 64 named numeric fields (``{"f0": 0.374540, ...}``,
  six decimals) and an ``id`` passed through; ``decode_json_array_per_s``: the same numbers as one
  array field (``{"id": 7, "x": [...]}``, the scoring benchmark's records).
- ``decode_avro_per_s``: bare Avro binary of a record of 64 doubles against its .avsc (a fixed
  layout: one ``np.frombuffer`` per batch); ``decode_avro_generic_per_s``: the same record with a
  ``string`` id passed through, which fastavro reads record by record (the general path), and
  ``decode_avro_confluent_per_s``: that record Confluent-framed with a schema id (ids map).
- ``decode_csv_per_s``: CSV lines of 64 numbers.

Target (issue 16): ``decode_json_per_s`` >= 200,000 per core. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fastavro
import msgspec
import numpy as np

from aiaas.schemas.sources import Source
from aiaas.sources import compile_source

FEATURES = 64
BATCH = 500
TARGET_JSON_PER_S = 200_000


def _rate(decode: Callable[[Sequence[bytes]], Any], values: list[bytes], seconds: float) -> int:
    """Best of three rounds of ``seconds`` each, records/s; every batch must decode fully."""
    batches = [values[i : i + BATCH] for i in range(0, len(values), BATCH)]
    got = decode(batches[0])
    assert len(got.ok) == len(batches[0]) and not got.rejected, got.rejected[:3]
    best = 0.0
    for _ in range(3):
        n, began, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - began < seconds:
            for b in batches:
                decode(b)
            n += len(values)
        best = max(best, n / (time.process_time() - cpu))
    return round(best)


def _avro(schema: dict[str, Any], rows: list[dict[str, Any]], framing: bytes = b"") -> list[bytes]:
    parsed = fastavro.parse_schema(schema)
    out = []
    for r in rows:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r)
        out.append(framing + buf.getvalue())
    return out


def _sources(folder: Path) -> dict[str, tuple[Source, list[bytes]]]:
    """Each measured case: its Source and its record values."""
    rng = np.random.default_rng(7)
    x = np.round(rng.random((20_000, FEATURES)), 6)
    names = [f"f{i}" for i in range(FEATURES)]
    dicts = [dict(zip(names, row, strict=True)) for row in x.tolist()]
    doubles = {"type": "record", "name": "Event", "fields": [{"name": n, "type": "double"} for n in names]}
    with_id = {**doubles, "fields": [{"name": "id", "type": "string"}, *doubles["fields"]]}
    (folder / "doubles.avsc").write_text(json.dumps(doubles))
    (folder / "with_id.avsc").write_text(json.dumps(with_id))
    framed = b"\x00" + (42).to_bytes(4, "big")
    id_rows = [{"id": f"e{i}", **d} for i, d in enumerate(dicts)]
    spec = {"topic": "t", "features": names}
    enc = msgspec.json.encode
    return {
        "decode_json_per_s": (Source.model_validate({**spec, "passthrough": ["id"]}),
                              [enc({"id": i, **d}) for i, d in enumerate(dicts)]),
        "decode_json_array_per_s": (
            Source.model_validate({"topic": "t", "features": [{"path": "x[]", "width": FEATURES}],
                                   "passthrough": ["id"]}),
            [enc({"id": i, "x": row}) for i, row in enumerate(x.tolist())]),
        "decode_avro_per_s": (Source.model_validate({**spec, "format": "avro",
                                                     "avro": {"file": str(folder / "doubles.avsc")}}),
                              _avro(doubles, dicts)),
        "decode_avro_generic_per_s": (
            Source.model_validate({**spec, "format": "avro", "passthrough": ["id"],
                                   "avro": {"file": str(folder / "with_id.avsc")}}),
            _avro(with_id, id_rows)),
        "decode_avro_confluent_per_s": (
            Source.model_validate({**spec, "format": "avro", "passthrough": ["id"],
                                   "avro": {"ids": {42: str(folder / "with_id.avsc")}}}),
            _avro(with_id, id_rows, framed)),
        "decode_csv_per_s": (Source.model_validate({**spec, "format": "csv", "csv": {"columns": names}}),
                             [",".join(map(str, row)).encode() for row in x.tolist()]),
    }


def figures(quick: bool = False, seconds: float | None = None) -> dict[str, Any]:
    """Records/s per format (see the module docstring); what benchmarks.streaming reports."""
    seconds = seconds or (0.5 if quick else 2.0)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, values) in _sources(Path(tmp)).items():
            out[name] = _rate(compile_source(source).decode, values, seconds)
    out["features"], out["batch"], out["cores"] = FEATURES, BATCH, 1
    out["target_decode_json_per_s"] = TARGET_JSON_PER_S
    out["meets_json_target"] = out["decode_json_per_s"] >= TARGET_JSON_PER_S
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.5 s per round instead of 2 s")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per round")
    args = parser.parse_args()
    print(json.dumps(figures(args.quick, args.seconds)))


if __name__ == "__main__":
    main()
