"""Plain models the storage layer takes and returns, and the stored Object Store meta document."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from ..crypto.envelope import Envelope

# Keys of the meta document's "metadata" map that belong to the gateway.
META_ETAG = "s3-etag"
META_CHECKSUM = "s3-checksum"
META_SEQS = "s3-seqs"
META_PARTS = "s3-parts"  # multipart objects: where each part's chunks are, in order
META_PART_NUMBERS = "s3-part-numbers"  # multipart objects: each part's number[:checksum], in order
META_SSE = "s3-sse"  # encrypted objects: the data key's envelope (crypto/envelope.py), as JSON

Checksum = tuple[str, str]  # (algorithm, base64 value), e.g. ("CRC32", "DUoRhQ==")


class StoredLink(BaseModel):
    model_config = ConfigDict(extra="allow")
    bucket: str
    name: str | None = None


class StoredOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    link: StoredLink | None = None
    max_chunk_size: int | None = None


class StoredObjectInfo(BaseModel):
    """The JSON meta message of the NATS Object Store format (what `nats object info` shows)."""

    model_config = ConfigDict(extra="allow")

    name: str
    bucket: str
    nuid: str = ""
    size: int = 0
    mtime: str = ""
    chunks: int = 0
    digest: str = ""
    deleted: bool = False
    description: str | None = None
    headers: dict[str, list[str]] | None = None
    metadata: dict[str, str] | None = None
    options: StoredOptions | None = Field(default=None)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a replica bucket's stream is mirrored from (store/replicas.py)."""

    stream: str
    api: str  # the JetStream API prefix the mirror reads through: $JS.<domain>.API, or an imported one

    @property
    def domain(self) -> str | None:
        parts = self.api.split(".")
        return parts[1] if len(parts) == 3 and parts[0] == "$JS" and parts[2] == "API" else None

    def describe(self) -> str:
        where = (
            f"JetStream domain {self.domain}" if self.domain else f"the JetStream API at {self.api or 'this account'}"
        )
        return f"stream {self.stream} of {where}"


@dataclass(frozen=True, slots=True)
class BucketInfo:
    name: str
    created: datetime
    origin: Origin | None = None  # a read-only replica's origin; None for a bucket of its own


@dataclass(frozen=True, slots=True)
class PartRef:
    """Where a run of an object's bytes lives: chunks on one subject, fixed-size but for the last."""

    nuid: str
    size: int
    chunk_size: int
    chunks: int
    runs: tuple[tuple[int, int], ...]

    def encode(self) -> str:
        return f"{self.nuid}:{self.size}:{self.chunk_size}:{self.chunks}:{encode_seq_runs(list(self.runs))}"

    @classmethod
    def decode(cls, text: str) -> PartRef:
        nuid, size, chunk_size, chunks, runs = text.split(":", 4)
        return cls(nuid, int(size), int(chunk_size), int(chunks), decode_seq_runs(runs))


def encode_parts(parts: list[PartRef]) -> str:
    return ";".join(part.encode() for part in parts)


def decode_parts(text: str) -> tuple[PartRef, ...]:
    return tuple(PartRef.decode(item) for item in text.split(";") if item)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One version of an object (its latest, unless asked for by version id) as the API layer sees it."""

    bucket: str
    key: str
    size: int
    etag: str  # unquoted
    last_modified: datetime
    headers: dict[str, str] = field(default_factory=dict)  # content-* headers and x-amz-meta-*, lower-case
    checksum: Checksum | None = None
    # Where the bytes are: chunk subject id, chunk size, chunk count, stream sequence runs.
    nuid: str = ""
    chunk_size: int = 0
    chunks: int = 0
    seq_runs: tuple[tuple[int, int], ...] = ()
    meta_seq: int = 0
    digest: str = ""
    parts: tuple[PartRef, ...] = ()  # set for multipart objects only
    # Multipart objects: each part's number as uploaded and its checksum, in object order (objects
    # completed before these were kept: numbered 1..n, no checksums).
    part_numbers: tuple[tuple[int, str | None], ...] = ()
    uid: str = ""  # the version's internal id (store/versions.py)
    version_id: str = "null"  # as S3 shows it: the uid, or "null"
    is_latest: bool = True
    delete_marker: bool = False
    sse: str = ""  # encrypted objects: the envelope of their data key, as stored (crypto/envelope.py)

    def layout(self) -> tuple[PartRef, ...]:
        """The object's bytes in order: its parts, or its single chunk subject."""
        if self.parts:
            return self.parts
        return (PartRef(self.nuid, self.size, self.chunk_size, self.chunks, self.seq_runs),)


@dataclass(frozen=True, slots=True)
class BodyDigests:
    """What the writer computed over a body, handed to the caller before it commits."""

    size: int
    md5: bytes
    sha256: bytes


@dataclass(frozen=True, slots=True)
class Sealing:
    """How a write encrypts what it stores: the data key and its envelope (without the layout MAC, which
    the commit adds)."""

    envelope: Envelope
    data_key: bytes


@dataclass(frozen=True, slots=True)
class WriteCondition:
    """S3 conditional writes: If-None-Match (`*`: no current object; an ETag: not that one) and
    If-Match (`*`: a current object; an ETag: that one). ETags unquoted."""

    if_none_match: str | None = None
    if_match: str | None = None


def encode_seq_runs(runs: list[tuple[int, int]]) -> str:
    return ",".join(f"{start}+{count}" for start, count in runs)


def decode_seq_runs(text: str) -> tuple[tuple[int, int], ...]:
    runs = []
    for part in text.split(","):
        if not part:
            continue
        start, _, count = part.partition("+")
        runs.append((int(start), int(count)))
    return tuple(runs)


def parse_mtime(text: str) -> datetime:
    """RFC 3339 with up to nanoseconds (Go writes 9 fractional digits, Python reads 6)."""
    if not text:
        return datetime.fromtimestamp(0, UTC)
    try:  # the common case, ten times faster than the general one below (index builds parse every meta)
        value = datetime.fromisoformat(text)
        if value.tzinfo is not None:
            return value.astimezone(UTC)
    except ValueError:
        pass
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    head, dot, rest = t.partition(".")
    if dot:
        digits = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            digits += rest[i]
            i += 1
        t = f"{head}.{(digits + '000000')[:6]}{rest[i:]}"
    try:
        value = datetime.fromisoformat(t)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_mtime(value: datetime) -> str:
    t = value.astimezone(UTC)  # formatted directly: strftime was a visible part of a small PUT's CPU
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"


def etag_from_digest(digest: str) -> str:
    """ETag for an object written by another Object Store client: hex of its SHA-256 digest.

    64 hex characters, so clients that treat a 32-hex ETag as an MD5 do not check it as one.
    """
    value = digest.split("=", 1)[1] if digest.upper().startswith("SHA-256=") else digest
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
    except (binascii.Error, ValueError):
        return value


def to_object_info(
    doc: StoredObjectInfo,
    key: str,
    s3_bucket: str,
    meta_seq: int,
    *,
    uid: str = "",
    version_id: str = "null",
    is_latest: bool = True,
    delete_marker: bool = False,
) -> ObjectInfo:
    meta = doc.metadata or {}
    headers = {name.lower(): values[0] for name, values in (doc.headers or {}).items() if values}
    checksum: Checksum | None = None
    if raw := meta.get(META_CHECKSUM):
        algorithm, _, value = raw.partition(":")
        checksum = (algorithm, value)
    chunk_size = doc.options.max_chunk_size if doc.options and doc.options.max_chunk_size else 0
    return ObjectInfo(
        bucket=s3_bucket,
        key=key,
        size=doc.size,
        etag=meta.get(META_ETAG) or etag_from_digest(doc.digest),
        last_modified=parse_mtime(doc.mtime),
        headers=headers,
        checksum=checksum,
        nuid=doc.nuid,
        chunk_size=chunk_size,
        chunks=doc.chunks,
        seq_runs=decode_seq_runs(meta.get(META_SEQS, "")),
        meta_seq=meta_seq,
        digest=doc.digest,
        parts=decode_parts(meta[META_PARTS]) if META_PARTS in meta else (),
        part_numbers=decode_part_numbers(meta.get(META_PART_NUMBERS, "")),
        uid=uid,
        version_id=version_id,
        is_latest=is_latest,
        delete_marker=delete_marker,
        sse=meta.get(META_SSE, ""),
    )


def encode_part_numbers(parts: list[tuple[int, str | None]]) -> str:
    return ",".join(f"{number}:{checksum}" if checksum else str(number) for number, checksum in parts)


def decode_part_numbers(text: str) -> tuple[tuple[int, str | None], ...]:
    out: list[tuple[int, str | None]] = []
    for item in text.split(",") if text else ():
        number, _, checksum = item.partition(":")
        out.append((int(number), checksum or None))
    return tuple(out)


def chunk_nuids(doc: StoredObjectInfo) -> list[str]:
    """Every chunk subject id an object's meta points at (what to purge when it is replaced)."""
    meta = doc.metadata or {}
    if META_PARTS in meta:
        return [part.nuid for part in decode_parts(meta[META_PARTS])]
    return [doc.nuid] if doc.nuid else []
