"""The user's topics as sources: a declared Source (aiaas.schemas.sources) compiled once into a
vectorised decoder of record values (JSON, CSV, Avro, tensor records). See docs/sources.md."""
