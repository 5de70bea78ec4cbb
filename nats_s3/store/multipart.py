"""Multipart uploads: sessions and part records in NATS KV, part bytes on chunk subjects of the bucket's stream.

Complete writes only the object's meta, which lists the parts' chunk subjects in order: no byte is copied.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from . import naming
from .errors import InvalidPart, ObjectNotFound, PartTooSmall, UploadNotFound
from .models import (
    META_CHECKSUM,
    META_ETAG,
    META_PARTS,
    BodyDigests,
    Checksum,
    ObjectInfo,
    PartRef,
    StoredObjectInfo,
    chunk_nuids,
    decode_seq_runs,
    encode_parts,
    encode_seq_runs,
    format_mtime,
    parse_mtime,
    to_object_info,
)
from .nats_store import NatsStore
from .records import RecordConflict, RecordStore

log = logging.getLogger("nats_s3.store.multipart")

RECORDS_BUCKET = "nats_s3_uploads"
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUMBER = 10000
COMPLETED_KEEP = timedelta(days=1)
CAS_RETRIES = 16


class UploadRecord(BaseModel):
    bucket: str
    key: str
    upload_id: str
    initiated: str
    headers: dict[str, str] = {}
    checksum_algorithm: str | None = None
    checksum_type: str | None = None
    owner: str = ""
    completed_etag: str | None = None  # set once completed, so a retried Complete can answer the same
    completed_at: str | None = None

    @property
    def initiated_at(self) -> datetime:
        return parse_mtime(self.initiated)


class PartRecord(BaseModel):
    number: int
    nuid: str
    size: int
    etag: str  # MD5 hex of the part
    chunk_size: int
    chunks: int
    runs: str
    checksum: str | None = None  # base64, of the upload's checksum algorithm
    last_modified: str

    @property
    def ref(self) -> PartRef:
        return PartRef(self.nuid, self.size, self.chunk_size, self.chunks, decode_seq_runs(self.runs))


PartCommit = Callable[[BodyDigests], Awaitable[str | None]]
Finalize = Callable[[list[PartRecord]], Checksum | None]


def multipart_etag(parts: list[PartRecord]) -> str:
    digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in parts)).hexdigest()
    return f"{digest}-{len(parts)}"


def _upload_key(bucket: str, upload_id: str) -> str:
    return f"u.{naming.nats_bucket(bucket)}.{upload_id}"


def part_prefix(bucket: str, upload_id: str) -> str:
    return f"p.{naming.nats_bucket(bucket)}.{upload_id}."


class MultipartStore:
    def __init__(self, store: NatsStore) -> None:
        self.store = store
        self.records = RecordStore(store.nc, store.js, RECORDS_BUCKET, store.replicas)

    async def create(
        self,
        bucket: str,
        key: str,
        headers: dict[str, str],
        *,
        checksum_algorithm: str | None,
        checksum_type: str | None,
        owner: str,
    ) -> UploadRecord:
        await self.store.head_bucket(bucket)
        upload_id = self.store.nc._nuid.next().decode()
        record = UploadRecord(
            bucket=bucket,
            key=key,
            upload_id=upload_id,
            initiated=format_mtime(datetime.now(UTC)),
            headers=headers,
            checksum_algorithm=checksum_algorithm,
            checksum_type=checksum_type,
            owner=owner,
        )
        await self.records.create(_upload_key(bucket, upload_id), record.model_dump_json().encode())
        return record

    async def get_upload(self, bucket: str, key: str | None, upload_id: str) -> tuple[int, UploadRecord]:
        if not upload_id.isalnum():
            raise UploadNotFound(upload_id)
        found = await self.records.get(_upload_key(bucket, upload_id))
        if found is None:
            raise UploadNotFound(upload_id)
        record = UploadRecord.model_validate_json(found.value)
        if key is not None and record.key != key:
            raise UploadNotFound(upload_id)
        return found.revision, record

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: AsyncIterator[bytes],
        before_commit: PartCommit,
    ) -> PartRecord:
        """Stream one part; re-uploading a part number replaces it (and frees the old bytes)."""
        _, upload = await self.get_upload(bucket, key, upload_id)
        if upload.completed_etag is not None:
            raise UploadNotFound(upload_id)
        nuid, written = await self.store.write_chunks(bucket, body)
        part_key = f"{part_prefix(bucket, upload_id)}{number:05d}"
        try:
            checksum = await before_commit(BodyDigests(written.size, written.md5, written.sha256))
            part = PartRecord(
                number=number,
                nuid=nuid,
                size=written.size,
                etag=written.md5.hex(),
                chunk_size=self.store.chunk_size,
                chunks=written.chunks,
                runs=encode_seq_runs(written.runs),
                checksum=checksum,
                last_modified=format_mtime(datetime.now(UTC)),
            )
            replaced = await self._put_part(part_key, part)
        except BaseException:
            await asyncio.shield(self.store.purge_chunks(bucket, nuid))
            raise
        if replaced is not None:
            await self.store.purge_chunks(bucket, replaced.nuid)
        # An abort that raced this part must not leave its bytes behind.
        try:
            await self.get_upload(bucket, key, upload_id)
        except UploadNotFound:
            await self.records.delete(part_key)
            await self.store.purge_chunks(bucket, nuid)
            raise
        return part

    async def _put_part(self, part_key: str, part: PartRecord) -> PartRecord | None:
        value = part.model_dump_json().encode()
        for _ in range(CAS_RETRIES):
            current = await self.records.get(part_key)
            try:
                if current is None:
                    await self.records.create(part_key, value)
                    return None
                await self.records.update(part_key, value, current.revision)
                return PartRecord.model_validate_json(current.value)
            except RecordConflict:
                continue
        raise RecordConflict(part_key)

    async def list_parts(self, bucket: str, upload_id: str) -> list[PartRecord]:
        records = await self.records.scan(part_prefix(bucket, upload_id))
        parts = [PartRecord.model_validate_json(r.value) for r in records]
        parts.sort(key=lambda p: p.number)
        return parts

    async def list_uploads(self, bucket: str) -> list[UploadRecord]:
        await self.store.head_bucket(bucket)
        records = await self.records.scan(f"u.{naming.nats_bucket(bucket)}.")
        uploads = [UploadRecord.model_validate_json(r.value) for r in records]
        uploads = [u for u in uploads if u.completed_etag is None]
        uploads.sort(key=lambda u: (u.key.encode(), u.initiated_at))
        return uploads

    async def abort(self, bucket: str, key: str | None, upload_id: str) -> None:
        revision, upload = await self.get_upload(bucket, key, upload_id)
        if upload.completed_etag is not None:
            raise UploadNotFound(upload_id)
        # The session goes first, so parts still arriving see NoSuchUpload and clean up after themselves.
        await self.records.delete(_upload_key(bucket, upload_id), revision)
        await self._drop_parts(bucket, upload_id, keep=set())

    async def _drop_parts(self, bucket: str, upload_id: str, keep: set[str]) -> None:
        for record in await self.records.scan(part_prefix(bucket, upload_id)):
            part = PartRecord.model_validate_json(record.value)
            if part.nuid not in keep:
                await self.store.purge_chunks(bucket, part.nuid)
            await self.records.delete(record.key, record.revision)

    async def complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        requested: list[tuple[int, str]],
        finalize: Finalize,
    ) -> ObjectInfo:
        """Commit the object from the listed parts (number, unquoted ETag), ascending and validated."""
        revision, upload = await self.get_upload(bucket, key, upload_id)
        if upload.completed_etag is not None:
            return await self._already_completed(bucket, key, upload, requested)
        stored = {p.number: p for p in await self.list_parts(bucket, upload_id)}
        chosen: list[PartRecord] = []
        for number, etag in requested:
            part = stored.get(number)
            if part is None or part.etag != etag:
                raise InvalidPart(str(number))
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < MIN_PART_SIZE:
                raise PartTooSmall(str(part.number))
        checksum = finalize(chosen)
        etag = multipart_etag(chosen)
        nb = naming.nats_bucket(bucket)
        metadata = {META_ETAG: etag, META_PARTS: encode_parts([p.ref for p in chosen])}
        if checksum is not None:
            metadata[META_CHECKSUM] = f"{checksum[0]}:{checksum[1]}"
        doc = StoredObjectInfo(
            name=key,
            bucket=nb,
            nuid="",  # no single chunk subject: plain Object Store clients cannot read multipart objects
            size=sum(p.size for p in chosen),
            mtime=format_mtime(datetime.now(UTC)),
            chunks=sum(p.chunks for p in chosen),
            digest="",
            headers={name: [value] for name, value in upload.headers.items()},
            metadata=metadata,
        )
        # Mark the session completed before the object appears: a crash in between leaves a session
        # that a retried Complete finishes, never an object whose parts a later abort would free.
        marked = upload.model_copy(update={"completed_etag": etag, "completed_at": format_mtime(datetime.now(UTC))})
        try:
            await self.records.update(_upload_key(bucket, upload_id), marked.model_dump_json().encode(), revision)
        except RecordConflict:
            raise UploadNotFound(upload_id) from None
        seq, replaced = await self.store.commit_meta(bucket, key, doc, None)
        keep = {p.nuid for p in chosen}
        if replaced is not None:
            for nuid in set(chunk_nuids(replaced)) - keep:
                await self.store.purge_chunks(bucket, nuid)
        await self._drop_parts(bucket, upload_id, keep=keep)
        return to_object_info(doc, key, bucket, seq)

    async def _already_completed(
        self, bucket: str, key: str, upload: UploadRecord, requested: list[tuple[int, str]]
    ) -> ObjectInfo:
        try:
            info = await self.store.head_object(bucket, key)
        except ObjectNotFound:
            raise UploadNotFound(upload.upload_id) from None
        if info.etag != upload.completed_etag or len(info.parts) != len(requested):
            raise UploadNotFound(upload.upload_id)
        return info

    async def count_in_progress(self) -> int:
        records = await self.records.scan("u.")
        return sum(1 for r in records if UploadRecord.model_validate_json(r.value).completed_etag is None)

    async def expire(self, max_age: timedelta) -> int:
        """Abort uploads initiated longer than `max_age` ago (any gateway may run this; it is idempotent)."""
        now = datetime.now(UTC)
        aborted = 0
        for record in await self.records.scan("u."):
            try:
                upload = UploadRecord.model_validate_json(record.value)
            except ValueError:
                continue
            if upload.completed_etag is not None:
                done = parse_mtime(upload.completed_at or upload.initiated)
                if now - done > COMPLETED_KEEP:
                    await self.records.delete(record.key, record.revision)
                continue
            if now - upload.initiated_at <= max_age:
                continue
            try:
                await self.records.delete(record.key, record.revision)
                await self._drop_parts(upload.bucket, upload.upload_id, keep=set())
                aborted += 1
            except Exception as exc:  # one bad upload must not stop the sweep
                log.warning("expiring upload failed", extra={"upload_id": upload.upload_id, "error": repr(exc)})
        return aborted
