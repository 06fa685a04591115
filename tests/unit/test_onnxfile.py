"""ONNX export with few copies (aiaas.ml.onnxfile): metadata appended in wire form reads back as
the model's metadata_props, and an in-place export gives the copy's graph and leaves the module as
it found it."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn

from aiaas.ml.export import Serving, export_onnx, metadata, validate_onnx
from aiaas.ml.onnxfile import metadata_fields, to_onnx


def test_appended_metadata_is_the_models_metadata_props() -> None:
    meta = {"aiaas.classes": "[0, 1, 2]", "aiaas.long": "x" * 300, "aiaas.unicode": "é ✓"}
    plain = to_onnx(nn.Linear(3, 2), (torch.zeros(1, 3),), input_names=["input"])
    tagged = to_onnx(nn.Linear(3, 2), (torch.zeros(1, 3),), meta, input_names=["input"])
    assert tagged.endswith(metadata_fields(meta))
    proto = onnx.load_from_string(tagged)
    assert {p.key: p.value for p in proto.metadata_props} == meta
    assert not onnx.load_from_string(plain).metadata_props
    onnx.checker.check_model(proto)


def test_in_place_export_matches_the_copy_and_leaves_the_module_as_it_was() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    model[2].eval()  # a submodule with a flag of its own is given it back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    serving = Serving(stats=(np.full(4, 0.5, np.float32), np.full(4, 2.0, np.float32)), head="softmax",
                      classes=[3.0, 5.0, 7.0])
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    copied = export_onnx(model, 4, serving=serving)
    in_place = export_onnx(model, 4, serving=serving, in_place=True)
    assert validate_onnx(in_place, model, x, serving=serving, in_place=True) < 1e-5
    assert onnx.load_from_string(in_place).graph == onnx.load_from_string(copied).graph
    assert metadata(in_place) == metadata(copied) == serving.metadata(3)
    assert metadata(in_place)["aiaas.classes"] == "[3.0, 5.0, 7.0]"
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
