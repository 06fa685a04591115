"""Versioned envelope shared by every Kafka message model.

Each message carries ``kind`` (what it is) and ``v`` (schema version) so a consumer can reject a
record meant for another topic or written by a future, incompatible producer with a clear reason.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from aiaas.schemas.errors import InvalidMessage


class Envelope(BaseModel):
    """Base of all message models: JSON on the wire, validated on the way in."""

    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)

    KIND: ClassVar[str] = "envelope"
    VERSION: ClassVar[int] = 1

    v: int = 1

    def to_record(self) -> bytes:
        """Encode to the JSON bytes that go into a record value."""
        body = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        body["kind"] = self.KIND
        return _dumps(body)

    @classmethod
    def from_record(cls, value: bytes | str | None) -> Self:
        """Decode and validate a record value; raises InvalidMessage with the reason."""
        if value is None:
            raise InvalidMessage("record has no value", schema=cls.KIND)
        try:
            data = _loads(value)
        except ValueError as exc:
            raise InvalidMessage("record value is not JSON", schema=cls.KIND, detail=str(exc)) from exc
        if not isinstance(data, dict):
            raise InvalidMessage("record value is not a JSON object", schema=cls.KIND)
        kind = data.pop("kind", cls.KIND)
        if kind != cls.KIND:
            raise InvalidMessage(
                "record kind does not match", schema=cls.KIND, expected=cls.KIND, got=str(kind)
            )
        version = data.get("v", 1)
        if not isinstance(version, int) or version > cls.VERSION:
            raise InvalidMessage(
                "unsupported schema version", schema=cls.KIND, supported=cls.VERSION, got=version
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidMessage(
                "record does not match its schema", schema=cls.KIND, errors=validation_errors(exc)
            ) from exc


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """A JSON-safe, compact list of pydantic errors that names each failing field."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_loads(value: bytes | str) -> Any:
    """``json.loads`` for untrusted bytes: JSON nested too deep for the parser's recursion (e.g.
    ``[[[[...``) raises ValueError like any other bad JSON, not RecursionError (which would escape
    the callers' ``except ValueError`` and stop a consumer's loop)."""
    try:
        return json.loads(value)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


_loads = json_loads
