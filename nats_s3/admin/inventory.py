"""What the admin commands read from NATS: buckets, their configuration, placement and usage.

Bytes come from each bucket stream's state; live objects from the bucket's listing index (restored
from its snapshot where one is young enough, else built from the stream, which takes a while for
big buckets: `progress` hears about each one); uploads in progress from the gateway's KV."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..store.collector import STATUS_KEY
from ..store.multipart import MultipartStore
from ..store.nats_store import NatsStore


async def usage(
    store: NatsStore, uploads: MultipartStore, bucket: str, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    info = await store.stream_info(bucket)
    state = info.get("state") or {}
    began = time.monotonic()
    index = await store.index.current(bucket)
    took = time.monotonic() - began
    if progress is not None and took > 1.0:
        progress(f"{bucket}: {len(index):,} objects indexed in {took:.1f}s")
    return {
        "bucket": bucket,
        "bytes": int(state.get("bytes") or 0),
        "objects": len(index),
        "delete_markers": len(index.markers),
        "uploads_in_progress": await uploads.count_in_progress(bucket),
        "stream_messages": int(state.get("messages") or 0),
    }


async def bucket_info(
    store: NatsStore, uploads: MultipartStore, bucket: str, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    info = await store.stream_info(bucket)
    config = store.configs.get(bucket)
    stream_config = info.get("config") or {}
    cluster = info.get("cluster") or {}
    replicas = [r.get("name") for r in cluster.get("replicas") or []]
    return {
        "bucket": bucket,
        "stream": stream_config.get("name"),
        "created": config.created or info.get("created"),
        "owner": config.owner or None,
        "versioning": config.versioning_state.value,
        "replicas": int(stream_config.get("num_replicas") or 1),
        "placement": stream_config.get("placement"),
        "cluster": cluster.get("name"),
        "leader": cluster.get("leader"),
        "servers": [s for s in [cluster.get("leader"), *replicas] if s],
        "max_bytes": int(stream_config.get("max_bytes") or -1),
        "usage": await usage(store, uploads, bucket, progress),
    }


async def collector_status(store: NatsStore) -> dict[str, Any] | None:
    """The collector leader's record of its last pass (store/collector.py), None before the first."""
    record = await store.configs.records.get(STATUS_KEY)
    if record is None:
        return None
    try:
        found: dict[str, Any] = json.loads(record.value)
    except ValueError:
        return {"unreadable": record.value.decode(errors="replace")}
    return found
