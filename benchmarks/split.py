"""A transformer split across workers (``aiaas models split``) against the same graph whole, side by side.

The graph (``benchmarks.transformer``'s served classifier; standalone: all-MiniLM-L6-v2's frozen
encoder, a seeded 4-class head, 128 tokens) is registered (artifact directory), split into 2 stages at the
encoder layer boundary nearest half its weights, and served twice on the same pre-tokenized
sequences (texts of 8-128 tokens, each padded to a multiple of 32 tokens so requests of one length
can share an onnxruntime call; one request per sequence, ``infer_many`` with a window of 256):

- ``unsplit_seq_per_s``: 2 worker processes of the whole graph (one consumer group);
- ``split_seq_per_s``: 1 worker process per stage: stage 1 (embeddings + bottom layers) forwards
  its hidden states to stage 2 (top layers + pooling + head), which replies.

Both use 2 processes with 1 onnxruntime thread each; the figure is the best of ``--repeat`` passes
after a warm-up, with min/median/max. ``split_max_abs_diff`` is the split check's difference from the
whole graph on the sample it ran. Tokenization is not in these figures (``kafka_seq_per_s`` in
``benchmarks.transformer`` has it).

    python -m benchmarks.split [--quick] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import numpy as np

from aiaas.client.inference import InferenceClient, InferResult
from aiaas.registry import pipelines
from aiaas.registry.store import Registry
from aiaas.streams.admin import wait_for_broker
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from benchmarks.common import add_repeat, emit, fresh_prefix, machine, spread
from tests.spawn import spawn_workers, until_processes_balanced

MODEL = "bench-split"
PARTITIONS = 4
Seq = dict[str, np.ndarray]


def bucketed(ids: np.ndarray, mask: np.ndarray, step: int = 32) -> list[Seq]:
    """One request per row of a tokenized batch, cut to its length rounded up to ``step`` tokens."""
    out = []
    for i in range(len(ids)):
        n = min(ids.shape[1], -(-max(1, int(mask[i].sum())) // step) * step)
        out.append({"input_ids": ids[i:i + 1, :n].copy(), "attention_mask": mask[i:i + 1, :n].copy()})
    return out


def random_sequences(count: int, seed: int = 0) -> list[Seq]:
    """Token ids of 8-128 tokens (the standalone run: no tokenizer needed)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 20000, size=(count, 128)).astype(np.int64)
    mask = np.zeros((count, 128), np.int64)
    for i, n in enumerate(rng.integers(8, 129, size=count)):
        mask[i, :n] = 1
    return bucketed(ids * mask, mask)


async def _pass(client: InferenceClient, seqs: Sequence[Seq]) -> float:
    got, start = 0, time.perf_counter()
    async for _, r in client.infer_many(MODEL, seqs, window=256, timeout=300):
        if not isinstance(r, InferResult):
            raise r
        got += 1
    return got / (time.perf_counter() - start)


async def _served(settings: Settings, flags: list[tuple[int, tuple[str, ...]]], seqs: Sequence[Seq],
                  repeat: int) -> list[float]:
    """Rates of ``repeat`` passes over ``seqs`` with worker groups ``(count, flags)`` running."""
    async with AsyncExitStack() as stack:
        groups = [await stack.enter_async_context(spawn_workers(
            settings, MODEL, n, "--threads", "1", "--partitions", str(PARTITIONS), *f)) for n, f in flags]
        client = await stack.enter_async_context(InferenceClient(settings))
        for procs in groups:
            await until_processes_balanced(procs, PARTITIONS, timeout_s=180)
        await _pass(client, seqs[:64])  # warm-up: sessions, shapes, connections
        return [await _pass(client, seqs) for _ in range(repeat)]


async def measure(graph: bytes, seqs: Sequence[Seq], *, repeat: int = 3) -> dict[str, Any]:
    """``split_seq_per_s`` and ``unsplit_seq_per_s`` of ``graph`` on ``seqs`` (see the docstring)."""
    settings = Settings(topic_prefix=fresh_prefix("split"), client_id="bench-split")
    await wait_for_broker(settings)
    with tempfile.TemporaryDirectory() as tmp:
        async with Registry(settings, artifact_dir=tmp) as reg:
            await reg.publish(MODEL, graph, stage="production")
            _, published, diff = await pipelines.split(reg, MODEL, 2, feeds=seqs[0])
        whole = await _served(settings, [(2, ())], seqs, repeat)
        split = await _served(settings, [(1, ("--pipeline-stage", "1")), (1, ("--pipeline-stage", "2"))],
                              seqs, repeat)
    return {"split_seq_per_s": round(max(split), 1), "unsplit_seq_per_s": round(max(whole), 1),
            "ratio_split_vs_unsplit": round(max(split) / max(whole), 3),
            **spread("split_runs_seq_per_s", split, 1), **spread("unsplit_runs_seq_per_s", whole, 1),
            "split_max_abs_diff": diff, "split_stage_bytes": [p.size_bytes for p in published],
            "split_sequences": len(seqs)}


def from_texts(graph: bytes, texts: list[str], *, quick: bool) -> dict[str, Any]:
    """``measure`` on ``texts`` tokenized with the graph's tokenizer (``benchmarks.transformer``'s call;
    ``quick``: 128 of them, one pass: the 4 worker starts take most of its ~2 minutes)."""
    from aiaas.data.pretrained import encode_texts, text_tokenizer

    ids, mask = encode_texts(text_tokenizer("all-MiniLM-L6-v2", 128), texts[:128] if quick else texts)
    return run(measure(graph, bucketed(ids, mask), repeat=1 if quick else 3))


def classifier_graph() -> bytes:
    """all-MiniLM-L6-v2's encoder (frozen) with a seeded 4-class head, 128 tokens, as ONNX."""
    import torch

    from aiaas.ml.textexport import export_text
    from aiaas.ml.transformer import TextClassifier, load_encoder

    torch.manual_seed(0)
    name = "all-MiniLM-L6-v2"
    model = TextClassifier(load_encoder(name), 4, 6, labels=["a", "b", "c", "d"], pretrained=name,
                           max_length=128)
    return export_text(model)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer sequences")
    add_repeat(ap, 3)
    args = ap.parse_args(argv)
    result = run(measure(classifier_graph(), random_sequences(256 if args.quick else 1024),
                         repeat=args.repeat))
    result["machine"] = machine()
    emit(result)
    return result


if __name__ == "__main__":
    main()
