"""Text serving: a ``text`` BYTES input -> the bundle's tokenizer -> onnxruntime (docs/transformers.md,
"Serve text").

A version whose bundle has ``tokenizer.json`` (or whose graph carries it in its metadata, as a
training job's export does) gets a ``TextModel``. A request to it may send one BYTES input ``text``
(shape ``[n]`` or ``[n, 1]``: UTF-8, non-empty) instead of the graph's ``input_ids`` and
``attention_mask``; pre-tokenized requests go the generic way. The texts of a micro-batch are
tokenized in one call of the Rust tokenizer (truncated to the model's ``max_length``; the reply's
parameters say which), sorted by length and cut into sub-batches each padded to its own longest
text (``plan``), so one long text does not pad 31 short ones. Outputs come back in request order:
the graph's (``label`` and ``scores``, or ``embedding``), plus ``label`` from ``labels.json`` when the
graph has ``scores`` and no ``label``.

Settings: ``AIAAS_INFER_TEXT_BATCH`` (most texts per onnxruntime call), ``..._MAX_TOKENS`` (most
padded tokens per call), ``..._MAX_WASTE`` (a sub-batch of at least ``..._MIN_BATCH`` texts closes
before its share of pad tokens would pass this).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiaas.data.pretrained import text_tokenizer
from aiaas.registry.bundles import CONFIG, LABELS, TOKENIZER, from_onnx
from aiaas.registry.store import Registry
from aiaas.schemas.errors import AiaasError, BadInput, ErrorCode
from aiaas.schemas.registry import ModelVersion
from aiaas.streams.frame import datatype_of

TEXT, IDS, MASK, TYPES = "text", "input_ids", "attention_mask", "token_type_ids"
SIG = (("text", "BYTES"),)  # the batch signature of every text request: they all batch together
Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
Answer = tuple[dict[str, np.ndarray], dict[str, Any]]  # one request's outputs and reply parameters


class TextSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIAAS_INFER_TEXT_", extra="ignore")

    batch: int = Field(default=32, ge=1)
    max_tokens: int = Field(default=8192, ge=1)
    max_waste: float = Field(default=0.2, ge=0.0, le=1.0)
    min_batch: int = Field(default=4, ge=1)


@dataclass(slots=True)
class TextModel:
    """A loaded version's tokenizer and what its graph needs around it."""

    tokenizer: Any
    max_length: int
    inputs: list[str]
    has_label: bool
    labels: list[str] | None = None
    cfg: TextSettings = field(default_factory=TextSettings)
    tokens: int = 0  # tokens fed to onnxruntime, pads included (padding waste = pads / tokens)
    pads: int = 0

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids of each text (one call of the Rust tokenizer) and which were truncated."""
        encoded = self.tokenizer.encode_batch(texts)
        return [e.ids for e in encoded], np.fromiter((bool(e.overflowing) for e in encoded), bool, len(texts))

    def run(self, run: Run, requests: Sequence[np.ndarray]) -> list[Answer]:
        """Blocking: the outputs of each request's texts (``requests``: decoded ``str`` arrays)."""
        texts = [t for r in requests for t in r.tolist()]
        ids, truncated = self.tokenize(texts)
        full = self._outputs(run, ids)
        answers, start = [], 0
        for r in requests:
            end = start + r.size
            answers.append(({n: o[start:end] for n, o in full.items()}, self._params(truncated[start:end])))
            start = end
        return answers

    def _outputs(self, run: Run, ids: list[list[int]]) -> dict[str, np.ndarray]:
        lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
        full: dict[str, np.ndarray] = {}
        for part in plan(lengths, self.cfg):
            width = int(lengths[part].max())
            feeds = self._feeds([ids[i] for i in part], width)
            self.tokens += feeds[IDS].size
            self.pads += feeds[IDS].size - int(lengths[part].sum())
            for name, out in run(feeds).items():
                if name not in full:
                    full[name] = np.empty((len(ids), *out.shape[1:]), out.dtype)
                full[name][part] = out
        if not self.has_label and self.labels and "scores" in full:
            full["label"] = np.asarray(self.labels, dtype=object)[full["scores"].argmax(axis=1)]
        return full

    def _feeds(self, ids: list[list[int]], width: int) -> dict[str, np.ndarray]:
        arr = np.zeros((len(ids), width), np.int64)
        mask = np.zeros((len(ids), width), np.int64)
        for k, row in enumerate(ids):
            arr[k, :len(row)] = row
            mask[k, :len(row)] = 1
        feeds = {IDS: arr, MASK: mask}
        if TYPES in self.inputs:
            feeds[TYPES] = np.zeros_like(arr)
        return feeds

    def _params(self, truncated: np.ndarray) -> dict[str, Any]:
        rows = np.flatnonzero(truncated)
        if not rows.size:
            return {"truncated": False}
        return {"truncated": True, "truncated_count": int(rows.size), "max_length": self.max_length,
                "truncated_rows": ",".join(map(str, rows.tolist()))}


def plan(lengths: np.ndarray, cfg: TextSettings) -> list[np.ndarray]:
    """Sub-batches (indices into ``lengths``) sorted by length: a sub-batch closes at ``cfg.batch``
    texts, at ``cfg.max_tokens`` padded tokens, or (from ``cfg.min_batch`` texts) before the next
    text would make more than ``cfg.max_waste`` of it padding."""
    order = np.argsort(lengths, kind="stable")
    parts: list[np.ndarray] = []
    start, total = 0, 0
    for k, i in enumerate(order):
        n, width = k - start, int(lengths[i])
        if n and (n >= cfg.batch or (n + 1) * width > cfg.max_tokens or
                  (n >= cfg.min_batch and 1 - (total + width) / ((n + 1) * width) > cfg.max_waste)):
            parts.append(order[start:k])
            start, total = k, 0
        total += width
    if start < len(order):
        parts.append(order[start:])
    return parts


# --------------------------------------------------------------------------- requests


def wants(tm: TextModel | None, arrays: Mapping[str, np.ndarray]) -> bool:
    """A request for the text path: a text model, and a ``text`` input or any BYTES input."""
    return tm is not None and (TEXT in arrays or any(a.dtype.kind in "OSU" for a in arrays.values()))


def checked(arrays: dict[str, np.ndarray]) -> int:
    """Check a text request and decode its texts in place (``arrays[TEXT]``: a flat ``str`` array);
    returns how many texts it has. Raises BadInput naming what is wrong."""
    if arrays.keys() != {TEXT}:
        raise BadInput(f"a text model takes one BYTES input named {TEXT!r} (or input_ids and "
                       "attention_mask, INT64)", got=sorted(arrays), expected=[TEXT])
    a = arrays[TEXT]
    if a.dtype.kind not in "OSU":
        raise BadInput("wrong datatype", input=TEXT, expected="BYTES", got=datatype_of(a).value)
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[1] != 1) or a.size == 0:
        raise BadInput("wrong shape", input=TEXT, expected="[n] or [n, 1], n >= 1", got=list(a.shape))
    texts = np.empty(a.size, dtype=object)
    for i, x in enumerate(a.reshape(-1).tolist()):
        if isinstance(x, bytes):
            try:
                x = x.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadInput("text is not valid UTF-8", input=TEXT, index=i, position=exc.start) from None
        if not isinstance(x, str):
            raise BadInput("text must be a string", input=TEXT, index=i, got=type(x).__name__)
        if not x.strip():
            raise BadInput("text is empty (or only whitespace)", input=TEXT, index=i)
        texts[i] = x
    arrays[TEXT] = texts
    return int(a.size)


# --------------------------------------------------------------------------- loading


async def load_text(registry: Registry, mv: ModelVersion, session: Any) -> TextModel | None:
    """The version's TextModel: from its bundle files, else from its graph's metadata; None when it
    has no tokenizer (not a text model)."""
    names = {f.name for f in mv.files}
    if TOKENIZER in names:
        files = {n: await registry.load_file(mv, n) for n in (TOKENIZER, CONFIG, LABELS) if n in names}
    else:
        files = from_onnx(dict(session.get_modelmeta().custom_metadata_map))
    if TOKENIZER not in files:
        return None
    try:
        config = json.loads(files.get(CONFIG, b"{}"))
        labels = json.loads(files[LABELS]) if LABELS in files else None
        max_length = int(config.get("max_length", 512))
        tokenizer = await asyncio.to_thread(text_tokenizer, files[TOKENIZER].decode(), max_length)
    except Exception as exc:  # a broken bundle: the version does not load, the worker says why
        raise AiaasError("text bundle does not load", code=ErrorCode.INTERNAL, model=mv.name,
                         version=mv.version, detail=str(exc)[:300]) from exc
    inputs = [s.name for s in mv.inputs]
    if not {IDS, MASK} <= set(inputs):
        raise AiaasError("a text model's graph needs input_ids and attention_mask inputs",
                         code=ErrorCode.INTERNAL, model=mv.name, version=mv.version, inputs=inputs)
    outputs = {s.name for s in mv.outputs}
    return TextModel(tokenizer, max_length, inputs, "label" in outputs,
                     [str(x) for x in labels] if isinstance(labels, list) else None)
