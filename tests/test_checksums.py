"""Tests for nats_s3.protocol.checksums: digests match botocore's, header parsing follows S3."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import zlib

import pytest
from botocore import httpchecksum

from nats_s3.protocol import checksums
from nats_s3.protocol.errors import S3Error

BOTOCORE: dict[str, type[httpchecksum.BaseChecksum]] = {
    "CRC32": httpchecksum.Crc32Checksum,
    "CRC32C": httpchecksum.CrtCrc32cChecksum,
    "CRC64NVME": httpchecksum.CrtCrc64NvmeChecksum,
    "SHA1": httpchecksum.Sha1Checksum,
    "SHA256": httpchecksum.Sha256Checksum,
}


def test_known_vectors() -> None:
    h = checksums.new_hasher("crc32")
    h.update(b"hello world")
    assert h.digest() == zlib.crc32(b"hello world").to_bytes(4, "big")
    assert h.b64digest() == "DUoRhQ=="
    # RFC 3720 check value of CRC32C over "123456789".
    h = checksums.new_hasher("CRC32C")
    h.update(b"123456789")
    assert h.digest().hex() == "e3069283"
    # CRC-64/NVME check value over "123456789".
    h = checksums.new_hasher("Crc64Nvme")
    h.update(b"123456789")
    assert h.digest().hex() == "ae8b14860a799888"
    h = checksums.new_hasher("SHA256")
    h.update(b"")
    assert h.digest() == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("algorithm", checksums.ALGORITHMS)
def test_matches_botocore_incrementally(algorithm: str) -> None:
    rng = random.Random(algorithm)
    data = os.urandom(300_000)
    ours = checksums.new_hasher(algorithm)
    theirs = BOTOCORE[algorithm]()
    pos = 0
    while pos < len(data):
        n = rng.randint(0, 70_000)
        view = memoryview(data)[pos : pos + n]
        ours.update(view)
        theirs.update(bytes(view))
        pos += n
    assert ours.algorithm == algorithm
    assert ours.digest() == theirs.digest()
    assert ours.b64digest() == theirs.b64digest()
    assert len(ours.digest()) == checksums.DIGEST_SIZES[algorithm]


def test_empty_input_matches_botocore() -> None:
    for algorithm, cls in BOTOCORE.items():
        assert checksums.new_hasher(algorithm).b64digest() == cls().b64digest()


def test_unknown_algorithm() -> None:
    with pytest.raises(S3Error) as e:
        checksums.new_hasher("MD5")
    assert e.value.code == "InvalidArgument"


def test_header_names() -> None:
    assert checksums.header_for("crc32") == "x-amz-checksum-crc32"
    assert checksums.header_for("CRC64NVME") == "x-amz-checksum-crc64nvme"
    for algorithm in checksums.ALGORITHMS:
        assert checksums.algorithm_for_header(checksums.header_for(algorithm)) == algorithm
    assert checksums.algorithm_for_header("X-Amz-Checksum-SHA256") == "SHA256"
    assert checksums.algorithm_for_header("x-amz-checksum-type") is None
    assert checksums.algorithm_for_header("content-md5") is None


def _b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def test_checksum_from_headers() -> None:
    value = _b64(4)
    assert checksums.checksum_from_headers({"x-amz-checksum-crc32": value}) == ("CRC32", value)
    assert checksums.checksum_from_headers({}) is None
    # Same-prefix headers that are not checksums are ignored.
    assert (
        checksums.checksum_from_headers({"x-amz-checksum-type": "FULL_OBJECT", "x-amz-checksum-mode": "ENABLED"})
        is None
    )
    sha = _b64(32)
    got = checksums.checksum_from_headers({"x-amz-sdk-checksum-algorithm": "sha256", "x-amz-checksum-sha256": sha})
    assert got == ("SHA256", sha)
    # An announced algorithm whose value comes in a trailer: nothing to check here.
    assert checksums.checksum_from_headers({"x-amz-sdk-checksum-algorithm": "CRC32"}) is None


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"x-amz-checksum-crc32": "AAAA"}, "InvalidRequest"),
        ({"x-amz-checksum-crc32": "not base64!"}, "InvalidRequest"),
        ({"x-amz-checksum-crc64nvme": "AAAAAA=="}, "InvalidRequest"),
        ({"x-amz-checksum-sha1": ""}, "InvalidRequest"),
        ({"x-amz-checksum-sha256": "é"}, "InvalidRequest"),
        ({"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-crc32c": "AAAAAA=="}, "InvalidRequest"),
        ({"x-amz-sdk-checksum-algorithm": "MD5"}, "InvalidArgument"),
        ({"x-amz-sdk-checksum-algorithm": "CRC32C", "x-amz-checksum-crc32": "AAAAAA=="}, "InvalidRequest"),
    ],
)
def test_checksum_from_headers_errors(headers: dict[str, str], code: str) -> None:
    with pytest.raises(S3Error) as e:
        checksums.checksum_from_headers(headers)
    assert e.value.code == code
    assert e.value.status == 400


def test_invalid_value_message_matches_s3() -> None:
    with pytest.raises(S3Error) as e:
        checksums.checksum_from_headers({"x-amz-checksum-crc32": "xx"})
    assert e.value.message == "Value for x-amz-checksum-crc32 header is invalid."


def test_content_md5() -> None:
    digest = hashlib.md5(b"abc").digest()
    assert checksums.content_md5(base64.b64encode(digest).decode()) == digest
    for bad in ("", "abc", base64.b64encode(b"x" * 15).decode(), "!!!!", "ü"):
        with pytest.raises(S3Error) as e:
            checksums.content_md5(bad)
        assert e.value.code == "InvalidDigest"
