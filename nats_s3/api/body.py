"""Request bodies for uploads: plain or aws-chunked, streamed, with every integrity check S3 makes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
from collections.abc import AsyncGenerator, AsyncIterator, Mapping

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..protocol import checksums
from ..protocol.chunked import ChunkSigning, decode_aws_chunked
from ..protocol.errors import S3Error
from ..protocol.numbers import parse_uint
from ..protocol.sigv4 import AuthResult
from ..store.models import BodyDigests, Checksum
from .context import S3Context

STREAMING_SIGNED = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
READ_SIZE = 1024 * 1024
MAX_OBJECT_SIZE = 5 * 1024**4


class _TimedSource:
    """The request's byte stream: each read waits at most `idle` seconds, and a cut stream is IncompleteBody."""

    def __init__(self, request: web.Request, idle: float) -> None:
        self._content = request.content
        self._idle = idle or None

    async def read(self, n: int = -1) -> bytes:
        try:
            # What has arrived already, without a timer (a small body is in by the time it is read).
            data = self._content.read_nowait(n)
            if data or self._content.at_eof():
                return data
            if n < 0:
                return await asyncio.wait_for(self._content.readany(), self._idle)
            return await asyncio.wait_for(self._content.read(n), self._idle)
        except TimeoutError:
            raise S3Error("RequestTimeout") from None
        except (aiohttp.ClientPayloadError, HttpProcessingError, ConnectionError):
            raise S3Error("IncompleteBody") from None


class UploadBody:
    """One upload's decoded body and the checks its headers ask for, run before the store commits."""

    def __init__(
        self,
        request: web.Request,
        headers: Mapping[str, str],
        auth: AuthResult,
        idle: float,
        *,
        required_algorithm: str | None = None,
    ) -> None:
        """`required_algorithm`: a checksum the result must carry (a multipart upload's), computed if not sent."""
        self._source = _TimedSource(request, idle)
        self._payload_hash = auth.payload_hash
        self._content_length = _content_length(headers)
        if self._content_length is None and request.headers.get("Transfer-Encoding", "").lower() != "chunked":
            raise S3Error("MissingContentLength")
        self._decoded_length: int | None = None
        self._decoder = None
        self._expected_md5 = checksums.content_md5(headers["content-md5"]) if "content-md5" in headers else None
        self._expected_sha256: bytes | None = None
        self._checksum = checksums.checksum_from_headers(headers)
        trailer = headers.get("x-amz-trailer", "").strip().lower() or None
        streaming = self._payload_hash.startswith("STREAMING-")
        if streaming:
            raw_decoded = headers.get("x-amz-decoded-content-length")
            if raw_decoded is None:
                raise S3Error("MissingContentLength", "x-amz-decoded-content-length is required.")
            decoded = parse_uint(raw_decoded.strip())
            if decoded is None:
                raise S3Error("InvalidArgument", "x-amz-decoded-content-length is not a number.")
            self._decoded_length = decoded
            signing = None
            if self._payload_hash in STREAMING_SIGNED:
                signing = ChunkSigning(auth.signing_key, auth.amz_date, auth.scope, auth.signature)
            elif self._payload_hash != STREAMING_UNSIGNED_TRAILER:
                raise S3Error("NotImplemented", f"{self._payload_hash} is not supported.")
            if trailer is not None and checksums.algorithm_for_header(trailer) is None:
                raise S3Error("InvalidRequest", f"Unsupported trailer {trailer}.")
            if trailer is not None and self._checksum is not None:
                raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header.")
            self._decoder = decode_aws_chunked(
                self._source, signing=signing, trailer_checksum=trailer, decoded_length=self._decoded_length
            )
        elif self._payload_hash not in ("UNSIGNED-PAYLOAD",):
            self._expected_sha256 = bytes.fromhex(self._payload_hash)
        size = self._decoded_length if self._decoded_length is not None else self._content_length
        if size is not None and size > MAX_OBJECT_SIZE:
            raise S3Error("EntityTooLarge")
        sent_algorithm = self._checksum[0] if self._checksum else (checksums.algorithm_for_header(trailer or ""))
        if required_algorithm is not None and sent_algorithm not in (None, required_algorithm):
            raise S3Error(
                "InvalidRequest",
                f"Checksum Type mismatch occurred, expected checksum Type: {required_algorithm.lower()}, "
                f"actual checksum Type: {(sent_algorithm or '').lower()}",
            )
        # The algorithm this body's checksum is computed in as it streams (SHA256 comes from the store).
        self._algorithm = sent_algorithm or required_algorithm
        self._hasher = None
        if self._algorithm is not None and self._algorithm != "SHA256" and trailer is None:
            self._hasher = checksums.new_hasher(self._algorithm)
        self.received = 0

    @property
    def size(self) -> int | None:
        """The decoded body's length, where the request says it (Content-Length, or aws-chunked's
        x-amz-decoded-content-length)."""
        return self._decoded_length if self._decoded_length is not None else self._content_length

    @property
    def needs_sha256(self) -> bool:
        """Whether `before_commit` looks at the body's SHA-256: a signed payload, or a SHA256 checksum."""
        return self._expected_sha256 is not None or self._algorithm == "SHA256"

    @property
    def expected_size(self) -> int | None:
        return self._decoded_length if self._decoded_length is not None else self._content_length

    async def stream(self) -> AsyncIterator[bytes]:
        hasher = self._hasher
        if self._decoder is not None:
            async for piece in self._decoder:
                if hasher is not None:
                    hasher.update(piece)
                self.received += len(piece)
                yield piece
            return
        remaining = self._content_length
        while remaining is None or remaining > 0:
            piece = await self._source.read(-1 if remaining is None else min(remaining, READ_SIZE))
            if not piece:
                break
            if hasher is not None:
                hasher.update(piece)
            self.received += len(piece)
            if remaining is not None:
                remaining -= len(piece)
            yield piece
        if remaining:
            raise S3Error("IncompleteBody")

    async def before_commit(self, digests: BodyDigests) -> Checksum | None:
        expected = self.expected_size
        if expected is not None and digests.size != expected:
            raise S3Error("IncompleteBody")
        if self._expected_md5 is not None and not hmac.compare_digest(self._expected_md5, digests.md5):
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")
        if self._expected_sha256 is not None and not hmac.compare_digest(self._expected_sha256, digests.sha256):
            raise S3Error("XAmzContentSHA256Mismatch")
        if self._decoder is not None and self._decoder.checksum is not None:
            return self._decoder.checksum  # verified by the decoder against the trailer
        if self._algorithm is None:
            return None
        actual = base64.b64encode(digests.sha256).decode() if self._hasher is None else self._hasher.b64digest()
        if self._checksum is not None and actual != self._checksum[1]:
            raise S3Error("BadDigest", f"The {self._algorithm} you specified did not match the calculated checksum.")
        return (self._algorithm, actual)


def _content_length(headers: Mapping[str, str]) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    value = parse_uint(raw.strip())
    if value is None:
        raise S3Error("InvalidArgument", "Content-Length is not a number.")
    return value


async def read_small_body(request: web.Request, limit: int) -> bytes:
    """A whole XML request body, refused as MalformedXML past `limit` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise S3Error("MalformedXML", "The XML you provided was larger than the maximum allowed size.")
    source = _TimedSource(request, 60.0)
    parts: list[bytes] = []
    size = 0
    while True:
        piece = await source.read(-1)
        if not piece:
            break
        size += len(piece)
        if size > limit:
            raise S3Error("MalformedXML", "The XML you provided was larger than the maximum allowed size.")
        parts.append(piece)
    if declared is not None and size != declared:
        raise S3Error("IncompleteBody")
    return b"".join(parts)


async def read_request_xml(
    ctx: S3Context, limit: int, *, integrity_required: bool = False, checksum_is_of_body: bool = True
) -> bytes:
    """A request's whole XML body, read and checked (see check_small_body) before anyone parses it.

    `checksum_is_of_body=False` where an x-amz-checksum-* header describes something else (the object a
    CompleteMultipartUpload makes)."""
    body = await read_small_body(ctx.request, limit)
    headers = ctx.headers
    if not checksum_is_of_body:
        headers = {k: v for k, v in headers.items() if checksums.algorithm_for_header(k) is None}
    check_small_body(headers, ctx.auth, body, integrity_required=integrity_required)
    return body


def check_small_body(
    headers: Mapping[str, str], auth: AuthResult, body: bytes, *, integrity_required: bool = False
) -> None:
    """Every check a whole XML body gets before it is parsed: the signed payload hash, and Content-MD5 or
    an x-amz-checksum-* header where sent (`integrity_required`: one of them must come with a body, as S3
    insists on for DeleteObjects and PutBucketTagging)."""
    payload_hash = auth.payload_hash
    if len(payload_hash) == 64 and not hmac.compare_digest(hashlib.sha256(body).hexdigest(), payload_hash.lower()):
        raise S3Error("XAmzContentSHA256Mismatch")
    found = checksums.checksum_from_headers(headers)
    if integrity_required and body and "content-md5" not in headers and found is None:
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5.")
    if "content-md5" in headers:
        expected = checksums.content_md5(headers["content-md5"])
        if not hmac.compare_digest(expected, hashlib.md5(body).digest()):
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")
    if found is not None:
        hasher = checksums.new_hasher(found[0])
        hasher.update(body)
        if hasher.b64digest() != found[1]:
            raise S3Error("BadDigest", f"The {found[0]} you specified did not match the calculated checksum.")


async def copy_source(
    source: AsyncGenerator[bytes, None], hasher: checksums.ChecksumHasher | None
) -> AsyncIterator[bytes]:
    """A stored object's bytes as the body of a copy, checksummed on the way when the target keeps one."""
    async with contextlib.aclosing(source) as stream:
        async for piece in stream:
            if hasher is not None:
                hasher.update(piece)
            yield piece
