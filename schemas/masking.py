"""Personal fields a source or a model declares, and what becomes of them at the edge.

A ``Masking`` block names dotted paths to ``drop`` (the field is removed) or ``hash`` (its value is
replaced by a keyed hash, HMAC-SHA256 truncated to ``hash_chars`` hex characters: the same value
always gives the same hash, so joins on it still work, but it cannot be reversed without the key).
It is the ``mask:`` block of a source (``aiaas.schemas.sources.Source``) and the ``masking`` of a
registered model version (paths into a request's ``parameters``). Only field names travel here,
never the key: the key comes from ``AIAAS_MASK_KEY`` / ``AIAAS_MASK_KEY_FILE``. See
docs/security.md, "Masking".
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MASK_PATH = r"^[A-Za-z_][\w-]*(\.[A-Za-z_0-9][\w-]*)*$"  # dotted; lists on the way are walked

MaskPath = Annotated[str, Field(pattern=MASK_PATH)]


class Masking(BaseModel):
    """Personal fields: removed (``drop``) or replaced by a keyed hash (``hash``) at the edge."""

    model_config = ConfigDict(extra="forbid")

    drop: list[MaskPath] = Field(default_factory=list)
    hash: list[MaskPath] = Field(default_factory=list)
    record_key: Literal["keep", "hash", "drop"] = "keep"  # the Kafka key of a source's records
    hash_chars: int = Field(default=16, ge=8, le=64)  # hex characters kept of the HMAC

    @model_validator(mode="after")
    def _disjoint(self) -> Masking:
        paths = self.drop + self.hash
        for p in paths:
            if paths.count(p) > 1:
                raise ValueError(f"masked field {p!r} is declared twice")
            inner = [q for q in paths if q.startswith(p + ".")]
            if inner:
                raise ValueError(f"masked field {inner[0]!r} lies inside masked field {p!r}")
        return self

    def needs_key(self) -> bool:
        return bool(self.hash) or self.record_key == "hash"

    def empty(self) -> bool:
        return not self.drop and not self.hash and self.record_key == "keep"
