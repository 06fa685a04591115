"""Where the registry keeps a model version's bytes: partition 0 of the ``artifacts`` topic, in
chunks keyed ``<name>:<version>:<i>`` (with the streams chunk headers, so ``streams.Consumer`` can
reassemble them too) read back from ``ModelVersion.artifact_offset``; or, with an artifact
directory, a file named by version and sha256 (``uri`` is its file:// URI). Loading checks the
sha256 either way."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from aiokafka.structs import TopicPartition
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiaas.registry.artifacts import read_uri, write_file
from aiaas.schemas.errors import IntegrityError
from aiaas.schemas.registry import ModelVersion
from aiaas.streams import chunking
from aiaas.streams.producer import Producer
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings


class RegistrySettings(BaseSettings):
    """Where artifact bytes live: the ``artifacts`` topic (default) or a directory."""

    model_config = SettingsConfigDict(env_prefix="AIAAS_REGISTRY_", extra="ignore")

    artifact_dir: str | None = None


async def store_chunks(producer: Producer, topic: str, mv: ModelVersion, data: bytes) -> ModelVersion:
    """Write ``data`` as chunks of ``mv``; returns ``mv`` with ``chunks`` and ``artifact_offset``."""
    futures = []
    chunks = chunking.split(data, producer.settings.chunk_bytes)
    for i, chunk in enumerate(chunks):
        futures.append(await producer.raw.send(
            topic, chunk.data, key=f"{mv.name}:{mv.version}:{i}".encode(),
            headers=chunk.headers, partition=0,
        ))
    first = await futures[0]
    await asyncio.gather(*futures)
    return mv.model_copy(update={"chunks": len(chunks), "artifact_offset": first.offset})


async def read_chunks(settings: Settings, topic: str, mv: ModelVersion, timeout_s: float = 60.0) -> bytes:
    """The chunks of ``mv`` joined; IntegrityError when any is missing."""
    tp = TopicPartition(topic, 0)
    prefix = f"{mv.name}:{mv.version}:".encode()
    parts: dict[int, bytes] = {}
    reader = await open_assigned(settings, tp, from_beginning=False)
    try:
        reader.seek(tp, mv.artifact_offset or 0)
        end = (await reader.end_offsets([tp]))[tp]
        async with asyncio.timeout(timeout_s):
            while len(parts) < mv.chunks and await reader.position(tp) < end:
                for rec in (await reader.getmany(tp, timeout_ms=500)).get(tp, []):
                    if rec.key and rec.key.startswith(prefix):
                        parts[int(rec.key[len(prefix):])] = rec.value or b""
    finally:
        await reader.stop()
    if sorted(parts) != list(range(mv.chunks)) or mv.chunks == 0:
        raise IntegrityError("artifact chunks missing", model=mv.name, version=mv.version,
                             found=len(parts), expected=mv.chunks)
    return b"".join(parts[i] for i in range(mv.chunks))


async def store(producer: Producer, topic: str, artifact_dir: Path | None, mv: ModelVersion,
                data: bytes) -> ModelVersion:
    """Keep ``data`` as the bytes of ``mv`` (a file in ``artifact_dir``, else chunks on ``topic``)."""
    if artifact_dir is not None:
        path = artifact_dir / mv.name / f"{mv.version}-{mv.sha256[:16]}.onnx"
        await asyncio.to_thread(write_file, path, data)
        return mv.model_copy(update={"uri": path.resolve().as_uri()})
    return await store_chunks(producer, topic, mv, data)


async def load(settings: Settings, topic: str, mv: ModelVersion) -> bytes:
    """The bytes of ``mv``; IntegrityError when they do not match its sha256."""
    if mv.uri is not None:
        data = await asyncio.to_thread(read_uri, mv.uri)
    else:
        data = await read_chunks(settings, topic, mv)
    if hashlib.sha256(data).hexdigest() != mv.sha256:
        raise IntegrityError("artifact sha256 mismatch", model=mv.name, version=mv.version)
    return data
