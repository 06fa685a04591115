"""A declared record source: the user's own topic, its format, and which fields are features.

One ``Source`` describes how to turn the records of a topic the user already has (JSON, Avro from a
file schema or behind a schema registry, CSV lines, or our tensor records) into numeric feature
rows, an optional label and passthrough fields. It is the ``source:`` block of a JobSpec and of
``aiaas score --source spec.yaml``; ``aiaas schemas export`` writes its JSON Schema like the others.
The spec is compiled once into a decoder (``aiaas.sources``); it is never interpreted per record.
See docs/sources.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aiaas.schemas.masking import Masking

PATH = r"^[A-Za-z_][\w-]*(\.[A-Za-z_0-9][\w-]*)*(\[\])?$"  # dotted path; a trailing [] expands an array


PathStr = Annotated[str, Field(pattern=PATH)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeatureField(_Spec):
    """One feature: a dotted path into the record, with what to do when it is missing or categorical.

    A numeric field gives one column (an array field of fixed ``width`` gives ``width`` columns). A
    field with a ``vocabulary`` is categorical: ``one_hot`` gives one column per entry, ``index`` one
    column holding the entry's position; a value outside the vocabulary is refused (dead letter),
    unless ``default`` names an entry of it.
    """

    path: str = Field(pattern=PATH)
    default: float | str | None = None  # None: a record without the field is refused
    vocabulary: list[str] | None = None
    encoding: Literal["one_hot", "index"] = "one_hot"
    width: int | None = Field(default=None, ge=1)  # columns of an array field (path ends in [])

    @model_validator(mode="after")
    def _consistent(self) -> FeatureField:
        if self.path.endswith("[]") and self.width is None:
            raise ValueError(f"array field {self.path!r} needs its width (number of columns)")
        if self.vocabulary is not None and self.default is not None \
                and (not isinstance(self.default, str) or self.default not in self.vocabulary):
            raise ValueError(f"default {self.default!r} is not in the vocabulary of {self.path!r}")
        if self.vocabulary is None and isinstance(self.default, str):
            raise ValueError(f"numeric field {self.path!r} needs a number as its default")
        if self.vocabulary is not None and self.path.endswith("[]"):
            raise ValueError(f"categorical field {self.path!r} cannot be an array")
        return self

    def columns(self) -> int:
        if self.vocabulary is not None:
            return len(self.vocabulary) if self.encoding == "one_hot" else 1
        return self.width or 1


class CsvLayout(_Spec):
    """CSV lines: a header names the columns once here (records carry no header line)."""

    columns: list[str] = Field(min_length=1)
    delimiter: str = Field(default=",", min_length=1, max_length=1)


class AvroSchema(_Spec):
    """Where an Avro record's writer schema comes from: a file, or a Confluent-compatible registry
    (records framed as magic byte 0 + 4-byte schema id), or a local ``{id: schema file}`` map."""

    file: str | None = None  # an .avsc path: records are bare Avro binary
    registry_url: str | None = None  # e.g. http://127.0.0.1:18081/apis/ccompat/v7
    ids: dict[int, str] | None = None  # schema id -> .avsc path, for Confluent framing offline

    @model_validator(mode="after")
    def _one(self) -> AvroSchema:
        if sum(x is not None for x in (self.file, self.registry_url, self.ids)) != 1:
            raise ValueError("avro needs exactly one of file, registry_url, ids")
        return self


class Source(_Spec):
    """The user's topic and how to read it."""

    topic: str = Field(min_length=1, max_length=249)
    format: Literal["json", "avro", "csv", "tensor"] = "json"
    features: list[FeatureField | PathStr] = Field(min_length=1)  # a bare string is a numeric path
    label: str | None = Field(default=None, pattern=PATH)
    label_vocabulary: list[str] | None = None  # class names, when the label is a string
    key: str | None = Field(default=None, pattern=PATH)  # split and partitioning; default: record key
    passthrough: list[PathStr] = Field(default_factory=list)  # fields copied to each prediction record
    csv: CsvLayout | None = None
    avro: AvroSchema | None = None
    start: Literal["earliest", "latest"] | datetime = "earliest"
    end: datetime | dict[int, int] | None = None  # None: unbounded; or partition -> end offset (excl.)
    mask: Masking | None = None  # personal fields dropped or hashed at the edge (docs/security.md)

    @model_validator(mode="after")
    def _format_block(self) -> Source:
        if self.format == "csv" and self.csv is None:
            raise ValueError("format csv needs a csv: block naming the columns")
        if self.format == "avro" and self.avro is None:
            raise ValueError("format avro needs an avro: block (file, registry_url or ids)")
        for f in self.features:
            if isinstance(f, str) and f.endswith("[]"):
                raise ValueError(f"array field {f!r} needs its width: write {{path: {f}, width: N}}")
        dropped = set(self.mask.drop if self.mask else ())
        for p in self.passthrough:
            if p in dropped:
                raise ValueError(f"passthrough field {p!r} is declared drop in mask: hash it or leave it out")
        return self

    def fields(self) -> list[FeatureField]:
        return [f if isinstance(f, FeatureField) else FeatureField(path=f) for f in self.features]

    def width(self) -> int:
        """Number of feature columns a decoded row has."""
        return sum(f.columns() for f in self.fields())
