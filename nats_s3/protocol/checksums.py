"""S3 flexible checksums (CRC32, CRC32C, CRC64NVME, SHA1, SHA256) and checksum/Content-MD5 header parsing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from awscrt import checksums as _crt

from nats_s3.protocol.errors import S3Error

# S3 spells the algorithms in upper case in x-amz-sdk-checksum-algorithm, XML and response headers.
ALGORITHMS: tuple[str, ...] = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")

DIGEST_SIZES: dict[str, int] = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}

HEADER_PREFIX = "x-amz-checksum-"
TYPE_HEADER = "x-amz-checksum-type"
SDK_ALGORITHM_HEADER = "x-amz-sdk-checksum-algorithm"

_HEADER_TO_ALGORITHM: dict[str, str] = {HEADER_PREFIX + a.lower(): a for a in ALGORITHMS}


class ChecksumHasher:
    """Incremental checksum in S3's wire form: big-endian digest bytes, base64 encoded."""

    __slots__ = ("algorithm",)

    algorithm: str

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm

    def update(self, data: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    def digest(self) -> bytes:
        raise NotImplementedError

    def b64digest(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


class _CrcHasher(ChecksumHasher):
    __slots__ = ("_crc", "_fn", "_width")

    def __init__(self, algorithm: str, fn: Callable[[Any, int], int], width: int) -> None:
        super().__init__(algorithm)
        self._fn = fn
        self._width = width
        self._crc = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        # zlib and awscrt both accept any buffer, so memoryviews are hashed in place without a copy.
        self._crc = self._fn(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(self._width, "big")


class _HashlibHasher(ChecksumHasher):
    __slots__ = ("_h",)

    def __init__(self, algorithm: str, name: str) -> None:
        super().__init__(algorithm)
        self._h = hashlib.new(name)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()


def normalize_algorithm(algorithm: str) -> str:
    """Upper-case S3 name of `algorithm`, or S3Error InvalidArgument when S3 has no such checksum."""
    name = algorithm.strip().upper()
    if name not in DIGEST_SIZES:
        raise S3Error(
            "InvalidArgument",
            f"Checksum algorithm {algorithm!r} is not supported.",
            extra={"ArgumentName": SDK_ALGORITHM_HEADER, "ArgumentValue": algorithm},
        )
    return name


def new_hasher(algorithm: str) -> ChecksumHasher:
    name = normalize_algorithm(algorithm)
    if name == "CRC32":
        return _CrcHasher(name, zlib.crc32, 4)
    if name == "CRC32C":
        return _CrcHasher(name, _crt.crc32c, 4)
    if name == "CRC64NVME":
        return _CrcHasher(name, _crt.crc64nvme, 8)
    return _HashlibHasher(name, name.lower())


def header_for(algorithm: str) -> str:
    return HEADER_PREFIX + normalize_algorithm(algorithm).lower()


def algorithm_for_header(name: str) -> str | None:
    return _HEADER_TO_ALGORITHM.get(name.strip().lower())


def validate_value(algorithm: str, value: str) -> str:
    """Return `value` if it is base64 of a digest of the algorithm's size, else S3Error InvalidRequest
    (S3's answer to a malformed checksum value; a well-formed one that does not match is BadDigest)."""
    name = normalize_algorithm(algorithm)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != DIGEST_SIZES[name]:
        header = HEADER_PREFIX + name.lower()
        raise S3Error(
            "InvalidRequest",
            f"Value for {header} header is invalid.",
            extra={"ArgumentName": header, "ArgumentValue": value},
        )
    return value


def checksum_from_headers(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The (ALGORITHM, base64 value) of the request's one x-amz-checksum-<alg> header, if any.

    Header names must already be lower case. Headers such as x-amz-checksum-type or
    x-amz-checksum-mode share the prefix but are not checksums, so only known algorithms count.
    """
    found: list[tuple[str, str]] = []
    for name, value in headers.items():
        if name.startswith(HEADER_PREFIX):
            algorithm = _HEADER_TO_ALGORITHM.get(name)
            if algorithm is not None:
                found.append((algorithm, value.strip()))
    sdk_algorithm: str | None = None
    sdk_value = headers.get(SDK_ALGORITHM_HEADER)
    if sdk_value is not None:
        try:
            sdk_algorithm = normalize_algorithm(sdk_value)
        except S3Error:
            raise S3Error(
                "InvalidArgument",
                f"Value for {SDK_ALGORITHM_HEADER} header is invalid.",
                extra={"ArgumentName": SDK_ALGORITHM_HEADER, "ArgumentValue": sdk_value},
            ) from None
    if len(found) > 1:
        raise S3Error(
            "InvalidRequest",
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        )
    if not found:
        return None
    algorithm, value = found[0]
    if sdk_algorithm is not None and sdk_algorithm != algorithm:
        raise S3Error(
            "InvalidRequest",
            f"Value for {SDK_ALGORITHM_HEADER} header is invalid: it names {sdk_algorithm} "
            f"but the request carries {HEADER_PREFIX}{algorithm.lower()}.",
        )
    return algorithm, validate_value(algorithm, value)


def content_md5(value: str) -> bytes:
    """The 16 raw bytes of a Content-MD5 header, or S3Error InvalidDigest."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise S3Error("InvalidDigest")
    return raw


_COMBINE = {
    "CRC32": _crt.combine_crc32,
    "CRC32C": _crt.combine_crc32c,
    "CRC64NVME": _crt.combine_crc64nvme,
}
FULL_OBJECT_ALGORITHMS = frozenset(_COMBINE)


def combine_full_object(algorithm: str, parts: list[tuple[str, int]]) -> str:
    """The CRC of a whole object from its parts' CRCs (base64) and lengths, without reading the bytes."""
    algorithm = normalize_algorithm(algorithm)
    combine = _COMBINE.get(algorithm)
    if combine is None:
        raise S3Error("InvalidRequest", f"The FULL_OBJECT checksum type is not supported for {algorithm}.")
    width = DIGEST_SIZES[algorithm]
    total = 0
    for index, (value, length) in enumerate(parts):
        crc = int.from_bytes(base64.b64decode(value), "big")
        total = crc if index == 0 else combine(total, crc, length)
    return base64.b64encode(total.to_bytes(width, "big")).decode()


def checksum_type(value: str) -> str:
    """An object's checksum type from its stored value: a COMPOSITE one ends in -<parts>."""
    return "COMPOSITE" if "-" in value else "FULL_OBJECT"


def composite(algorithm: str, part_values: list[str]) -> str:
    """S3's COMPOSITE multipart checksum: the checksum of the parts' raw checksums, then '-<parts>'."""
    hasher = new_hasher(algorithm)
    for value in part_values:
        hasher.update(base64.b64decode(value))
    return f"{hasher.b64digest()}-{len(part_values)}"
