"""Replicating a bucket from another JetStream domain, and promoting a replica (the admin CLI's
`bucket replicate` and `bucket promote`).

A replica is two JetStream sources of the origin, read through the origin domain's API
(`$JS.<domain>.API`), so NATS itself copies every change, resumes after a cut link from where it
stopped and needs no gateway to run:
- the bucket's stream `OBJ_<name>` here mirrors the origin's stream of the same name, with its
  sequences (objects, versions, tags, ACLs, uploads in progress: everything the stream holds);
- the gateway KV bucket here sources the bucket's configuration record from the origin's, so
  versioning, policy, CORS, owner and quota follow too.

Gateways here serve the replica read-only (store/replicas.py). Promotion stops both sources and
gives the stream its subjects: the bucket is then this site's own, with the origin's last state.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import naming
from .bucket_config import BUCKET_PREFIX, GATEWAY_KV
from .errors import BucketNotFound, ReplicationRefused, StoreUnavailable
from .jsapi import ERR_NO_MESSAGE, ERR_STREAM_NAME_IN_USE, ERR_STREAM_NOT_FOUND, js_request
from .nats_store import NatsStore
from .quotas import stream_max_bytes
from .replicas import origin_in

RECORD_WAIT = 30.0
META_REPLICA_OF = "nats-s3.replica-of"
META_PROMOTED_FROM = "nats-s3.promoted-from"


def domain_api(domain: str) -> str:
    """The JetStream API prefix of a domain."""
    if not domain or any(c in domain for c in ".*> \t"):
        raise ReplicationRefused(f"{domain!r} is not a JetStream domain name")
    return f"$JS.{domain}.API"


def _record_subject(bucket: str) -> str:
    return f"$KV.{GATEWAY_KV}.{BUCKET_PREFIX}{naming.nats_bucket(bucket)}"


def _record_source(sources: list[dict[str, Any]] | None, bucket: str) -> dict[str, Any] | None:
    """The source (of the KV stream's `sources`) that brings the bucket's configuration record."""
    subject = _record_subject(bucket)
    return next((s for s in sources or [] if s.get("filter_subject") == subject), None)


def _external(api: str) -> dict[str, str]:
    return {"api": api, "deliver": ""}


async def replicate(store: NatsStore, bucket: str, api: str, *, replicas: int = 1) -> dict[str, Any]:
    """Make `bucket` here a replica of the bucket of that name behind JetStream API `api`."""
    nb = naming.nats_bucket(bucket)
    stream = naming.stream_name(nb)
    try:
        await store.stream_info(bucket)
        raise ReplicationRefused(f"bucket {bucket} exists here already; a replica needs a bucket name that does not")
    except BucketNotFound:
        pass
    origin = await js_request(store.nc, f"STREAM.INFO.{stream}", api=api)
    if err := origin.get("error"):
        if err.get("err_code") == ERR_STREAM_NOT_FOUND:
            raise BucketNotFound(f"{bucket} (at {api})")
        raise StoreUnavailable(f"stream info {stream} at {api}: {err.get('description')}")
    origin_config = origin.get("config") or {}
    # The configuration first, so that gateways here never serve the bucket without its owner and policy.
    if await _origin_has_record(store, bucket, api):
        await _source_record(store, bucket, api)
        await _wait_for_record(store, bucket)
    config = {
        "name": stream,
        "description": f"nats-s3 replica of bucket {bucket} ({api})",
        "storage": origin_config.get("storage") or "file",
        "num_replicas": replicas,
        "retention": "limits",
        "discard": "old",
        "allow_direct": True,
        "allow_rollup_hdrs": True,  # the origin's rollups (a key's latest meta replacing the last) apply here too
        "mirror": {"name": stream, "external": _external(api)},
        "metadata": {"nats-s3.bucket": bucket, META_REPLICA_OF: api},
    }
    resp = await store._api(f"STREAM.CREATE.{stream}", config)
    if err := resp.get("error"):
        if err.get("err_code") == ERR_STREAM_NAME_IN_USE:
            raise ReplicationRefused(f"bucket {bucket} exists here already")
        raise StoreUnavailable(f"creating the mirror {stream}: {err.get('description')}")
    store.replica_origins.learn(bucket, resp)
    return {"bucket": bucket, "stream": stream, "origin": api, "replicas": replicas}


async def promote(store: NatsStore, bucket: str) -> dict[str, Any]:
    """Make a replica this site's own bucket: its sources stop, its stream takes writes.

    The configuration's source goes first: should the second step fail, the bucket is still a
    replica (read-only) and promoting again finishes the job, rather than a writable bucket whose
    settings the origin keeps overwriting."""
    info = await store.stream_info(bucket)
    config = dict(info["config"])
    origin = origin_in(config)
    dropped = await _unsource_record(store, bucket)
    if origin is None:
        if dropped:
            return {"bucket": bucket, "promoted": True, "origin": None}
        raise ReplicationRefused(f"bucket {bucket} is not a replica")
    nb = naming.nats_bucket(bucket)
    config.pop("mirror", None)
    config["subjects"] = naming.stream_subjects(nb)
    config["discard"] = "new"
    config["max_bytes"] = stream_max_bytes(store.configs.get(bucket).quota)
    metadata = {k: v for k, v in (config.get("metadata") or {}).items() if not k.startswith("_nats")}
    metadata.pop(META_REPLICA_OF, None)
    metadata[META_PROMOTED_FROM] = origin.api
    config["metadata"] = metadata
    resp = await store._api(f"STREAM.UPDATE.{config['name']}", config)
    if err := resp.get("error"):
        raise StoreUnavailable(f"promoting {config['name']}: {err.get('description')}")
    store.replica_origins.learn(bucket, resp)
    return {"bucket": bucket, "promoted": True, "origin": origin.api}


def state(store_info: dict[str, Any], kv_info: dict[str, Any] | None, bucket: str) -> dict[str, Any] | None:
    """A replica's replication as NATS reports it: the mirror's and the configuration source's lag
    (messages not copied yet), their last contact with the origin, and any error. None: not a replica."""
    origin = origin_in(store_info.get("config"))
    if origin is None:
        return None
    record_source = _record_source((kv_info or {}).get("sources"), bucket)
    return {
        "origin": origin.api,
        "domain": origin.domain,
        "stream": _source_state(store_info.get("mirror")),
        "configuration": _source_state(record_source),
    }


def _source_state(found: dict[str, Any] | None) -> dict[str, Any] | None:
    if found is None:
        return None
    active = int(found.get("active") or 0) if "active" in found else -1
    error = found.get("error")
    return {
        "lag": int(found.get("lag") or 0),
        "last_contact_seconds": round(active / 1e9, 3) if active >= 0 else None,
        "error": error.get("description") if isinstance(error, dict) else error,
    }


async def _origin_has_record(store: NatsStore, bucket: str, api: str) -> bool:
    resp = await js_request(
        store.nc, f"STREAM.MSG.GET.KV_{GATEWAY_KV}", {"last_by_subj": _record_subject(bucket)}, api=api
    )
    if err := resp.get("error"):
        if err.get("err_code") in (ERR_NO_MESSAGE, ERR_STREAM_NOT_FOUND):
            return False
        raise StoreUnavailable(f"reading the configuration of {bucket} at {api}: {err.get('description')}")
    return True


async def kv_stream_info(store: NatsStore) -> dict[str, Any]:
    """The info of the gateway KV bucket's stream, whose sources bring replicas' configuration records."""
    stream = store.configs.records.stream
    resp = await store._api(f"STREAM.INFO.{stream}")
    if err := resp.get("error"):
        raise StoreUnavailable(f"stream info {stream}: {err.get('description')}")
    return resp


async def _update_kv(store: NatsStore, config: dict[str, Any]) -> None:
    resp = await store._api(f"STREAM.UPDATE.{config['name']}", config)
    if err := resp.get("error"):
        raise StoreUnavailable(f"updating the sources of {config['name']}: {err.get('description')}")


async def _source_record(store: NatsStore, bucket: str, api: str) -> None:
    config = dict((await kv_stream_info(store))["config"])
    subject = _record_subject(bucket)
    sources = [s for s in config.get("sources") or [] if s.get("filter_subject") != subject]
    # From the start of the origin's KV: a source added to a stream with messages would otherwise begin
    # at the time of its last message, and miss a record written before that.
    sources.append({"name": config["name"], "filter_subject": subject, "external": _external(api), "opt_start_seq": 1})
    config["sources"] = sources
    await _update_kv(store, config)


async def _unsource_record(store: NatsStore, bucket: str) -> bool:
    """Stop sourcing the bucket's configuration; False when it was not sourced."""
    config = dict((await kv_stream_info(store))["config"])
    subject = _record_subject(bucket)
    sources = config.get("sources") or []
    kept = [s for s in sources if s.get("filter_subject") != subject]
    if len(kept) == len(sources):
        return False
    config["sources"] = kept
    await _update_kv(store, config)
    return True


async def _wait_for_record(store: NatsStore, bucket: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECORD_WAIT
    while not store.configs.known(bucket):
        if loop.time() > deadline:
            found = _record_source((await kv_stream_info(store)).get("sources"), bucket)
            raise StoreUnavailable(
                f"the configuration of {bucket} did not arrive from the origin in {RECORD_WAIT:g}s "
                f"(its source: {_source_state(found)})"
            )
        await asyncio.sleep(0.1)
