"""Cut an ONNX graph at layer boundaries into stage graphs that run one after another
(docs/transformers.md, "Split a model across workers").

A cut is a place in the graph's (topological) node order where exactly one tensor computed from the
model's weights is still needed later: the activation between two layers (an MLP's hidden vector
between its linear layers, a transformer's hidden states between encoder layers). What else later
nodes need comes from the graph inputs alone (an attention mask's bias, shapes) and is recomputed
there: each stage is ``onnx.utils.Extractor``'s subgraph from (activation in, the graph inputs it
needs) to (activation out, the graph inputs later stages need, passed through). The last stage has
the original outputs. When node names tell layers (``layer.3``, ``layers/3``), only cuts between
two layers count; cuts are placed so the stages hold about equal shares of the weights.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper
from onnx.utils import Extractor

from aiaas.schemas.errors import AiaasError, ErrorCode

HEAVY_ELEMENTS = 64  # an initializer this big is a weight (smaller ones: scales, shapes, epsilons)
_LAYER = re.compile(r"layers?[._/](\d+)")


def _bad(reason: str, **details: object) -> AiaasError:
    return AiaasError(reason, code=ErrorCode.BAD_REQUEST, **details)


@dataclass(frozen=True)
class Cut:
    """The activation crossing a cut and the share of the weights (bytes) before it."""

    tensor: str
    position: int  # the last node (index in the graph's node order) before the cut
    weight_before: int


def _sizes(graph: onnx.GraphProto) -> dict[str, int]:
    """Weight initializers (float matrices, or float vectors of ``HEAVY_ELEMENTS`` or more): name -> bytes."""
    out = {}
    for init in graph.initializer:
        n = int(np.prod(init.dims)) if init.dims else 1
        dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
        if dtype.kind == "f" and (len(init.dims) >= 2 or n >= HEAVY_ELEMENTS):
            out[init.name] = n * dtype.itemsize
    return out


def _layer(node: onnx.NodeProto) -> int | None:
    found = _LAYER.search(node.name) or next(filter(None, (_LAYER.search(o) for o in node.output)), None)
    return int(found.group(1)) if found else None


def candidates(model: onnx.ModelProto) -> list[Cut]:
    """Every cut with one weight-derived tensor crossing it, at the input of a layer's weights."""
    g = model.graph
    weights = _sizes(g)
    nodes = list(g.node)
    nested = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if any(a.type in nested for n in nodes for a in n.attribute):
        raise _bad("graphs with subgraphs (If, Loop, Scan) cannot be split")
    heavy: set[str] = set()
    made: dict[str, int] = {}
    last_use: dict[str, int] = {o.name: len(nodes) for o in g.output}
    seen: set[str] = set()
    before = [0] * len(nodes)
    total = 0
    for i, n in enumerate(nodes):
        for name in n.input:
            last_use[name] = max(last_use.get(name, -1), i)
            if name in weights and name not in seen:
                seen.add(name)
                total += weights[name]
        before[i] = total
        if any(x in heavy or x in weights for x in n.input):
            heavy.update(n.output)
        for o in n.output:
            made[o] = i
    layered = any(_layer(n) is not None for n in nodes)
    crossing: set[str] = set()
    cuts: list[Cut] = []
    for i, n in enumerate(nodes[:-1]):
        crossing.update(o for o in n.output if o in heavy)
        crossing = {t for t in crossing if last_use.get(t, -1) > i}
        if len(crossing) != 1 or before[i] == 0 or before[i] == total:
            continue
        (t,) = crossing
        users = [nodes[j] for j in range(i + 1, len(nodes)) if t in nodes[j].input]
        if not any(u.input and any(x in weights for x in u.input) for u in users):
            continue  # not the input of a layer's weights (e.g. between a Gemm and its ReLU)
        if layered and not _between_layers(nodes[made[t]], users):
            continue
        if not cuts or cuts[-1].tensor != t:
            cuts.append(Cut(t, i, before[i]))
    return cuts


def _between_layers(producer: onnx.NodeProto, users: Sequence[onnx.NodeProto]) -> bool:
    """The tensor leaves one layer (or the embeddings) for the next."""
    made_in = _layer(producer)
    used_in = {_layer(u) for u in users}
    return any(u is not None and u != made_in for u in used_in)


def choose(cuts: Sequence[Cut], stages: int, total: int) -> list[Cut]:
    """``stages - 1`` cuts, in order, each the closest to an equal share of the weights."""
    if stages < 2:
        raise _bad("a split needs at least 2 stages", stages=stages)
    if len(cuts) < stages - 1:
        raise _bad("the graph has fewer layer boundaries than the split needs", stages=stages,
                   boundaries=len(cuts))
    picked: list[Cut] = []
    start = 0
    for j in range(1, stages):
        target = total * j / stages
        left = stages - 1 - j  # cuts still to place after this one
        pool = cuts[start:len(cuts) - left]
        best = min(pool, key=lambda c: abs(c.weight_before - target))
        picked.append(best)
        start = cuts.index(best) + 1
    return picked


def _total(model: onnx.ModelProto) -> int:
    return sum(_sizes(model.graph).values())


def split(onnx_bytes: bytes, stages: int) -> list[bytes]:
    """The stage graphs of ``onnx_bytes``, first to last; each runs on the previous one's outputs
    (the last has the original outputs). Raises BAD_REQUEST when the graph cannot be cut so."""
    try:
        model = onnx.load_model_from_string(onnx_bytes)
    except Exception as exc:  # protobuf raises several unrelated types
        raise _bad("not an ONNX model", detail=str(exc)[:200]) from exc
    inferred = onnx.shape_inference.infer_shapes(model)
    cuts = choose(candidates(inferred), stages, _total(inferred))
    weights = {x.name for x in model.graph.initializer}
    graph_inputs = [i.name for i in model.graph.input if i.name not in weights]
    outputs = [o.name for o in model.graph.output]
    ext = Extractor(inferred)
    bounds: list[str | None] = [None, *(c.tensor for c in cuts), None]
    ins: list[list[str]] = []
    outs: list[list[str]] = []
    for k in range(stages):
        act_in, act_out = bounds[k], bounds[k + 1]
        outs.append(outputs if act_out is None else [act_out])
        if act_in is None:
            ins.append(graph_inputs)  # the first stage takes what callers send
            continue
        used = _used_inputs(ext.extract_model([act_in, *graph_inputs], outs[k]), graph_inputs)
        ins.append([act_in, *(x for x in graph_inputs if x in used)])
    out_models: list[bytes] = []
    needed_later: set[str] = set()  # graph inputs a later stage needs pass through the ones before it
    for k in range(stages - 1, -1, -1):
        sub = _with_passthrough(ext.extract_model(ins[k], outs[k]), inferred,
                                [x for x in graph_inputs if x in needed_later])
        _finish(sub, model, k, stages)
        out_models.append(bytes(sub.SerializeToString()))
        needed_later |= {x for x in ins[k] if x in graph_inputs}
    return out_models[::-1]


def _used_inputs(sub: onnx.ModelProto, names: Sequence[str]) -> set[str]:
    consumed = {x for n in sub.graph.node for x in n.input} | {o.name for o in sub.graph.output}
    return {x for x in names if x in consumed}


def _with_passthrough(sub: onnx.ModelProto, whole: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """``sub`` with the graph inputs ``names`` also as inputs (if not yet) and outputs as they are."""
    have = {i.name for i in sub.graph.input}
    spec = {i.name: i for i in whole.graph.input}
    for name in names:
        if name not in have:
            sub.graph.input.append(spec[name])
        sub.graph.output.append(spec[name])
    return sub


def _finish(sub: onnx.ModelProto, whole: onnx.ModelProto, k: int, stages: int) -> None:
    """Opsets and IR version of the whole graph; its metadata on the first stage (a text model's
    tokenizer), and on every stage which stage it is."""
    sub.ir_version = whole.ir_version
    del sub.opset_import[:]
    sub.opset_import.extend(whole.opset_import)
    props = {p.key: p.value for p in whole.metadata_props} if k == 0 else {}
    props["aiaas.stage"] = f"{k + 1}/{stages}"
    helper.set_model_props(sub, props)
    for vi in [*sub.graph.input, *sub.graph.output]:  # the worker checks requests against these
        if not vi.type.tensor_type.HasField("shape"):
            raise _bad("a stage tensor has no known rank", tensor=vi.name)
    onnx.checker.check_model(sub)
