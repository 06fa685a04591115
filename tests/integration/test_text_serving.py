"""Text serving on the real broker: a text bundle (all-MiniLM-L6-v2, every layer frozen, a seeded
head, max_length 32) served by an inference worker, called with BYTES ``text`` inputs over Kafka (the
client's frames) and over HTTP (OIP JSON strings, and tritonclient's binary BYTES through the
bridge). Texts of mixed lengths in one request answer what each text alone answers in onnxruntime;
pre-tokenized requests work too; bad text is a clear 400 and the worker goes on.

The ~90 MB graph is exported once per module and registered from an artifact directory (no chunks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
import redis.asyncio as aioredis

from aiaas.agents.bridge.app import create_app
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.agents.inference.worker import InferenceWorker
from aiaas.client.inference import InferenceClient, encode_request
from aiaas.data.pretrained import text_tokenizer
from aiaas.ml.models import build_model, set_threads
from aiaas.ml.textexport import export_text, session
from aiaas.ml.transformer import TextClassifier
from aiaas.registry.bundles import TOKENIZER, from_onnx
from aiaas.registry.store import Registry
from aiaas.schemas.errors import InferenceError
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.settings import Settings
from tests.integration.test_bridge import serve
from tests.workers import running_worker

pytestmark = pytest.mark.timeout(180)
MODEL = "sections"
LONG = "a package of many words " * 20  # over 32 tokens: truncated
TEXTS = ["chess", "a 3D modelling and rendering suite for artists", "sound mixer", LONG,
         "fast fourier transforms for signal processing in the sciences", "arcade game", "gimp plug-ins",
         "molecular dynamics simulation of proteins", "x", "MIDI sequencer with a piano roll"]


@dataclass
class Bundle:
    onnx: bytes
    files: dict[str, bytes]
    tokenizer: Any
    sess: Any

    def one_by_one(self, texts: list[str]) -> tuple[np.ndarray, list[str]]:
        """Each text alone through onnxruntime (no padding at all): the reference."""
        scores, labels = [], []
        for t in texts:
            e = self.tokenizer.encode(t)
            feeds = {"input_ids": np.array([e.ids], np.int64), "attention_mask": np.array([e.attention_mask])}
            s, label = self.sess.run(["scores", "label"], feeds)
            scores.append(s[0])
            labels.append(str(label[0]))
        return np.stack(scores), labels


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    set_threads(1)
    spec = JobSpec.model_validate({
        "job_id": "serve-text", "steps": 1, "seed": 3,
        "model": {"kind": "transformer-classifier", "output_dim": 4, "frozen_layers": 6, "max_seq_len": 32},
        "data": {"source": "debian", "text": {"max_length": 32, "per_class": 10,
                                              "sections": ["games", "graphics", "science", "sound"]}}})
    model = build_model(spec)
    assert isinstance(model, TextClassifier)
    graph = export_text(model)
    files = from_onnx({p.key: p.value for p in onnx.load_from_string(graph).metadata_props})
    return Bundle(graph, files, text_tokenizer(files[TOKENIZER].decode(), 32), session(graph))


@contextlib.asynccontextmanager
async def served(settings: Settings, bundle: Bundle, tmp: Path) -> AsyncIterator[InferenceWorker]:
    async with Registry(settings, artifact_dir=tmp) as reg:
        await reg.publish(MODEL, bundle.onnx, files=bundle.files, stage="production")
    async with running_worker(settings, model=MODEL) as worker:
        yield worker


def _texts(*texts: str | bytes) -> dict[str, np.ndarray]:
    arr = np.empty(len(texts), dtype=object)
    arr[:] = list(texts)
    return {"text": arr}


async def test_text_over_kafka_and_http(settings: Settings, redis_client: aioredis.Redis, bundle: Bundle,
                                        tmp_path: Path) -> None:
    """One worker and one bridge for both (a worker start and a registration fewer)."""
    app = create_app(settings, BridgeSettings(instance=uuid.uuid4().hex[:8], auth=False))
    async with served(settings, bundle, tmp_path) as worker, InferenceClient(settings) as client, \
            serve(app) as url, httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http:
        await _over_kafka(client, worker, bundle)
        await _over_http(http, url, bundle)


async def _over_kafka(client: InferenceClient, worker: InferenceWorker, bundle: Bundle) -> None:
    """Mixed lengths in one request, single-text requests together, plain OIP records, pre-tokenized
    requests, bad text; the worker goes on."""
    want_scores, want_labels = bundle.one_by_one(TEXTS)
    r = await client.infer(MODEL, _texts(*TEXTS), timeout=30)  # one micro-batch, sub-batched by length
    np.testing.assert_allclose(r.outputs["scores"], want_scores, atol=2e-5)
    assert [x.decode() for x in r.outputs["label"]] == want_labels
    assert r.parameters == {"truncated": True, "truncated_count": 1, "max_length": 32,
                            "truncated_rows": str(TEXTS.index(LONG))}
    alone = await asyncio.gather(*(client.infer(MODEL, _texts(t), timeout=30) for t in TEXTS))
    got = np.concatenate([a.outputs["scores"] for a in alone])
    np.testing.assert_allclose(got, want_scores, atol=2e-5)
    assert [a.parameters["truncated"] for a in alone] == [t == LONG for t in TEXTS]

    enc = encode_request(_texts(*TEXTS[2:5]), request_id="plain")  # a plain OIP record: JSON strings
    plain = (await client.request(MODEL, enc.value, enc.headers, request_id="plain", timeout=30)).result()
    assert [x.decode() for x in plain.outputs["label"]] == want_labels[2:5]
    np.testing.assert_allclose(plain.outputs["scores"], want_scores[2:5], atol=2e-5)
    assert plain.parameters == {"truncated": True, "truncated_count": 1, "max_length": 32,
                                "truncated_rows": "1"}

    e = bundle.tokenizer.encode(TEXTS[1])
    pre = {"input_ids": np.array([e.ids], np.int64),
           "attention_mask": np.array([e.attention_mask], np.int64)}
    r = await client.infer(MODEL, pre, timeout=30)
    np.testing.assert_allclose(r.outputs["scores"][0], want_scores[1], atol=2e-5)

    bad = [(_texts(b"ok", b"caf\xc3"), "not valid UTF-8"), (_texts(""), "text is empty"),
           ({"text": np.ones(2, np.float32)}, "wrong datatype"),
           ({"text": np.ones((1, 3), np.int64)}, "wrong datatype")]
    for inputs, reason in bad:
        with pytest.raises(InferenceError, match=reason) as err:
            await client.infer(MODEL, inputs, timeout=30)
        assert err.value.status_code == 400
    huge = await client.infer(MODEL, _texts("word " * 20_000), timeout=30)  # 100,000 characters
    assert huge.parameters["truncated"] is True and huge.outputs["scores"].shape == (1, 4)
    again = await client.infer(MODEL, _texts(TEXTS[0]), timeout=30)  # the worker goes on
    np.testing.assert_allclose(again.outputs["scores"][0], want_scores[0], atol=2e-5)
    text_model = worker.sessions.default.text if worker.sessions.default else None
    assert text_model is not None and text_model.tokens > 0


async def _over_http(http: httpx.AsyncClient, url: str, bundle: Bundle) -> None:
    """OIP JSON strings, tritonclient's binary BYTES, bad text and bad length prefixes."""
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    want_scores, want_labels = bundle.one_by_one(TEXTS)
    meta = (await http.get(f"/v2/models/{MODEL}")).json()
    assert meta["inputs"][0] == {"name": "text", "datatype": "BYTES", "shape": [-1]}
    body = {"inputs": [{"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES", "data": TEXTS}]}
    resp = await http.post(f"/v2/models/{MODEL}/infer", json=body)
    assert resp.status_code == 200, resp.text
    outs = {o["name"]: o for o in resp.json()["outputs"]}
    assert outs["label"]["datatype"] == "BYTES" and outs["label"]["data"] == want_labels
    np.testing.assert_allclose(np.array(outs["scores"]["data"]).reshape(-1, 4), want_scores, atol=2e-5)
    assert resp.json()["parameters"]["truncated_rows"] == str(TEXTS.index(LONG))
    bad = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [3]}]}
    resp = await http.post(f"/v2/models/{MODEL}/infer", json=bad)
    assert resp.status_code == 400 and "BYTES data must be strings" in resp.text, resp.text
    bad = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["half \ud800 pair"]}]}
    resp = await http.post(f"/v2/models/{MODEL}/infer", content=json.dumps(bad).encode())  # "\ud800" escaped
    assert resp.status_code == 400 and "surrogate" in resp.text, resp.text  # JSON text has no UTF-8 for it

    # tritonclient's HTTP client runs on gevent, whose hub belongs to one thread: every call (the
    # client made, used and closed) on one thread of its own, never whichever thread to_thread picks
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tritonclient")
    loop = asyncio.get_running_loop()
    client = await loop.run_in_executor(pool, triton.InferenceServerClient, url.removeprefix("http://"))

    def call(texts: list[bytes]) -> Any:
        inp = triton.InferInput("text", [len(texts)], "BYTES")
        inp.set_data_from_numpy(np.array(texts, dtype=object), binary_data=True)
        outs = [triton.InferRequestedOutput(n, binary_data=True) for n in ("label", "scores")]
        return client.infer(MODEL, [inp], outputs=outs)

    result = await loop.run_in_executor(pool, call, [t.encode() for t in TEXTS])
    assert [x.decode() for x in result.as_numpy("label")] == want_labels
    np.testing.assert_allclose(result.as_numpy("scores"), want_scores, atol=2e-5)
    assert result.get_response()["parameters"]["truncated"] is True
    with pytest.raises(InferenceServerException, match="not valid UTF-8"):
        await loop.run_in_executor(pool, call, [b"fine", b"\xff\xfe broken"])
    head = (b'{"inputs":[{"name":"text","shape":[2],"datatype":"BYTES",'
            b'"parameters":{"binary_data_size":9}}]}')
    resp = await http.post(f"/v2/models/{MODEL}/infer", content=head + b"\x05\x00\x00\x00hello",
                           headers={"Inference-Header-Content-Length": str(len(head))})
    assert resp.status_code == 400 and "BYTES element truncated" in resp.text, resp.text
    result = await loop.run_in_executor(pool, call, [TEXTS[0].encode()])  # still serving
    np.testing.assert_allclose(result.as_numpy("scores")[0], want_scores[0], atol=2e-5)
    await loop.run_in_executor(pool, client.close)
    pool.shutdown()
