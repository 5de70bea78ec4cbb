"""What gateways before versions left in NATS that this one no longer reads: the multipart KV bucket.

Uploads in progress there cannot be completed any more (their records now live in the bucket's own
stream). Their parts' chunks are claimed for the collector, which frees them after the grace period,
and the old KV bucket is removed.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ValidationError

from . import naming
from .claims import ClaimSpec, part_owner, send_claims
from .errors import BucketNotFound, StoreUnavailable
from .jsapi import ERR_STREAM_NOT_FOUND, js_request
from .nats_store import NatsStore
from .records import Records

log = logging.getLogger("nats_s3.store.legacy")

LEGACY_UPLOADS_KV = "nats_s3_uploads"


class _LegacyPart(BaseModel):
    nuid: str


async def retire_legacy_uploads(store: NatsStore) -> int:
    """Claim the parts of every upload the old KV bucket holds, then delete it; returns parts claimed."""
    stream = f"KV_{LEGACY_UPLOADS_KV}"
    info = await js_request(store.nc, f"STREAM.INFO.{stream}")
    if (info.get("error") or {}).get("err_code") == ERR_STREAM_NOT_FOUND:
        return 0
    if info.get("error"):
        raise StoreUnavailable(f"{stream}: {info['error'].get('description')}")
    records = Records(store.nc, store.js, store.publisher, stream, f"$KV.{LEGACY_UPLOADS_KV}.")
    claimed = 0
    for record in await records.scan("p."):
        # p.<nats bucket>.<upload id>.<part number>
        try:
            _, bucket, upload_id, number = record.key.split(".", 3)
            part = _LegacyPart.model_validate_json(record.value)
        except (ValueError, ValidationError):
            log.warning("skipping an unreadable legacy part record", extra={"record": record.key})
            continue
        s3_name = naming.s3_bucket(bucket)
        if s3_name is None:
            continue
        try:
            await store.ensure_ready(s3_name)  # an old bucket's stream gains the claim subjects
        except BucketNotFound:
            continue  # deleted with its chunks
        owners = [part_owner(upload_id, int(number))]
        await (await send_claims(store.publisher, bucket, [ClaimSpec(part.nuid, None, owners)])).confirm()
        claimed += 1
    resp = await js_request(store.nc, f"STREAM.DELETE.{stream}")
    if (err := resp.get("error")) and err.get("err_code") != ERR_STREAM_NOT_FOUND:
        raise StoreUnavailable(f"deleting {stream}: {err.get('description')}")
    log.warning(
        "multipart uploads left in progress by an older gateway were aborted; the collector frees their parts",
        extra={"parts": claimed},
    )
    return claimed
