"""Cutting ONNX graphs into stages (``aiaas.registry.graphcut``, no broker): an MLP's cuts lie
between its linear layers (after the ReLU, at the next layer's weights), its stages chained answer
like the whole graph, and a graph cut into more stages than it has boundaries is refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from aiaas.registry import graphcut, pipelines
from aiaas.schemas.errors import AiaasError, ErrorCode
from tests import examples


def test_an_mlp_is_cut_between_its_linear_layers_and_its_stages_chain_to_the_whole() -> None:
    data = examples.mlp([16, 32, 32, 32, 4], seed=1)
    cuts = graphcut.candidates(onnx.shape_inference.infer_shapes(onnx.load_from_string(data)))
    assert [c.tensor for c in cuts] == ["h0", "h1", "h2"]  # ReLU outputs, not the Gemm outputs before them
    parts = graphcut.split(data, 3)
    ins = [[i.name for i in onnx.load_from_string(p).graph.input] for p in parts]
    outs = [[o.name for o in onnx.load_from_string(p).graph.output] for p in parts]
    assert ins[0] == ["input"] and outs[-1] == ["logits"]
    assert outs[:-1] == [i[:1] for i in ins[1:]]  # each stage's output is the next one's input
    assert [onnx.load_from_string(p).metadata_props[-1].value for p in parts] == ["1/3", "2/3", "3/3"]
    feeds = {"input": np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)}
    assert pipelines.chained(data, parts, feeds) <= 1e-6


def test_more_stages_than_boundaries_or_not_onnx_is_a_bad_request() -> None:
    with pytest.raises(AiaasError) as many:
        graphcut.split(examples.mlp([8, 8, 2]), 3)
    assert many.value.code is ErrorCode.BAD_REQUEST and many.value.details["boundaries"] == 1
    with pytest.raises(AiaasError) as junk:
        graphcut.split(b"not a graph", 2)
    assert junk.value.code is ErrorCode.BAD_REQUEST
