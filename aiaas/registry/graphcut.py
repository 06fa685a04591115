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
MATMULS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "MatMulInteger", "QLinearMatMul"})
_LAYER = re.compile(r"layers?[._/](\d+)")


def _bad(reason: str, **details: object) -> AiaasError:
    return AiaasError(reason, code=ErrorCode.BAD_REQUEST, **details)


@dataclass(frozen=True)
class Cut:
    """The activation crossing a cut, the layer weights (bytes multiplied) before it, how many weight
    matrices it feeds, and whether node names put it between two layers (None: unnamed nodes)."""

    tensor: str
    position: int  # the last node (index in the graph's node order) before the cut
    weight_before: int
    fan_out: int = 1
    named: bool | None = None


def _sizes(graph: onnx.GraphProto) -> dict[str, int]:
    """Weights (float matrices, or float vectors of ``HEAVY_ELEMENTS`` or more), as initializers or
    as Constant nodes (frozen layers export so): tensor name -> bytes."""
    tensors = [(init.name, init) for init in graph.initializer]
    tensors += [(n.output[0], a.t) for n in graph.node if n.op_type == "Constant"
                for a in n.attribute if a.name == "value"]
    out = {}
    for name, t in tensors:
        n = int(np.prod(t.dims)) if t.dims else 1
        dtype = helper.tensor_dtype_to_np_dtype(t.data_type)
        if dtype.kind == "f" and (len(t.dims) >= 2 or n >= HEAVY_ELEMENTS):
            out[name] = n * dtype.itemsize
    return out


def _layer(node: onnx.NodeProto) -> int | None:
    found = _LAYER.search(node.name) or next(filter(None, (_LAYER.search(o) for o in node.output)), None)
    return int(found.group(1)) if found else None


@dataclass
class _Scan:
    """One pass over the nodes: what depends on weights, where tensors are made and last used, and
    the bytes of weight matrices multiplied up to each node (the compute a cut balances)."""

    weights: dict[str, int]  # weights, and what is computed from weights alone (a transposed matrix)
    heavy: set[str]  # tensors computed from requests and weights: activations
    made: dict[str, int]
    last_use: dict[str, int]
    before: list[int]

    def multiplies(self, node: onnx.NodeProto) -> int:
        """Bytes of weight matrices ``node`` multiplies its activations with (0: none)."""
        if node.op_type not in MATMULS or all(not x or x in self.weights for x in node.input):
            return 0
        return sum(self.weights.get(x, 0) for x in node.input)


def _scan(graph: onnx.GraphProto) -> _Scan:
    nodes = list(graph.node)
    nested = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if any(a.type in nested for n in nodes for a in n.attribute):
        raise _bad("graphs with subgraphs (If, Loop, Scan) cannot be split")
    scan = _Scan(_sizes(graph), set(), {}, {o.name: len(nodes) for o in graph.output}, [0] * len(nodes))
    total = 0
    for i, n in enumerate(nodes):
        for name in n.input:
            scan.last_use[name] = max(scan.last_use.get(name, -1), i)
        if n.op_type != "Constant" and n.input and all(not x or x in scan.weights for x in n.input):
            scan.weights.update(dict.fromkeys(n.output, sum(scan.weights[x] for x in n.input if x)))
        elif any(x in scan.heavy or x in scan.weights for x in n.input):  # embeddings, layers, heads
            scan.heavy.update(n.output)
            total += scan.multiplies(n)
        scan.before[i] = total
        scan.made.update(dict.fromkeys(n.output, i))
    return scan


def candidates(model: onnx.ModelProto) -> list[Cut]:
    """Every cut with one activation crossing it, where it feeds a layer's weight matrices; when node
    names tell layers, only between layers; else only those feeding the most matrices (a transformer
    layer's input feeds its Q, K and V projections, the half-way point inside a layer one matrix)."""
    nodes = list(model.graph.node)
    scan = _scan(model.graph)
    total = scan.before[-1] if nodes else 0
    crossing: set[str] = set()
    cuts: list[Cut] = []
    for i, n in enumerate(nodes[:-1]):
        crossing.update(o for o in n.output if o in scan.heavy)
        crossing = {t for t in crossing if scan.last_use.get(t, -1) > i}
        if len(crossing) != 1 or scan.before[i] in (0, total) or (cuts and cuts[-1].tensor in crossing):
            continue
        (t,) = crossing
        users = [u for u in nodes[i + 1:] if t in u.input]
        fan = sum(1 for u in users if scan.multiplies(u))
        if fan:  # else not the input of a layer (e.g. between a Gemm and its ReLU)
            cuts.append(Cut(t, i, scan.before[i], fan, _named(nodes[scan.made[t]], users)))
    most = max((c.fan_out for c in cuts if c.named is None), default=0)
    return [c for c in cuts if c.named or (c.named is None and c.fan_out == most)]


def _named(producer: onnx.NodeProto, users: Sequence[onnx.NodeProto]) -> bool | None:
    """True when the tensor leaves one named layer (or what comes before them) for the next, False
    inside one layer, None when the nodes carry no layer names."""
    made_in = _layer(producer)
    used_in = {_layer(u) for u in users}
    if made_in is None and used_in == {None}:
        return None
    return any(u is not None and u != made_in for u in used_in)


def choose(cuts: Sequence[Cut], stages: int, total: int) -> list[Cut]:
    """``stages - 1`` cuts, in order, each the closest to an equal share of the weights multiplied."""
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
    before = _scan(model.graph).before
    return before[-1] if before else 0


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


EXIT_PREFIX = "exit."  # a stage's exit head outputs: exit.<name> answers <name>
EXIT_META = "aiaas.exit"  # {"threshold": t, "confidence": "exit.<scores>"} on a stage with an exit head


def with_exit(stage: bytes, head: bytes, threshold: float) -> bytes:
    """``stage`` with an exit head: ``head`` (an ONNX graph from some of the stage's outputs to the
    model's answer, with a probabilities output ``scores`` or ``probabilities``) runs on the stage's
    outputs beside them, its outputs named ``exit.<name>``; a request whose every row's highest
    probability is at least ``threshold`` is answered from them (agents/inference/stages.py)."""
    import json

    s, hd = onnx.load_model_from_string(stage), onnx.load_model_from_string(head)
    have = {o.name for o in s.graph.output}
    wants = [i.name for i in hd.graph.input if i.name not in {x.name for x in hd.graph.initializer}]
    if not set(wants) <= have:
        raise _bad("the exit head's inputs must be outputs of its stage", inputs=wants,
                   stage_outputs=sorted(have))
    conf = next((o.name for o in hd.graph.output if o.name in ("scores", "probabilities")), None)
    if conf is None:
        raise _bad("the exit head needs a 'scores' or 'probabilities' output",
                   outputs=[o.name for o in hd.graph.output])
    hd.ir_version = s.ir_version
    del hd.opset_import[:], hd.metadata_props[:]
    hd.opset_import.extend(s.opset_import)
    props = {p.key: p.value for p in s.metadata_props}
    merged = onnx.compose.merge_models(
        s, onnx.compose.add_prefix(hd, EXIT_PREFIX), [(n, EXIT_PREFIX + n) for n in wants],
        outputs=[o.name for o in s.graph.output] + [EXIT_PREFIX + o.name for o in hd.graph.output])
    props[EXIT_META] = json.dumps({"threshold": threshold, "confidence": EXIT_PREFIX + conf})
    helper.set_model_props(merged, props)
    onnx.checker.check_model(merged)
    return bytes(merged.SerializeToString())
