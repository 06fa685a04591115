"""A tiny transformer split into 2 stages on the real broker (``aiaas.registry.pipelines``,
agents/inference/stages.py): callers call the model by its name, stage 1 forwards its hidden states
(and the attention mask) to stage 2, stage 2 replies; the answers equal the whole model's (max abs
difference <= 1e-4) on token ids of mixed lengths, on text (BYTES) requests, which stage 1 tokenizes
with the bundle's tokenizer, on a plain OIP JSON request (answered in JSON) and on a request whose
hidden states (5.4 MB) travel in chunks; a request stage 1 refuses gets its error reply from stage 1.
(An MLP split by the CLI: tests/faults/test_pipeline_kill.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import numpy as np
import onnxruntime as ort
import pytest

from aiaas.agents.inference import stages
from aiaas.agents.inference.settings import WorkerSettings
from aiaas.agents.inference.worker import InferenceWorker
from aiaas.client.inference import InferenceClient, InferenceError, InferResult
from aiaas.data.pretrained import encode_texts, text_tokenizer
from aiaas.registry import pipelines
from aiaas.registry.store import Registry
from aiaas.streams.settings import Settings
from tests.workers import running_worker

PRETRAINED = "all-MiniLM-L6-v2"  # its tokenizer (the encoder here is tiny and random)


def whole(data: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


@asynccontextmanager
async def pipeline(settings: Settings, name: str, data: bytes, feeds: dict[str, np.ndarray],
                   ) -> AsyncIterator[list[InferenceWorker]]:
    """``data`` registered as ``name``, split in 2, one in-process worker per stage."""
    async with Registry(settings) as reg:
        await reg.publish(name, data, stage="production")
        split, published, diff = await pipelines.split(reg, name, 2, feeds=feeds)
    assert diff <= 1e-4 and split.pipeline == [f"{name}.stage1:1", f"{name}.stage2:1"]
    assert [p.name for p in published] == [f"{name}.stage1", f"{name}.stage2"]
    cfgs = [await stages.resolved(settings, WorkerSettings(model=name, pipeline_stage=k, partitions=2))
            for k in (1, 2)]
    async with AsyncExitStack() as stack:  # the stages start side by side
        started = [stack.enter_async_context(running_worker(settings, **c.model_dump())) for c in cfgs]
        yield list(await asyncio.gather(*started))


@pytest.mark.timeout(120)
async def test_two_stage_tiny_transformer_answers_like_the_whole_model(settings: Settings) -> None:
    torch = pytest.importorskip("torch")
    from aiaas.ml.textexport import export_text
    from aiaas.ml.transformer import Encoder, EncoderConfig, TextClassifier

    torch.manual_seed(0)
    c = EncoderConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64)  # the tokenizer's vocabulary
    data = export_text(TextClassifier(Encoder(c), 3, frozen=0, labels=["a", "b", "c"], max_length=64,
                                      pretrained=PRETRAINED))
    rng = np.random.default_rng(2)
    texts = []
    for n in (3, 9, 9, 17, 5):  # mixed lengths; two of one length may be stacked by the client
        ids = rng.integers(1, 30000, size=(1, n)).astype(np.int64)
        mask = np.ones((1, n), np.int64)
        mask[0, n - 1:] = 0 if n > 5 else 1  # one padded position in the longer ones
        texts.append({"input_ids": ids, "attention_mask": mask})
    async with pipeline(settings, "pt", data, texts[1]) as workers, InferenceClient(settings) as client:
        got = {i: r async for i, r in client.infer_many("pt", texts, timeout=30)}
        words = ["a short text", "and a longer one that stage 1 tokenizes before it forwards",
                 "a text over the 64 tokens the model takes, cut by stage 1 " * 8]
        said = [await client.infer("pt", {"text": np.asarray([w], dtype=object)}, timeout=30) for w in words]
        big = {"input_ids": rng.integers(1, 30000, size=(700, 60)),
               "attention_mask": np.ones((700, 60), np.int64)}
        large = await client.infer("pt", big, timeout=60)  # 5.4 MB of hidden states: chunked, over 4 MiB
        assert workers[0].stats["chunked_replies"] >= 1
        picked = await client.infer("pt", texts[0], outputs=["label"], timeout=30)
        # a plain OIP JSON request, as the HTTP bridge passes one through
        body = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": "INT64",
                            "data": a.ravel().tolist()} for n, a in texts[3].items()]}
        plain = await client.request("pt", json.dumps(body).encode(), {"content-type": "application/json"},
                                     timeout=30)
        assert plain.headers["content-type"] == "application/json" and plain.ok
        as_json = plain.result()
        assert list(picked.outputs) == ["label"]  # asked of stage 1, picked by stage 2
        with pytest.raises(InferenceError) as bad:
            await client.infer("pt", {"input_ids": np.zeros((1, 4), np.float32),
                                      "attention_mask": np.ones((1, 4), np.int64)}, timeout=30)
        sent = len(texts) + len(words) + 3
        assert workers[0].stats["forwarded"] >= sent and workers[1].stats["replies"] >= sent  # redeliveries
    assert bad.value.status_code == 400 and "datatype" in str(bad.value)  # stage 1 refused it
    for i, feeds in enumerate(texts):
        r = got[i]
        assert isinstance(r, InferResult), r
        want = whole(data, feeds)
        assert float(np.max(np.abs(r.outputs["scores"] - want["scores"]))) <= 1e-4
        assert [str(x, "utf-8") if isinstance(x, bytes) else str(x) for x in r.outputs["label"]] == \
            [str(x) for x in want["label"]]
    assert float(np.max(np.abs(as_json.outputs["scores"] - whole(data, texts[3])["scores"]))) <= 1e-4
    assert float(np.max(np.abs(large.outputs["scores"] - whole(data, big)["scores"]))) <= 1e-4
    tok = text_tokenizer(PRETRAINED, 64)
    # stage 1's word on truncation reaches the caller through stage 2's reply
    assert [r.parameters.get("truncated") for r in said] == [False, False, True]
    assert said[2].parameters["max_length"] == 64 and said[2].parameters["truncated_rows"] == "0"
    for w, r in zip(words, said, strict=True):  # text in: tokenized by stage 1 as the whole model would be
        ids, mask = encode_texts(tok, [w])
        want = whole(data, {"input_ids": ids, "attention_mask": mask})
        assert float(np.max(np.abs(r.outputs["scores"] - want["scores"]))) <= 1e-4
