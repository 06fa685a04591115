"""Model bundles: one registry version = ``model.onnx`` + ``tokenizer.json`` + ``labels.json`` +
``config.json``, each with its own sha256 (docs/transformers.md).

The graph is stored as any version's bytes (``aiaas.registry.artifactlog``); the other files go next
to it, each as chunks keyed ``<name>:<version>/<file>:<i>`` on ``artifacts`` (or a file in the
artifact directory) and listed in ``ModelVersion.files``. They are written before the graph's chunks,
so the graph's reader (which starts at ``artifact_offset``) never meets them. A text model exported
by a training job carries the same content in its ONNX metadata (``aiaas.ml.textexport``);
``from_onnx`` turns that into a bundle.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from aiokafka.structs import TopicPartition

from aiaas.registry.artifacts import read_uri, write_file
from aiaas.schemas.errors import AiaasError, ErrorCode, IntegrityError, NotFound
from aiaas.schemas.registry import BundleFile, ModelVersion
from aiaas.streams import chunking
from aiaas.streams.producer import Producer
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings

MODEL_FILE, TOKENIZER, LABELS, CONFIG = "model.onnx", "tokenizer.json", "labels.json", "config.json"
FILES = (TOKENIZER, LABELS, CONFIG)


def _bad(reason: str, **details: object) -> AiaasError:
    return AiaasError(reason, code=ErrorCode.BAD_REQUEST, **details)


def read_dir(path: Path) -> tuple[bytes, dict[str, bytes]]:
    """A bundle directory: ``model.onnx`` and ``config.json`` required, ``tokenizer.json`` and
    ``labels.json`` when there; JSON files must parse, and nothing else may be in it."""
    names = {p.name for p in path.iterdir()}
    unknown = sorted(names - {MODEL_FILE, *FILES})
    missing = sorted({MODEL_FILE, CONFIG} - names)
    if unknown or missing:
        raise _bad(f"a bundle directory holds {MODEL_FILE}, {CONFIG} and optionally {TOKENIZER}, {LABELS}"
                   + (f"; missing: {', '.join(missing)}" if missing else "")
                   + (f"; not expected: {', '.join(unknown)}" if unknown else ""),
                   path=str(path), missing=missing, unexpected=unknown)
    files = {n: (path / n).read_bytes() for n in FILES if n in names}
    for name, data in files.items():
        try:
            json.loads(data)
        except ValueError as exc:
            raise _bad(f"{name} in the bundle is not valid JSON", path=str(path / name),
                       detail=str(exc)) from exc
    return (path / MODEL_FILE).read_bytes(), files


def write_dir(path: Path, onnx_bytes: bytes, files: dict[str, bytes]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name, data in {MODEL_FILE: onnx_bytes, **files}.items():
        write_file(path / name, data)


def from_onnx(meta: dict[str, str]) -> dict[str, bytes]:
    """A text model's bundle files from its ONNX metadata (``aiaas.ml.textexport``); {} for others."""
    task = meta.get("aiaas.task")
    if task not in ("text-classification", "text-embedding") or "aiaas.tokenizer" not in meta:
        return {}
    config = {"task": task, "max_length": int(meta.get("aiaas.max_length", "512")),
              "pretrained": meta.get("aiaas.pretrained", ""), "pooling": meta.get("aiaas.pooling", "mean"),
              "inputs": ["input_ids", "attention_mask"],
              "outputs": json.loads(meta.get("aiaas.outputs", "[]"))}
    files = {TOKENIZER: meta["aiaas.tokenizer"].encode(), CONFIG: json.dumps(config, indent=2).encode()}
    if "aiaas.labels" in meta:
        files[LABELS] = json.dumps(json.loads(meta["aiaas.labels"])).encode()
    return files


def same_files(mv: ModelVersion, files: dict[str, bytes]) -> bool:
    """``mv`` holds exactly these files (by sha256)."""
    want = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    return {f.name: f.sha256 for f in mv.files} == want


async def store_files(producer: Producer, topic: str, artifact_dir: Path | None, mv: ModelVersion,
                      files: dict[str, bytes]) -> list[BundleFile]:
    """Keep every file of ``files`` for ``mv``; returns their entries for ``mv.files``."""
    out = []
    for name, data in sorted(files.items()):
        entry = BundleFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
        if artifact_dir is not None:
            path = artifact_dir / mv.name / f"{mv.version}-{entry.sha256[:16]}-{name}"
            await asyncio.to_thread(write_file, path, data)
            out.append(entry.model_copy(update={"uri": path.resolve().as_uri()}))
            continue
        chunks = chunking.split(data, producer.settings.chunk_bytes)
        futures = [await producer.raw.send(topic, c.data, key=f"{mv.name}:{mv.version}/{name}:{i}".encode(),
                                           headers=c.headers, partition=0) for i, c in enumerate(chunks)]
        first = await futures[0]
        await asyncio.gather(*futures)
        out.append(entry.model_copy(update={"chunks": len(chunks), "artifact_offset": first.offset}))
    return out


async def load_file(settings: Settings, topic: str, mv: ModelVersion, name: str,
                    timeout_s: float = 60.0) -> bytes:
    """The bytes of bundle file ``name`` of ``mv``; IntegrityError when they do not match its sha256."""
    entry = next((f for f in mv.files if f.name == name), None)
    if entry is None:
        raise NotFound("no such file in the model version", model=mv.name, version=mv.version, file=name,
                       files=[f.name for f in mv.files])
    data = await asyncio.to_thread(read_uri, entry.uri) if entry.uri is not None \
        else await _read_chunks(settings, topic, f"{mv.name}:{mv.version}/{name}:".encode(), entry, timeout_s)
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise IntegrityError("bundle file sha256 mismatch", model=mv.name, version=mv.version, file=name)
    return data


async def _read_chunks(settings: Settings, topic: str, prefix: bytes, entry: BundleFile,
                       timeout_s: float) -> bytes:
    tp = TopicPartition(topic, 0)
    parts: dict[int, bytes] = {}
    reader = await open_assigned(settings, tp, from_beginning=False)
    try:
        reader.seek(tp, entry.artifact_offset or 0)
        end = (await reader.end_offsets([tp]))[tp]
        async with asyncio.timeout(timeout_s):
            while len(parts) < entry.chunks and await reader.position(tp) < end:
                for rec in (await reader.getmany(tp, timeout_ms=500)).get(tp, []):
                    if rec.key and rec.key.startswith(prefix):
                        parts[int(rec.key[len(prefix):])] = rec.value or b""
    finally:
        await reader.stop()
    if sorted(parts) != list(range(entry.chunks)):
        raise IntegrityError("bundle file chunks missing", file=entry.name, found=len(parts),
                             expected=entry.chunks)
    return b"".join(parts[i] for i in range(entry.chunks))
