"""Writing versions: PUT, delete, delete of one version, metadata changes, in every versioning state.

Every change of a key goes through a compare-and-set on its latest-version (meta) subject, so writers
of one key serialise there, and the steps around it are ordered so that a crash or a lost race in
between leaves nothing wrong, only something for the collector:

- a version that stops being the latest is copied to its version subject *before* the meta changes
  (a copy that lost the race is the same version, found again by the winner);
- a version that is permanently deleted gets a tombstone on its version subject *before* the meta
  stops naming it (so no racing writer copies it back), and a change to an older version is
  followed by a no-op rewrite of the meta, so a writer promoting that version from a stale read
  fails its compare-and-set and reads again;
- chunks that lose their last reference are claimed (store/claims.py) before the reference goes.

The null version kept among older versions is named by the latest version's `s3-nullv`; clearing
that pointer is what removes it, atomically with the compare-and-set.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import NamedTuple

from nats.aio.client import Client as NatsClient
from nats.nuid import NUID

from ..crypto.chunk_cipher import TAG_SIZE, ChunkCipher, hidden_etag, layout_mac
from . import naming
from .bucket_config import BucketConfigs
from .chunks import ChunkWriter, WrittenChunks
from .claims import ClaimBatch, ClaimSpec, Owner, send_claims, version_owner, write_claim
from .errors import (
    BucketBusy,
    BucketNotFound,
    ObjectNotFound,
    PreconditionFailed,
    StoreUnavailable,
    UnreadableRecord,
    VersionIsDeleteMarker,
    VersionNotFound,
    WriteConflict,
)
from .fence import ERR_MESSAGE_TOO_BIG, wait_unfenced
from .jsapi import ERR_WRONG_LAST_SEQUENCE
from .list_index import ListIndex
from .models import (
    META_CHECKSUM,
    META_ETAG,
    META_SEQS,
    META_SSE,
    BodyDigests,
    Checksum,
    ObjectInfo,
    Sealing,
    StoredObjectInfo,
    StoredOptions,
    WriteCondition,
    chunk_nuids,
    encode_seq_runs,
    format_mtime,
    parse_mtime,
    to_object_info,
)
from .owner_quotas import OwnerQuotas
from .pauses import PausePoints
from .publisher import NoStream, PendingAck, Publisher, PublishRejected
from .quotas import QuotaEnforcer, refusal
from .versions import (
    META_GONE,
    META_MARKER,
    META_NULL,
    META_NULLV,
    META_VID,
    NULL,
    Versioning,
    effective_versioning,
    is_gone,
    is_marker,
    is_null,
    is_version,
    new_uid,
    nullv_of,
    s3_version_id,
    uid_of,
)

COMMIT_RETRIES = 16
COPY_RETRIES = 4
# Room left in a NATS message beside a sealed chunk (its headers, none today, and the protocol line).
SEALED_CHUNK_HEADROOM = 1024

BeforeCommit = Callable[[BodyDigests], Awaitable[Checksum | None]]
HeadersChange = Callable[[dict[str, str]], dict[str, str]]


class Head(NamedTuple):
    """The last message on a meta or version subject: its stream sequence and document."""

    seq: int
    doc: StoredObjectInfo


class DeleteResult(NamedTuple):
    version_id: str | None  # the version deleted or the marker made ("null" included); None: no versions here
    delete_marker: bool
    seq: int = 0  # stream sequence of the change made (what orders it among the key's changes); 0: none


def digest_string(sha256: bytes) -> str:
    return "SHA-256=" + base64.urlsafe_b64encode(sha256).decode()


def _with_meta(doc: StoredObjectInfo, updates: dict[str, str | None]) -> StoredObjectInfo:
    meta = dict(doc.metadata or {})
    for name, value in updates.items():
        if value is None:
            meta.pop(name, None)
        else:
            meta[name] = value
    return doc.model_copy(update={"metadata": meta})


def stamped(doc: StoredObjectInfo, uid: str, null: bool, nullv: str | None) -> StoredObjectInfo:
    """`doc` as the key's latest version `uid`, naming the null version kept among older ones."""
    return _with_meta(doc, {META_VID: uid, META_NULL: "1" if null else None, META_NULLV: nullv})


def history_doc(doc: StoredObjectInfo) -> StoredObjectInfo:
    """A latest version as it is kept on its version subject (key-level fields dropped, uid written out)."""
    return _with_meta(doc, {META_VID: uid_of(doc), META_NULL: "1" if is_null(doc) else None, META_NULLV: None})


def _marker_doc(nats_bucket: str, key: str, uid: str, null: bool, nullv: str | None) -> StoredObjectInfo:
    meta = {META_VID: uid, META_MARKER: "1"}
    if null:
        meta[META_NULL] = "1"
    if nullv:
        meta[META_NULLV] = nullv
    return StoredObjectInfo(
        name=key, bucket=nats_bucket, deleted=True, mtime=format_mtime(datetime.now(UTC)), metadata=meta
    )


def _os_deletion(nats_bucket: str, key: str) -> StoredObjectInfo:
    """What a delete leaves where there are no versions: the Object Store's own deletion mark."""
    return StoredObjectInfo(name=key, bucket=nats_bucket, deleted=True, mtime=format_mtime(datetime.now(UTC)))


def _tombstone(nats_bucket: str, key: str, uid: str) -> StoredObjectInfo:
    return StoredObjectInfo(name=key, bucket=nats_bucket, deleted=True, metadata={META_VID: uid, META_GONE: "1"})


def info_of(head: Head, key: str, bucket: str, *, latest: bool) -> ObjectInfo:
    doc = head.doc
    return to_object_info(
        doc, key, bucket, head.seq, uid=uid_of(doc), version_id=s3_version_id(doc), is_latest=latest,
        delete_marker=is_marker(doc),
    )  # fmt: skip


def live_in_history(doc: StoredObjectInfo, latest: StoredObjectInfo | None) -> bool:
    """Whether a version-subject document is a version S3 still shows (a null one only while named)."""
    if not is_version(doc):
        return False
    return not is_null(doc) or (latest is not None and nullv_of(latest) == uid_of(doc))


class VersionedWrites:
    """The write half of the store; NatsStore supplies the connection, configuration and indexes."""

    nc: NatsClient
    publisher: Publisher
    configs: BucketConfigs
    index: ListIndex
    pauses: PausePoints
    quotas: QuotaEnforcer
    owner_quotas: OwnerQuotas
    nuid: NUID
    chunk_size: int
    write_window: int
    claim_refresh: float  # seconds between fresh claims of a write in progress (0: none)

    # Provided by NatsStore.
    async def read_head(self, bucket: str, key: str) -> Head | None:
        raise NotImplementedError

    async def read_version(self, bucket: str, key: str, uid: str) -> Head | None:
        raise NotImplementedError

    async def ensure_ready(self, bucket: str) -> None:
        raise NotImplementedError

    # ---- quotas -----------------------------------------------------------------------------

    def quota_applies(self, bucket: str) -> bool:
        config = self.configs.cached(bucket)
        return (
            (config is not None and config.quota is not None)
            or bool(self.quotas.total_max_bytes)
            or self.owner_quotas.maybe_any
        )

    def admitted(self, bucket: str, size: int | None, *, adds_object: bool) -> AbstractAsyncContextManager[None]:
        """The quotas' admission of a write (store/quotas.py): QuotaExceeded, or its place held while it
        runs. Costs nothing where no quota applies."""
        if not self.quota_applies(bucket):
            return contextlib.nullcontext()
        config = self.configs.cached(bucket)
        return self.quotas.admit(bucket, config.quota if config else None, size, adds_object=adds_object)

    # ---- chunks -----------------------------------------------------------------------------

    @property
    def sealed_chunk_size(self) -> int:
        """The plaintext in one chunk of an encrypted object: the chunk size, less what sealing adds
        where a sealed chunk would not fit in a NATS message."""
        room = (self.nc.max_payload or self.chunk_size + TAG_SIZE) - TAG_SIZE - SEALED_CHUNK_HEADROOM
        return max(1024, min(self.chunk_size, room))

    def new_nuid(self) -> str:
        return self.nuid.next().decode()

    async def write_chunks(
        self,
        bucket: str,
        body: AsyncIterator[bytes],
        *,
        nuid: str,
        key: str | None,
        owners: list[Owner],
        sha256: bool = True,
        data_key: bytes | None = None,
    ) -> WrittenChunks:
        """Stream a body onto chunk subject `nuid` of the bucket, claimed for `owners` before its first
        chunk. `sha256`: whether its SHA-256 is computed (an object's digest needs it; a part may not).
        `data_key`: seal each chunk under it (crypto/chunk_cipher.py), in chunks of `sealed_chunk_size`."""
        nb = naming.nats_bucket(bucket)

        async def intent() -> PendingAck:
            return await write_claim(self.publisher, nb, nuid, key, owners)

        seal = ChunkCipher(data_key, nuid).seal if data_key is not None else None
        writer = ChunkWriter(
            self.publisher, naming.chunk_subject(nb, nuid), naming.stream_name(nb),
            self.chunk_size if data_key is None else self.sealed_chunk_size, self.write_window, intent,
            sha256=sha256, seal=seal,
        )  # fmt: skip
        try:
            return await writer.write_all(body)
        except BucketBusy:
            # A DeleteBucket's fence refused the chunks: this write fails (409), but first wait for the
            # fence to go (and lift it, if the gateway that raised it died) so that a retry can succeed.
            await wait_unfenced(self.nc, naming.stream_name(nb))
            raise

    @contextlib.asynccontextmanager
    async def claimed_while_writing(
        self, bucket: str, nuid: str, key: str | None, owners: list[Owner]
    ) -> AsyncIterator[None]:
        """Keep a write's chunks claimed afresh while it runs (body and commit): however long the
        client stalls, or a fence holds the commit, the collector sees a claim younger than its grace
        and leaves the chunks alone."""
        if self.claim_refresh <= 0:
            yield
            return
        nb = naming.nats_bucket(bucket)
        loop = self.publisher.loop or asyncio.get_running_loop()
        running: list[asyncio.Task[None]] = []
        timer: asyncio.TimerHandle | None = None

        async def refresh() -> None:
            with contextlib.suppress(Exception):  # the intent stands; a refresh is extra margin
                await (await write_claim(self.publisher, nb, nuid, key, owners)).wait()

        def due() -> None:
            nonlocal timer
            running[:] = [t for t in running if not t.done()]
            running.append(loop.create_task(refresh()))
            timer = loop.call_later(self.claim_refresh, due)

        # A timer, not a task: most writes end long before the first refresh, and cost only this.
        timer = loop.call_later(self.claim_refresh, due)
        try:
            yield
        finally:
            timer.cancel()
            for task in running:
                task.cancel()

    async def _claim(self, bucket: str, key: str, doc: StoredObjectInfo, owners: list[Owner]) -> ClaimBatch:
        """Claim the chunks of `doc` (a version about to lose a reference) for `owners`. A version
        without chunks (a delete marker) is claimed under its uid, so that the collector, once it is
        gone, also removes the tombstone it leaves."""
        specs = [ClaimSpec(nuid, key, owners) for nuid in chunk_nuids(doc) or [uid_of(doc)]]
        return await send_claims(self.publisher, naming.nats_bucket(bucket), specs)

    # ---- publishing ---------------------------------------------------------------------------

    async def _publish_cas(
        self, bucket: str, subject: str, doc: StoredObjectInfo, expected: int | None, *, rollup: bool = True
    ) -> int | None:
        """Publish a document on `subject` if its last sequence is still `expected` (None: unconditionally).

        Returns the new sequence, or None when another writer got there first. Waits out the fence of
        a DeleteBucket in progress.
        """
        payload = doc.model_dump_json(exclude_none=True).encode()
        headers: dict[str, str] = {}
        if rollup:
            headers["Nats-Rollup"] = "sub"
        if expected is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
        stream = naming.stream_name(naming.nats_bucket(bucket))
        retried_unfenced = False
        while True:
            try:
                return (await self.publisher.request(subject, payload, headers)).seq
            except PublishRejected as exc:
                if exc.err_code == ERR_WRONG_LAST_SEQUENCE:
                    return None
                if (full := refusal(exc.err_code, exc.description, stream)) is not None:
                    raise full from exc
                # A DeleteBucket's fence (store/fence.py): wait for its outcome, then try again.
                if exc.err_code == ERR_MESSAGE_TOO_BIG and (
                    await wait_unfenced(self.nc, stream) or not retried_unfenced
                ):
                    retried_unfenced = True
                    continue
                raise StoreUnavailable(f"publish to {subject}: {exc.description}") from exc
            except NoStream:
                raise BucketNotFound(bucket) from None

    async def _cas_meta(self, bucket: str, key: str, doc: StoredObjectInfo, expected: int) -> int | None:
        return await self._publish_cas(bucket, naming.meta_subject(naming.nats_bucket(bucket), key), doc, expected)

    async def _copy_to_history(self, bucket: str, key: str, doc: StoredObjectInfo) -> None:
        """Keep the latest version on its version subject before it stops being the latest.

        The latest version's document is the authority while it is the latest, so an existing copy
        (from an earlier promotion) is brought up to date; a tombstone means the version is being
        deleted, and is left alone.
        """
        nb = naming.nats_bucket(bucket)
        uid = uid_of(doc)
        subject = naming.version_subject(nb, key, uid)
        record = history_doc(doc)
        expected = 0
        for _ in range(COPY_RETRIES):
            if await self._publish_cas(bucket, subject, record, expected) is not None:
                return
            found = await self.read_version(bucket, key, uid)
            if found is not None and is_gone(found.doc):
                return
            expected = found.seq if found is not None else 0
        raise WriteConflict(key)

    async def _tombstone_version(self, bucket: str, key: str, uid: str) -> int:
        nb = naming.nats_bucket(bucket)
        subject = naming.version_subject(nb, key, uid)
        return await self._publish_cas(bucket, subject, _tombstone(nb, key, uid), None) or 0  # unconditional: a seq

    async def _bump_head(
        self, bucket: str, key: str, head: Head, change: Callable[[StoredObjectInfo], StoredObjectInfo] | None = None
    ) -> bool:
        doc = change(head.doc) if change is not None else head.doc
        return await self._cas_meta(bucket, key, doc, head.seq) is not None

    async def _replace(
        self,
        bucket: str,
        key: str,
        head: Head | None,
        doc: StoredObjectInfo,
        replaced: StoredObjectInfo | None,
        retired_null: str | None,
    ) -> int | None:
        """Compare-and-set the latest version to `doc`, claiming the chunks of the version it drops
        (`replaced`: the latest itself, or the older null version `retired_null`) ahead of it."""
        claims = None
        if replaced is not None:
            owners = [version_owner(retired_null or uid_of(replaced))]
            claims = await self._claim(bucket, key, replaced, owners)
        seq = await self._cas_meta(bucket, key, doc, head.seq if head is not None else 0)
        if claims is not None:
            await claims.confirm()
        return seq

    # ---- put ------------------------------------------------------------------------------------

    @staticmethod
    def check_condition(head: Head | None, condition: WriteCondition, key: str) -> None:
        live = head is not None and is_version(head.doc) and not is_marker(head.doc)
        current = to_object_info(head.doc, key, "", head.seq).etag if head is not None and live else None
        if current is not None and condition.if_none_match in ("*", current):
            raise PreconditionFailed(key)
        if condition.if_match is not None:
            if current is None:
                raise ObjectNotFound(key)
            if condition.if_match != "*" and condition.if_match != current:
                raise PreconditionFailed(key)

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: AsyncIterator[bytes],
        headers: dict[str, str],
        *,
        before_commit: BeforeCommit | None = None,
        condition: WriteCondition | None = None,
        size: int | None = None,
        sealing: Sealing | None = None,
        sha256: bool = True,
    ) -> ObjectInfo:
        """Stream `body` into new chunks, then make them the key's latest version.

        Nothing is visible until the meta lands. A failure anywhere leaves the previous version as it
        was and the new chunks to the collector. `before_commit` sees the body's digests and may
        refuse the write by raising; it returns the checksum to record, if any. `size`: the body's
        length where known, checked against the quotas (QuotaExceeded) before a byte is read.
        `sealing`: encrypt the bytes under its data key (the meta then keeps no plaintext digest).
        `sha256`: whether `before_commit` needs the body's SHA-256 where the object is sealed (an
        unsealed object always has it, as its Object Store digest).
        """
        await self.ensure_ready(bucket)
        # Fails fast on a missing bucket or an unmet condition, before any body byte is read.
        head = await self.read_head(bucket, key)
        if condition is not None:
            self.check_condition(head, condition, key)
        latest = head.doc if head is not None and is_version(head.doc) else None
        uid = new_uid(after=uid_of(latest) if latest is not None else None)
        nuid = self.new_nuid()
        owners = [version_owner(uid)]
        async with (
            self.admitted(bucket, size, adds_object=latest is None or is_marker(latest)),
            self.claimed_while_writing(bucket, nuid, key, owners),
        ):
            written = await self.write_chunks(
                bucket, body, nuid=nuid, key=key, owners=owners, sha256=sha256 or sealing is None,
                data_key=sealing.data_key if sealing is not None else None,
            )  # fmt: skip
            return await self._commit_written(
                bucket, key, headers, nuid, written, uid, head, before_commit, condition, sealing
            )

    async def _commit_written(
        self,
        bucket: str,
        key: str,
        headers: dict[str, str],
        nuid: str,
        written: WrittenChunks,
        uid: str,
        head: Head | None,
        before_commit: BeforeCommit | None,
        condition: WriteCondition | None,
        sealing: Sealing | None = None,
    ) -> ObjectInfo:
        checksum = None
        if before_commit is not None:
            checksum = await before_commit(BodyDigests(written.size, written.md5, written.sha256))
        metadata = {META_ETAG: written.md5.hex(), META_SEQS: encode_seq_runs(written.runs)}
        if checksum is not None:
            metadata[META_CHECKSUM] = f"{checksum[0]}:{checksum[1]}"
        chunk_size = self.chunk_size
        digest = digest_string(written.sha256)
        if sealing is not None:
            # No digest or MD5 of the plaintext in NATS where S3 hides it: either would confirm a
            # guess of the content to whoever reads the stream.
            chunk_size, digest = self.sealed_chunk_size, ""
            dk = sealing.data_key
            if sealing.envelope.hides_md5:
                metadata[META_ETAG] = hidden_etag(dk, written.md5)
            layout = layout_mac(dk, written.size, [(nuid, written.size, chunk_size, written.chunks)])
            metadata[META_SSE] = sealing.envelope.model_copy(update={"layout": layout}).to_json()
        doc = StoredObjectInfo(
            name=key,
            bucket=naming.nats_bucket(bucket),
            nuid=nuid,
            size=written.size,
            mtime=format_mtime(datetime.now(UTC)),
            chunks=written.chunks,
            digest=digest,
            headers={name: [value] for name, value in headers.items()},
            metadata=metadata,
            options=StoredOptions(max_chunk_size=chunk_size),
        )
        if self.pauses.active:
            await self.pauses.reach("put.before_commit")
        return await self.commit(bucket, key, doc, condition=condition, head=head, uid=uid, claimed_uid=uid)

    async def commit(
        self,
        bucket: str,
        key: str,
        doc: StoredObjectInfo,
        *,
        condition: WriteCondition | None,
        head: Head | None,
        uid: str,
        claimed_uid: str | None,
        extra_owners: dict[str, list[Owner]] | None = None,
    ) -> ObjectInfo:
        """Make `doc` the key's latest version, as the bucket's versioning state says.

        `head` is the latest version as last read. The new chunks are claimed for version
        `claimed_uid` already (by their intent) unless it is None; `extra_owners` names who else may
        hold them (the parts of a multipart upload), for the claims this writes.
        """
        nb = naming.nats_bucket(bucket)
        extras = extra_owners or {}
        new_nuids = chunk_nuids(doc)
        # A latest version read before a long body may be stale. Where versions are kept it would be
        # copied to its version subject: read it again, lest a version deleted meanwhile (its tombstone
        # collected since) come back. Where they are not, the compare-and-set alone is enough.
        stale = head is not None and (
            effective_versioning(self.configs.versioning(bucket), head.doc) is not Versioning.NEVER
        )
        for attempt in range(COMMIT_RETRIES):
            if attempt or stale:
                head = await self.read_head(bucket, key)
            if condition is not None:
                self.check_condition(head, condition, key)
            latest = head.doc if head is not None and is_version(head.doc) else None
            mode = effective_versioning(self.configs.versioning(bucket), head.doc if head is not None else None)
            if latest is not None and uid <= uid_of(latest):
                uid = new_uid(after=uid_of(latest))  # another writer got a later id meanwhile
            new_claims: ClaimBatch | None = None
            if uid != claimed_uid:
                specs = [ClaimSpec(n, key, [version_owner(uid), *extras.get(n, [])]) for n in new_nuids]
                new_claims = await send_claims(self.publisher, nb, specs)
                claimed_uid = uid
            replaced: StoredObjectInfo | None = None  # chunks this change unreferences
            retired_null: str | None = None  # an older null version this change removes
            nullv: str | None = None
            if mode is Versioning.NEVER or (mode is Versioning.SUSPENDED and latest is not None and is_null(latest)):
                replaced = latest
            elif latest is not None:
                await self._copy_to_history(bucket, key, latest)
                if mode is Versioning.ENABLED:
                    nullv = uid_of(latest) if is_null(latest) else nullv_of(latest)
                else:
                    retired_null = nullv_of(latest)
            if retired_null is not None:
                found = await self.read_version(bucket, key, retired_null)
                replaced = found.doc if found is not None and is_version(found.doc) else None
            new_doc = stamped(doc, uid, null=mode is not Versioning.ENABLED, nullv=nullv)
            if self.pauses.active:
                await self.pauses.reach("commit.before_cas")
            seq = await self._replace(bucket, key, head, new_doc, replaced, retired_null)
            if new_claims is not None:
                await new_claims.confirm()
            if seq is None:
                continue
            if self.pauses.active:
                await self.pauses.reach("commit.after_cas")
            if retired_null is not None:
                await self._tombstone_version(bucket, key, retired_null)
            return info_of(Head(seq, new_doc), key, bucket, latest=True)
        if condition is not None:
            raise PreconditionFailed(key)
        raise WriteConflict(key)

    # ---- delete ---------------------------------------------------------------------------------

    async def delete_object(self, bucket: str, key: str, version_id: str | None = None) -> DeleteResult:
        """DELETE: a delete marker where versioning is on, the object itself where it never was; with
        `version_id`, that version, permanently."""
        await self.ensure_ready(bucket)
        if version_id is not None:
            return await self._delete_version(bucket, key, version_id)
        nb = naming.nats_bucket(bucket)
        for _ in range(COMMIT_RETRIES):
            head = await self.read_head(bucket, key)
            latest = head.doc if head is not None and is_version(head.doc) else None
            mode = effective_versioning(self.configs.versioning(bucket), head.doc if head is not None else None)
            if mode is Versioning.NEVER:
                if head is None or latest is None:
                    return DeleteResult(None, False)
                claims = await self._claim(bucket, key, latest, [version_owner(uid_of(latest))])
                seq = await self._cas_meta(bucket, key, _os_deletion(nb, key), head.seq)
                await claims.confirm()
                if seq is None:
                    continue
                return DeleteResult(None, False, seq)
            uid = new_uid(after=uid_of(latest) if latest is not None else None)
            null = mode is Versioning.SUSPENDED
            nullv: str | None = None
            replaced: StoredObjectInfo | None = None
            retired_null: str | None = None
            if null and latest is not None and is_null(latest):
                replaced = latest
            elif latest is not None:
                await self._copy_to_history(bucket, key, latest)
                if null:
                    retired_null = nullv_of(latest)
                else:
                    nullv = uid_of(latest) if is_null(latest) else nullv_of(latest)
            if retired_null is not None:
                found = await self.read_version(bucket, key, retired_null)
                replaced = found.doc if found is not None and is_version(found.doc) else None
            marker = _marker_doc(nb, key, uid, null, nullv)
            seq = await self._replace(bucket, key, head, marker, replaced, retired_null)
            if seq is None:
                continue
            if retired_null is not None:
                await self._tombstone_version(bucket, key, retired_null)
            return DeleteResult(NULL if null else uid, True, seq)
        raise WriteConflict(key)

    async def _delete_version(self, bucket: str, key: str, version_id: str) -> DeleteResult:
        deleted: StoredObjectInfo | None = None
        for _ in range(COMMIT_RETRIES):
            head = await self.read_head(bucket, key)
            latest = head.doc if head is not None and is_version(head.doc) else None
            if head is not None and latest is not None and s3_version_id(latest) == version_id:
                if seq := await self._delete_latest(bucket, key, head):
                    return DeleteResult(version_id, is_marker(latest), seq)
                continue
            uid = (nullv_of(latest) if latest is not None else None) if version_id == NULL else version_id
            found = await self.read_version(bucket, key, uid) if uid is not None else None
            if uid is None or found is None or not live_in_history(found.doc, latest):
                return DeleteResult(version_id, is_marker(deleted) if deleted is not None else False)
            deleted = found.doc
            claims = await self._claim(bucket, key, found.doc, [version_owner(uid)])

            if version_id == NULL:
                # Clearing the latest version's pointer removes the null version in one step.
                assert head is not None
                ok = await self._bump_head(bucket, key, head, lambda d: _with_meta(d, {META_NULLV: None}))
                await claims.confirm()
                if not ok:
                    continue
                seq = await self._tombstone_version(bucket, key, uid)
            else:
                seq = await self._tombstone_version(bucket, key, uid)
                await claims.confirm()
                if head is not None and not await self._bump_head(bucket, key, head):
                    continue  # the latest changed: look again (it may be this very version now)
            return DeleteResult(version_id, is_marker(found.doc), seq)
        raise WriteConflict(key)

    async def _delete_latest(self, bucket: str, key: str, head: Head) -> int | None:
        """Permanently delete the latest version: the newest older one becomes the latest. Returns
        the sequence of the change, None when the latest changed meanwhile."""
        doc = head.doc
        uid = uid_of(doc)
        nb = naming.nats_bucket(bucket)
        mode = effective_versioning(self.configs.versioning(bucket), doc)
        claims = await self._claim(bucket, key, doc, [version_owner(uid)])
        successor: Head | None = None
        if mode is not Versioning.NEVER:
            successor = await self._newest_older(bucket, key, exclude=uid, nullv=nullv_of(doc))
        if successor is None:
            new_doc = _os_deletion(nb, key)
        else:
            keep = nullv_of(doc)
            if is_null(successor.doc) or keep == uid_of(successor.doc):
                keep = None
            new_doc = _with_meta(history_doc(successor.doc), {META_NULLV: keep})
        if self.pauses.active:
            await self.pauses.reach("delete_latest.before_cas")
        seq = await self._cas_meta(bucket, key, new_doc, head.seq)
        await claims.confirm()
        if seq is None:
            return None
        # Only once it is no longer the latest: a tombstone on a version that stays (a delete that
        # failed before its compare-and-set) would make the next writer drop it. A writer that read
        # it as the latest and copies it now loses its own compare-and-set and reads again; a copy
        # made just before stays a tombstone, written here after it.
        if mode is not Versioning.NEVER:
            await self._tombstone_version(bucket, key, uid)
        return seq

    async def _newest_older(self, bucket: str, key: str, *, exclude: str, nullv: str | None) -> Head | None:
        """The newest version of `key` kept on a version subject, read from the stream leader."""
        history = await self.index.history(bucket)
        for uid in history.uids_newest_first(key):
            if uid == exclude:
                continue
            found = await self.read_version(bucket, key, uid)
            if found is None or not is_version(found.doc):
                continue
            if is_null(found.doc) and uid != nullv:
                continue
            return found
        return None

    # ---- metadata -------------------------------------------------------------------------------

    async def update_headers(
        self, bucket: str, key: str, change: HeadersChange, version_id: str | None = None
    ) -> ObjectInfo:
        """Rewrite one version's stored headers in place (same bytes, same ETag), compare-and-set."""
        await self.ensure_ready(bucket)

        def rewrite(doc: StoredObjectInfo) -> StoredObjectInfo:
            current = {name.lower(): values[0] for name, values in (doc.headers or {}).items() if values}
            return doc.model_copy(update={"headers": {n: [v] for n, v in change(current).items()}})

        for _ in range(COMMIT_RETRIES):
            head = await self.read_head(bucket, key)
            latest = head.doc if head is not None and is_version(head.doc) else None
            if version_id is None or (latest is not None and s3_version_id(latest) == version_id):
                if head is None or latest is None:
                    raise ObjectNotFound(key) if version_id is None else VersionNotFound(key)
                if is_marker(latest):
                    if version_id is None:
                        raise ObjectNotFound(key)
                    raise VersionIsDeleteMarker(key, version_id, parse_mtime(latest.mtime))
                updated = rewrite(latest)
                if (seq := await self._cas_meta(bucket, key, updated, head.seq)) is not None:
                    return info_of(Head(seq, updated), key, bucket, latest=True)
                continue
            uid = (nullv_of(latest) if latest is not None else None) if version_id == NULL else version_id
            found = await self.read_version(bucket, key, uid) if uid is not None else None
            if found is None or not live_in_history(found.doc, latest):
                raise VersionNotFound(key)
            if is_marker(found.doc):
                raise VersionIsDeleteMarker(key, version_id, parse_mtime(found.doc.mtime))
            updated = rewrite(found.doc)
            subject = naming.version_subject(naming.nats_bucket(bucket), key, uid_of(found.doc))
            seq = await self._publish_cas(bucket, subject, updated, found.seq)
            if seq is None:
                continue
            if head is not None and not await self._bump_head(bucket, key, head):
                continue  # it may have just become the latest, from the old document: apply it there too
            return info_of(Head(seq, updated), key, bucket, latest=False)
        raise WriteConflict(key)


def parse_doc(data: bytes, what: str) -> StoredObjectInfo:
    try:
        return StoredObjectInfo.model_validate_json(data)
    except ValueError as exc:
        raise UnreadableRecord(what) from exc
