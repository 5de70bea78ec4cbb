"""The envelope of an object's data key: which kind of server-side encryption sealed it and how to get the
key back. SSE-C wraps the data key under the client's key and keeps only a salted HMAC of that key (so a
wrong key is told from a right one without ever storing it); SSE-S3 and SSE-KMS wrap it under a named
master key, SSE-KMS with the client's encryption context bound in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict

from .chunk_cipher import DATA_KEY_SIZE, TamperedData
from .master_keys import MasterKeys

_WRAP_LABEL = b"nats-s3 data key\x00"
_FINGERPRINT_LABEL = b"nats-s3 customer key\x00"
SALT_SIZE = 16
NONCE_SIZE = 12


class Mode(StrEnum):
    CUSTOMER = "SSE-C"
    S3 = "AES256"
    KMS = "aws:kms"


class WrongCustomerKey(Exception):
    """The SSE-C key of a request is not the one the object was sealed with."""


class MasterKeyMissing(Exception):
    """The master key an object was sealed with is not among the keys in use (or there are none)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id


class Envelope(BaseModel):
    """Kept in the object's meta (and an upload's record); holds nothing that opens the data without a
    key that is not in NATS."""

    model_config = ConfigDict(frozen=True, extra="allow")

    mode: Mode
    wrapped: str  # base64 of nonce + AES-GCM of the data key
    key_id: str | None = None  # SSE-S3 / SSE-KMS: the master key
    context: str | None = None  # SSE-KMS: the encryption context as sent (base64 of JSON)
    salt: str | None = None  # SSE-C: the salt of the key's HMAC
    key_hmac: str | None = None  # SSE-C: HMAC-SHA256 of the salt under the client's key
    layout: str | None = None  # chunk_cipher.layout_mac of the committed object
    part_macs: list[str] | None = None  # multipart completed without the data key: each part's part_mac

    @property
    def hides_md5(self) -> bool:
        """S3's ETag rule: SSE-C and SSE-KMS objects do not show the plaintext's MD5."""
        return self.mode is not Mode.S3

    def _aad(self) -> bytes:
        return _WRAP_LABEL + f"{self.mode.value}\x00{self.key_id or ''}\x00{self.context or ''}".encode()

    def matches_customer_key(self, key: bytes) -> bool:
        if self.mode is not Mode.CUSTOMER or self.salt is None or self.key_hmac is None:
            return False
        expected = _fingerprint(key, base64.b64decode(self.salt))
        return hmac.compare_digest(expected, base64.b64decode(self.key_hmac))

    def open(self, *, customer_key: bytes | None = None, master_keys: MasterKeys | None = None) -> bytes:
        """The data key. WrongCustomerKey, MasterKeyMissing, or TamperedData where the wrapped key does
        not open under the key that should open it."""
        if self.mode is Mode.CUSTOMER:
            if customer_key is None or not self.matches_customer_key(customer_key):
                raise WrongCustomerKey()
            wrapping = customer_key
        else:
            key_id = self.key_id or ""
            found = master_keys.get(key_id) if master_keys is not None else None
            if found is None:
                raise MasterKeyMissing(key_id)
            wrapping = found
        sealed = base64.b64decode(self.wrapped)
        try:
            data_key = AESGCM(wrapping).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], self._aad())
        except InvalidTag:
            raise TamperedData("the wrapped data key does not open") from None
        if len(data_key) != DATA_KEY_SIZE:
            raise TamperedData("the wrapped data key has the wrong size")
        return data_key

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def _fingerprint(key: bytes, salt: bytes) -> bytes:
    return hmac.new(key, _FINGERPRINT_LABEL + salt, hashlib.sha256).digest()


def _wrap(draft: Envelope, wrapping: bytes) -> tuple[Envelope, bytes]:
    """`draft` with a new data key wrapped under `wrapping`, and that key."""
    data_key = os.urandom(DATA_KEY_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    wrapped = nonce + AESGCM(wrapping).encrypt(nonce, data_key, draft._aad())
    return draft.model_copy(update={"wrapped": base64.b64encode(wrapped).decode()}), data_key


def seal_for_customer(customer_key: bytes) -> tuple[Envelope, bytes]:
    """A new data key for an SSE-C object, and its envelope."""
    salt = os.urandom(SALT_SIZE)
    draft = Envelope(
        mode=Mode.CUSTOMER,
        wrapped="",
        salt=base64.b64encode(salt).decode(),
        key_hmac=base64.b64encode(_fingerprint(customer_key, salt)).decode(),
    )
    return _wrap(draft, customer_key)


def seal_for_master(
    mode: Mode, master_keys: MasterKeys, key_id: str, context: str | None = None
) -> tuple[Envelope, bytes]:
    """A new data key for an SSE-S3 or SSE-KMS object under master key `key_id` (which must exist)."""
    wrapping = master_keys.get(key_id)
    if wrapping is None:
        raise MasterKeyMissing(key_id)
    return _wrap(Envelope(mode=mode, wrapped="", key_id=key_id, context=context), wrapping)


def parse_envelope(text: str) -> Envelope:
    """ValueError on anything that is not an envelope."""
    return Envelope.model_validate_json(text)
