"""Small ONNX graphs built from numpy weights: for tests, benchmarks and demos (no torch needed).

``mlp``: a ReLU MLP with a dynamic batch axis (``input`` -> ``logits``); ``digits_mlp``: the
64-128-10 MLP trained on scikit-learn's bundled digits; ``multi_io``: several inputs and outputs
with FP32, INT64 and BOOL tensors, for checking batching and codecs beyond floats.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9  # readable by onnxruntime releases of the last two years


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def mlp_from_weights(weights: Sequence[tuple[np.ndarray, np.ndarray]], name: str = "mlp") -> bytes:
    """ONNX MLP: Gemm(+ReLU) per layer, no ReLU after the last; weights are (W[in,out], b[out])."""
    nodes, inits = [], []
    prev = "input"
    for i, (w, b) in enumerate(weights):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        out = "logits" if i == len(weights) - 1 else f"h{i}"
        gemm_out = out if out == "logits" else f"g{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [gemm_out]))
        if out != "logits":
            nodes.append(helper.make_node("Relu", [gemm_out], [out]))
        prev = out
    d_in, d_out = weights[0][0].shape[0], weights[-1][0].shape[1]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", d_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", d_out])],
        inits,
    )
    return _model(graph)


def mlp(sizes: Sequence[int], seed: int = 0) -> bytes:
    """A random-weight MLP, e.g. ``mlp([784, 2048, 2048, 10])`` (He-scaled so outputs stay finite)."""
    rng = np.random.default_rng(seed)
    layers = [(rng.normal(0, (2 / a) ** 0.5, size=(a, b)), np.zeros(b)) for a, b in itertools.pairwise(sizes)]
    return mlp_from_weights(layers)


def digits_mlp(hidden: int = 128, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The digits MLP (64-hidden-10) trained with scikit-learn; returns (onnx, x test, y test)."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=25, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 25 epochs give ~90% test accuracy, enough here
        clf.fit(x[:1500], y[:1500])
    layers = list(zip(clf.coefs_, clf.intercepts_, strict=True))
    return mlp_from_weights(layers, "digits"), x[1500:], y[1500:]


def multi_io() -> bytes:
    """Inputs x FP32[b,4], ids INT64[b,3], mask BOOL[b,3]; outputs y=2x+1, total=sum(ids*mask), inv=!mask."""
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["x2"]),
        helper.make_node("Add", ["x2", "one"], ["y"]),
        helper.make_node("Cast", ["mask"], ["mask64"], to=TensorProto.INT64),
        helper.make_node("Mul", ["ids", "mask64"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "axis1"], ["total"], keepdims=1),
        helper.make_node("Not", ["mask"], ["inv"]),
    ]
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    graph = helper.make_graph(
        nodes, "multi_io",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 3]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("total", TensorProto.INT64, ["batch", 1]),
         helper.make_tensor_value_info("inv", TensorProto.BOOL, ["batch", 3])],
        inits,
    )
    return _model(graph)
