"""A model version's bytes outside the ``models`` records: what the ONNX graph declares (its
signature) and the file:// artifact store used when ``artifact_dir`` is set."""

from __future__ import annotations

from pathlib import Path

from aiaas.schemas.errors import AiaasError, ErrorCode, InvalidMessage
from aiaas.schemas.inference import DATATYPES_BY_NUMPY, Datatype
from aiaas.schemas.registry import TensorSignature


def signature(onnx_bytes: bytes) -> tuple[list[TensorSignature], list[TensorSignature]]:
    """Inputs (initializers excluded) and outputs of an ONNX graph; InvalidMessage if it is not one."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    try:
        model = onnx.load_model_from_string(onnx_bytes)
    except Exception as exc:  # protobuf raises several unrelated types
        raise InvalidMessage("not an ONNX model", detail=str(exc)[:200]) from exc
    graph = model.graph
    if not graph.output:
        raise InvalidMessage("ONNX graph has no outputs")
    init = {i.name for i in graph.initializer}

    def sig(vi: onnx.ValueInfoProto) -> TensorSignature:
        if not vi.type.HasField("tensor_type"):
            raise InvalidMessage("only tensor inputs and outputs are supported", tensor=vi.name)
        tt = vi.type.tensor_type
        if tt.elem_type == onnx.TensorProto.STRING:
            dt = Datatype.BYTES
        else:
            try:
                dt = DATATYPES_BY_NUMPY[tensor_dtype_to_np_dtype(tt.elem_type).name]
            except KeyError as exc:
                raise InvalidMessage("unsupported tensor element type", tensor=vi.name,
                                     elem_type=int(tt.elem_type)) from exc
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        return TensorSignature(name=vi.name, datatype=dt, shape=dims)

    return [sig(v) for v in graph.input if v.name not in init], [sig(v) for v in graph.output]


def write_file(path: Path, data: bytes) -> None:
    """Atomically (write aside, then rename): a reader never sees half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def read_uri(uri: str) -> bytes:
    """The bytes behind a file:// artifact URI (the only scheme served here)."""
    if not uri.startswith("file://"):
        raise AiaasError("only file:// artifact URIs are supported here", code=ErrorCode.BAD_REQUEST, uri=uri)
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(uri).path)).read_bytes()
