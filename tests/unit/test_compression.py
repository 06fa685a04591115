"""Gradient compression: byte savings, exact round trips where promised, error feedback."""

from __future__ import annotations

import numpy as np
import pytest

from aiaas.ml.compression import IDX, VAL, Compressor, decompress, payload_bytes, to_float, to_half
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.jobs import CompressionSpec

SHAPES = {"w1": (256, 64), "b1": (256,), "w2": (10, 256), "b2": (10,)}


def _grads(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


def test_none_is_lossless() -> None:
    g = _grads()
    out = decompress(Compressor(CompressionSpec(kind="none")).compress(g), SHAPES, "none")
    for k in SHAPES:
        np.testing.assert_array_equal(out[k], g[k])


def test_fp16_halves_bytes_and_stays_close() -> None:
    g = _grads()
    packed = Compressor(CompressionSpec(kind="fp16")).compress(g)
    assert payload_bytes(packed) * 2 == payload_bytes(g)
    out = decompress(packed, SHAPES, "fp16")
    for k in SHAPES:
        assert out[k].dtype == np.float32
        np.testing.assert_allclose(out[k], g[k], rtol=1e-3, atol=1e-3)


def test_torch_casts_match_numpy_bit_for_bit_including_specials() -> None:
    """to_half/to_float go through torch for speed; they must round exactly like numpy does."""
    x = np.concatenate([_grads()["w1"].ravel() * 1e3, [0.0, -0.0, 1e-8, 7e4, np.inf, -np.inf, np.nan]])
    x = x.astype(np.float32)
    half = to_half(x)
    assert half.dtype == np.float16
    with np.errstate(over="ignore"):  # 7e4 overflows to inf in both
        np.testing.assert_array_equal(half.view(np.uint16), x.astype(np.float16).view(np.uint16))
    wire = np.frombuffer(half.tobytes(), np.float16)  # read-only, like a decoded record
    back = to_float(wire)
    assert back.dtype == np.float32 and back.flags.writeable
    np.testing.assert_array_equal(back, wire.astype(np.float32))
    assert to_float(np.arange(3, dtype=np.int64)).dtype == np.float32


def test_topk_001_cuts_bytes_at_least_10x_and_keeps_the_largest() -> None:
    g = _grads()
    packed = Compressor(CompressionSpec(kind="topk", ratio=0.01)).compress(g)
    assert payload_bytes(g) / payload_bytes(packed) >= 10
    out = decompress(packed, SHAPES, "topk")
    w = g["w1"].ravel()
    k = int(np.ceil(0.01 * w.size))
    kept = np.flatnonzero(out["w1"].ravel())
    assert len(kept) == k
    assert set(kept) == set(np.argsort(-np.abs(w))[:k])
    np.testing.assert_array_equal(out["w1"].ravel()[kept], w[kept])


def test_topk_error_feedback_accumulates_until_sent() -> None:
    """Entries not sent stay in the residual and are sent later: the sum of what was sent plus
    the residual equals the sum of all gradients, step after step."""
    comp = Compressor(CompressionSpec(kind="topk", ratio=0.05, error_feedback=True))
    sent = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
    total = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
    for step in range(6):
        g = _grads(step)
        for k in SHAPES:
            total[k] += g[k]
        out = decompress(comp.compress(g), SHAPES, "topk")
        for k in SHAPES:
            sent[k] += out[k]
    for k, shape in SHAPES.items():
        np.testing.assert_allclose(sent[k] + comp.residual[k].reshape(shape), total[k], atol=1e-4)
    assert any(np.abs(r).max() > 0 for r in comp.residual.values())


def test_topk_without_error_feedback_forgets() -> None:
    comp = Compressor(CompressionSpec(kind="topk", ratio=0.05, error_feedback=False))
    comp.compress(_grads())
    assert comp.residual == {}


def test_small_value_is_eventually_sent_with_error_feedback() -> None:
    comp = Compressor(CompressionSpec(kind="topk", ratio=0.25))
    g = {"v": np.array([1.0, 0.1, 0.0, 0.0], np.float32)}
    first = decompress(comp.compress(g), {"v": (4,)}, "topk")["v"]
    assert first[0] == 1.0 and first[1] == 0.0
    g2 = {"v": np.array([0.0, 0.0, 0.0, 0.0], np.float32)}
    second = decompress(comp.compress(g2), {"v": (4,)}, "topk")["v"]
    assert second[1] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"w": np.zeros((3,), np.float32)}, "none"),  # wrong shape
        ({"x": np.zeros((2, 2), np.float32)}, "fp16"),  # wrong name
        ({"w" + IDX: np.array([0, 9], np.int32), "w" + VAL: np.ones(2, np.float32)}, "topk"),  # out of range
        ({"w" + IDX: np.array([0], np.int32), "w" + VAL: np.ones(2, np.float32)}, "topk"),  # pair mismatch
        ({"w" + VAL: np.ones(2, np.float32)}, "topk"),  # missing indices
        ({"w": np.zeros((2, 2), np.float32)}, "zip"),  # unknown kind
    ],
)
def test_decompress_rejects_bad_payloads(payload: dict[str, np.ndarray], kind: str) -> None:
    with pytest.raises(InvalidMessage):
        decompress(payload, {"w": (2, 2)}, kind)
