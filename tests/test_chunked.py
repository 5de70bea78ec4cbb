"""Tests for nats_s3.protocol.chunked: aws-chunked framing, chunk/trailer signatures, trailing checksums."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import random
import time
import tracemalloc
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from botocore import httpchecksum
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from nats_s3.protocol import checksums
from nats_s3.protocol.chunked import AwsChunkedDecoder, ByteSource, ChunkSigning, decode_aws_chunked
from nats_s3.protocol.errors import S3Error
from nats_s3.protocol.sigv4 import STREAMING_PAYLOAD_TRAILER, AuthResult, SignedRequest, SigV4Verifier

EMPTY = hashlib.sha256(b"").hexdigest()
DOC_AK = "AKIAIOSFODNN7EXAMPLE"
DOC_SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_TIME = datetime(2013, 5, 24, 0, 0, 0, tzinfo=UTC)


class SliceSource:
    """A ByteSource handing out random-sized slices (1 byte .. max_slice), never more than asked."""

    def __init__(self, body: bytes, *, seed: int = 0, max_slice: int = 100 * 1024) -> None:
        self._view = memoryview(body)
        self._pos = 0
        self._rng = random.Random(seed)
        self._max = max_slice

    async def read(self, n: int = -1) -> bytes:
        k = self._rng.randint(1, self._max)
        if n >= 0:
            k = min(k, n)
        piece = self._view[self._pos : self._pos + k].tobytes()
        self._pos += len(piece)
        return piece


class FullSource:
    """A ByteSource that always returns as much as asked for (like a fast socket)."""

    def __init__(self, body: bytes) -> None:
        self._view = memoryview(body)
        self._pos = 0

    async def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n < 0 else self._pos + n
        piece = self._view[self._pos : end].tobytes()
        self._pos += len(piece)
        return piece


def chunk_signature(signing: ChunkSigning, previous: str, data: bytes) -> str:
    sts = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            signing.amz_date,
            signing.scope,
            previous,
            EMPTY,
            hashlib.sha256(data).hexdigest(),
        ]
    )
    return hmac.new(signing.signing_key, sts.encode(), hashlib.sha256).hexdigest()


def trailer_signature(signing: ChunkSigning, previous: str, trailers: Mapping[str, str]) -> str:
    canonical = "".join(f"{k}:{v}\n" for k, v in sorted(trailers.items()))
    sts = "\n".join(
        [
            "AWS4-HMAC-SHA256-TRAILER",
            signing.amz_date,
            signing.scope,
            previous,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    return hmac.new(signing.signing_key, sts.encode(), hashlib.sha256).hexdigest()


def build_body(
    data: bytes,
    chunk_size: int,
    *,
    signing: ChunkSigning | None = None,
    trailers: Mapping[str, str] | None = None,
) -> bytes:
    """Frame `data` the way SDKs do, signing every chunk (and the trailer) when `signing` is given."""
    out = bytearray()
    previous = signing.seed_signature if signing else ""
    pieces = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for piece in pieces:
        if signing is not None:
            previous = chunk_signature(signing, previous, piece)
            out += b"%x;chunk-signature=%s\r\n" % (len(piece), previous.encode())
        else:
            out += b"%x\r\n" % len(piece)
        if piece:
            out += piece + b"\r\n"
    for name, value in (trailers or {}).items():
        out += f"{name}:{value}\r\n".encode()
    if signing is not None and trailers:
        out += f"x-amz-trailer-signature:{trailer_signature(signing, previous, trailers)}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def checksum_of(algorithm: str, data: bytes) -> str:
    hasher = checksums.new_hasher(algorithm)
    hasher.update(data)
    return hasher.b64digest()


async def decode(
    source: ByteSource,
    *,
    signing: ChunkSigning | None = None,
    trailer_checksum: str | None = None,
    decoded_length: int | None = None,
    max_chunk_read: int = 256 * 1024,
) -> tuple[bytes, AwsChunkedDecoder]:
    decoder = decode_aws_chunked(
        source,
        signing=signing,
        trailer_checksum=trailer_checksum,
        decoded_length=decoded_length,
        max_chunk_read=max_chunk_read,
    )
    out = bytearray()
    async for piece in decoder:
        assert isinstance(piece, bytes)
        assert 0 < len(piece) <= max_chunk_read
        out += piece
    return bytes(out), decoder


async def error_of(source: ByteSource, **kwargs: object) -> S3Error:
    with pytest.raises(S3Error) as e:
        await decode(source, **kwargs)  # type: ignore[arg-type]
    return e.value


def make_signing(seed: str, *, key: bytes | None = None) -> ChunkSigning:
    from nats_s3.protocol.sigv4 import derive_signing_key

    return ChunkSigning(
        signing_key=key if key is not None else derive_signing_key("secret", "20261123", "us-east-1", "s3"),
        amz_date="20261123T101500Z",
        scope="20261123/us-east-1/s3/aws4_request",
        seed_signature=seed,
    )


SIGNING = make_signing("f" * 64)


# -- the worked examples in the AWS documentation ----------------------------------------------


def doc_request(payload: str, signed_headers: str, seed: str, extra: Mapping[str, str]) -> SignedRequest:
    headers = {
        "host": "s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": payload,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560",
        **extra,
        "authorization": (
            f"AWS4-HMAC-SHA256 Credential={DOC_AK}/20130524/us-east-1/s3/aws4_request,"
            f"SignedHeaders={signed_headers},Signature={seed}"
        ),
    }
    return SignedRequest("PUT", "/examplebucket/chunkObject.txt", [], headers)


def doc_body(signatures: list[str], trailer: str) -> bytes:
    body = b"10000;chunk-signature=%s\r\n" % signatures[0].encode() + b"a" * 65536
    body += b"\r\n400;chunk-signature=%s\r\n" % signatures[1].encode() + b"a" * 1024
    body += b"\r\n0;chunk-signature=%s\r\n" % signatures[2].encode()
    return body + trailer.encode() + b"\r\n"


def signing_from(result: AuthResult) -> ChunkSigning:
    return ChunkSigning(result.signing_key, result.amz_date, result.scope, result.signature)


async def test_aws_documented_streaming_example() -> None:
    seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    signatures = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ]
    req = doc_request(
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        "x-amz-decoded-content-length;x-amz-storage-class",
        seed,
        {"content-length": "66824"},
    )
    result = SigV4Verifier({DOC_AK: DOC_SK}, clock=lambda: DOC_TIME).verify(req)
    signing = signing_from(result)
    # The test helper reproduces AWS's chain, so the bodies built with it below are realistic.
    assert chunk_signature(signing, seed, b"a" * 65536) == signatures[0]
    body = doc_body(signatures, "")
    assert len(body) == 66824
    data, decoder = await decode(SliceSource(body), signing=signing, decoded_length=66560)
    assert data == b"a" * 66560
    assert decoder.trailers == {}
    assert decoder.checksum is None


async def test_aws_documented_trailer_example() -> None:
    seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
    signatures = [
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    ]
    req = doc_request(
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
        "x-amz-storage-class;x-amz-trailer",
        seed,
        {"x-amz-trailer": "x-amz-checksum-crc32c"},
    )
    result = SigV4Verifier({DOC_AK: DOC_SK}, clock=lambda: DOC_TIME).verify(req)
    assert result.payload_hash == STREAMING_PAYLOAD_TRAILER
    trailer = (
        "x-amz-checksum-crc32c:sOO8/Q==\r\n"
        "x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n"
    )
    body = doc_body(signatures, trailer)
    data, decoder = await decode(
        SliceSource(body, seed=3),
        signing=signing_from(result),
        trailer_checksum="x-amz-checksum-crc32c",
        decoded_length=66560,
    )
    assert data == b"a" * 66560
    assert decoder.checksum == ("CRC32C", "sOO8/Q==")
    assert decoder.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    tampered = body.replace(b"sOO8/Q==", b"AAAAAA==")
    err = await error_of(SliceSource(tampered), signing=signing_from(result), trailer_checksum="x-amz-checksum-crc32c")
    assert err.code == "SignatureDoesNotMatch"


# -- framing agrees with botocore --------------------------------------------------------------

BOTO_CLASSES = {
    "CRC32": httpchecksum.Crc32Checksum,
    "CRC32C": httpchecksum.CrtCrc32cChecksum,
    "CRC64NVME": httpchecksum.CrtCrc64NvmeChecksum,
    "SHA1": httpchecksum.Sha1Checksum,
    "SHA256": httpchecksum.Sha256Checksum,
}


@pytest.mark.parametrize("algorithm", sorted(BOTO_CLASSES))
@pytest.mark.parametrize(("size", "chunk"), [(0, 65536), (1, 65536), (65536, 65536), (300_001, 65536), (5000, 7)])
async def test_botocore_unsigned_trailer_bodies(algorithm: str, size: int, chunk: int) -> None:
    data = os.urandom(size)
    header = checksums.header_for(algorithm)
    wrapper = httpchecksum.AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=BOTO_CLASSES[algorithm], checksum_name=header, chunk_size=chunk
    )
    body = wrapper.read()
    assert body == build_body(data, chunk, trailers={header: checksum_of(algorithm, data)})
    for seed in range(3):
        out, decoder = await decode(
            SliceSource(body, seed=seed), trailer_checksum=header, decoded_length=size, max_chunk_read=50_000
        )
        assert out == data
        assert decoder.checksum == (algorithm, checksum_of(algorithm, data))


async def test_botocore_plain_body_and_missing_final_crlf() -> None:
    data = os.urandom(100_000)
    body = httpchecksum.AwsChunkedWrapper(io.BytesIO(data), chunk_size=30_000).read()
    assert (await decode(SliceSource(body)))[0] == data
    crc = checksum_of("CRC32", data)
    for ending in (b"x-amz-checksum-crc32:" + crc.encode() + b"\r\n", b"x-amz-checksum-crc32:" + crc.encode()):
        cut = build_body(data, 30_000)[: -len(b"\r\n")] + ending
        out, decoder = await decode(SliceSource(cut), trailer_checksum="x-amz-checksum-crc32")
        assert out == data
        assert decoder.checksum == ("CRC32", crc)
    # No trailers at all and no final CRLF.
    assert (await decode(SliceSource(b"3\r\nabc\r\n0\r\n")))[0] == b"abc"


async def test_trailer_with_spaces_and_padding() -> None:
    crc = checksum_of("CRC32", b"abc")
    body = b"3\r\nabc\r\n0\r\nX-Amz-Checksum-Crc32 :  " + crc.encode() + b"\r\nx-other:1\r\n\r\n\r\n"
    out, decoder = await decode(SliceSource(body), trailer_checksum="CRC32")
    assert out == b"abc"
    assert decoder.trailers == {"x-amz-checksum-crc32": crc, "x-other": "1"}


# -- signed streaming bodies -------------------------------------------------------------------


@pytest.mark.parametrize(("size", "chunk"), [(0, 8192), (1, 8192), (100_000, 1), (300_000, 8192), (1_100_000, 65536)])
@pytest.mark.parametrize("with_trailer", [False, True])
async def test_signed_bodies_round_trip(size: int, chunk: int, with_trailer: bool) -> None:
    if chunk == 1:
        size = 3000
    data = os.urandom(size)
    trailers = {"x-amz-checksum-crc64nvme": checksum_of("CRC64NVME", data)} if with_trailer else None
    body = build_body(data, chunk, signing=SIGNING, trailers=trailers)
    for seed in range(3):
        out, decoder = await decode(
            SliceSource(body, seed=seed),
            signing=SIGNING,
            trailer_checksum="x-amz-checksum-crc64nvme" if with_trailer else None,
            decoded_length=size,
            max_chunk_read=40_000,
        )
        assert out == data
        if with_trailer:
            assert decoder.checksum == ("CRC64NVME", checksum_of("CRC64NVME", data))


async def test_botocore_seed_signature_chains() -> None:
    """Seed from a request botocore signed, verified by SigV4Verifier, then chunk-chained."""

    class StreamingTrailer(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return STREAMING_PAYLOAD_TRAILER

    data = os.urandom(200_000)
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-sha256",
    }
    req = AWSRequest(method="PUT", url="http://s3.test:9000/bucket/big%20file", headers=headers)
    StreamingTrailer(Credentials("AK", "SK"), "s3", "us-west-2").add_auth(req)
    server_headers = {k.lower(): v for k, v in req.headers.items()}
    server_headers["host"] = urlsplit(req.url).netloc
    result = SigV4Verifier({"AK": "SK"}).verify(SignedRequest("PUT", "/bucket/big%20file", [], server_headers))
    signing = signing_from(result)
    trailers = {"x-amz-checksum-sha256": checksum_of("SHA256", data)}
    body = build_body(data, 65536, signing=signing, trailers=trailers)
    out, decoder = await decode(
        SliceSource(body, seed=9), signing=signing, trailer_checksum="x-amz-checksum-sha256", decoded_length=len(data)
    )
    assert out == data
    assert decoder.checksum == ("SHA256", trailers["x-amz-checksum-sha256"])


async def test_tampered_chunk_tail_is_never_yielded() -> None:
    data = bytes(range(256)) * 12  # 3072 bytes: chunks of 1000, 1000, 1000, 72
    body = bytearray(build_body(data, 1000, signing=SIGNING))
    first_chunk_data = body.index(b"\r\n") + 2
    second_data = body.index(b"\r\n", first_chunk_data + 1000 + 2) + 2
    body[second_data + 500] ^= 1
    decoder = decode_aws_chunked(
        FullSource(bytes(body)), signing=SIGNING, trailer_checksum=None, decoded_length=None, max_chunk_read=300
    )
    got = bytearray()
    with pytest.raises(S3Error) as e:
        async for piece in decoder:
            got += piece
    assert e.value.code == "SignatureDoesNotMatch"
    # All of chunk 1, and chunk 2 minus the piece that would have completed it.
    assert 1000 <= len(got) < 2000
    assert got[:1000] == data[:1000]


@pytest.mark.parametrize(
    "tamper",
    ["data", "signature", "missing-signature", "swap", "drop-final", "trailer-value", "trailer-signature"],
)
async def test_signed_tampering(tamper: str) -> None:
    data = os.urandom(50_000)
    crc = checksum_of("CRC32", data)
    body = build_body(data, 8192, signing=SIGNING, trailers={"x-amz-checksum-crc32": crc})
    if tamper == "data":
        b = bytearray(body)
        b[30_000] ^= 0x40
        body = bytes(b)
    elif tamper == "signature":
        i = body.index(b"chunk-signature=") + len(b"chunk-signature=")
        body = body[:i] + (b"0" if body[i : i + 1] != b"0" else b"1") + body[i + 1 :]
    elif tamper == "missing-signature":
        first = body.index(b"\r\n")
        body = b"%x" % 8192 + body[first:]
    elif tamper == "swap":
        other = build_body(data[::-1], 8192, signing=SIGNING)
        body = other[: other.index(b"\r\n", 8200) + 2] + body[body.index(b"\r\n", 8200) + 2 :]
    elif tamper == "drop-final":
        # An unsigned zero chunk where a signed one is due.
        i = body.rindex(b"0;chunk-signature=")
        body = body[:i] + b"0" + body[body.index(b"\r\n", i) :]
    elif tamper == "trailer-value":
        body = body.replace(crc.encode(), checksum_of("CRC32", b"other").encode())
    elif tamper == "trailer-signature":
        i = body.index(b"x-amz-trailer-signature:")
        body = body[:i] + b"\r\n"
    err = await error_of(SliceSource(body), signing=SIGNING, trailer_checksum="x-amz-checksum-crc32")
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)


async def test_wrong_key_or_seed() -> None:
    body = build_body(b"hello", 4, signing=SIGNING)
    for signing in (make_signing("e" * 64), make_signing("f" * 64, key=b"k" * 32)):
        assert (await error_of(SliceSource(body), signing=signing)).code == "SignatureDoesNotMatch"


# -- trailing checksums ------------------------------------------------------------------------


async def test_checksum_mismatch_and_missing_trailer() -> None:
    data = os.urandom(10_000)
    wrong = build_body(data, 4096, trailers={"x-amz-checksum-crc32c": checksum_of("CRC32C", b"x")})
    err = await error_of(SliceSource(wrong), trailer_checksum="x-amz-checksum-crc32c")
    assert (err.code, err.status) == ("BadDigest", 400)
    missing = build_body(data, 4096)
    err = await error_of(SliceSource(missing), trailer_checksum="x-amz-checksum-crc32c")
    assert (err.code, err.status) == ("InvalidRequest", 400)
    other = build_body(data, 4096, trailers={"x-amz-checksum-crc32": checksum_of("CRC32", data)})
    assert (await error_of(SliceSource(other), trailer_checksum="x-amz-checksum-crc32c")).code == "InvalidRequest"
    garbage = build_body(data, 4096, trailers={"x-amz-checksum-crc32c": "nope"})
    assert (await error_of(SliceSource(garbage), trailer_checksum="x-amz-checksum-crc32c")).code == "InvalidRequest"


def test_unknown_trailer_algorithm() -> None:
    with pytest.raises(S3Error) as e:
        decode_aws_chunked(FullSource(b""), signing=None, trailer_checksum="x-amz-checksum-md5", decoded_length=None)
    assert e.value.code == "InvalidArgument"


# -- lengths, truncation, malformed framing ----------------------------------------------------


async def test_decoded_length() -> None:
    body = build_body(b"x" * 1000, 300)
    assert (await decode(SliceSource(body), decoded_length=1000))[0] == b"x" * 1000
    err = await error_of(SliceSource(body), decoded_length=1001)
    assert (err.code, err.status) == ("IncompleteBody", 400)
    err = await error_of(SliceSource(body), decoded_length=999)
    assert (err.code, err.status) == ("InvalidRequest", 400)


@pytest.mark.parametrize("signed", [False, True])
async def test_truncation(signed: bool) -> None:
    data = os.urandom(20_000)
    signing = SIGNING if signed else None
    body = build_body(data, 4096, signing=signing, trailers={"x-amz-checksum-crc32": checksum_of("CRC32", data)})
    end_of_chunks = body.rindex(b"\r\n", 0, body.index(b"x-amz-checksum-crc32:")) + 2
    rng = random.Random(1)
    cuts = {0, 1, 3, end_of_chunks - 1, end_of_chunks - 2, *(rng.randrange(end_of_chunks) for _ in range(60))}
    for cut in sorted(cuts):
        err = await error_of(SliceSource(body[:cut]), signing=signing, trailer_checksum="x-amz-checksum-crc32")
        assert (err.code, err.status) == ("IncompleteBody", 400), cut
    # Cut inside the trailers: still refused (bad checksum value or signature), never accepted.
    for cut in range(end_of_chunks, len(body) - 4):
        with pytest.raises(S3Error):
            await decode(FullSource(body[:cut]), signing=signing, trailer_checksum="x-amz-checksum-crc32")


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nab\r\n0\r\n\r\n",
        b"-1\r\n\r\n",
        b"0x2\r\nab\r\n0\r\n\r\n",
        b"\r\nab\r\n0\r\n\r\n",
        b"2\r\nabXX0\r\n\r\n",
        b"2\nab\n0\n\n" + b"x" * 5000,
        b"a" * 5000 + b"\r\n",
        b"ffffffffff\r\n",
        b"11111111111111111\r\n",
        b"2\r\nab\r\n0\r\nno-colon-here\r\n\r\n",
        b"2\r\nab\r\n0\r\n\r\ngarbage after the end",
        b"2\r\nab\r\n0\r\n:value\r\n\r\n",
    ],
)
async def test_malformed_framing(body: bytes) -> None:
    err = await error_of(SliceSource(body, max_slice=7))
    assert (err.code, err.status) == ("InvalidRequest", 400)


# -- memory and speed --------------------------------------------------------------------------


class PatternSource:
    """Streams `header + size bytes of a repeating block + footer` without materialising the payload."""

    def __init__(self, header: bytes, block: bytes, size: int, footer: bytes, *, seed: int = 0) -> None:
        self._parts = [header]
        self._block = memoryview(block)
        self._data_left = size
        self._footer = footer
        self._offset = 0
        self._rng = random.Random(seed)

    async def read(self, n: int = -1) -> bytes:
        k = min(self._rng.randint(1, 100 * 1024), n if n >= 0 else 1 << 30)
        if self._parts:
            return self._parts.pop()
        if self._data_left:
            k = min(k, self._data_left, len(self._block) - self._offset)
            piece = self._block[self._offset : self._offset + k].tobytes()
            self._offset = (self._offset + k) % len(self._block)
            self._data_left -= k
            return piece
        piece, self._footer = self._footer[:k], self._footer[k:]
        return piece


async def test_huge_single_chunk_bounded_memory() -> None:
    size = 64 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    sha, crc = hashlib.sha256(), checksums.new_hasher("CRC32C")
    for _ in range(size // len(block)):
        sha.update(block)
        crc.update(block)
    sig = hmac.new(
        SIGNING.signing_key,
        f"AWS4-HMAC-SHA256-PAYLOAD\n{SIGNING.amz_date}\n{SIGNING.scope}\n{SIGNING.seed_signature}\n{EMPTY}\n"
        f"{sha.hexdigest()}".encode(),
        hashlib.sha256,
    ).hexdigest()
    last = chunk_signature(SIGNING, sig, b"")
    trailers = {"x-amz-checksum-crc32c": crc.b64digest()}
    footer = (
        f"\r\n0;chunk-signature={last}\r\nx-amz-checksum-crc32c:{crc.b64digest()}\r\n"
        f"x-amz-trailer-signature:{trailer_signature(SIGNING, last, trailers)}\r\n\r\n"
    ).encode()
    source = PatternSource(b"%x;chunk-signature=%s\r\n" % (size, sig.encode()), block, size, footer)

    out_hash = hashlib.sha256()
    tracemalloc.start()
    try:
        decoder = decode_aws_chunked(
            source, signing=SIGNING, trailer_checksum="x-amz-checksum-crc32c", decoded_length=size
        )
        async for piece in decoder:
            out_hash.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out_hash.hexdigest() == sha.hexdigest()
    assert decoder.checksum == ("CRC32C", crc.b64digest())
    assert peak < 3 * 1024 * 1024, peak


async def test_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    data = os.urandom(128 * 1024 * 1024)
    results = []
    for label, signing, chunk in (
        ("unsigned, 64 KiB chunks", None, 65536),
        ("unsigned, 1 MiB chunks", None, 1024 * 1024),
        ("signed, 64 KiB chunks", SIGNING, 65536),
    ):
        body = build_body(data, chunk, signing=signing)
        source = FullSource(body)
        start = time.perf_counter()
        total = 0
        async for piece in decode_aws_chunked(source, signing=signing, trailer_checksum=None, decoded_length=None):
            total += len(piece)
        elapsed = time.perf_counter() - start
        assert total == len(data)
        results.append(f"{label}: {total / elapsed / 2**20:.0f} MiB/s")
    with capsys.disabled():
        print("\naws-chunked decode throughput: " + "; ".join(results))


@pytest.mark.parametrize("signed", [False, True])
async def test_mutated_bodies_never_decode_wrong(signed: bool) -> None:
    """Random byte edits are refused with an S3Error or, where harmless, decode to the original data."""
    rng = random.Random(5)
    data = os.urandom(3000)
    signing = SIGNING if signed else None
    body = build_body(data, 700, signing=signing, trailers={"x-amz-checksum-crc32": checksum_of("CRC32", data)})
    for i in range(1500):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(mutated))
            op = rng.random()
            if op < 0.5:
                mutated[at] = rng.randrange(256)
            elif op < 0.75:
                mutated.insert(at, rng.choice(b"0a;=\r\n:"))
            else:
                del mutated[at]
        try:
            out, _ = await decode(
                SliceSource(bytes(mutated), seed=i, max_slice=500),
                signing=signing,
                trailer_checksum="x-amz-checksum-crc32",
                decoded_length=rng.choice([None, len(data)]),
            )
        except S3Error:
            continue
        assert out == data
