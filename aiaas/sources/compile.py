"""``compile_source``: a Source -> its decoder, built once (see docs/sources.md)."""

from __future__ import annotations

from aiaas.schemas.sources import Source
from aiaas.sources.avrodec import AvroDecoder
from aiaas.sources.csvdec import CsvDecoder
from aiaas.sources.decoded import Decoder
from aiaas.sources.jsondec import JsonDecoder
from aiaas.sources.masking import with_masking
from aiaas.sources.plan import Plan
from aiaas.sources.structs import StructForm
from aiaas.sources.tensordec import TensorDecoder


def compile_source(source: Source, *, labels: bool = True) -> Decoder:
    """The decoder of ``source``'s record values.

    ``labels=False`` ignores the declared label (scoring reads records that may carry none); with
    it, a record without its label is refused. Raises AiaasError (bad_request) for a spec that
    cannot be compiled (a path both a value and an object, an unreadable schema file...). A
    source with a ``mask:`` gets its decoder wrapped (``aiaas.sources.masking``).
    """
    return with_masking(source, _compile(source, labels))


def _compile(source: Source, labels: bool) -> Decoder:
    plan = Plan(source, labels=labels)
    if source.format == "json":
        return JsonDecoder(StructForm(plan))
    if source.format == "avro":
        return AvroDecoder(source, StructForm(plan))
    if source.format == "csv":
        return CsvDecoder(source, plan)
    return TensorDecoder(source, plan)
