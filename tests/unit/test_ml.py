"""The shared torch toolkit: deterministic models, losses, optimizers, params, eval, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiaas.ml.evaluate import evaluate
from aiaas.ml.export import export_onnx, validate_onnx
from aiaas.ml.models import build_model, loss_fn, pick_device, set_threads
from aiaas.ml.optim import build_optimizer, build_scheduler, lr_factor
from aiaas.ml.params import (
    check_finite_and_shapes,
    grads_to_numpy,
    load_numpy,
    param_shapes,
    set_grads,
    state_to_numpy,
)
from aiaas.schemas.errors import AiaasError, InvalidMessage
from aiaas.schemas.jobs import JobSpec

set_threads(1)


def _spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {"job_id": "j", "model": {"input_dim": 8, "hidden": [16, 16], "output_dim": 3},
                               "steps": 10}
    return JobSpec.model_validate(base | kw)


def _batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_build_model_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = build_model(_spec(seed=5)), build_model(_spec(seed=5))
    assert torch.rand(1).item() == before.item()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    c = build_model(_spec(seed=6))
    assert not torch.equal(next(iter(a.parameters())), next(iter(c.parameters())))


def test_mlp_layout_and_module_by_import_path() -> None:
    m = build_model(_spec(model={"input_dim": 8, "hidden": [4], "output_dim": 2, "dropout": 0.1}))
    assert [type(x).__name__ for x in m] == ["Linear", "ReLU", "Dropout", "Linear"]
    spec = _spec(model={"kind": "module", "import_path": "torch.nn:Linear",
                        "kwargs": {"in_features": 8, "out_features": 3}, "input_dim": 8, "output_dim": 3})
    assert isinstance(build_model(spec), torch.nn.Linear)
    bad = _spec(model={"kind": "module", "import_path": "no_such_pkg.x:Y", "input_dim": 8, "output_dim": 3})
    with pytest.raises(AiaasError) as err:
        build_model(bad)
    assert err.value.details["field"] == "model.import_path"


def test_losses_accept_flat_targets() -> None:
    out = torch.randn(5, 1)
    assert loss_fn(_spec(loss="mse", model={"input_dim": 8, "output_dim": 1}))(out, torch.zeros(5)) > 0
    assert loss_fn(_spec(loss="bce", model={"input_dim": 8, "output_dim": 1}))(out, torch.ones(5)) > 0
    assert loss_fn(_spec())(torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])) > 0


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_optimizers_reduce_the_loss(name: str) -> None:
    spec = _spec(optimizer={"name": name, "lr": 0.05})
    m, (x, y) = build_model(spec), _batch()
    opt, loss = build_optimizer(spec, m.parameters()), loss_fn(spec)
    first = loss(m(x), y).item()
    for _ in range(30):
        opt.zero_grad()
        loss(m(x), y).backward()
        opt.step()
    assert loss(m(x), y).item() < first


def test_schedules() -> None:
    s = _spec(schedule={"kind": "step", "step_size": 10, "gamma": 0.5, "warmup_steps": 2}).schedule
    assert [lr_factor(s, i, None) for i in (0, 1, 2, 11, 12, 22)] == [0.5, 1.0, 1.0, 1.0, 0.5, 0.25]
    c = _spec(schedule={"kind": "cosine"}).schedule
    assert lr_factor(c, 0, 100) == 1.0 and lr_factor(c, 50, 100) == pytest.approx(0.5)
    assert lr_factor(c, 100, 100) == pytest.approx(0.0)
    spec = _spec(schedule={"kind": "step", "step_size": 1, "gamma": 0.5}, optimizer={"lr": 0.1})
    opt = build_optimizer(spec, build_model(spec).parameters())
    sched = build_scheduler(spec, opt)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert build_scheduler(spec, opt).state_dict()["base_lrs"] == [0.1]


def test_params_round_trip_between_models() -> None:
    spec = _spec()
    a, b = build_model(spec), build_model(_spec(seed=9))
    load_numpy(b, state_to_numpy(a))
    x, y = _batch()
    assert torch.equal(a(x), b(x))
    loss_fn(spec)(a(x), y).backward()
    grads = grads_to_numpy(a)
    set_grads(b, grads)
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert pb.grad is not None and torch.equal(pa.grad, pb.grad)  # type: ignore[arg-type]


def test_read_only_wire_buffers_load() -> None:
    m = build_model(_spec())
    state = state_to_numpy(m)
    for v in state.values():
        v.flags.writeable = False
    load_numpy(m, state)


@pytest.mark.parametrize("damage", ["shape", "nan", "inf", "missing", "extra", "dtype"])
def test_bad_grads_are_rejected(damage: str) -> None:
    m = build_model(_spec())
    grads = {k: np.zeros(s, np.float32) for k, s in param_shapes(m).items()}
    name = next(iter(grads))
    if damage == "shape":
        grads[name] = np.zeros((1, 2), np.float32)
    elif damage == "nan":
        grads[name][0, 0] = np.nan
    elif damage == "inf":
        grads[name][0, 0] = np.inf
    elif damage == "missing":
        del grads[name]
    elif damage == "extra":
        grads["intruder"] = np.zeros(1, np.float32)
    else:
        grads[name] = grads[name].astype(np.complex64)
    with pytest.raises(InvalidMessage):
        set_grads(m, grads)
    with pytest.raises(InvalidMessage):
        check_finite_and_shapes(grads, param_shapes(m))


def test_evaluate_reports_loss_and_accuracy() -> None:
    spec = _spec()
    m = build_model(spec)
    x, y = _batch(64)
    m.train()
    metrics = evaluate(m, x.numpy(), y.numpy(), spec)
    assert m.training  # mode restored
    with torch.no_grad():
        assert metrics["test_loss"] == pytest.approx(loss_fn(spec)(m.eval()(x), y).item(), rel=1e-5)
    assert metrics["test_accuracy"] == pytest.approx(float((m(x).argmax(1) == y).float().mean()))
    reg = _spec(loss="mse", model={"input_dim": 8, "output_dim": 1})
    assert set(evaluate(build_model(reg), x.numpy(), np.zeros(64, np.float32), reg)) == {"test_loss"}


def test_export_and_validate_onnx() -> None:
    spec = _spec(model={"input_dim": 64, "hidden": [256, 256], "output_dim": 10})
    m = build_model(spec)
    onnx_bytes = export_onnx(m, 64)
    assert onnx_bytes[:2] and len(onnx_bytes) > 64 * 256 * 4
    x = np.random.default_rng(0).normal(size=(37, 64)).astype(np.float32)  # batch != export example
    assert validate_onnx(onnx_bytes, m, x) < 1e-4


def test_export_folds_standardisation() -> None:
    """With the training stats folded in, ONNX on raw features == torch on standardised ones."""
    spec = _spec()
    m = build_model(spec)
    rng = np.random.default_rng(2)
    raw = rng.normal(5.0, 3.0, size=(20, 8)).astype(np.float32)
    mean, std = raw.mean(axis=0), raw.std(axis=0)
    onnx_bytes = export_onnx(m, 8, stats=(mean, std))
    assert validate_onnx(onnx_bytes, m, raw, stats=(mean, std)) < 1e-4
    from aiaas.ml.export import session
    got = session(onnx_bytes).run(["output"], {"input": raw})[0]
    with torch.no_grad():
        want = m.eval()(torch.from_numpy((raw - mean) / std)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_pick_device_follows_cuda() -> None:
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_round_trip() -> None:
    """On a GPU: grads and params cross numpy <-> CUDA, evaluation and export work from CUDA."""
    spec = _spec()
    dev = pick_device()
    m = build_model(spec).to(dev)
    x, y = _batch()
    loss_fn(spec)(m(x.to(dev)), y.to(dev)).backward()
    grads = grads_to_numpy(m)
    set_grads(m, grads)
    assert all(p.grad is not None and p.grad.device.type == "cuda" for p in m.parameters())
    load_numpy(m, state_to_numpy(m))
    assert next(m.parameters()).device.type == "cuda"
    assert 0.0 <= evaluate(m, x.numpy(), y.numpy(), spec)["test_accuracy"] <= 1.0
    assert validate_onnx(export_onnx(m, 8), m, x.numpy()) < 1e-4


def test_reference_fit_reaches_the_digits_target_and_counts_steps() -> None:
    from aiaas.data.datasets import load_dataset
    from aiaas.ml.reference import fit_reference, total_steps

    spec = _spec(model={"input_dim": 64, "hidden": [256, 256], "output_dim": 10}, steps=None, epochs=3)
    ds = load_dataset(spec.data)
    assert total_steps(spec, ds.train_rows) == 3 * 23  # 1437 rows / 64 -> 23 batches per epoch
    _, metrics = fit_reference(spec, ds)
    assert metrics["test_accuracy"] >= 0.95


def test_export_adds_classifier_outputs_and_target_scaling() -> None:
    """Served graphs: logits first, then label (class values when integral, else indices) and
    probabilities; regression outputs in target units; the aiaas.* metadata says so."""
    from aiaas.ml.export import Serving, metadata, session

    rng = np.random.default_rng(3)
    raw = rng.normal(50.0, 20.0, size=(30, 8)).astype(np.float32)
    stats = (raw.mean(axis=0), raw.std(axis=0))
    m = build_model(_spec(model={"input_dim": 8, "hidden": [16], "output_dim": 3}))
    for classes, labels_are in (([2.0, 5.0, 9.0], "class"), ([0.5, 1.5, 2.5], "index")):
        serving = Serving(stats=stats, head="softmax", classes=classes)
        onnx_bytes = export_onnx(m, 8, serving=serving)
        assert validate_onnx(onnx_bytes, m, raw, serving=serving) < 1e-4
        logits, label, probs = session(onnx_bytes).run(None, {"input": raw})
        index = logits.argmax(axis=1)
        want = np.asarray(classes)[index].astype(np.int64) if labels_are == "class" else index
        assert np.array_equal(label, want) and label.dtype == np.int64
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert metadata(onnx_bytes)["aiaas.label"] == labels_are
    reg = build_model(_spec(loss="mse", model={"input_dim": 8, "hidden": [16], "output_dim": 1}))
    serving = Serving(stats=stats, y_scale=(150.0, 70.0))
    (out,) = session(export_onnx(reg, 8, serving=serving)).run(None, {"input": raw})
    with torch.no_grad():
        scaled = reg.eval()(torch.from_numpy((raw - stats[0]) / stats[1])).numpy()
    np.testing.assert_allclose(out, scaled * 70.0 + 150.0, rtol=1e-4, atol=1e-3)
