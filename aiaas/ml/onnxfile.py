"""torch -> ONNX bytes with as few copies of the weights as the exporter allows.

A job's end exports the trained model once, and for a large model every copy of its weights counts
(docs/transformers.md, "Large messages"): exporting into a ``BytesIO`` held the exporter's serialized model
twice and the stream's buffer beside the module and its deep copy, and writing the metadata parsed
the model and serialized it again. Here:

- ``exportable``: the module itself in eval mode when the caller says nothing else uses it meanwhile
  (``in_place``, the aggregator at its job's end) and it is on the CPU, else a CPU copy;
- ``to_onnx``: the TorchScript exporter writes a temporary file, the metadata is appended to it in
  protobuf's wire form (``metadata_fields``: a parser merges repeated fields, so this is the model
  with those ``metadata_props``), and the file is read back once. A graph that must change after
  the export (``edit``: the text model's string outputs) is loaded from the file, changed, and
  written back to it, so the exported bytes are never held beside the parsed model.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from aiaas.schemas.errors import AiaasError, ErrorCode

if TYPE_CHECKING:
    from onnx import ModelProto

OPSET = 18
METADATA_PROPS = (14 << 3) | 2  # ModelProto.metadata_props: field 14, length-delimited


@contextlib.contextmanager
def exportable(module: nn.Module, in_place: bool) -> Iterator[nn.Module]:
    """``module`` on the CPU in eval mode: itself when ``in_place`` and on the CPU (every submodule's
    training flag is put back after), else a deep copy (the original untouched, whatever uses it)."""
    if not in_place or any(p.device.type != "cpu" for p in module.parameters()):
        yield copy.deepcopy(module).cpu().eval()
        return
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in flags:
            m.training = training


def to_onnx(module: nn.Module, example: tuple[torch.Tensor, ...], metadata: Mapping[str, str] | None = None,
            edit: Callable[[ModelProto], None] | None = None, **kw: Any) -> bytes:
    """``torch.onnx.export(module, example, **kw)`` (TorchScript, ``OPSET``) as bytes, changed by
    ``edit`` when given, with ``metadata`` as the model's ``metadata_props``; an INTERNAL AiaasError
    when torch refuses."""
    with tempfile.TemporaryDirectory(prefix="aiaas-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, example, str(path), opset_version=OPSET, dynamo=False, **kw)
        except Exception as exc:  # torch raises many types here; callers need one
            raise AiaasError("ONNX export failed", code=ErrorCode.INTERNAL, detail=repr(exc)) from exc
        if edit is not None:
            _edited(path, edit)
        if metadata:
            with path.open("ab") as f:
                f.write(metadata_fields(metadata))
        return path.read_bytes()


def _edited(path: Path, edit: Callable[[ModelProto], None]) -> None:
    import onnx

    proto = onnx.load(str(path))
    edit(proto)
    path.write_bytes(proto.SerializeToString())


def metadata_fields(metadata: Mapping[str, str]) -> bytes:
    """``metadata`` as serialized ``metadata_props`` entries, to append to a serialized ModelProto."""
    from onnx import StringStringEntryProto

    out = bytearray()
    for key, value in metadata.items():
        entry = StringStringEntryProto(key=key, value=value).SerializeToString()
        out += _varint(METADATA_PROPS) + _varint(len(entry)) + entry
    return bytes(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)
