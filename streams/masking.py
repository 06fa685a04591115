"""Masking personal fields at the edge: drop them, or replace them by a keyed hash.

A ``Masker`` is built once from a declared ``Masking`` (``aiaas.schemas.masking``) and the key
(``MaskSettings``: ``AIAAS_MASK_KEY``, or ``AIAAS_MASK_KEY_FILE`` naming a file that holds it). It
masks decoded documents (a JSON object, a CSV line's cells, an OIP request's ``parameters``), the
passthrough fields of a decoded record, a record key and headers, and scrubs the personal values it
found out of free text (an error reason) before any of it reaches a topic, a dead letter or a log
line. The hash is HMAC-SHA256 of the value's text, truncated: equal values give equal hashes, so a
hashed field still joins. See docs/security.md, "Masking".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.schemas.masking import Masking

MASKED = "<masked>"  # what a personal value found in free text becomes
MEMO = 65536  # digests remembered per masker


class MaskSettings(BaseSettings):
    """The masking key: ``AIAAS_MASK_KEY`` (the key itself) or ``AIAAS_MASK_KEY_FILE`` (a file)."""

    model_config = SettingsConfigDict(env_prefix="AIAAS_MASK_", extra="ignore")

    key: SecretStr | None = None
    key_file: Path | None = None

    def secret(self) -> bytes | None:
        if self.key is not None and self.key.get_secret_value():
            return self.key.get_secret_value().encode()
        if self.key_file is not None:
            try:
                raw = self.key_file.read_bytes().strip()
            except OSError as exc:
                raise AiaasError("cannot read the masking key file", code=ErrorCode.BAD_REQUEST,
                                 path=str(self.key_file), why=type(exc).__name__) from None
            if raw:
                return raw
        return None


def text_of(value: Any) -> str:
    """The text a value is hashed as: a string as it is, anything else as compact sorted JSON (so
    ``42`` and ``"42"`` hash alike, as a join on them would match)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


class Masker:
    """Applies one ``Masking``; refuses to exist when it must hash and has no key."""

    def __init__(self, spec: Masking, key: bytes | None) -> None:
        if spec.needs_key() and not key:
            raise AiaasError("masking declares hashed fields but no key is set: set AIAAS_MASK_KEY "
                             "or AIAAS_MASK_KEY_FILE", code=ErrorCode.BAD_REQUEST, hash=spec.hash)
        self.spec = spec
        self._key = key or b""
        self.actions: dict[str, str] = {p: "drop" for p in spec.drop} | {p: "hash" for p in spec.hash}
        self._split = [(p.split("."), a) for p, a in self.actions.items()]
        self._plans: dict[tuple[str, ...], list[tuple[str, str, list[str] | None]]] = {}
        padded = (self._key if len(self._key) <= 64 else hashlib.sha256(self._key).digest()).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
        self._memo: dict[str, str] = {}

    @classmethod
    def of(cls, spec: Masking | None, settings: MaskSettings | None = None) -> Masker | None:
        """The masker of ``spec``, or None when nothing is declared."""
        if spec is None or spec.empty():
            return None
        return cls(spec, (settings or MaskSettings()).secret() if spec.needs_key() else None)

    def digest(self, value: Any) -> str:
        """HMAC-SHA256 (RFC 2104) of the value's text, hex, truncated. The padded key's two hash
        states are made once and copied per value (a third of ``hmac.digest``'s cost), and recent
        values are remembered (a source's ids repeat)."""
        text = text_of(value)
        hit = self._memo.get(text)
        if hit is not None:
            return hit
        inner = self._inner.copy()
        inner.update(text.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        if len(self._memo) >= MEMO:
            self._memo.clear()
        out = self._memo[text] = outer.hexdigest()[: self.spec.hash_chars]
        return out

    # ------------------------------------------------------------------ documents

    def apply(self, doc: Any) -> list[str]:
        """Mask ``doc`` (a dict, changed in place) and return the texts of the personal values found."""
        found: list[str] = []
        for parts, action in self._split:
            _walk(doc, parts, action, self, found)
        return found

    def passthrough(self, row: dict[str, Any]) -> dict[str, Any]:
        """A decoded record's passthrough fields (keyed by their declared path), masked in place.
        What each path needs is worked out once per set of paths (every row of a source has one)."""
        keys = tuple(row)
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._plans[keys] = [step for path in keys for step in self._steps(path)]
        for path, action, inner in plan:
            if path not in row:
                continue
            if inner is not None:  # the field holds a personal one: mask a copy of it
                if isinstance(row[path], dict | list):
                    row[path] = json.loads(json.dumps(row[path], default=str))
                    _walk(row[path], inner, action, self, [])
            elif action == "drop":
                del row[path]
            else:
                row[path] = self.hashed(row[path])
        return row

    def _steps(self, path: str) -> list[tuple[str, str, list[str] | None]]:
        """What a passthrough path needs: dropped or hashed whole (it is a personal field or lies
        inside one), or masked inside (it holds personal fields), or nothing."""
        base = path.removesuffix("[]")  # an array field: its items are masked alike
        inside: list[tuple[str, str, list[str] | None]] = []
        for parts, action in self._split:
            masked = ".".join(parts)
            if base == masked or base.startswith(masked + "."):
                return [(path, action, None)]
            if masked.startswith(base + "."):
                inside.append((path, action, parts[len(base.split(".")):]))
        return inside

    def hashed(self, value: Any) -> Any:
        """``value`` hashed: a list item by item (each item still joins), anything else whole."""
        if isinstance(value, list):
            return [None if v is None else self.digest(v) for v in value]
        return None if value is None else self.digest(value)

    def key(self, key: bytes | None) -> bytes | None:
        """A record's Kafka key as ``record_key`` says: kept, hashed or dropped."""
        if key is None or self.spec.record_key == "keep":
            return key
        return None if self.spec.record_key == "drop" else self.digest(key).encode()

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        """Headers named like a declared top-level field are dropped or hashed like it."""
        out = {}
        for name, value in headers.items():
            action = self.actions.get(name)
            if action is None:
                out[name] = value
            elif action == "hash":
                out[name] = self.digest(value)
        return out

    def scrub(self, text: str, found: Iterable[str]) -> str:
        """``text`` with every personal value of ``found`` replaced by ``<masked>`` (longest first)."""
        for value in sorted({v for v in found if v}, key=len, reverse=True):
            text = text.replace(value, MASKED)
        return text


def _walk(node: Any, parts: list[str], action: str, masker: Masker, found: list[str]) -> None:
    """Mask the field at ``parts`` under ``node``; a list on the way is walked item by item."""
    if isinstance(node, list):
        for item in node:
            _walk(item, parts, action, masker, found)
        return
    if not isinstance(node, dict) or parts[0] not in node:
        return
    if len(parts) > 1:
        _walk(node[parts[0]], parts[1:], action, masker, found)
        return
    value = node[parts[0]]
    _collect(value, found)
    if action == "drop":
        del node[parts[0]]
    else:
        node[parts[0]] = masker.hashed(value)


def _collect(value: Any, found: list[str]) -> None:
    """The texts of a personal value (every scalar inside it) and its raw JSON rendering."""
    if isinstance(value, dict):
        for v in value.values():
            _collect(v, found)
    elif isinstance(value, list):
        for v in value:
            _collect(v, found)
    elif value is not None:
        found.append(text_of(value))
        if isinstance(value, str):
            found.append(json.dumps(value)[1:-1])  # as escaped inside a JSON text
