"""Text bundles without a broker: the directory form, the files a text model's ONNX metadata holds,
and ``aiaas models export-encoder`` (the pretrained encoder with no head as an embedding bundle)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from aiaas.cli.textmodels import export_encoder
from aiaas.data.pretrained import encode_texts, pretrained_dir, text_tokenizer
from aiaas.ml.textexport import session
from aiaas.registry.bundles import (
    CONFIG,
    LABELS,
    MODEL_FILE,
    TOKENIZER,
    from_onnx,
    read_dir,
    same_files,
    write_dir,
)
from aiaas.schemas.errors import AiaasError
from aiaas.schemas.registry import BundleFile, ModelVersion


def _mv(files: dict[str, bytes]) -> ModelVersion:
    return ModelVersion(name="m", version=1, sha256="0" * 64, size_bytes=1, inputs=[], outputs=[],
                        files=[BundleFile(name=n, sha256=hashlib.sha256(b).hexdigest(), size_bytes=len(b))
                               for n, b in files.items()])


def test_bundle_directory_round_trip_and_refusals(tmp_path: Path) -> None:
    files = {CONFIG: b'{"task": "text-classification"}', LABELS: b'["a", "b"]', TOKENIZER: b"{}"}
    write_dir(tmp_path / "b", b"onnx-bytes", files)
    graph, back = read_dir(tmp_path / "b")
    assert graph == b"onnx-bytes" and back == files and same_files(_mv(files), back)
    assert not same_files(_mv(files), {**files, LABELS: b'["a", "c"]'})
    (tmp_path / "b" / "extra.bin").write_bytes(b"x")
    with pytest.raises(AiaasError, match=r"not expected: extra\.bin"):
        read_dir(tmp_path / "b")
    (tmp_path / "b" / "extra.bin").unlink()
    (tmp_path / "b" / CONFIG).unlink()
    with pytest.raises(AiaasError, match=r"missing: config\.json"):
        read_dir(tmp_path / "b")


def test_export_encoder_writes_an_embedding_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    export_encoder(out=tmp_path / "enc", max_length=32)
    graph, files = read_dir(tmp_path / "enc")
    assert set(files) == {TOKENIZER, CONFIG} and (tmp_path / "enc" / MODEL_FILE).is_file()
    assert files[TOKENIZER] == (pretrained_dir("all-MiniLM-L6-v2") / "tokenizer.json").read_bytes()
    config = json.loads(files[CONFIG])
    assert config["task"] == "text-embedding" and config["outputs"] == ["embedding"]
    assert config["max_length"] == 32
    meta = {p.key: p.value for p in onnx.load_from_string(graph).metadata_props}
    assert from_onnx(meta) == files
    tok = text_tokenizer(files[TOKENIZER].decode(), 32)  # the bundle's own tokenizer.json
    ids, mask = encode_texts(tok, ["a game", "a longer sound editor"])
    (emb,) = session(graph).run(["embedding"], {"input_ids": ids, "attention_mask": mask})
    assert emb.shape == (2, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
