"""JSON records: msgspec parses each value straight into the Source's Struct (validation in C).

A batch is parsed in one list comprehension; only when some record fails is the batch parsed again
one record at a time to name each failure, so good batches pay nothing for bad ones. See
docs/sources.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from aiaas.sources.decoded import Decoded, Rejection
from aiaas.sources.structs import StructForm


class JsonDecoder:
    """``decode(values) -> Decoded`` for JSON object records."""

    def __init__(self, form: StructForm) -> None:
        self.form = form
        self._parse = msgspec.json.Decoder(form.struct, strict=False).decode

    def decode(self, values: Sequence[bytes]) -> Decoded:
        parse = self._parse
        try:
            recs = [parse(v) for v in values]
        except (msgspec.MsgspecError, TypeError):
            return self._one_by_one(values)
        return self.form.decoded(recs, np.arange(len(recs), dtype=np.int64), [])

    def _one_by_one(self, values: Sequence[bytes]) -> Decoded:
        recs: list[Any] = []
        ok: list[int] = []
        rejected: list[Rejection] = []
        for i, v in enumerate(values):
            try:
                recs.append(self._parse(v))
                ok.append(i)
            except msgspec.ValidationError as exc:
                rejected.append(Rejection(i, *self.form.explain(exc)))
            except msgspec.DecodeError as exc:
                rejected.append(Rejection(i, "", f"not JSON: {exc}"))
            except TypeError:
                rejected.append(Rejection(i, "", "no value (tombstone)" if v is None else "not bytes"))
        return self.form.decoded(recs, np.asarray(ok, dtype=np.int64), rejected)
