"""A source's declared personal fields (its ``mask:`` block), applied where records leave the decoder.

``compile_source`` wraps the decoder of a source that declares a mask in a ``MaskedDecoder``: the
passthrough fields it returns are dropped or hashed (``aiaas.streams.masking``), and a rejection's
reason never quotes a personal value (the values are read from the record and scrubbed out; a record
too broken to read keeps only the decoder's kind of failure, e.g. ``not JSON``). ``SourceMasker``
masks what the scoring worker writes: the prediction records' keys (``record_key``) and each dead
letter's key, headers and kept value. The kept value is the record with its personal fields dropped
or hashed (JSON and CSV); an Avro or tensor record, or one that cannot be read, keeps no value at
all: the dead letter names the source topic, partition and offset, where the original still is.
See docs/security.md, "Masking".
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from typing import Any, Protocol

from aiaas.schemas.errors import AiaasError
from aiaas.schemas.sources import Source
from aiaas.sources.decoded import Decoded, Decoder, Rejection
from aiaas.streams.masking import Masker, MaskSettings
from aiaas.streams.record import Record

WITHHELD = "withheld: the source declares personal fields and this record could not be masked"


class SourceMasker:
    """Masks one source's records: their decoded documents, payloads, keys and headers."""

    def __init__(self, source: Source, masker: Masker) -> None:
        self.source, self.masker = source, masker

    def document(self, raw: bytes | None) -> dict[str, Any] | None:
        """The record as a document whose fields the mask names (JSON, CSV); None if unreadable."""
        if raw is None:
            return None
        try:
            if self.source.format == "json":
                doc = json.loads(raw)
                return doc if isinstance(doc, dict) else None
            if self.source.format == "csv" and self.source.csv is not None:
                cells = next(csv.reader(io.StringIO(raw.decode()), delimiter=self.source.csv.delimiter))
                cols = self.source.csv.columns
                return dict(zip(cols, cells, strict=True)) if len(cells) == len(cols) else None
        except (ValueError, csv.Error, StopIteration):
            return None
        return None  # avro, tensor: not re-encoded here

    def payload(self, raw: bytes | None) -> tuple[bytes | None, list[str] | None]:
        """The masked bytes of a record and the personal values found; (None, None) if not maskable."""
        doc = self.document(raw)
        if doc is None:
            return None, None
        found = self.masker.apply(doc)
        if self.source.format == "json":
            return json.dumps(doc, separators=(",", ":")).encode(), found
        assert self.source.csv is not None
        out = io.StringIO()
        cols = self.source.csv.columns
        csv.writer(out, delimiter=self.source.csv.delimiter, lineterminator="").writerow(
            ["" if doc.get(c) is None else doc[c] for c in cols])  # a dropped column is left empty
        return out.getvalue().encode(), found

    def reason(self, raw: bytes | None, reason: str) -> str:
        """A rejection's reason without the record's personal values."""
        _, found = self.payload(raw)
        if found is None:  # unreadable: keep the kind of failure, not a parser's quote of the bytes
            return self.masker.scrub(reason.split(":", 1)[0], self.guessed(raw or b""))
        return self.masker.scrub(reason, found)

    def guessed(self, raw: bytes) -> list[str]:
        """The personal values an unreadable record seems to hold (``"name": value`` in broken JSON,
        the declared columns' cells of a CSV line with the wrong number of them)."""
        text = raw.decode("utf-8", "replace")
        if self.source.format == "csv" and self.source.csv is not None:
            cells = text.split(self.source.csv.delimiter)
            cols = self.source.csv.columns
            at = [cols.index(p) for p in self.masker.actions if p in cols]
            return [cells[i] for i in at if i < len(cells)]
        out: list[str] = []
        for path in self.masker.actions:
            name = re.escape(path.rsplit(".", 1)[-1])
            out += re.findall(rf'"{name}"\s*:\s*"((?:[^"\\]|\\.)*)', text)
            out += re.findall(rf'"{name}"\s*:\s*([^\s,}}\]"]+)', text)
        return out

    def record(self, rec: Record, error: AiaasError) -> Record:
        """A dead letter's record and error, masked (``error`` is changed in place)."""
        value, found = self.payload(rec.value)
        if found is None:
            error.details["value"] = WITHHELD
            found = self.guessed(rec.value or b"")
        error.reason = self.masker.scrub(error.reason, found)
        error.args = (error.reason,)
        error.details = {k: self.masker.scrub(v, found) if isinstance(v, str) else v
                         for k, v in error.details.items()}
        return Record(rec.topic, rec.partition, rec.offset, self.masker.key(rec.key), value,
                      self.masker.headers(rec.headers), rec.timestamp_ms, rec.first_offset)

    def outgoing(self, outs: Sequence[_Writes]) -> None:
        """Mask what a poll of stream scoring writes, in place: prediction keys and dead letters."""
        for out in outs:
            if self.masker.spec.record_key != "keep":
                out.predictions[:] = [(self.masker.key(k), v, hs) for k, v, hs in out.predictions]
            out.rejects[:] = [(self.record(rec, err), err) for rec, err in out.rejects]


class _Writes(Protocol):
    predictions: list[tuple[bytes | None, bytes, Any]]
    rejects: list[tuple[Record, AiaasError]]


class MaskedDecoder:
    """A source's decoder whose passthrough fields and rejection reasons are masked."""

    def __init__(self, inner: Decoder, masks: SourceMasker) -> None:
        self.inner, self.masks = inner, masks

    def decode(self, values: Sequence[bytes]) -> Decoded:
        try:
            decoded = self.inner.decode(values)
        except Exception as exc:  # its text may quote a record: only its type goes on
            raise AiaasError(f"the source decoder failed ({type(exc).__name__})") from None
        for row in decoded.passthrough:
            self.masks.masker.passthrough(row)
        decoded.rejected = [Rejection(r.index, r.field, self.masks.reason(values[r.index], r.reason))
                            for r in decoded.rejected]
        return decoded


def source_masker(source: Source, settings: MaskSettings | None = None) -> SourceMasker | None:
    """The masker of ``source``'s ``mask:`` block, or None without one (raises without a key)."""
    masker = Masker.of(source.mask, settings)
    return None if masker is None else SourceMasker(source, masker)


def with_masking(source: Source, decoder: Decoder) -> Decoder:
    """``decoder``, masked when ``source`` declares personal fields."""
    masks = source_masker(source)
    return decoder if masks is None else MaskedDecoder(decoder, masks)
