"""Housekeeping: reclaim chunks no object or part points at (left by a gateway that died mid-upload)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

import nats.errors
from nats.aio.msg import Msg
from nats.js import api as js_api
from pydantic import ValidationError

from . import naming
from .jsapi import ERR_NO_MESSAGE, js_request
from .models import StoredObjectInfo, chunk_nuids, parse_mtime
from .multipart import MultipartStore, PartRecord, part_prefix
from .nats_store import NatsStore

log = logging.getLogger("nats_s3.store.janitor")

SCAN_TIMEOUT = 60.0


class Janitor:
    """Finds chunk subjects that neither a live object's meta nor a multipart part record references.

    A writer publishes its chunks before the meta (or part record) that points at them, so a chunk
    subject is only an orphan once its newest message is older than `grace`: an upload in flight
    keeps writing, and one that finished has committed its reference long before the grace ends.
    """

    def __init__(self, store: NatsStore, multipart: MultipartStore) -> None:
        self.store = store
        self.multipart = multipart

    async def sweep(self, grace: timedelta) -> int:
        purged = 0
        for bucket in [b.name for b in await self.store.list_buckets()]:
            try:
                purged += await self.sweep_bucket(bucket, grace)
            except Exception as exc:  # one bucket's trouble must not stop the others
                log.warning("orphan sweep failed", extra={"bucket": bucket, "error": repr(exc)})
        return purged

    async def sweep_bucket(self, bucket: str, grace: timedelta) -> int:
        nb = naming.nats_bucket(bucket)
        stream = naming.stream_name(nb)
        present = await self._chunk_nuids_present(stream, nb)
        if not present:
            return 0
        referenced = await self._referenced_nuids(bucket)
        cutoff = datetime.now(UTC) - grace
        purged = 0
        for nuid in present - referenced:
            subject = naming.chunk_subject(nb, nuid)
            resp = await js_request(self.store.nc, f"STREAM.MSG.GET.{stream}", {"last_by_subj": subject})
            if (resp.get("error") or {}).get("err_code") == ERR_NO_MESSAGE:
                continue
            newest = parse_mtime(str((resp.get("message") or {}).get("time") or ""))
            if newest >= cutoff:
                continue
            # Checked again right before purging: a reference may have been committed meanwhile.
            if nuid in await self._referenced_nuids(bucket):
                continue
            await self.store.purge_chunks(bucket, nuid)
            purged += 1
        if purged:
            log.info("reclaimed orphaned chunks", extra={"bucket": bucket, "subjects": purged})
        return purged

    async def _chunk_nuids_present(self, stream: str, nb: str) -> set[str]:
        prefix = naming.chunk_subject(nb, "")
        nuids: set[str] = set()
        offset = 0
        while True:
            resp = await js_request(
                self.store.nc, f"STREAM.INFO.{stream}", {"subjects_filter": naming.chunk_wildcard(nb), "offset": offset}
            )
            if resp.get("error"):
                return nuids
            page = list((resp.get("state") or {}).get("subjects") or {})
            nuids.update(subject[len(prefix) :] for subject in page)
            offset += len(page)
            if not page or offset >= int(resp.get("total", 0)):
                return nuids

    async def _referenced_nuids(self, bucket: str) -> set[str]:
        nuids = await self._meta_nuids(bucket)
        for upload in await self.multipart.list_uploads(bucket):
            for record in await self.multipart.records.scan(part_prefix(bucket, upload.upload_id)):
                with contextlib.suppress(ValidationError):
                    nuids.add(PartRecord.model_validate_json(record.value).nuid)
        return nuids

    async def _meta_nuids(self, bucket: str) -> set[str]:
        """Chunk subjects of every live object: the last meta message of each key, via an ordered consumer."""
        nb = naming.nats_bucket(bucket)
        stream = naming.stream_name(nb)
        info = await js_request(self.store.nc, f"STREAM.INFO.{stream}", {"subjects_filter": naming.meta_wildcard(nb)})
        if not (info.get("state") or {}).get("subjects"):
            return set()
        nuids: set[str] = set()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_msg(msg: Msg) -> None:
            with contextlib.suppress(ValidationError):
                doc = StoredObjectInfo.model_validate_json(msg.data)
                if not doc.deleted:
                    nuids.update(chunk_nuids(doc))
            if msg.metadata.num_pending == 0 and not done.done():
                done.set_result(None)

        sub = await self.store.js.subscribe(
            naming.meta_wildcard(nb),
            stream=stream,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            cb=on_msg,
        )
        try:
            await asyncio.wait_for(done, SCAN_TIMEOUT)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        return nuids
