"""Multipart uploads: upload and part records in the gateway's KV bucket, part bytes in the bucket's stream.

Complete writes only the object's meta, which lists the parts' chunk subjects in order: no byte is
copied. The upload record serialises Complete, Abort and expiry (each changes it compare-and-set);
no step frees a part's chunks, it claims them for the collector (store/claims.py) instead. The
records sit in the small KV stream rather than beside the bucket's chunks, where reading a few
hundred of them would load the chunk-filled blocks around each.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from ..crypto.chunk_cipher import hidden_etag, layout_mac, part_mac
from ..crypto.envelope import Envelope
from . import naming
from .bucket_config import upload_prefix
from .chunks import WrittenChunks
from .claims import ClaimSpec, part_owner, send_claims
from .errors import (
    BucketNotEmpty,
    InvalidPart,
    ObjectNotFound,
    PartTooSmall,
    StoreUnavailable,
    UnreadableRecord,
    UploadBusy,
    UploadNotFound,
    VersionNotFound,
    WriteConflict,
)
from .models import (
    META_CHECKSUM,
    META_ETAG,
    META_PART_NUMBERS,
    META_PARTS,
    META_SSE,
    BodyDigests,
    Checksum,
    ObjectInfo,
    PartRef,
    Sealing,
    StoredObjectInfo,
    WriteCondition,
    decode_parts,
    decode_seq_runs,
    encode_part_numbers,
    encode_parts,
    encode_seq_runs,
    format_mtime,
    parse_mtime,
)
from .nats_store import NatsStore
from .records import RecordConflict, Records
from .versions import is_marker, is_version, new_uid, s3_version_id

log = logging.getLogger("nats_s3.store.multipart")

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUMBER = 10000
COMPLETED_KEEP = timedelta(days=1)
DEFAULT_EXPIRY = timedelta(days=7)
# A Complete that marked its upload this long ago and never finished it has died: another may resume it.
COMPLETE_STALE = timedelta(seconds=60)
CAS_RETRIES = 16

OPEN = "open"
COMPLETING = "completing"


class UploadRecord(BaseModel):
    bucket: str
    key: str
    upload_id: str
    initiated: str
    headers: dict[str, str] = {}
    checksum_algorithm: str | None = None
    checksum_type: str | None = None
    owner: str = ""
    bucket_created: str = ""  # the bucket it belongs to: one deleted and made again does not inherit it
    expires: str | None = None  # aborted by the collector after this (the --multipart.expiry of its creator)
    state: str = OPEN
    # Set while completing: the meta Complete commits, so a Complete that died can be resumed or undone.
    completing_since: str | None = None
    plan: StoredObjectInfo | None = None
    plan_parts: list[tuple[int, str]] = []  # (number, etag) as the Complete request listed them
    encryption: Envelope | None = None  # the data key its parts are sealed with (crypto/envelope.py)

    @property
    def initiated_at(self) -> datetime:
        return parse_mtime(self.initiated)


class CompletedRecord(BaseModel):
    """What a retried Complete answers with."""

    key: str
    upload_id: str
    etag: str
    version_id: str
    parts: int
    completed_at: str


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
    mac: str | None = None  # sealed parts: crypto/chunk_cipher.part_mac of this part

    @property
    def ref(self) -> PartRef:
        return PartRef(self.nuid, self.size, self.chunk_size, self.chunks, decode_seq_runs(self.runs))


PartCommit = Callable[[BodyDigests], Awaitable[str | None]]
Finalize = Callable[[list[PartRecord]], Checksum | None]


def multipart_etag(parts: list[PartRecord]) -> str:
    digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in parts)).hexdigest()
    return f"{digest}-{len(parts)}"


def _upload_key(upload_id: str) -> str:
    return f"U.{upload_id}"


def _completed_key(upload_id: str) -> str:
    return f"D.{upload_id}"


def _part_key(upload_id: str, number: int) -> str:
    return f"P.{upload_id}.{number:05d}"


def _parts_prefix(upload_id: str) -> str:
    return f"P.{upload_id}."


T = TypeVar("T", bound=BaseModel)


def _parse(model: type[T], data: bytes, what: str) -> T:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise UnreadableRecord(what) from exc


class MultipartStore:
    def __init__(self, store: NatsStore) -> None:
        self.store = store
        store.deletion_checks.append(self.check_deletable)
        store.on_bucket_deleted.append(self.forget_bucket)

    def records(self, bucket: str) -> Records:
        kv = self.store.configs.records
        return Records(self.store.nc, self.store.js, self.store.publisher, kv.stream, upload_prefix(kv.prefix, bucket))

    async def create(
        self,
        bucket: str,
        key: str,
        headers: dict[str, str],
        *,
        checksum_algorithm: str | None,
        checksum_type: str | None,
        owner: str,
        expiry: timedelta = DEFAULT_EXPIRY,
        encryption: Envelope | None = None,
    ) -> UploadRecord:
        await self.store.ensure_ready(bucket)
        upload_id = self.store.nuid.next().decode()
        now = datetime.now(UTC)
        record = UploadRecord(
            bucket=bucket,
            key=key,
            upload_id=upload_id,
            initiated=format_mtime(now),
            bucket_created=self.store.configs.get(bucket).created,
            expires=format_mtime(now + expiry),
            headers=headers,
            checksum_algorithm=checksum_algorithm,
            checksum_type=checksum_type,
            owner=owner,
            encryption=encryption,
        )
        await self.records(bucket).create(_upload_key(upload_id), record.model_dump_json().encode())
        return record

    async def get_upload(self, bucket: str, key: str | None, upload_id: str) -> tuple[int, UploadRecord]:
        revision, record = await self._read(bucket, upload_id, _upload_key(upload_id), UploadRecord)
        if key is not None and record.key != key:
            raise UploadNotFound(upload_id)
        if record.bucket_created and record.bucket_created != self.store.configs.get(bucket).created:
            raise UploadNotFound(upload_id)  # made in a bucket of this name that was deleted since
        return revision, record

    async def _read(self, bucket: str, upload_id: str, record_key: str, model: type[T]) -> tuple[int, T]:
        """One of an upload's records and its revision; UploadNotFound when there is none."""
        if not upload_id.isalnum():
            raise UploadNotFound(upload_id)
        found = await self.records(bucket).get(record_key)
        if found is None:
            raise UploadNotFound(upload_id)
        return found.revision, _parse(model, found.value, f"{record_key} of {bucket}")

    async def _open_upload(self, bucket: str, key: str | None, upload_id: str) -> tuple[int, UploadRecord]:
        revision, upload = await self.get_upload(bucket, key, upload_id)
        if upload.state != OPEN:
            raise UploadNotFound(upload_id)
        return revision, upload

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: AsyncIterator[bytes],
        before_commit: PartCommit,
        *,
        sha256: bool = True,
        size: int | None = None,
        sealing: Sealing | None = None,
    ) -> PartRecord:
        """Stream one part; re-uploading a part number replaces it (the old bytes go to the collector).
        `sha256`: whether `before_commit` needs the part's SHA-256 (else its digest is empty). `size`:
        its length where known, checked against the quotas before a byte is read. `sealing`: the
        upload's data key, for an encrypted upload."""
        await self._open_upload(bucket, key, upload_id)
        records = self.records(bucket)
        owners = [part_owner(upload_id, number)]
        nuid = self.store.new_nuid()
        async with (
            self.store.admitted(bucket, size, adds_object=False),
            self.store.claimed_while_writing(bucket, nuid, None, owners),
        ):
            written = await self.store.write_chunks(
                bucket, body, nuid=nuid, key=None, owners=owners, sha256=sha256,
                data_key=sealing.data_key if sealing is not None else None,
            )  # fmt: skip
            part, seq = await self._record_part(bucket, upload_id, number, nuid, written, before_commit, sealing)
        # An upload completed or aborted meanwhile did not take this part: say so, and drop its record.
        try:
            await self._open_upload(bucket, key, upload_id)
        except UploadNotFound:
            part_key = _part_key(upload_id, number)
            with contextlib.suppress(RecordConflict):
                await records.purge_through(part_key, await records.delete(part_key, seq))
            raise
        return part

    async def _record_part(
        self,
        bucket: str,
        upload_id: str,
        number: int,
        nuid: str,
        written: WrittenChunks,
        before_commit: PartCommit,
        sealing: Sealing | None,
    ) -> tuple[PartRecord, int]:
        """The part record for chunks just written (replacing the part number's earlier upload)."""
        records = self.records(bucket)
        nb = naming.nats_bucket(bucket)
        owners = [part_owner(upload_id, number)]
        checksum = await before_commit(BodyDigests(written.size, written.md5, written.sha256))
        etag, chunk_size, mac = written.md5.hex(), self.store.chunk_size, None
        if sealing is not None:
            dk, chunk_size = sealing.data_key, self.store.sealed_chunk_size
            if sealing.envelope.hides_md5:
                etag = hidden_etag(dk, written.md5)
            mac = part_mac(dk, number, (nuid, written.size, chunk_size, written.chunks))
        part = PartRecord(
            number=number,
            nuid=nuid,
            size=written.size,
            etag=etag,
            chunk_size=chunk_size,
            chunks=written.chunks,
            runs=encode_seq_runs(written.runs),
            checksum=checksum,
            last_modified=format_mtime(datetime.now(UTC)),
            mac=mac,
        )
        if self.store.pauses.active:
            await self.store.pauses.reach("upload_part.before_record")
        part_key = _part_key(upload_id, number)
        value = part.model_dump_json().encode()
        for _ in range(CAS_RETRIES):
            current, expected = await records.read(part_key)
            old: PartRecord | None = _parse(PartRecord, current.value, part_key) if current is not None else None
            # The replaced part's bytes may still be chosen by a Complete running now: claim, don't free.
            specs = [ClaimSpec(old.nuid, None, owners)] if old is not None else []
            claims = await send_claims(self.store.publisher, nb, specs)
            try:
                seq = await records.update(part_key, value, expected)
            except RecordConflict:
                claims.abandon()
                continue
            await claims.confirm()
            break
        else:
            raise WriteConflict(part_key)
        return part, seq

    async def list_parts(self, bucket: str, upload_id: str) -> list[PartRecord]:
        records = await self.records(bucket).scan(_parts_prefix(upload_id))
        parts: list[PartRecord] = [_parse(PartRecord, r.value, r.key) for r in records]
        parts.sort(key=lambda p: p.number)
        return parts

    async def list_uploads(self, bucket: str) -> list[UploadRecord]:
        await self.store.head_bucket(bucket)
        uploads: list[UploadRecord] = [
            _parse(UploadRecord, r.value, r.key) for r in await self.records(bucket).scan("U.")
        ]
        uploads.sort(key=lambda u: (u.key.encode(), u.initiated_at))
        return uploads

    async def abort(self, bucket: str, key: str | None, upload_id: str) -> None:
        revision, _ = await self._open_upload(bucket, key, upload_id)
        await self._end_upload(bucket, upload_id, revision, keep=set())

    async def _end_upload(
        self, bucket: str, upload_id: str, revision: int, keep: set[str], parts: list[PartRecord] | None = None
    ) -> None:
        """Remove an upload record that is still at `revision` (UploadNotFound if it changed), claiming
        the chunks of every part not in `keep` first, then drop the part records. `parts`: the part
        records as read since the upload stopped taking parts (read here if not given); a part written
        later still has its own intent claim."""
        records = self.records(bucket)
        nb = naming.nats_bucket(bucket)
        if parts is None:
            parts = await self.list_parts(bucket, upload_id)
        specs = [ClaimSpec(p.nuid, None, [part_owner(upload_id, p.number)]) for p in parts if p.nuid not in keep]
        claims = await send_claims(self.store.publisher, nb, specs)
        if self.store.pauses.active:
            await self.store.pauses.reach("end_upload.before_delete")
        try:
            tomb = await records.delete(_upload_key(upload_id), revision)
        except RecordConflict:
            claims.abandon()
            raise UploadNotFound(upload_id) from None
        await claims.confirm()
        await records.purge_through(_upload_key(upload_id), tomb)
        await records.purge_all(_parts_prefix(upload_id))

    async def complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        requested: list[tuple[int, str]],
        finalize: Finalize,
        condition: WriteCondition | None = None,
        data_key: bytes | None = None,
    ) -> ObjectInfo:
        """Commit the object from the listed parts (number, unquoted ETag), ascending and validated;
        with `condition`, only if the key's current version meets it (checked as it is replaced).
        `data_key`: an encrypted upload's, where the caller could open it, so that the whole layout is
        sealed (without it, each part's own MAC is kept)."""
        try:
            revision, upload = await self.get_upload(bucket, key, upload_id)
        except UploadNotFound:
            return await self._already_completed(bucket, key, upload_id, requested)
        if upload.state == COMPLETING:
            plan = upload.plan
            if plan is None or upload.plan_parts != requested:
                raise UploadNotFound(upload_id)  # another Complete, of other parts, is finishing it
            committed = await self._committed_version(bucket, key, plan)
            if committed is not None:  # its Complete committed it (and died, or is finishing): the same answer
                await self._finish(bucket, upload, revision, committed)
                return committed
            if datetime.now(UTC) - parse_mtime(upload.completing_since or "") < COMPLETE_STALE:
                raise UploadBusy(upload_id)
            # The Complete that marked it died before committing: take its work over (one taker only).
            upload = upload.model_copy(update={"completing_since": format_mtime(datetime.now(UTC))})
            try:
                revision = await self.records(bucket).update(
                    _upload_key(upload_id), upload.model_dump_json().encode(), revision
                )
            except RecordConflict:
                raise UploadBusy(upload_id) from None
            return await self._commit_plan(bucket, key, upload, revision, plan, None, condition)
        async with contextlib.AsyncExitStack() as admission:
            if condition is not None or self.store.quota_applies(bucket):
                current = await self.store.read_head(bucket, key)
                if condition is not None:  # fail fast, before the upload is marked; the commit checks again
                    self.store.check_condition(current, condition, key)
                # The parts' bytes are in the bucket already: only a new key (an object quota) or a
                # byte quota lowered below the usage refuses it.
                adds = current is None or not is_version(current.doc) or is_marker(current.doc)
                await admission.enter_async_context(self.store.admitted(bucket, 0, adds_object=adds))
            marked = await self._mark_completing(
                bucket, key, upload_id, revision, upload, requested, finalize, data_key
            )
            revision, upload, doc, parts_seen = marked
            return await self._commit_plan(bucket, key, upload, revision, doc, parts_seen, condition)

    async def _commit_plan(
        self,
        bucket: str,
        key: str,
        upload: UploadRecord,
        revision: int,
        doc: StoredObjectInfo,
        parts_seen: list[PartRecord] | None,
        condition: WriteCondition | None,
    ) -> ObjectInfo:
        if self.store.pauses.active:
            await self.store.pauses.reach("complete.marked")
        upload_id = upload.upload_id
        chosen_parts = _plan_parts(doc, upload.plan_parts)
        head = await self.store.read_head(bucket, key)
        extra = {p.nuid: [part_owner(upload_id, number)] for number, p in chosen_parts}
        try:
            info = await self.store.commit(
                bucket, key, doc, condition=condition, head=head, uid=new_uid(), claimed_uid=None, extra_owners=extra
            )
        except Exception:
            await self._reopen_unless_committed(bucket, key, upload, revision, doc)
            raise
        if self.store.pauses.active:
            await self.store.pauses.reach("complete.committed")
        await self._finish(bucket, upload, revision, info, parts_seen)
        return info

    async def _finish(
        self,
        bucket: str,
        upload: UploadRecord,
        revision: int,
        info: ObjectInfo,
        parts_seen: list[PartRecord] | None = None,
    ) -> None:
        """After the object is committed: the record a retried Complete answers from, then the upload
        goes (its parts not chosen claimed for the collector)."""
        records = self.records(bucket)
        upload_id = upload.upload_id
        chosen = _plan_parts(upload.plan, upload.plan_parts) if upload.plan is not None else []
        done = CompletedRecord(
            key=upload.key, upload_id=upload_id, etag=info.etag, version_id=info.version_id, parts=len(chosen),
            completed_at=format_mtime(datetime.now(UTC)),
        )  # fmt: skip
        key = _completed_key(upload_id)
        await records.update(key, done.model_dump_json().encode(), await records.last_revision(key))
        with contextlib.suppress(UploadNotFound):  # another Complete of it finished first
            await self._end_upload(bucket, upload_id, revision, {p.nuid for _, p in chosen}, parts_seen)

    async def _reopen_unless_committed(
        self, bucket: str, key: str, upload: UploadRecord, revision: int, plan: StoredObjectInfo
    ) -> None:
        """After a failed commit: give the upload back (the client may retry or abort) only when the
        object is certainly not there; a commit whose answer was lost may have landed, and an upload
        reopened under a live object would let an abort free that object's parts. In doubt, the
        upload stays completing: a retried Complete or the collector settles it."""
        try:
            if await self._committed_version(bucket, key, plan) is not None:
                return
            reopened = upload.model_copy(
                update={"state": OPEN, "completing_since": None, "plan": None, "plan_parts": []}
            )
            await self.records(bucket).update(
                _upload_key(upload.upload_id), reopened.model_dump_json().encode(), revision
            )
        except Exception as exc:
            log.warning("left an upload completing after a failed commit", extra={"upload_id": upload.upload_id,
                                                                                 "error": repr(exc)})  # fmt: skip

    async def _committed_version(self, bucket: str, key: str, plan: StoredObjectInfo) -> ObjectInfo | None:
        """The version of `key` a Complete made from `plan`, if it exists (its latest, or an older one)."""
        parts = (plan.metadata or {}).get(META_PARTS)
        head = await self.store.read_head(bucket, key)
        if head is not None and (head.doc.metadata or {}).get(META_PARTS) == parts and is_version(head.doc):
            return await self.store.head_object(bucket, key, s3_version_id(head.doc))
        history = await self.store.index.history(bucket)
        for uid in history.uids_newest_first(key):
            found = await self.store.read_version(bucket, key, uid)
            if found is not None and is_version(found.doc) and (found.doc.metadata or {}).get(META_PARTS) == parts:
                with contextlib.suppress(VersionNotFound):
                    return await self.store.head_object(bucket, key, s3_version_id(found.doc))
        return None

    async def _mark_completing(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        revision: int,
        upload: UploadRecord,
        requested: list[tuple[int, str]],
        finalize: Finalize,
        data_key: bytes | None,
    ) -> tuple[int, UploadRecord, StoredObjectInfo, list[PartRecord]]:
        """Choose the parts and mark the upload completing with the meta they make (the plan); also
        returns the part records as they were once marked."""
        records = self.records(bucket)
        for _ in range(CAS_RETRIES):
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
            metadata = {
                META_ETAG: multipart_etag(chosen),
                META_PARTS: encode_parts([p.ref for p in chosen]),
                META_PART_NUMBERS: encode_part_numbers([(p.number, p.checksum) for p in chosen]),
            }
            if checksum is not None:
                metadata[META_CHECKSUM] = f"{checksum[0]}:{checksum[1]}"
            if upload.encryption is not None:
                metadata[META_SSE] = _sealed_envelope(upload.encryption, chosen, data_key).to_json()
            doc = StoredObjectInfo(
                name=key,
                bucket=naming.nats_bucket(bucket),
                nuid="",  # no single chunk subject: plain Object Store clients cannot read multipart objects
                size=sum(p.size for p in chosen),
                mtime=format_mtime(datetime.now(UTC)),
                chunks=sum(p.chunks for p in chosen),
                digest="",
                headers={name: [value] for name, value in upload.headers.items()},
                metadata=metadata,
            )
            # From here on Abort and expiry keep off, and the plan keeps its parts referenced.
            marked = upload.model_copy(
                update={"state": COMPLETING, "completing_since": format_mtime(datetime.now(UTC)), "plan": doc,
                        "plan_parts": requested}
            )  # fmt: skip
            if self.store.pauses.active:
                await self.store.pauses.reach("complete.before_mark")
            try:
                marked_revision = await records.update(
                    _upload_key(upload_id), marked.model_dump_json().encode(), revision
                )
            except RecordConflict:
                raise UploadNotFound(upload_id) from None
            # A part replaced before the mark is not protected by it (its old bytes may be collected):
            # the parts must still be the ones chosen, else choose again.
            seen = await self.list_parts(bucket, upload_id)
            current = {p.number: p.nuid for p in seen}
            if all(current.get(p.number) == p.nuid for p in chosen):
                return marked_revision, marked, doc, seen
            try:
                revision = await records.update(_upload_key(upload_id), upload.model_dump_json().encode(),
                                                marked_revision)  # fmt: skip
            except RecordConflict:
                raise UploadNotFound(upload_id) from None
        raise WriteConflict(upload_id)

    async def _already_completed(
        self, bucket: str, key: str, upload_id: str, requested: list[tuple[int, str]]
    ) -> ObjectInfo:
        """A retried Complete of an upload that completed: the same answer, while that version exists."""
        _, done = await self._read(bucket, upload_id, _completed_key(upload_id), CompletedRecord)
        if done.key != key or done.parts != len(requested):
            raise UploadNotFound(upload_id)
        try:
            info = await self.store.head_object(bucket, key, done.version_id)
        except (ObjectNotFound, VersionNotFound):
            raise UploadNotFound(upload_id) from None
        if info.etag != done.etag:
            raise UploadNotFound(upload_id)
        return info

    async def count_in_progress(self, bucket: str | None = None) -> int:
        """Uploads in progress in one bucket, or in all."""
        kv = self.store.configs.records
        where = upload_prefix(kv.prefix, bucket) if bucket is not None else f"{kv.prefix}mp.*."
        info = await self.store._api(f"STREAM.INFO.{kv.stream}", {"subjects_filter": f"{where}U.>"})
        return len((info.get("state") or {}).get("subjects") or {})

    async def in_progress_by_bucket(self) -> dict[str, int]:
        """Uploads in progress per bucket (S3 names), from one read of the KV's subjects."""
        kv = self.store.configs.records
        base = f"{kv.prefix}mp."
        info = await self.store._api(f"STREAM.INFO.{kv.stream}", {"subjects_filter": f"{base}*.U.>"})
        counts: dict[str, int] = {}
        for subject in (info.get("state") or {}).get("subjects") or {}:
            name = naming.s3_bucket(subject[len(base) :].partition(".")[0])
            if name is not None:
                counts[name] = counts.get(name, 0) + 1
        return counts

    async def check_deletable(self, bucket: str) -> None:
        """Before its bucket goes: an upload being completed makes it BucketNotEmpty (an object is on
        its way); uploads merely open go with the bucket."""
        for record in await self.records(bucket).scan("U."):
            if _parse(UploadRecord, record.value, record.key).state == COMPLETING:
                raise BucketNotEmpty(bucket)

    async def forget_bucket(self, bucket: str) -> None:
        """After its bucket went: its uploads' records (their parts' chunks went with its stream)."""
        kv = self.store.configs.records
        resp = await self.store._api(f"STREAM.PURGE.{kv.stream}", {"filter": f"{upload_prefix(kv.prefix, bucket)}>"})
        if err := resp.get("error"):
            raise StoreUnavailable(f"forgetting the uploads of {bucket}: {err.get('description')}")

    async def forget_deleted_buckets(self) -> None:
        """Drop the records of uploads whose bucket is gone (one created while its bucket was deleted)."""
        kv = self.store.configs.records
        info = await self.store._api(f"STREAM.INFO.{kv.stream}", {"subjects_filter": f"{kv.prefix}mp.>"})
        subjects = (info.get("state") or {}).get("subjects") or {}
        nats_names = {subject[len(kv.prefix) :].split(".")[1] for subject in subjects}
        # Buckets listed after the records were: a record's bucket existed before the record did.
        existing = {naming.nats_bucket(b.name) for b in await self.store.list_buckets()}
        for nb in nats_names - existing:
            resp = await self.store._api(f"STREAM.PURGE.{kv.stream}", {"filter": f"{kv.prefix}mp.{nb}.>"})
            if err := resp.get("error"):
                raise StoreUnavailable(f"forgetting uploads of {nb}: {err.get('description')}")

    async def expire(self, bucket: str, max_age: timedelta) -> int:
        """Abort the bucket's uploads past their expiry (or, without one recorded, initiated longer than
        `max_age` ago), settle the ones whose Complete died, and drop old completion records. Run by
        the collector under its lease."""
        records = self.records(bucket)
        now = datetime.now(UTC)
        aborted = 0
        for record in await records.scan("D."):
            done: CompletedRecord = _parse(CompletedRecord, record.value, record.key)
            if now - parse_mtime(done.completed_at) > COMPLETED_KEEP:
                tomb = await records.delete(record.key, record.revision)
                await records.purge_through(record.key, tomb)
        for record in await records.scan("U."):
            upload: UploadRecord = _parse(UploadRecord, record.value, record.key)
            try:
                expires = parse_mtime(upload.expires) if upload.expires else upload.initiated_at + max_age
                if upload.state == OPEN and now > expires:
                    await self._end_upload(bucket, upload.upload_id, record.revision, keep=set())
                    aborted += 1
                elif upload.state == COMPLETING and now - parse_mtime(upload.completing_since or "") > COMPLETE_STALE:
                    await self._settle_dead_complete(bucket, upload, record.revision)
            except (UploadNotFound, RecordConflict):
                continue  # changed meanwhile: looked at again next time
        return aborted

    async def _settle_dead_complete(self, bucket: str, upload: UploadRecord, revision: int) -> None:
        """An upload whose Complete died after marking it: if the object was committed, it keeps its
        parts; if not, the upload is aborted."""
        committed = await self._committed_version(bucket, upload.key, upload.plan) if upload.plan else None
        log.warning(
            "settling an upload whose Complete did not finish",
            extra={"upload_id": upload.upload_id, "committed": committed is not None},
        )
        if committed is not None:
            await self._finish(bucket, upload, revision, committed)
        else:
            await self._end_upload(bucket, upload.upload_id, revision, keep=set())


def _sealed_envelope(envelope: Envelope, parts: list[PartRecord], data_key: bytes | None) -> Envelope:
    """The envelope an encrypted upload's object keeps: the MAC of its whole layout where the data key
    is at hand, otherwise the MACs its parts were written with."""
    if data_key is not None:
        layout = [(p.nuid, p.size, p.chunk_size, p.chunks) for p in parts]
        return envelope.model_copy(update={"layout": layout_mac(data_key, sum(p.size for p in parts), layout)})
    if any(p.mac is None for p in parts):
        raise UnreadableRecord("an encrypted upload's part has no MAC")
    return envelope.model_copy(update={"part_macs": [p.mac for p in parts]})


def _plan_parts(doc: StoredObjectInfo, numbers: list[tuple[int, str]]) -> list[tuple[int, PartRef]]:
    """(part number, where its bytes are) of the parts a Complete chose, in order."""
    refs = decode_parts((doc.metadata or {}).get(META_PARTS, ""))
    return [(number, ref) for (number, _), ref in zip(numbers, refs, strict=False)]
