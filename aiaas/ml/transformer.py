"""The ``transformer-classifier`` model: a pretrained BERT-family encoder + mean pooling + a linear head.

The encoder is written here in plain torch under the checkpoint's own parameter names, so its
``model.safetensors`` loads as it is (nothing downloaded: ``aiaas.data.pretrained``); a unit test
holds it to ``transformers``' ``BertModel`` on the same weights. Why not ``transformers`` itself in
the trainers: its import costs seconds per process and its layer API moves between releases; the
export must stay a plain graph with dynamic batch and sequence axes.

``frozen_layers`` = k keeps the embeddings and the bottom k layers at their pretrained weights
(k = 0 trains everything). Frozen modules are held outside the module tree: they are not in
``parameters()`` or ``state_dict()``, so they never travel as gradients or versions and take no
optimizer state (every process loads the same pretrained weights); they still move with ``.to()``,
run in eval mode under ``no_grad``, and are part of the exported graph (docs/transformers.md).

Data rows are ``input_ids`` then ``attention_mask`` ([rows, 2 * max_seq_len]; ids may arrive as
float32, exact below 2**24), and a batch is cut to its longest text before the encoder runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aiaas.data.pretrained import WEIGHTS_FILE, encoder_config, pretrained_dir
from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.schemas.jobs import JobSpec, TransformerClassifierSpec

CACHE_FLOATS = 16 << 20  # 64 MB of cached frozen states per model


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1

    @classmethod
    def of(cls, cfg: dict[str, Any]) -> EncoderConfig:
        names = [f for f in cls.__dataclass_fields__ if f != "dropout"]
        return cls(**{k: cfg[k] for k in names}, dropout=float(cfg.get("hidden_dropout_prob", 0.1)))


class Embeddings(nn.Module):
    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, ids: Tensor) -> Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        h = self.word_embeddings(ids) + self.position_embeddings(pos)[None]
        h = h + self.token_type_embeddings.weight[0]  # token type 0: one segment per text
        out: Tensor = self.dropout(self.LayerNorm(h))
        return out


class _Dense(nn.Module):
    """``dense`` (+ ``LayerNorm`` of the residual when ``norm``): the checkpoint's module names."""

    def __init__(self, c: EncoderConfig, n_in: int, n_out: int, norm: bool) -> None:
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        if norm:
            self.LayerNorm = nn.LayerNorm(n_out, eps=c.layer_norm_eps)
            self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        h: Tensor = self.dense(x)
        if residual is None:
            return F.gelu(h)
        out: Tensor = self.LayerNorm(self.dropout(h) + residual)
        return out


class _SelfAttention(nn.Module):
    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.heads, self.size = c.num_attention_heads, c.hidden_size // c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, h: Tensor, bias: Tensor) -> Tensor:
        b, n, _ = h.shape

        def split(t: Tensor) -> Tensor:
            return t.view(b, n, self.heads, self.size).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.size) + bias
        ctx = self.dropout(scores.softmax(dim=-1)) @ v
        out: Tensor = ctx.transpose(1, 2).reshape(b, n, self.heads * self.size)
        return out


class _Attention(nn.Module):
    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _Dense(c, c.hidden_size, c.hidden_size, norm=True)

    def forward(self, h: Tensor, bias: Tensor) -> Tensor:
        out: Tensor = self.output(self.self(h, bias), h)
        return out


class Layer(nn.Module):
    """One encoder layer (post-norm BERT): attention, then the feed-forward block."""

    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Dense(c, c.hidden_size, c.intermediate_size, norm=False)
        self.output = _Dense(c, c.intermediate_size, c.hidden_size, norm=True)

    def forward(self, h: Tensor, bias: Tensor) -> Tensor:
        a = self.attention(h, bias)
        out: Tensor = self.output(self.intermediate(a), a)
        return out


class _Layers(nn.Module):
    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(c) for _ in range(c.num_hidden_layers))


class Encoder(nn.Module):
    """The pretrained encoder under the checkpoint's names (``embeddings.*``, ``encoder.layer.N.*``)."""

    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.config = c
        self.embeddings = Embeddings(c)
        self.encoder = _Layers(c)


def attention_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """0 where attended, the dtype's minimum where padded; [batch, 1, 1, seq]."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def mean_pool(h: Tensor, mask: Tensor) -> Tensor:
    """Mean of the token states over the attended tokens (sentence-transformers' pooling)."""
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def load_encoder(name: str, dropout: float | None = None) -> Encoder:
    """``name``'s encoder with its pretrained weights (from the installed package's safetensors)."""
    from safetensors.torch import load_file

    config = EncoderConfig.of(encoder_config(name))
    if dropout is not None:
        config = EncoderConfig(**{**config.__dict__, "dropout": dropout})
    enc = Encoder(config)
    weights = load_file(str(pretrained_dir(name) / WEIGHTS_FILE))
    wanted = set(enc.state_dict())
    missing = wanted - set(weights)
    if missing:
        raise AiaasError("pretrained weights do not fit the encoder", code=ErrorCode.INTERNAL,
                         pretrained=name, missing=sorted(missing)[:5])
    enc.load_state_dict({k: v for k, v in weights.items() if k in wanted})
    return enc


class TextClassifier(nn.Module):
    """Encoder (bottom ``frozen`` layers frozen, embeddings with them) + mean pooling + ``head``."""

    TEXT_MODEL = True  # aiaas.ml.export exports it with input_ids/attention_mask inputs

    def __init__(self, encoder: Encoder, n_classes: int, frozen: int, dropout: float = 0.1,
                 labels: list[str] | None = None, pretrained: str = "", max_length: int = 512) -> None:
        super().__init__()
        self.max_length = max_length
        c = encoder.config
        if frozen > c.num_hidden_layers:
            raise AiaasError("model.frozen_layers is more than the encoder's layers",
                             code=ErrorCode.BAD_REQUEST, field="model.frozen_layers", frozen_layers=frozen,
                             layers=c.num_hidden_layers)
        self.hidden, self.pretrained = c.hidden_size, pretrained
        self.labels = labels or [str(i) for i in range(n_classes)]
        layers = list(encoder.encoder.layer)
        self.embeddings: nn.Module | None = None if frozen else encoder.embeddings
        self.layers = nn.ModuleList(layers[frozen:])
        frozen_part = nn.ModuleList([encoder.embeddings, *layers[:frozen]]) if frozen else None
        if frozen_part is not None:
            frozen_part.requires_grad_(False).eval()
        self._frozen = (frozen_part,)  # a tuple: outside the module tree (see the module docstring)
        self._cache: dict[bytes, Tensor] = {}  # frozen states per text (see frozen_states)
        self._cached = 0
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c.hidden_size, n_classes)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> TextClassifier:
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        self._cache, self._cached = {}, 0
        if self._frozen[0] is not None:
            self._frozen[0]._apply(fn, recurse)  # type: ignore[no-untyped-call]
        return self

    def _run_frozen(self, ids: Tensor, bias: Tensor) -> Tensor:
        frozen = self._frozen[0]
        assert frozen is not None
        with torch.no_grad():
            h: Tensor = frozen[0](ids)
            for layer in list(frozen)[1:]:
                h = layer(h, bias)
        return h

    def frozen_states(self, ids: Tensor, mask: Tensor) -> Tensor:
        """The frozen part's output, cached per text: frozen weights never change, and a text's
        token states do not depend on the padding beside it, so the epochs after the first run only
        the trained layers (the cache holds at most ``CACHE_FLOATS`` floats; eager use only)."""
        lengths = [int(n) for n in mask.sum(dim=1).tolist()]
        keys = [ids[i, :n].cpu().numpy().tobytes() for i, n in enumerate(lengths)]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        fresh: dict[int, Tensor] = {}
        if todo:
            h = self._run_frozen(ids[todo], attention_bias(mask[todo], self.head.weight.dtype))
            for j, i in enumerate(todo):
                fresh[i] = h[j, :lengths[i]]
                if self._cached + fresh[i].numel() <= CACHE_FLOATS:
                    self._cache[keys[i]] = fresh[i].clone()
                    self._cached += fresh[i].numel()
        out = torch.zeros(ids.shape[0], ids.shape[1], self.hidden, device=ids.device,
                          dtype=self.head.weight.dtype)
        for i, k in enumerate(keys):
            out[i, :lengths[i]] = fresh[i] if i in fresh else self._cache[k]
        return out

    def pooled(self, ids: Tensor, mask: Tensor, *, cached: bool = False) -> Tensor:
        """The mean-pooled sentence embedding [batch, hidden] (before the head); ``cached`` reuses
        the frozen part's states (training and evaluation; never in an exported graph)."""
        bias = attention_bias(mask, self.head.weight.dtype)
        if self._frozen[0] is not None:
            h = self.frozen_states(ids, mask) if cached else self._run_frozen(ids, bias)
        else:
            assert self.embeddings is not None
            h = self.embeddings(ids)
        for layer in self.layers:
            h = layer(h, bias)
        return mean_pool(h, mask)

    def logits(self, ids: Tensor, mask: Tensor, *, cached: bool = False) -> Tensor:
        out: Tensor = self.head(self.dropout(self.pooled(ids, mask, cached=cached)))
        return out

    def forward(self, x: Tensor) -> Tensor:
        """``x`` = input_ids then attention_mask per row; the batch is cut to its longest text."""
        n = x.shape[1] // 2
        ids, mask = x[:, :n].long(), x[:, n:].long()
        longest = max(1, int(mask.sum(dim=1).max())) if mask.numel() else 1
        return self.logits(ids[:, :longest], mask[:, :longest], cached=True)


def build_text_classifier(spec: JobSpec) -> TextClassifier:
    """The spec's model (call under the seeded RNG of ``aiaas.ml.models.build_model``); the label
    names are the data's sections when the data is text, else the indices."""
    m = spec.model
    assert isinstance(m, TransformerClassifierSpec)
    labels = list(spec.data.text.sections) if spec.data.source == "debian" else None
    if labels is not None and len(labels) != m.output_dim:
        labels = None
    return TextClassifier(load_encoder(m.pretrained), m.output_dim, m.frozen_layers, m.dropout, labels,
                          pretrained=m.pretrained, max_length=m.max_seq_len)
