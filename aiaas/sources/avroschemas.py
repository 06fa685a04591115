"""Where an Avro record's writer schema comes from: a file, a local ``{id: file}`` map, or a registry.

Confluent's wire format frames each value as magic byte 0, a 4-byte big-endian schema id, then the
bare Avro binary. The id is resolved against a Confluent-compatible registry's REST API
(``GET {url}/schemas/ids/{id}``; Apicurio serves it under ``/apis/ccompat/v7``), or the offline
``ids:`` map, and cached by id: a schema id is immutable, so it is fetched once per process. An id
the registry does not know is the record's fault (a Rejection); a registry that cannot be reached
is not, and raises ``Unavailable`` (retriable) after retrying to a deadline, so the caller keeps its
offsets instead of dead-lettering good records. See docs/sources.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from fastavro import parse_schema
from fastavro.schema import SchemaParseException

from aiaas.schemas.errors import AiaasError, ErrorCode, Unavailable
from aiaas.schemas.sources import AvroSchema

MAGIC = 0
HEADER = 5  # magic byte + 4-byte schema id
UNKNOWN_RETRY_S = 30.0  # an unknown id is asked again after this long (it may be registered since)


def parse_file(path: str) -> Any:
    """A parsed .avsc; a missing or invalid file is a bad spec (bad_request)."""
    try:
        parsed: Any = parse_schema(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError, KeyError, SchemaParseException) as exc:
        raise AiaasError(f"cannot read Avro schema {path}: {exc}", code=ErrorCode.BAD_REQUEST,
                         path=path) from exc
    return parsed


class SchemaRegistry:
    """Writer schemas by id from a Confluent-compatible REST API, cached by id."""

    def __init__(self, url: str, timeout_s: float = 5.0, deadline_s: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s, self.deadline_s = timeout_s, deadline_s
        self._client: httpx.Client | None = None  # opened on first use: no I/O in __init__
        self._unknown: dict[int, float] = {}

    def fetch(self, schema_id: int) -> Any | None:
        """The parsed schema of ``schema_id``, or None when the registry does not know it."""
        if time.monotonic() - self._unknown.get(schema_id, -UNKNOWN_RETRY_S) < UNKNOWN_RETRY_S:
            return None
        body = self._get(f"/schemas/ids/{schema_id}")
        if body is None or body.get("schemaType", "AVRO") != "AVRO":
            self._unknown[schema_id] = time.monotonic()
            return None
        try:
            parsed: Any = parse_schema(json.loads(body["schema"]))
        except (ValueError, TypeError, KeyError, SchemaParseException):
            self._unknown[schema_id] = time.monotonic()  # not a readable Avro schema: as good as unknown
            return None
        return parsed

    def _get(self, path: str) -> dict[str, Any] | None:
        """GET with retries to the deadline; None on 404 (unknown id)."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=self.timeout_s)
        end, pause, last = time.monotonic() + self.deadline_s, 0.1, ""
        while True:
            try:
                resp = self._client.get(path)
                if resp.status_code == 404:
                    return None
                if resp.status_code < 500:
                    resp.raise_for_status()
                    body: dict[str, Any] = resp.json()
                    return body
                last = f"HTTP {resp.status_code}"
            except (httpx.TransportError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            except httpx.HTTPStatusError as exc:  # 4xx other than 404: the registry refuses us
                raise AiaasError(f"schema registry {self.url} refused {path}: {exc}",
                                 code=ErrorCode.BAD_REQUEST, url=self.url) from exc
            if time.monotonic() + pause > end:
                raise Unavailable(f"schema registry {self.url} unreachable for {self.deadline_s:.0f}s "
                                  f"({last}); is it running (infra/schema-registry.sh status)?",
                                  url=self.url)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class WriterSchemas:
    """The writer schema of a record: one file schema (no framing), or by id (Confluent framing)."""

    def __init__(self, spec: AvroSchema) -> None:
        self.framed = spec.file is None
        self.single = parse_file(spec.file) if spec.file is not None else None
        self._by_id: dict[int, Any] = {}
        self._files = dict(spec.ids or {})
        self._registry = SchemaRegistry(spec.registry_url) if spec.registry_url else None

    def by_id(self, schema_id: int) -> Any | None:
        """Cached schema of an id, or None when it is unknown."""
        schema = self._by_id.get(schema_id)
        if schema is None:
            if self._registry is not None:
                schema = self._registry.fetch(schema_id)
            elif schema_id in self._files:
                schema = parse_file(self._files[schema_id])
            if schema is not None:
                self._by_id[schema_id] = schema
        return schema

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
