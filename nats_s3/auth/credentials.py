"""The credential store: the Go nats-s3 credentials file, validated by pydantic."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Credential(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    access_key: str = Field(alias="accessKey")
    secret_key: str = Field(alias="secretKey", repr=False)
    # Optional: the canonical user id and display name S3 reports as Owner (derived when absent).
    user_id: str | None = Field(default=None, alias="userId", min_length=1, max_length=128)
    display_name: str | None = Field(default=None, alias="displayName", min_length=1, max_length=128)

    @field_validator("access_key")
    @classmethod
    def _check_access_key(cls, value: str) -> str:
        if len(value) < 3:
            raise ValueError("access key must be at least 3 characters")
        if "=" in value or "," in value:
            raise ValueError("access key must not contain '=' or ','")
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: str) -> str:
        if len(value) < 8:
            raise ValueError("secret key must be at least 8 characters")
        return value


class CredentialsFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    credentials: list[Credential]

    @model_validator(mode="after")
    def _check(self) -> CredentialsFile:
        if not self.credentials:
            raise ValueError("credentials list is empty")
        seen: set[str] = set()
        for cred in self.credentials:
            if cred.access_key in seen:
                raise ValueError(f"duplicate access key {cred.access_key!r}")
            seen.add(cred.access_key)
        # Two keys may name one userId: one user's old and new key while it is rotated.
        return self


class CredentialsError(Exception):
    """The credentials file is missing, unreadable or invalid (message is one line)."""


def load_credentials(path: Path) -> dict[str, str]:
    """Read a credentials file and return access key -> secret key."""
    return {c.access_key: c.secret_key for c in read_credentials_file(path).credentials}


def read_credentials_file(path: Path) -> CredentialsFile:
    """The whole file, validated (CredentialsError with one line otherwise)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CredentialsError(f"credentials file {path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    try:
        parsed = CredentialsFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise CredentialsError(f"invalid credentials file {path}: {where + ': ' if where else ''}{msg}") from None
    return parsed
