"""A model's personal request fields, masked at the bridge before the request goes on Kafka.

A model version may declare ``masking`` (``aiaas.schemas.masking``; ``Registry.set_masking``): paths
into a request's ``parameters`` to drop or hash. The bridge is where such a value first reaches
aiaas over HTTP, so it masks the checked request's parameters here, before the request topic, the
request's dead letter, Redis and any log line see them. A model's
masking is that of all its registered versions together (a version pushed later without one does
not undo it; where versions disagree, drop wins). See docs/security.md, "Masking".
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.schemas.masking import Masking
from aiaas.schemas.registry import ModelVersion
from aiaas.streams.masking import Masker


def model_masking(versions: Iterable[ModelVersion], model: str) -> Masking | None:
    """The union of what ``model``'s versions declare (drop over hash; a field inside another
    masked field is covered by it), or None when none declares anything."""
    actions: dict[str, str] = {}
    chars = 16
    for mv in versions:
        if mv.name != model or mv.masking is None:
            continue
        chars = max(chars, mv.masking.hash_chars)
        for p in mv.masking.hash:
            actions.setdefault(p, "hash")
        for p in mv.masking.drop:
            actions[p] = "drop"
    if not actions:
        return None
    kept = {p: a for p, a in actions.items() if not any(p.startswith(q + ".") for q in actions)}
    return Masking(drop=sorted(p for p, a in kept.items() if a == "drop"),
                   hash=sorted(p for p, a in kept.items() if a == "hash"), hash_chars=chars)


@lru_cache(maxsize=256)
def _masker(spec: str) -> Masker | None:
    try:
        return Masker.of(Masking.model_validate_json(spec))
    except AiaasError as exc:  # the bridge's configuration, not the caller's fault
        raise AiaasError(exc.reason, code=ErrorCode.INTERNAL, **exc.details) from None


def mask_parameters(parameters: dict[str, Any], versions: Iterable[ModelVersion], model: str) -> None:
    """Drop or hash ``model``'s personal fields in a request's ``parameters`` (in place)."""
    if not parameters:  # most calls: nothing to mask, and no scan of the registry's versions
        return
    spec = model_masking(versions, model)
    masker = _masker(spec.model_dump_json()) if spec is not None else None
    if masker is not None:
        masker.apply(parameters)
