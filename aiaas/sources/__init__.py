"""The user's topics as sources: a declared Source (aiaas.schemas.sources) compiled once into a
vectorised decoder of record values (JSON, CSV, Avro, tensor records). See docs/sources.md."""

from aiaas.sources.compile import compile_source
from aiaas.sources.decoded import Decoded, Decoder, Rejection

__all__ = ["Decoded", "Decoder", "Rejection", "compile_source"]
