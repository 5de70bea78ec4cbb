"""The collector: the one place chunks are freed, by one gateway at a time (it holds a lease).

Requests leave claims (store/claims.py); a pass walks each bucket's claims oldest first and, for each
chunk subject whose newest claim is older than the grace period, asks every owner the claims name
whether it still references those chunks: a version of a key (its meta or version subject), or a
part of an upload (its part record, or the plan of a Complete in progress). Only when none does, and
no chunk was written within the grace period either, are the chunks purged; either way the claims
are then dropped. Each check reads a handful of records by name, so a pass costs what it collects,
not what the bucket holds. A record that does not parse stops the bucket's collection (logged, and
in the metrics) instead of being guessed at. Multipart expiry runs here too, under the same lease.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client as NatsClient
from pydantic import ValidationError

from . import naming
from .claims import Claim, Owner
from .errors import BucketNotFound, CorruptObject, StoreUnavailable, UnreadableRecord
from .jsapi import API_PREFIX, ERR_NO_MESSAGE, ERR_STREAM_NOT_FOUND, js_request
from .lease import Lease
from .models import chunk_nuids, parse_mtime
from .multipart import COMPLETING, OPEN, MultipartStore, PartRecord, UploadRecord
from .nats_store import NatsStore
from .records import RecordConflict
from .versions import is_gone, is_version, uid_of
from .writes import Head, live_in_history

log = logging.getLogger("nats_s3.store.collector")

BATCH = 256  # claims fetched per request
PASS_BUDGET = 4096  # chunk subjects settled per bucket per pass
BEHIND_PAUSE = 0.05  # seconds between passes while work is left over
CONCURRENCY = 64  # chunk subjects checked at once
READ_TIMEOUT = 10.0
KEPT, FREED, DEFERRED = "kept", "freed", "deferred"
EXPIRY_EVERY = 5.0  # seconds between multipart expiry sweeps
# The leader's record of its last pass in the gateway's KV (`nats-s3 admin gc status` reads it).
STATUS_KEY = "gc.status"


@dataclass
class CollectorStats:
    passes: int = 0
    freed_subjects: int = 0
    settled_claims: int = 0
    expired_uploads: int = 0
    renewed_snapshots: int = 0  # listing index snapshots kept young for buckets no gateway lists
    blocked: dict[str, str] = field(default_factory=dict)  # bucket -> the record that stopped it
    lease_held: bool = False
    last_pass_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Message:
    subject: str
    seq: int
    time: float  # the stream's timestamp, POSIX seconds
    data: bytes


class Collector:
    def __init__(
        self,
        store: NatsStore,
        multipart: MultipartStore,
        lease: Lease,
        *,
        grace: float,
        multipart_expiry: float,
    ) -> None:
        self.store = store
        self.multipart = multipart
        self.lease = lease
        self.grace = grace
        self.multipart_expiry = multipart_expiry
        self.stats = CollectorStats()
        self._last_expiry = 0.0
        self._budget_spent = False

    @property
    def _nc(self) -> NatsClient:
        return self.store.nc

    async def run(self, interval: float) -> None:
        """Forever: keep trying for the lease (renewing it while held); whoever holds it makes a pass
        every `interval`."""
        renewer = asyncio.get_running_loop().create_task(self._keep_lease())
        try:
            while True:
                behind = False
                if self.lease.held:
                    try:
                        behind = await self.run_pass()
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        log.warning("collector pass failed", extra={"error": repr(exc)})
                # A pass is bounded; one that left work behind is followed at once by the next.
                await asyncio.sleep(BEHIND_PAUSE if behind else interval)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
            with contextlib.suppress(Exception):
                await self.lease.release()

    async def _keep_lease(self) -> None:
        while True:
            try:
                held = await self.lease.acquire()
                if held != self.stats.lease_held:
                    log.info("collector lease " + ("taken" if held else "lost"), extra={"holder": self.lease.holder})
                self.stats.lease_held = held
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.lease_held = False
                log.debug("collector lease renewal failed", extra={"error": repr(exc)})
            await asyncio.sleep(self.lease.ttl / 4)

    async def run_pass(self) -> bool:
        """One pass over every bucket; True when some bucket had more ripe claims than a pass settles."""
        started = time.monotonic()
        listed = await self.store.list_buckets()
        buckets = [b.name for b in listed]
        # A replica is the origin's to tidy: its mirror copies what the origin keeps, and freeing a
        # chunk here on the strength of a lagging copy of the claims could free one still in use.
        replicas = {b.name for b in listed if b.origin is not None}
        # Each upload records when it expires; looking for them costs one stream info per bucket.
        expiry_due = time.monotonic() - self._last_expiry >= EXPIRY_EVERY
        behind = False
        for bucket in buckets:
            if not self.lease.held:
                return False
            try:
                if bucket not in replicas:
                    await self.collect_bucket(bucket)
                    behind = behind or self._budget_spent
                    if expiry_due:
                        self.stats.expired_uploads += await self.multipart.expire(
                            bucket, timedelta(seconds=self.multipart_expiry)
                        )
                self.stats.blocked.pop(bucket, None)
            except UnreadableRecord as exc:
                if self.stats.blocked.get(bucket) != str(exc):
                    log.error(
                        "collection stopped for a bucket: a record does not parse; nothing is freed there "
                        "until it is repaired or removed",
                        extra={"bucket": bucket, "record": str(exc)},
                    )
                self.stats.blocked[bucket] = str(exc)
            except BucketNotFound:
                self.stats.blocked.pop(bucket, None)
            except Exception as exc:  # one bucket's trouble must not stop the others
                log.warning("collecting a bucket failed", extra={"bucket": bucket, "error": repr(exc)})
            try:
                if await self.store.index.renew_snapshot(bucket):
                    self.stats.renewed_snapshots += 1
            except BucketNotFound:
                pass
            except Exception as exc:  # a snapshot is derived data: the next pass tries again
                log.warning("renewing a listing index snapshot failed", extra={"bucket": bucket, "error": repr(exc)})
        for gone in set(self.stats.blocked) - set(buckets):
            self.stats.blocked.pop(gone, None)
        if expiry_due:
            await self.multipart.forget_deleted_buckets()
            self._last_expiry = time.monotonic()
        self.stats.passes += 1
        self.stats.last_pass_seconds = time.monotonic() - started
        await self._record_pass(len(buckets), behind)
        return behind

    async def _record_pass(self, buckets: int, behind: bool) -> None:
        """What the pass did, for operators (best effort: a pass that cannot say so still counts)."""
        stats = self.stats
        status = {
            "holder": self.lease.holder,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(stats.last_pass_seconds, 3),
            "buckets": buckets,
            "behind": behind,
            "grace_seconds": self.grace,
            # Totals since this holder started.
            "passes": stats.passes,
            "freed_subjects": stats.freed_subjects,
            "settled_claims": stats.settled_claims,
            "expired_uploads": stats.expired_uploads,
            "renewed_snapshots": stats.renewed_snapshots,
            "blocked": dict(stats.blocked),
        }
        records = self.store.configs.records
        value = json.dumps(status, sort_keys=True).encode()
        try:
            revision = await records.last_revision(STATUS_KEY)
            if revision:
                await records.update(STATUS_KEY, value, revision)
            else:
                await records.create(STATUS_KEY, value)
        except (RecordConflict, StoreUnavailable) as exc:
            log.debug("collector pass not recorded", extra={"error": repr(exc)})

    async def collect_bucket(self, bucket: str) -> int:
        """Settle the bucket's ripe claims, oldest first; returns how many chunk subjects were freed."""
        nb = naming.nats_bucket(bucket)
        stream = naming.stream_name(nb)
        cutoff = time.time() - self.grace
        seen: set[str] = set()
        freed = 0
        seq = 1
        settled = 0
        # Claims below this sequence are all settled and can go in one purge; a deferred one stops it.
        keep_from: int | None = None
        limit = asyncio.Semaphore(CONCURRENCY)

        async def settle(nuid: str, claims: list[_Message]) -> tuple[str, int, int, str]:
            async with limit:
                verdict, last_seq = await self._settle(bucket, nb, stream, nuid, claims, cutoff)
                return nuid, claims[0].seq, last_seq, verdict

        while settled < PASS_BUDGET:
            batch = await self._direct_batch(stream, naming.claim_wildcard(nb), seq, BATCH)
            if not batch:
                break
            window: dict[str, list[_Message]] = {}
            done = False
            end = seq
            for msg in batch:
                claim_time = msg.time
                _parse_claim(msg)  # an unreadable claim stops the bucket here
                if claim_time > cutoff:
                    done = True  # every later claim is newer still
                    break
                end = msg.seq + 1
                nuid = msg.subject.rsplit(".", 1)[-1]
                if nuid not in seen:
                    window.setdefault(nuid, []).append(msg)
            seq = end
            seen.update(window)
            results = await asyncio.gather(*(settle(nuid, claims) for nuid, claims in window.items()))
            for _, first, _, verdict in results:
                if verdict == DEFERRED:
                    keep_from = first if keep_from is None else min(keep_from, first)
            boundary = end if keep_from is None else min(keep_from, end)
            if boundary > 1:
                await self._purge(stream, naming.claim_wildcard(nb), boundary - 1)
            for nuid, _, last_seq, verdict in results:
                if verdict != DEFERRED and last_seq >= boundary:
                    await self._purge(stream, naming.claim_subject(nb, nuid), last_seq)
            freed += sum(1 for *_, verdict in results if verdict == FREED)
            settled += len(results)
            if done or len(batch) < BATCH:
                break
        self._budget_spent = settled >= PASS_BUDGET
        return freed

    async def _settle(
        self, bucket: str, nb: str, stream: str, nuid: str, claims: list[_Message], cutoff: float
    ) -> tuple[str, int]:
        """KEPT: an owner still references the chunks; FREED: none does, and they are purged;
        DEFERRED: a claim or a chunk newer than the grace period says to look again later. With the
        sequence of the last claim looked at, which the caller drops unless DEFERRED.

        `claims` are those of this chunk subject the pass has seen so far; a later one (past the
        pass's window) is read from the stream leader before anything is freed, since it may name
        another owner."""
        owners = _owners_of(claims)
        found: dict[tuple[str, str], tuple[Head | None, Head | None]] = {}
        if await self._referenced(bucket, nuid, owners, found):
            self.stats.settled_claims += len(claims)
            return KEPT, claims[-1].seq
        latest_claim = await self._last(stream, naming.claim_subject(nb, nuid))
        if latest_claim is not None and latest_claim.seq > claims[-1].seq:
            claims = await self._claims_of(stream, nb, nuid, latest_claim.seq)
            if max(m.time for m in claims) > cutoff:
                return DEFERRED, claims[-1].seq
            more = _owners_of(claims) - owners
            if more and await self._referenced(bucket, nuid, more, found):
                self.stats.settled_claims += len(claims)
                return KEPT, claims[-1].seq
        newest_chunk = await self._last(stream, naming.chunk_subject(nb, nuid))
        if newest_chunk is not None and newest_chunk.time > cutoff:
            return DEFERRED, claims[-1].seq  # still being written: an upload longer than the grace period
        if self.store.pauses.active:
            await self.store.pauses.reach("collector.before_free")
        latest_claim = await self._last(stream, naming.claim_subject(nb, nuid))
        if latest_claim is None or latest_claim.seq != claims[-1].seq or not self.lease.held:
            return DEFERRED, claims[-1].seq  # a claim arrived meanwhile (looked at next time), or the lease goes
        await self._purge(stream, naming.chunk_subject(nb, nuid), None)
        await self._tidy(nb, stream, found)
        self.stats.settled_claims += len(claims)
        self.stats.freed_subjects += 1
        return FREED, claims[-1].seq

    async def _referenced(
        self,
        bucket: str,
        nuid: str,
        owners: set[tuple[str | None, Owner]],
        found: dict[tuple[str, str], tuple[Head | None, Head | None]],
    ) -> bool:
        """Whether any owner named still references the chunk subject `nuid`. What the version checks
        read is left in `found` ((key, uid) -> (latest, version record)) for tidying up."""
        for key, owner in sorted(owners, key=lambda o: (o[0] or "", o[1].v or "", o[1].u or "", o[1].n or 0)):
            if owner.u is not None and owner.n is not None:
                referenced = await self._part_references(bucket, owner.u, owner.n, nuid)
            elif owner.v is not None and key is not None:
                referenced = await self._version_references(bucket, key, owner.v, nuid, found)
            else:
                referenced = False
            if referenced:
                return True
        return False

    async def _part_references(self, bucket: str, upload_id: str, number: int, nuid: str) -> bool:
        records = self.multipart.records(bucket)
        upload_record = await records.get(f"U.{upload_id}")
        if upload_record is None:
            return False
        upload = _parse_model(UploadRecord, upload_record.value, f"upload record {upload_id} of {bucket}")
        if upload.state not in (OPEN, COMPLETING):
            return False
        if upload.plan is not None and nuid in chunk_nuids(upload.plan):
            return True  # chosen by the Complete in progress, whatever the part record says now
        part = await records.get(f"P.{upload_id}.{number:05d}")
        if part is None:
            return False
        return _parse_model(PartRecord, part.value, f"part record {upload_id}/{number} of {bucket}").nuid == nuid

    async def _version_references(
        self, bucket: str, key: str, uid: str, nuid: str, found: dict[tuple[str, str], tuple[Head | None, Head | None]]
    ) -> bool:
        # The latest version first, then the version subject: a version that stops being the latest
        # is on its version subject before its meta changes, so one of the two reads finds it.
        try:
            head = await self.store.read_head(bucket, key)
            if head is not None and is_version(head.doc) and uid_of(head.doc) == uid:
                return nuid in chunk_nuids(head.doc) or nuid == uid  # (a marker is claimed under its uid)
            older = await self.store.read_version(bucket, key, uid)
        except CorruptObject as exc:
            raise UnreadableRecord(f"{bucket}/{key}: {exc}") from exc
        found[(key, uid)] = (head, older)
        latest = head.doc if head is not None and is_version(head.doc) else None
        if older is None or not live_in_history(older.doc, latest):
            return False
        return nuid in chunk_nuids(older.doc) or nuid == uid

    async def _tidy(self, nb: str, stream: str, found: dict[tuple[str, str], tuple[Head | None, Head | None]]) -> None:
        """Drop the records the freed versions left: a version subject's tombstone, and a meta that only
        says its key was deleted (their grace is over too, so no writer still depends on them)."""
        heads: dict[str, Head] = {}
        for (key, uid), (head, older) in found.items():
            if older is not None and is_gone(older.doc):
                await self._purge(stream, naming.version_subject(nb, key, uid), older.seq)
            if head is not None:
                heads[key] = head
        for key, head in heads.items():
            deletion = head.doc.deleted and not is_version(head.doc)
            if deletion and parse_mtime(head.doc.mtime).timestamp() < time.time() - self.grace:
                await self._purge(stream, naming.meta_subject(nb, key), head.seq)

    # ---- JetStream reads -----------------------------------------------------------------------

    async def _claims_of(self, stream: str, nb: str, nuid: str, through: int) -> list[_Message]:
        """Every claim on one chunk subject up to sequence `through`, from the stream leader."""
        subject = naming.claim_subject(nb, nuid)
        out: list[_Message] = []
        seq = 1
        while seq <= through:
            resp = await js_request(self._nc, f"STREAM.MSG.GET.{stream}", {"seq": seq, "next_by_subj": subject})
            if err := resp.get("error"):
                if err.get("err_code") == ERR_NO_MESSAGE:
                    break
                if err.get("err_code") == ERR_STREAM_NOT_FOUND:
                    raise BucketNotFound(stream)
                raise StoreUnavailable(f"reading claims {subject}: {err.get('description')}")
            msg = _from_api(resp["message"])
            if msg.seq > through:
                break
            _parse_claim(msg)
            out.append(msg)
            seq = msg.seq + 1
        return out

    async def _last(self, stream: str, subject: str) -> _Message | None:
        resp = await js_request(self._nc, f"STREAM.MSG.GET.{stream}", {"last_by_subj": subject})
        if err := resp.get("error"):
            if err.get("err_code") == ERR_NO_MESSAGE:
                return None
            if err.get("err_code") == ERR_STREAM_NOT_FOUND:
                raise BucketNotFound(stream)
            raise StoreUnavailable(f"reading {subject}: {err.get('description')}")
        return _from_api(resp["message"])

    async def _purge(self, stream: str, subject: str, through_seq: int | None) -> None:
        request: dict[str, Any] = {"filter": subject}
        if through_seq is not None:
            request["seq"] = through_seq + 1  # keeps anything written after what was looked at
        resp = await js_request(self._nc, f"STREAM.PURGE.{stream}", request)
        if (err := resp.get("error")) and err.get("err_code") != ERR_STREAM_NOT_FOUND:
            raise StoreUnavailable(f"purging {subject}: {err.get('description')}")

    async def _direct_batch(self, stream: str, subject: str, seq: int, batch: int) -> list[_Message]:
        """Up to `batch` messages on `subject` from `seq` on, in one direct-get request."""
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        out: list[_Message] = []
        try:
            request = json.dumps({"seq": seq, "next_by_subj": subject, "batch": batch}).encode()
            await self._nc.publish(f"{API_PREFIX}.DIRECT.GET.{stream}", request, reply=inbox)
            while True:
                msg = await sub.next_msg(timeout=READ_TIMEOUT)
                headers = msg.headers or {}
                if "Status" in headers and not msg.data:
                    if headers["Status"] in ("204", "404"):
                        return out
                    raise StoreUnavailable(f"direct get on {stream}: {headers['Status']} {headers.get('Description')}")
                out.append(
                    _Message(
                        headers.get("Nats-Subject", ""),
                        int(headers.get("Nats-Sequence", "0")),
                        parse_mtime(headers.get("Nats-Time-Stamp", "")).timestamp(),
                        msg.data,
                    )
                )
        except TimeoutError as exc:
            raise StoreUnavailable(f"direct get on {stream} timed out") from exc
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def _from_api(message: dict[str, Any]) -> _Message:
    return _Message(
        str(message.get("subject") or ""),
        int(message.get("seq") or 0),
        parse_mtime(str(message.get("time") or "")).timestamp(),
        base64.b64decode(message.get("data") or ""),
    )


def _owners_of(claims: list[_Message]) -> set[tuple[str | None, Owner]]:
    owners: set[tuple[str | None, Owner]] = set()
    for msg in claims:
        claim = _parse_claim(msg)
        owners.update((claim.k, owner) for owner in claim.o)
    return owners


def _parse_claim(msg: _Message) -> Claim:
    try:
        return Claim.model_validate_json(msg.data)
    except ValidationError as exc:
        raise UnreadableRecord(f"claim {msg.subject} (sequence {msg.seq})") from exc


def _parse_model(model: Any, data: bytes, what: str) -> Any:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise UnreadableRecord(what) from exc
