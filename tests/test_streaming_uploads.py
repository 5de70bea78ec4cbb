"""aws-chunked uploads end to end: signed chunk chains, signed and unsigned trailers, tampering refused."""

from __future__ import annotations

import os
import re

import pytest
import requests

from nats_s3.protocol.chunked import ChunkSigning
from nats_s3.protocol.sigv4 import derive_signing_key

from .signing import sign, signed_request
from .support import SECRET_KEY
from .test_chunked import build_body, checksum_of


def prepare(
    url: str, payload_hash: str, data: bytes, extra: dict[str, str] | None = None
) -> tuple[dict[str, str], ChunkSigning]:
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        **(extra or {}),
    }
    signed = sign("PUT", url, headers=headers, payload_hash=payload_hash)
    auth = signed["Authorization"]
    match = re.search(r"Credential=[^/]+/(\d{8})/([^/]+)/s3/aws4_request.*Signature=([0-9a-f]{64})", auth)
    assert match
    date, region, seed = match.groups()
    signing = ChunkSigning(
        signing_key=derive_signing_key(SECRET_KEY, date, region, "s3"),
        amz_date=signed["X-Amz-Date"],
        scope=f"{date}/{region}/s3/aws4_request",
        seed_signature=seed,
    )
    return signed, signing


@pytest.mark.parametrize("size,chunk", [(0, 65536), (1, 65536), (300_000, 65536), (2_000_000, 1 << 20)])
def test_signed_streaming_payload(gateway, s3, bucket: str, size: int, chunk: int) -> None:
    data = os.urandom(size)
    url = f"{gateway.endpoint}/{bucket}/signed-stream"
    headers, signing = prepare(url, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", data)
    body = build_body(data, chunk, signing=signing)
    resp = requests.put(url, data=body, headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    assert s3.get_object(Bucket=bucket, Key="signed-stream")["Body"].read() == data


def test_signed_streaming_tampered_chunk_stores_nothing(gateway, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="victim", Body=b"original")
    data = os.urandom(200_000)
    url = f"{gateway.endpoint}/{bucket}/victim"
    headers, signing = prepare(url, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", data)
    body = bytearray(build_body(data, 65536, signing=signing))
    body[70_000] ^= 0x01  # a byte inside the second chunk's data
    resp = requests.put(url, data=bytes(body), headers=headers, timeout=30)
    assert resp.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in resp.text
    assert s3.get_object(Bucket=bucket, Key="victim")["Body"].read() == b"original"


def test_signed_streaming_trailer(gateway, s3, bucket: str) -> None:
    data = os.urandom(150_000)
    url = f"{gateway.endpoint}/{bucket}/signed-trailer"
    headers, signing = prepare(
        url, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", data, {"x-amz-trailer": "x-amz-checksum-crc32c"}
    )
    value = checksum_of("CRC32C", data)
    body = build_body(data, 65536, signing=signing, trailers={"x-amz-checksum-crc32c": value})
    resp = requests.put(url, data=body, headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    got = s3.get_object(Bucket=bucket, Key="signed-trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32C"] == value
    bad = build_body(data, 65536, signing=signing, trailers={"x-amz-checksum-crc32c": checksum_of("CRC32C", b"x")})
    resp = requests.put(url.replace("signed-trailer", "signed-trailer-bad"), data=bad, headers=headers, timeout=30)
    assert resp.status_code in (400, 403)


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_unsigned_trailer_checksums(gateway, s3, bucket: str, algorithm: str) -> None:
    data = os.urandom(250_000)
    header = f"x-amz-checksum-{algorithm.lower()}"
    url = f"{gateway.endpoint}/{bucket}/trailer-{algorithm}"
    headers, _ = prepare(
        url,
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        data,
        {"x-amz-trailer": header, "x-amz-sdk-checksum-algorithm": algorithm},
    )
    value = checksum_of(algorithm, data)
    body = build_body(data, 65536, trailers={header: value})
    resp = requests.put(url, data=body, headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers[header] == value
    got = s3.get_object(Bucket=bucket, Key=f"trailer-{algorithm}", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == value
    assert got["Body"].read() == data


def test_unsigned_trailer_wrong_checksum_stores_nothing(gateway, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"before")
    data = os.urandom(100_000)
    url = f"{gateway.endpoint}/{bucket}/t"
    headers, _ = prepare(url, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", data, {"x-amz-trailer": "x-amz-checksum-crc32"})
    body = build_body(data, 65536, trailers={"x-amz-checksum-crc32": checksum_of("CRC32", b"other")})
    resp = requests.put(url, data=body, headers=headers, timeout=30)
    assert resp.status_code == 400
    assert "<Code>BadDigest</Code>" in resp.text
    assert s3.get_object(Bucket=bucket, Key="t")["Body"].read() == b"before"


def test_bad_chunk_framing(gateway, s3, bucket: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/framing"
    data = b"x" * 100
    headers, _ = prepare(url, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", data)
    for body in (b"zz\r\n" + data + b"\r\n0\r\n\r\n", b"64\r\n" + data + b"XX0\r\n\r\n", b"64\r\n" + data[:50]):
        resp = requests.put(url, data=body, headers=headers, timeout=30)
        assert resp.status_code == 400, body
        assert "<Code>" in resp.text
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="framing")


def test_decoded_length_mismatch(gateway, bucket: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/len"
    data = b"y" * 1000
    headers, _ = prepare(url, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", data)
    headers["x-amz-decoded-content-length"] = "999"
    resp = requests.put(url, data=build_body(data, 512), headers=headers, timeout=30)
    assert resp.status_code == 403  # the decoded length is a signed header: changing it breaks the signature
    headers, _ = prepare(url, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", b"y" * 1001)
    resp = requests.put(url, data=build_body(data, 512), headers=headers, timeout=30)
    assert resp.status_code == 400
    assert signed_request("HEAD", url).status_code == 404
