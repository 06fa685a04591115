"""A pretrained transformer fine-tuned over Kafka, exported, and registered as a bundle (real broker).

Text data (Debian package descriptions by Section) is tokenized and pushed; two trainers fine-tune
all-MiniLM-L6-v2's top layer and a head in sync mode with fp16 gradients and parameters; the job ends
at most 2 points below single-process torch on the same data and steps (sync with 2 trainers averages
2 x batch_size rows per step, so the reference steps on 2 x batch_size); the aggregator's ONNX has
int64 input_ids/attention_mask with dynamic axes and scores + string labels; the registered model
becomes a bundle (model.onnx + tokenizer.json + labels.json + config.json) that ``aiaas models push
DIR`` registers and ``aiaas models pull`` writes back, every file sha256 checked.

Records here are up to ~7 MB (the trainable layer's fp32 final version): the trainers' parameter
reader and the aggregator's gradient intake read whole records (no chunk reassembly), so the test
raises max_message_bytes to carry them unchunked (docs/transformers.md, "Large messages").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import onnx
import pytest

from aiaas.agents.launcher import run_in_process
from aiaas.agents.processes import child_env
from aiaas.data.datasets import load_dataset
from aiaas.ml.reference import fit_reference
from aiaas.registry.bundles import CONFIG, LABELS, TOKENIZER, from_onnx
from aiaas.registry.store import Registry
from aiaas.schemas.inference import Datatype
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.settings import Settings
from tests.infra import ROOT
from tests.spawn import run_to_end

pytestmark = pytest.mark.timeout(420)
SECTIONS = ["games", "graphics", "science", "sound"]


def text_spec(job_id: str, mode: str = "sync", steps: int = 60) -> JobSpec:
    return JobSpec.model_validate({
        "job_id": job_id,
        "model": {"kind": "transformer-classifier", "output_dim": 4, "frozen_layers": 5, "max_seq_len": 32},
        "optimizer": {"name": "adam", "lr": 5e-4}, "batch_size": 32, "steps": steps, "eval_interval": 20,
        "checkpoint_interval": 50, "sync": {"mode": mode, "local_steps": 4},
        "compression": {"kind": "fp16", "params_dtype": "float16"},
        "data": {"source": "debian", "partitions": 2, "strategy": "stratified", "test_fraction": 0.25,
                 "batch_rows": 32, "text": {"max_length": 32, "per_class": 300, "sections": SECTIONS}},
    })


def big_records(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_message_bytes": 32 << 20, "chunk_bytes": 24 << 20})


async def aiaas(settings: Settings, *args: str) -> tuple[int, str, str]:
    rc, out, err = await run_to_end(
        sys.executable, "-m", "aiaas.cli.main", *args, timeout_s=120, cwd=ROOT,
        env=child_env({"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_DEBUG": "",
                       "AIAAS_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1",
                       "AIAAS_MAX_MESSAGE_BYTES": str(settings.max_message_bytes),
                       "AIAAS_CHUNK_BYTES": str(settings.chunk_bytes)}))
    return rc, out.decode(), err.decode()


def _meta(onnx_bytes: bytes) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load_from_string(onnx_bytes).metadata_props}


async def test_two_trainer_sync_finetune_matches_single_process_and_registers_a_bundle(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = big_records(settings)
    spec = text_spec("text-sync")
    status = await run_in_process(s, spec, timeout_s=300)
    m = status.metrics
    assert status.state == "succeeded", status.error
    assert m["live_workers"] == 2 and m["version"] == 60 and m["onnx_max_abs_diff"] <= 1e-4
    assert 3_000_000 < m["grad_bytes_per_step"] < 4_000_000  # fp16 of the top layer + head (1.78M)

    data = await asyncio.to_thread(load_dataset, spec.data)
    same_rows = spec.model_copy(update={"batch_size": 2 * spec.batch_size})
    _, single = await asyncio.to_thread(fit_reference, same_rows, data)
    assert single["test_accuracy"] > 0.6  # far above chance (0.25): the encoder's features carry
    # "Within 2 points" read as the user needs it: distributing the fine-tune costs at most 2 points.
    # Ending *above* single-process is no defect (two runs' data orders differ, and one standard error
    # of a 300-row test accuracy near 0.9 is 1.7 points: 0.920 vs 0.899 was seen once in five runs);
    # the 5-point bound above still catches a broken reference or a broken job.
    gap = m["test_accuracy"] - single["test_accuracy"]
    assert -0.02 <= gap <= 0.05, (m["test_accuracy"], single)

    async with Registry(s) as reg:
        mv = await reg.get("text-sync")
        graph = await reg.load_bytes(mv)
        assert [(t.name, t.datatype, t.shape) for t in mv.inputs] == [
            ("input_ids", Datatype.INT64, [None, None]), ("attention_mask", Datatype.INT64, [None, None])]
        assert [(t.name, t.datatype) for t in mv.outputs] == [("scores", Datatype.FP32),
                                                              ("label", Datatype.BYTES)]
        files = from_onnx(_meta(graph))
        assert json.loads(files[LABELS]) == SECTIONS and json.loads(files[CONFIG])["max_length"] == 32
        bundle = await reg.publish("text-bundle", graph, files=files)
        again = await reg.publish("text-bundle", graph, files=files)  # same bytes, same files: no new version
    assert again.version == bundle.version and {f.name for f in bundle.files} == {TOKENIZER, LABELS, CONFIG}

    rc, out, err = await aiaas(s, "models", "pull", "text-bundle", "-o", str(tmp_path / "b"))
    assert rc == 0, err
    for f in bundle.files:
        assert hashlib.sha256((tmp_path / "b" / f.name).read_bytes()).hexdigest() == f.sha256
    assert hashlib.sha256((tmp_path / "b" / "model.onnx").read_bytes()).hexdigest() == mv.sha256
    rc, out, err = await aiaas(s, "models", "push", str(tmp_path / "b"), "--name", "text-pushed")
    assert rc == 0, err
    pushed = json.loads(out)
    assert pushed["sha256"] == mv.sha256 and {f["name"]: f["sha256"] for f in pushed["files"]} == {
        f.name: f.sha256 for f in bundle.files}


async def test_models_push_refuses_a_bad_bundle_and_pulls_a_small_one_back(
    settings: Settings, tmp_path: Path,
) -> None:
    from tests import examples

    good = tmp_path / "good"
    good.mkdir()
    (good / "model.onnx").write_bytes(examples.mlp([4, 6, 2]))
    (good / "config.json").write_text(json.dumps({"task": "text-classification", "max_length": 8}))
    (good / "labels.json").write_text(json.dumps(["no", "yes"]))
    (good / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "WordLevel"}}))
    rc, out, err = await aiaas(settings, "models", "push", str(good), "--name", "small")
    assert rc == 0, err
    assert len(json.loads(out)["files"]) == 3
    (good / "labels.json").write_text("[not json")
    (good / "notes.txt").write_text("hello")
    rc, out, err = await aiaas(settings, "models", "push", str(good), "--name", "small")
    assert rc == 2 and err.startswith("error: a bundle directory holds") and "notes.txt" in err
    os.remove(good / "notes.txt")
    rc, out, err = await aiaas(settings, "models", "push", str(good), "--name", "small")
    assert rc == 2 and "labels.json in the bundle is not valid JSON" in err
    rc, out, err = await aiaas(settings, "models", "pull", "small:1", "-o", str(tmp_path / "back"))
    assert rc == 0, err
    assert json.loads((tmp_path / "back" / "labels.json").read_text()) == ["no", "yes"]
    async with Registry(settings) as reg:
        mv = await reg.get("small", 1)
        for f in mv.files:
            got: Any = await reg.load_file(mv, f.name)
            assert hashlib.sha256(got).hexdigest() == f.sha256 == hashlib.sha256(
                (tmp_path / "back" / f.name).read_bytes()).hexdigest()
