"""Authenticated encryption of an object's chunks: each NATS message is one AES-256-GCM message.

Every chunk subject (one per PUT, per part, per copy) gets its own key, derived from the object's data
key and the subject's id, and a chunk's nonce is its index on that subject: a key never sees the same
nonce twice, and a chunk moved to another index, subject or object fails to open. Each chunk opens on
its own, so a range read decrypts only the chunks it covers. Where the chunks are (which subjects, how
many, how long) is authenticated apart from them, by a MAC of the layout under the data key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TAG_SIZE = 16  # what sealing adds to each chunk
DATA_KEY_SIZE = 32
_CHUNK_KEY_LABEL = b"nats-s3 chunk key\x00"
_LAYOUT_LABEL = b"nats-s3 layout\x00"
_PART_LABEL = b"nats-s3 part\x00"
_ETAG_LABEL = b"nats-s3 etag\x00"

# One part of a layout: chunk subject id, plaintext size, plaintext chunk size, chunk count.
LayoutPart = tuple[str, int, int, int]


class TamperedData(Exception):
    """Sealed bytes that do not open under their key: changed, truncated, moved, or another object's."""


def _mac(key: bytes, label: bytes, text: str) -> bytes:
    return hmac.new(key, label + text.encode(), hashlib.sha256).digest()


class ChunkCipher:
    """Seals and opens the chunks of one chunk subject (`nuid`) of an object with data key `data_key`."""

    __slots__ = ("_aead",)

    def __init__(self, data_key: bytes, nuid: str) -> None:
        self._aead = AESGCM(_mac(data_key, _CHUNK_KEY_LABEL, nuid))

    def seal(self, index: int, plaintext: bytes) -> bytes:
        return self._aead.encrypt(index.to_bytes(12, "big"), plaintext, None)

    def open(self, index: int, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(index.to_bytes(12, "big"), sealed, None)
        except InvalidTag:
            raise TamperedData(f"chunk {index} does not open under its key") from None


def _layout_text(parts: Iterable[LayoutPart]) -> str:
    return ";".join(f"{nuid}:{size}:{chunk_size}:{chunks}" for nuid, size, chunk_size, chunks in parts)


def layout_mac(data_key: bytes, size: int, parts: Iterable[LayoutPart]) -> str:
    """The MAC of a whole object's layout: its size and its chunk subjects in order."""
    return base64.b64encode(_mac(data_key, _LAYOUT_LABEL, f"{size}|{_layout_text(parts)}")).decode()


def part_mac(data_key: bytes, number: int, part: LayoutPart) -> str:
    """The MAC of one multipart part's layout and number (what a Complete that cannot reach the data key,
    an SSE-C one sent without the key, keeps instead of the whole layout's)."""
    return base64.b64encode(_mac(data_key, _PART_LABEL, f"{number}|{_layout_text([part])}")[:16]).decode()


def macs_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def hidden_etag(data_key: bytes, md5: bytes) -> str:
    """An ETag that is not the plaintext's MD5 (S3's rule for SSE-C and SSE-KMS), unique to this data key:
    32 hex digits, so clients that parse ETags as MD5s still can."""
    return hmac.new(data_key, _ETAG_LABEL + md5, hashlib.sha256).digest()[:16].hex()
