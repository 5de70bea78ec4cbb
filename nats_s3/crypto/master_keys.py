"""The master keys of SSE-S3 and SSE-KMS (--sse.keys): a JSON file of named 256-bit keys, one of them the
default. Rotation is adding a key and moving `default`: objects keep naming the key they were sealed
with, so older ones stay readable while that key stays in the file."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

KEY_SIZE = 32
KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,127}$"


class KeyFileError(ValueError):
    """The key file is missing, unreadable or malformed (the message says which and where)."""


class _KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=KEY_ID_PATTERN)
    key: str
    default: bool = False


class _KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: list[_KeyEntry] = Field(min_length=1)


@dataclass(frozen=True)
class MasterKeys:
    keys: dict[str, bytes]
    default_id: str

    def get(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)

    @classmethod
    def load(cls, path: Path) -> MasterKeys:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"key file {path}: {exc.strerror or exc}") from None
        try:
            parsed = _KeyFile.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) else None
            where = ".".join(str(p) for p in first["loc"]) if first else ""
            why = first["msg"] if first else str(exc)
            raise KeyFileError(
                f'key file {path}: {where + ": " if where else ""}{why} (expected {{"keys": [{{"id": "k1", '
                f'"key": "<base64 of 32 bytes>", "default": true}}]}})'
            ) from None
        return cls.from_entries(parsed.keys, str(path))

    @classmethod
    def from_entries(cls, entries: list[_KeyEntry], where: str) -> MasterKeys:
        keys: dict[str, bytes] = {}
        defaults: list[str] = []
        for entry in entries:
            if entry.id in keys:
                raise KeyFileError(f"key file {where}: key id {entry.id!r} appears twice")
            try:
                key = base64.b64decode(entry.key, validate=True)
            except (binascii.Error, ValueError):
                raise KeyFileError(f"key file {where}: key {entry.id!r} is not base64") from None
            if len(key) != KEY_SIZE:
                raise KeyFileError(f"key file {where}: key {entry.id!r} is {len(key)} bytes, not {KEY_SIZE}")
            keys[entry.id] = key
            if entry.default:
                defaults.append(entry.id)
        if len(defaults) > 1:
            raise KeyFileError(f"key file {where}: more than one default key ({', '.join(defaults)})")
        if not defaults:
            if len(keys) > 1:
                raise KeyFileError(f'key file {where}: mark the key new objects use with "default": true')
            defaults = list(keys)
        return cls(keys, defaults[0])


class MasterKeyHolder:
    """The master keys in use, replaced whole when the key file is read again (SIGHUP); None: no key
    file, so SSE-S3 and SSE-KMS are refused."""

    def __init__(self, keys: MasterKeys | None = None) -> None:
        self.current = keys
