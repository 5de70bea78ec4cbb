"""Streaming decoder for aws-chunked request bodies, with chunk-signature and trailing-checksum checks."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Protocol

from nats_s3.protocol import checksums
from nats_s3.protocol.errors import S3Error

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TRAILER_SIGNATURE = "x-amz-trailer-signature"

# A chunk header is "<hex>;chunk-signature=<64 hex>"; anything this long is not one.
MAX_LINE = 4096
MAX_TRAILER_BYTES = 16 * 1024
# No single chunk can legitimately exceed S3's single-PUT maximum of 5 GiB.
MAX_CHUNK_SIZE = 5 * 1024**3

_HEX_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_CRLF = b"\r\n"


class ByteSource(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


@dataclass(frozen=True)
class ChunkSigning:
    """What chunk signatures chain from: the request's signing key, date, scope and seed signature."""

    signing_key: bytes = field(repr=False)
    amz_date: str
    scope: str
    seed_signature: str


def _framing(message: str) -> S3Error:
    return S3Error("InvalidRequest", f"Invalid aws-chunked body: {message}")


def _truncated() -> S3Error:
    return S3Error("IncompleteBody", "The aws-chunked request body ended before its final chunk.")


def _bad_signature(what: str) -> S3Error:
    return S3Error(
        "SignatureDoesNotMatch",
        f"The {what} signature we calculated does not match the signature you provided.",
    )


class AwsChunkedDecoder:
    """Async iterator over the decoded payload of an aws-chunked body.

    Pieces are yielded as they arrive (each at most `max_chunk_read` bytes), so pieces of a chunk
    are handed out before that chunk's signature can be checked; only a chunk's last piece is held
    until its signature verifies. Checksum, length and trailer checks happen at the end. A caller
    must therefore treat any exception raised during iteration as "discard everything received".

    After a complete iteration, `trailers` holds the trailing headers (lower-case names, the trailer
    signature excluded) and `checksum` is the verified (ALGORITHM, base64 value) when a trailing
    checksum was requested.
    """

    def __init__(
        self,
        source: ByteSource,
        *,
        signing: ChunkSigning | None,
        trailer_checksum: str | None,
        decoded_length: int | None,
        max_chunk_read: int = 256 * 1024,
    ) -> None:
        if max_chunk_read < 1:
            raise ValueError("max_chunk_read must be positive")
        self._source = source
        self._signing = signing
        self._max = max_chunk_read
        self._decoded_length = decoded_length
        self._trailer_header: str | None = None
        self._hasher: checksums.ChecksumHasher | None = None
        if trailer_checksum is not None:
            algorithm = checksums.algorithm_for_header(trailer_checksum)
            if algorithm is None:
                algorithm = checksums.normalize_algorithm(trailer_checksum)
            self._trailer_header = checksums.header_for(algorithm)
            self._hasher = checksums.new_hasher(algorithm)
        self.checksum: tuple[str, str] | None = None
        self.trailers: dict[str, str] = {}
        self.decoded_bytes = 0
        # Unconsumed input is _buf[_pos:]; slicing bytes with an offset avoids shifting a bytearray.
        self._buf = b""
        self._pos = 0
        self._gen = self._run()

    def __aiter__(self) -> AwsChunkedDecoder:
        return self

    async def __anext__(self) -> bytes:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()

    # -- input ------------------------------------------------------------------------------------

    async def _more(self) -> bool:
        data = await self._source.read(self._max)
        if not data:
            return False
        if not isinstance(data, bytes):
            data = bytes(data)
        if self._pos < len(self._buf):
            self._buf = self._buf[self._pos :] + data
        else:
            self._buf = data
        self._pos = 0
        return True

    async def _line(self, *, eof_ok: bool) -> bytes | None:
        """Next CRLF-terminated line without its CRLF; at EOF, None (or a final unterminated line)."""
        while True:
            buf, pos = self._buf, self._pos
            end = buf.find(_CRLF, pos, pos + MAX_LINE + 2)
            if end >= 0:
                self._pos = end + 2
                return buf[pos:end]
            if len(buf) - pos > MAX_LINE:
                raise _framing("a chunk header or trailer line is too long or lacks its CRLF.")
            if not await self._more():
                if not eof_ok:
                    raise _truncated()
                rest = self._buf[self._pos :].rstrip(b"\r")
                self._buf, self._pos = b"", 0
                return rest or None

    async def _expect_crlf(self) -> None:
        while len(self._buf) - self._pos < 2:
            if not await self._more():
                raise _truncated()
        if self._buf[self._pos : self._pos + 2] != _CRLF:
            raise _framing("chunk data is not followed by CRLF.")
        self._pos += 2

    # -- decoding ---------------------------------------------------------------------------------

    def _parse_header(self, line: bytes) -> tuple[int, str | None]:
        size_part, _, ext = line.partition(b";")
        size_part = size_part.strip(b" \t")
        if not _HEX_SIZE.fullmatch(size_part):
            raise _framing(f"bad chunk size {size_part[:32]!r}.")
        size = int(size_part, 16)
        if size > MAX_CHUNK_SIZE:
            raise _framing(f"chunk size {size} is too large.")
        signature: str | None = None
        if ext:
            for item in ext.split(b";"):
                name, _, value = item.partition(b"=")
                if name.strip(b" \t") == b"chunk-signature":
                    signature = value.strip(b" \t").decode("latin-1")
        return size, signature

    def _chunk_signature(self, previous: str, data_hash: str) -> str:
        signing = self._signing
        assert signing is not None
        sts = f"AWS4-HMAC-SHA256-PAYLOAD\n{signing.amz_date}\n{signing.scope}\n{previous}\n{EMPTY_SHA256}\n{data_hash}"
        return hmac.new(signing.signing_key, sts.encode("utf-8"), hashlib.sha256).hexdigest()

    def _verify_chunk(self, previous: str, provided: str, data_hash: str) -> str:
        expected = self._chunk_signature(previous, data_hash)
        if not hmac.compare_digest(expected.encode("ascii"), provided.encode("latin-1")):
            raise _bad_signature("chunk")
        return provided

    async def _run(self) -> AsyncGenerator[bytes, None]:
        signing = self._signing
        previous = signing.seed_signature if signing is not None else ""
        hasher = self._hasher
        limit = self._decoded_length
        max_read = self._max
        total = 0
        while True:
            line = await self._line(eof_ok=False)
            assert line is not None
            size, signature = self._parse_header(line)
            if signing is not None and signature is None:
                raise _bad_signature("chunk")
            if limit is not None and total + size > limit:
                raise S3Error(
                    "InvalidRequest",
                    f"The aws-chunked body carries more than x-amz-decoded-content-length ({limit}) bytes.",
                )
            if size == 0:
                if signing is not None:
                    assert signature is not None
                    previous = self._verify_chunk(previous, signature, EMPTY_SHA256)
                break
            chunk_hash = hashlib.sha256() if signing is not None else None
            remaining = size
            while remaining:
                avail = len(self._buf) - self._pos
                if avail == 0:
                    # Read no further than this chunk's end, so the piece needs no copy out of a buffer.
                    piece = await self._source.read(min(remaining, max_read))
                    if not piece:
                        raise _truncated()
                    if not isinstance(piece, bytes):
                        piece = bytes(piece)
                    if len(piece) > remaining:
                        # A source that ignores n: keep what belongs to the next chunk.
                        self._buf, self._pos = piece[remaining:], 0
                        piece = piece[:remaining]
                else:
                    n = min(avail, remaining, max_read)
                    if self._pos == 0 and n == len(self._buf):
                        piece = self._buf
                        self._buf = b""
                    else:
                        piece = self._buf[self._pos : self._pos + n]
                        self._pos += n
                remaining -= len(piece)
                if hasher is not None:
                    hasher.update(piece)
                if chunk_hash is not None:
                    chunk_hash.update(piece)
                    if not remaining:
                        assert signature is not None
                        previous = self._verify_chunk(previous, signature, chunk_hash.hexdigest())
                yield piece
            total += size
            self.decoded_bytes = total
            await self._expect_crlf()

        await self._read_trailers(previous)
        if limit is not None and total < limit:
            raise S3Error(
                "IncompleteBody",
                f"The aws-chunked body carries {total} bytes, less than x-amz-decoded-content-length ({limit}).",
            )
        self._finish_checksum()
        await self._expect_eof()

    async def _read_trailers(self, previous: str) -> None:
        trailer_signature: str | None = None
        size = 0
        while True:
            line = await self._line(eof_ok=True)
            if not line:
                # Blank line or EOF: botocore and others may omit the final CRLF.
                break
            size += len(line)
            if size > MAX_TRAILER_BYTES:
                raise _framing("the trailing headers are too large.")
            name_b, colon, value_b = line.partition(b":")
            name = name_b.strip(b" \t").decode("latin-1").lower()
            if not colon or not name:
                raise _framing(f"bad trailing header line {line[:64]!r}.")
            value = value_b.strip(b" \t").decode("latin-1")
            if name == TRAILER_SIGNATURE:
                if trailer_signature is not None:
                    raise _framing("more than one x-amz-trailer-signature.")
                trailer_signature = value
                continue
            if name in self.trailers:
                raise _framing(f"trailing header {name} repeated.")
            self.trailers[name] = value

        signing = self._signing
        if signing is None or (not self.trailers and trailer_signature is None):
            return
        if trailer_signature is None:
            raise _bad_signature("trailer")
        # Canonical like signed headers: sorted by name, whatever order they were sent in.
        canonical = "".join(f"{name}:{self.trailers[name]}\n" for name in sorted(self.trailers))
        trailer_hash = hashlib.sha256(canonical.encode("latin-1")).hexdigest()
        sts = f"AWS4-HMAC-SHA256-TRAILER\n{signing.amz_date}\n{signing.scope}\n{previous}\n{trailer_hash}"
        expected = hmac.new(signing.signing_key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode("ascii"), trailer_signature.encode("latin-1")):
            raise _bad_signature("trailer")

    def _finish_checksum(self) -> None:
        if self._hasher is None or self._trailer_header is None:
            return
        value = self.trailers.get(self._trailer_header)
        if value is None:
            raise S3Error(
                "InvalidRequest",
                f"The request announced a trailing {self._trailer_header} but the body has no such trailer.",
            )
        algorithm = self._hasher.algorithm
        checksums.validate_value(algorithm, value)
        computed = self._hasher.b64digest()
        if computed != value:
            raise S3Error(
                "BadDigest",
                f"The {algorithm} you specified did not match the calculated checksum.",
            )
        self.checksum = (algorithm, computed)

    async def _expect_eof(self) -> None:
        rest = self._buf[self._pos :]
        self._buf, self._pos = b"", 0
        # One more read tells a clean end from trailing garbage; stray CR/LF padding is tolerated.
        more = await self._source.read(self._max)
        if rest.strip(b"\r\n") or (more and bytes(more).strip(b"\r\n")):
            raise _framing("data follows the final chunk.")


def decode_aws_chunked(
    source: ByteSource,
    *,
    signing: ChunkSigning | None,
    trailer_checksum: str | None,
    decoded_length: int | None,
    max_chunk_read: int = 256 * 1024,
) -> AwsChunkedDecoder:
    """Decode an aws-chunked body from `source`; iterate the result with `async for`.

    `signing` is given for STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] bodies, `trailer_checksum`
    names the announced trailer (x-amz-trailer, e.g. "x-amz-checksum-crc32"), `decoded_length` is
    x-amz-decoded-content-length. See AwsChunkedDecoder for when each check happens.
    """
    return AwsChunkedDecoder(
        source,
        signing=signing,
        trailer_checksum=trailer_checksum,
        decoded_length=decoded_length,
        max_chunk_read=max_chunk_read,
    )
