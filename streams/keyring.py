"""Where tenant data keys come from: the ``KeyProvider`` interface and its file/env implementation.

A data key is 32 random bytes (AES-256-GCM) with an id and the tenant it belongs to. The id travels
in the ``data-key`` header of every record it sealed; the key itself never leaves the processes
that hold the key file (docs/security.md, "Payload encryption"). A tenant may have several keys
(rotation): the last one listed seals, every one listed opens.

Key file (``AIAAS_DATA_KEYS_FILE``), or the same JSON in ``AIAAS_DATA_KEYS``::

    {"keys": [{"id": "acme-1", "tenant": "acme", "key": "<base64 of 32 bytes>"}]}
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiaas.schemas.errors import AiaasError, ErrorCode

KEY_BYTES = 32
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class DataKey(BaseModel):
    """One tenant data key (``key`` is base64 on the wire, 32 bytes once decoded)."""

    id: str
    tenant: str = Field(min_length=1, max_length=128)
    key: SecretStr

    @field_validator("id")
    @classmethod
    def _id_token(cls, v: str) -> str:
        if not _ID.fullmatch(v):
            raise ValueError("a key id is 1-128 of A-Z a-z 0-9 . _ : - (it travels in a header)")
        return v

    @field_validator("key")
    @classmethod
    def _key_size(cls, v: SecretStr) -> SecretStr:
        try:
            raw = base64.b64decode(v.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("key is not base64") from None
        if len(raw) != KEY_BYTES:
            raise ValueError(f"key must be {KEY_BYTES} bytes (base64 of {KEY_BYTES} random bytes)")
        return v

    def secret(self) -> bytes:
        return base64.b64decode(self.key.get_secret_value())


class KeyFile(BaseModel):
    keys: list[DataKey] = Field(default_factory=list)


class KeySettings(BaseSettings):
    """Where this process finds data keys, and whose key seals what it writes."""

    model_config = SettingsConfigDict(env_prefix="AIAAS_", env_file=".env", extra="ignore")

    data_keys_file: Path | None = None  # a key file (JSON, above)
    data_keys: SecretStr | None = None  # the same JSON inline (a secret mounted as an env variable)
    data_key_tenant: str | None = None  # the tenant whose newest key seals this process's records


class KeyProvider(Protocol):
    """What sealing and opening need: a key by id, and the key id a tenant seals with now."""

    def secret(self, key_id: str) -> bytes | None: ...

    def active(self, tenant: str) -> str | None: ...


class Keyring:
    """Keys held in memory (from a key file, the environment, or given)."""

    def __init__(self, keys: list[DataKey]) -> None:
        self._secrets = {k.id: k.secret() for k in keys}
        self._active = {k.tenant: k.id for k in keys}  # the last listed key of a tenant seals

    def secret(self, key_id: str) -> bytes | None:
        return self._secrets.get(key_id)

    def active(self, tenant: str) -> str | None:
        return self._active.get(tenant)

    def __len__(self) -> int:
        return len(self._secrets)


def new_key(tenant: str, key_id: str) -> DataKey:
    """A fresh random data key (for a key file: ``DataKey.model_dump(mode="json")`` prints it masked;
    write ``key`` with ``key.get_secret_value()``)."""
    return DataKey(id=key_id, tenant=tenant, key=SecretStr(base64.b64encode(os.urandom(KEY_BYTES)).decode()))


def key_file_json(keys: list[DataKey]) -> str:
    """The key file holding ``keys`` (secrets included: write it mode 0600)."""
    return json.dumps({"keys": [{**k.model_dump(mode="json"), "key": k.key.get_secret_value()}
                                for k in keys]})


def load_keyring(cfg: KeySettings | None = None) -> Keyring | None:
    """The keys configured for this process (file and env together), or None when none is set. A
    file that cannot be read or parsed is a one-line AiaasError naming the file, never the keys."""
    cfg = cfg or KeySettings()
    if cfg.data_keys_file is None and cfg.data_keys is None:
        return None
    keys: list[DataKey] = []
    sources: list[tuple[str, str]] = []
    if cfg.data_keys_file is not None:
        try:
            sources.append((str(cfg.data_keys_file), cfg.data_keys_file.read_text(encoding="utf-8")))
        except OSError as exc:
            raise AiaasError("data key file cannot be read", code=ErrorCode.BAD_REQUEST,
                             file=str(cfg.data_keys_file), why=exc.strerror or type(exc).__name__) from None
    if cfg.data_keys is not None:
        sources.append(("AIAAS_DATA_KEYS", cfg.data_keys.get_secret_value()))
    for where, text in sources:
        try:
            keys += KeyFile.model_validate_json(text).keys
        except ValidationError as exc:
            errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)]
            raise AiaasError("data keys are malformed", code=ErrorCode.BAD_REQUEST, source=where,
                             errors=errors[:5]) from None
    return Keyring(keys)
