"""The credential store: the Go nats-s3 credentials file, validated by pydantic."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..protocol.errors import S3Error
from .policy import policy_from_document


class Credential(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    access_key: str = Field(alias="accessKey")
    secret_key: str = Field(alias="secretKey", repr=False)
    # Optional: the canonical user id and display name S3 reports as Owner (derived when absent).
    user_id: str | None = Field(default=None, alias="userId", min_length=1, max_length=128)
    display_name: str | None = Field(default=None, alias="displayName", min_length=1, max_length=128)
    # Optional, and once any credential uses them the gateway has ordinary users: `admin` may do
    # everything; `policy` (an IAM policy document) is what else the key may do besides its own buckets.
    admin: bool = False
    policy: dict[str, object] | None = None

    @field_validator("policy")
    @classmethod
    def _check_policy(cls, value: dict[str, object] | None) -> dict[str, object] | None:
        if value is not None:
            try:
                policy_from_document(value, None)
            except S3Error as exc:
                raise ValueError(f"policy: {exc.message}") from None
        return value

    @property
    def scoped(self) -> bool:
        """Whether this credential uses the fields that turn on ordinary users."""
        return self.admin or self.policy is not None

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
