"""A pretrained transformer (all-MiniLM-L6-v2) fine-tuned over Kafka, and its ONNX graph on text.

Fine-tuning (docs/transformers.md): Debian package descriptions labelled by Section (4 sections),
``transformer-classifier`` with the bottom ``--frozen-layers`` frozen, Adam 5e-4, batch 32 per
trainer, float16 gradients and parameters, evaluation every 10 steps; each contender runs until
the test accuracy reaches ``--target``:

- ``finetune_s_single``: one process, torch with 1 thread (as each trainer), batch 2 x 32 (the rows
  a 2-trainer sync step averages); clock: the first step -> the first evaluation at or over the
  target (evaluations included, as in the aggregator's clock);
- ``finetune_s_sync`` / ``finetune_s_hybrid``: the aggregator and 2 trainers as local processes
  (``aiaas.agents.launcher.LocalJob``); the aggregator's ``seconds_to_target`` (version 0 -> the
  first evaluation at or over the target). Records are raised to ``max_message_bytes`` 64 MiB: the
  trainers' parameter reader and the aggregator's intake read whole records (no chunk reassembly).

Serving (in-process onnxruntime, 1 thread per session as a worker on a 2-core machine would use):

- ``raw_ort_seq_per_s``: texts of 8-128 tokens (descriptions joined), tokenized with the Rust
  tokenizer in batches, padded to each batch's longest text, grouped by length (a window of 8
  batches sorted by length), run through the exported classifier; the best of batch 8/32/64;
- ``padding_waste`` (grouped) and ``padding_waste_naive`` (arrival order): the share of pad tokens
  in the onnxruntime calls.

Text serving (``benchmarks.textserve``, the same graph and texts): ``kafka_seq_per_s`` (2 worker
processes, the pipelined client, one request per text), ``ratio_kafka_vs_raw`` (target >= 0.7; each
Kafka pass over a raw onnxruntime pass at the best batch run just before it, on the same texts: the
machine is shared), ``p99_ms_low_load`` (at most 10 requests/s), and the worker's text code in-process
(``worker_text_seq_per_s``, ``padding_waste_worker``). ``--skip-serve`` leaves them null.

Model splitting (``benchmarks.split``, the same graph, the texts tokenized): ``split_seq_per_s`` (2
stages, a worker process each) beside ``unsplit_seq_per_s`` (2 workers of the whole graph).
``--skip-split`` leaves them null.

Sharded parameter server (``benchmarks.shards``): ``round_ms_1_shard`` and ``round_ms_2_shards``, ms
per sync round with 1 and 2 aggregator processes on an MLP of 2.2M parameters. ``--skip-shards``
leaves them null.

    python -m benchmarks.transformer [--quick]
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from typing import Any

import numpy as np
import torch

from aiaas.agents.launcher import LocalJob
from aiaas.data.datasets import load_dataset
from aiaas.data.pretrained import encode_texts, text_tokenizer
from aiaas.data.textdata import debian_split
from aiaas.ml.evaluate import evaluate
from aiaas.ml.models import build_model, loss_fn, set_threads
from aiaas.ml.optim import build_optimizer
from aiaas.ml.textexport import export_text, session
from aiaas.ml.transformer import TextClassifier
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from benchmarks import shards as sharding
from benchmarks import split as splitting
from benchmarks import textserve
from benchmarks.common import emit, fresh_prefix, machine

log = logging.getLogger("benchmarks.transformer")


def spec(mode: str, args: argparse.Namespace) -> JobSpec:
    return JobSpec.model_validate({
        "job_id": f"bench-text-{mode}-{uuid.uuid4().hex[:6]}",
        "model": {"kind": "transformer-classifier", "output_dim": 4, "frozen_layers": args.frozen_layers,
                  "max_seq_len": 32},
        "optimizer": {"name": "adam", "lr": 5e-4}, "batch_size": 32, "steps": args.max_steps,
        "eval_interval": 10, "checkpoint_interval": 1000, "target": {"value": args.target},
        "sync": {"mode": mode, "local_steps": 4, "straggler_deadline_ms": 5000},
        "compression": {"kind": "fp16", "params_dtype": "float16"},
        "data": {"source": "debian", "partitions": 2, "strategy": "stratified", "test_fraction": 0.25,
                 "batch_rows": 32, "text": {"max_length": 32, "per_class": args.per_class}},
        "export": {"register_model": False},
    })


def single(args: argparse.Namespace) -> dict[str, Any]:
    """One process: the first step -> the first evaluation at or over the target."""
    s = spec("sync", args)
    s = s.model_copy(update={"batch_size": 2 * s.batch_size})
    ds = load_dataset(s.data)
    set_threads(1)
    model = build_model(s)
    opt, loss = build_optimizer(s, model.parameters()), loss_fn(s)
    x, y = ds.x_train, ds.y_train
    rng = np.random.default_rng(0)
    started, acc = time.perf_counter(), 0.0
    for step in range(1, args.max_steps + 1):
        idx = rng.choice(len(x), s.batch_size, replace=False)
        model.train()
        opt.zero_grad(set_to_none=True)
        loss(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx])).backward()  # type: ignore[no-untyped-call]
        opt.step()
        if step % s.eval_interval == 0:
            acc = evaluate(model, ds.x_test, ds.y_test, s)["test_accuracy"]
            if acc >= args.target:
                return {"seconds": time.perf_counter() - started, "steps": step, "test_accuracy": acc}
    return {"seconds": None, "steps": args.max_steps, "test_accuracy": acc}


def distributed(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(topic_prefix=fresh_prefix(f"text-{mode}"), max_message_bytes=64 << 20,
                        chunk_bytes=48 << 20)

    async def one() -> Any:
        async with LocalJob(settings, spec(mode, args)) as job:
            return await job.wait(600)

    status = run(one())
    m = status.metrics
    return {"seconds": m.get("seconds_to_target"), "state": status.state, "error": status.error,
            "test_accuracy": m.get("test_accuracy"), "versions": m.get("version"),
            "grad_bytes_per_step": m.get("grad_bytes_per_step"),
            "ms_per_sync_round": m.get("ms_per_sync_round")}


def _defaults(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**({"frozen_layers": 5, "max_steps": 1, "target": 1.0, "per_class": 10} | kw))


def texts_8_to_128(n: int, seed: int = 0) -> list[str]:
    """``n`` texts of 8-128 tokens (uniform), made of package descriptions joined."""
    pool = debian_split(spec("sync", _defaults(per_class=400)).data).train_texts
    tok = text_tokenizer("all-MiniLM-L6-v2", 512)
    rng = np.random.default_rng(seed)
    out = []
    for want in rng.integers(8, 129, n):
        words: list[str] = []
        while len(tok.encode(" ".join(words)).ids) < want:
            words += pool[int(rng.integers(len(pool)))].split()
        ids = tok.encode(" ".join(words)).ids[1:want - 1]  # within [CLS] ... [SEP]
        out.append(tok.decode(ids))
    return out


def _batches(texts: list[str], size: int, grouped: bool) -> list[list[str]]:
    if not grouped:
        return [texts[i:i + size] for i in range(0, len(texts), size)]
    out, window = [], 8 * size  # sort a window of 8 batches by length, as a worker's queue would allow
    for i in range(0, len(texts), window):
        chunk = sorted(texts[i:i + window], key=len)
        out += [chunk[j:j + size] for j in range(0, len(chunk), size)]
    return out


def served_graph() -> bytes:
    """The classifier served in every figure: frozen pretrained encoder, a seeded head, 128 tokens."""
    model = build_model(spec("sync", _defaults()))
    assert isinstance(model, TextClassifier)
    model.max_length = 128
    return export_text(model)


def raw_pass(texts: list[str], sess: Any, size: int, grouped: bool = True) -> tuple[float, float]:
    """One pass over ``texts``: tokenize + pad + onnxruntime in batches of ``size``; (texts/s, the
    share of pad tokens)."""
    tok = text_tokenizer("all-MiniLM-L6-v2", 128)
    pads = tokens = 0
    started = time.perf_counter()
    for batch in _batches(texts, size, grouped):
        ids, mask = encode_texts(tok, batch)
        sess.run(None, {"input_ids": ids, "attention_mask": mask})
        pads, tokens = pads + int((mask == 0).sum()), tokens + mask.size
    return len(texts) / (time.perf_counter() - started), pads / tokens


def raw_ort(texts: list[str], sess: Any) -> dict[str, Any]:
    """Texts per second through tokenize + pad + onnxruntime, at each batch size, grouped and not."""
    out: dict[str, Any] = {}
    for grouped in (True, False):
        for size in (8, 32, 64):
            rate, waste = raw_pass(texts, sess, size, grouped)
            out[f"{'grouped' if grouped else 'naive'}_b{size}"] = {"seq_per_s": rate, "padding_waste": waste}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer texts to serve (under 4 minutes)")
    ap.add_argument("--frozen-layers", type=int, default=5)
    ap.add_argument("--target", type=float, default=0.88)
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--skip-split", action="store_true", help="no split model through Kafka")
    ap.add_argument("--skip-serve", action="store_true", help="no text serving through Kafka")
    ap.add_argument("--skip-shards", action="store_true", help="no sharded parameter server rounds")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    texts = texts_8_to_128(256 if args.quick else 1024)
    graph = served_graph()
    sess = session(graph, threads=1)
    serving = raw_ort(texts, sess)
    best = max((k for k in serving if k.startswith("grouped")), key=lambda k: serving[k]["seq_per_s"])
    size = best.removeprefix("grouped_")
    result: dict[str, Any] = {
        "raw_ort_seq_per_s": round(serving[best]["seq_per_s"], 1), "raw_ort_best_batch": int(size[1:]),
        "padding_waste": round(serving[best]["padding_waste"], 4),
        "padding_waste_naive": round(serving[f"naive_{size}"]["padding_waste"], 4),
        "serving_runs": serving,
    }
    worker = textserve.worker_path(sess, textserve.bundle_files(graph), texts)
    result |= {"worker_text_seq_per_s": round(worker["seq_per_s"], 1),
               "padding_waste_worker": round(worker["padding_waste"], 4)}
    result |= dict.fromkeys(("kafka_seq_per_s", "ratio_kafka_vs_raw", "p99_ms_low_load"))
    if not args.skip_serve:
        served = texts * (2 if args.quick else 4)
        result |= run(textserve.through_kafka(
            graph, served, lambda: raw_pass(served, sess, int(size[1:]))[0], repeat=3,
            low_load_count=100 if args.quick else 300))
    result |= dict.fromkeys(("split_seq_per_s", "unsplit_seq_per_s"))
    if not args.skip_split:
        result |= splitting.from_texts(graph, texts, quick=args.quick)
    result |= dict.fromkeys(("round_ms_1_shard", "round_ms_2_shards"))
    if not args.skip_shards:
        result |= sharding.measure(quick=args.quick)
    if not args.skip_finetune:
        runs = {"single": single(args), "sync": distributed("sync", args),
                "hybrid": distributed("hybrid", args)}
        result |= {f"finetune_s_{k}": None if v["seconds"] is None else round(v["seconds"], 1)
                   for k, v in runs.items()}
        result["finetune_runs"] = runs
        result["finetune_target_accuracy"] = args.target
    result["machine"] = machine()
    emit(result)
    return result


if __name__ == "__main__":
    main()
