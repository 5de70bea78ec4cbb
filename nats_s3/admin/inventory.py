"""What the admin commands read from NATS: buckets, their configuration, placement and usage.

Bytes come from each bucket stream's state; live objects from the bucket's listing index (restored
from its snapshot where one is young enough, else built from the stream, which takes a while for
big buckets: `progress` hears about each one); uploads in progress from the gateway's KV."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..protocol.encryption_config import EncryptionConfig
from ..store import replication
from ..store.collector import STATUS_KEY
from ..store.multipart import MultipartStore
from ..store.nats_store import NatsStore
from ..store.quotas import Quota
from ..store.replicas import origin_in
from .report import human_size


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
    quota = store.configs.get(bucket).quota
    return {
        "bucket": bucket,
        "quota": quota.model_dump() if quota is not None else None,
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
        "quota": config.quota.model_dump() if config.quota is not None else None,
        "replicas": int(stream_config.get("num_replicas") or 1),
        "placement": stream_config.get("placement"),
        "cluster": cluster.get("name"),
        "leader": cluster.get("leader"),
        "servers": [s for s in [cluster.get("leader"), *replicas] if s],
        "region": config.region,
        "notifications": [
            {
                "id": r["id"],
                "subject": r["subject"],
                "events": r["events"],
                "prefix": r["prefix"],
                "suffix": r["suffix"],
            }
            for r in config.notifications or []
        ],
        "encryption": config.encryption,
        "stream_max_bytes": int(stream_config.get("max_bytes") or -1),
        "replication": replication.state(info, await _record_sources_if_replica(store, info, bucket)),
        "usage": await usage(store, uploads, bucket, progress),
    }


async def _record_sources_if_replica(store: NatsStore, info: dict[str, Any], bucket: str) -> list[dict[str, Any]]:
    if origin_in(info.get("config")) is None:
        return []
    return store.config_sources.of(bucket, (await store.config_sources.kv_info()).get("sources"))


async def total_usage(
    store: NatsStore, uploads: MultipartStore, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    rows = [await usage(store, uploads, b.name, progress) for b in await store.list_buckets()]
    owners: dict[str, int] = {}
    for row in rows:
        owner = store.configs.get(row["bucket"]).owner
        if owner:
            owners[owner] = owners.get(owner, 0) + row["bytes"]
    limits = await store.owner_quotas.all()
    return {
        "buckets": rows,
        "owners": [
            {"owner": o, "bytes": owners.get(o, 0), "max_bytes": limits.get(o)} for o in sorted({*owners, *limits})
        ],
        "total": {
            "bytes": sum(r["bytes"] for r in rows),
            "objects": sum(r["objects"] for r in rows),
            "uploads_in_progress": sum(r["uploads_in_progress"] for r in rows),
        },
    }


def describe_quota(quota: Quota | None) -> str:
    if quota is None:
        return "no quota"
    parts = []
    if quota.max_bytes:
        parts.append(f"{human_size(quota.max_bytes)} ({quota.max_bytes} bytes)")
    if quota.max_objects:
        parts.append(f"{quota.max_objects} objects")
    return ", ".join(parts)


def info_fields(found: dict[str, Any]) -> list[tuple[str, object]]:
    """`bucket info` for people: one line per fact."""
    use = found["usage"]
    quota = Quota.model_validate(found["quota"]) if found.get("quota") else None
    used = use["bytes"]
    share = f" ({100 * used / quota.max_bytes:.1f}% of quota)" if quota is not None and quota.max_bytes else ""
    return [
        ("bucket", found["bucket"]), ("stream", found["stream"]), ("created", found["created"]),
        ("owner", found["owner"]), ("versioning", found["versioning"]),
        ("quota", describe_quota(quota)),
        ("size", f"{human_size(used)} ({used} bytes){share}"),
        ("objects", use["objects"]), ("delete markers", use["delete_markers"]),
        ("uploads in progress", use["uploads_in_progress"]),
        ("region", found["region"]), ("replicas", found["replicas"]), ("placement", found["placement"]),
        ("cluster", found["cluster"]), ("leader", found["leader"]),
        ("servers", ", ".join(found["servers"]) or None),
        ("notifications", "; ".join(describe_notification(n) for n in found["notifications"]) or "none"),
        ("default encryption", describe_encryption(found.get("encryption"))),
        ("replication", describe_replication(found["replication"])),
    ]  # fmt: skip


def describe_encryption(stored: dict[str, Any] | None) -> str:
    if not stored:
        return "none"
    config = EncryptionConfig.from_dict(stored)
    parts = (
        [f"{config.algorithm}" + (f" (key {config.kms_key_id})" if config.kms_key_id else "")]
        if config.algorithm
        else []
    )
    if config.blocks_customer_keys:
        parts.append("SSE-C blocked")
    return ", ".join(parts) or "none"


def describe_replication(state: dict[str, Any] | None) -> str:
    if state is None:
        return "none (a bucket of its own)"

    def source(what: str, s: dict[str, Any] | None) -> str:
        if s is None:
            return f"{what}: not sourced"
        contact = f", last contact {s['last_contact_seconds']} s ago" if s["last_contact_seconds"] is not None else ""
        error = f", error: {s['error']}" if s["error"] else ""
        return f"{what}: {s['lag']} behind{contact}{error}"

    return f"read-only replica of {state['origin']}; " + "; ".join(
        [
            source("objects", state["stream"]),
            source("configuration", state["configuration"]),
            source("uploads", state["uploads"]),
        ]
    )


def describe_notification(rule: dict[str, Any]) -> str:
    keys = f" on {rule['prefix'] or ''}*{rule['suffix'] or ''}" if rule["prefix"] or rule["suffix"] else ""
    return f"{rule['id']}: {', '.join(rule['events'])}{keys} -> {rule['subject']}"


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
