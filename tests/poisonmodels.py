"""ONNX models whose replies are poison pills for a naive worker: outputs that JSON cannot carry
(NaN, infinity) and outputs bigger than one Kafka record, chosen per request by its input."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.examples import IR_VERSION, OPSET

WIDEN = 1000  # output columns per input column


def log_tiled() -> bytes:
    """``y = Tile(Log(x), [1, WIDEN])`` for ``x`` FP32[batch, d]: ``x < 0`` gives NaN, ``x == 0``
    gives -inf, and the reply grows with ``d`` (``4 * WIDEN * d`` bytes per row)."""
    nodes = [helper.make_node("Log", ["x"], ["lx"]), helper.make_node("Tile", ["lx", "reps"], ["y"])]
    graph = helper.make_graph(
        nodes, "log_tiled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "d"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "wide"])],
        [numpy_helper.from_array(np.array([1, WIDEN], np.int64), "reps")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def expected(x: np.ndarray) -> np.ndarray:
    """What ``log_tiled`` answers for ``x`` (finite inputs > 0)."""
    return np.tile(np.log(x), (1, WIDEN))
