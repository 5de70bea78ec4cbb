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
import contextlib
from typing import Any

import nats.errors

from . import naming
from .bucket_config import record_key
from .errors import BucketNotFound, ReplicationRefused, StoreUnavailable
from .jsapi import ERR_STREAM_NAME_IN_USE
from .nats_store import NatsStore
from .quotas import stream_max_bytes
from .records import Records
from .replicas import origin_in

RECORD_WAIT = 30.0
META_REPLICA_OF = "nats-s3.replica-of"
META_PROMOTED_FROM = "nats-s3.promoted-from"
ERR_MIRROR_NOT_UPDATABLE = 10055  # "stream mirror configuration can not be updated": before nats-server 2.12
PROMOTE_SINCE = (2, 12)  # the first nats-server release that turns a mirror into a stream of its own


def domain_api(domain: str) -> str:
    """The JetStream API prefix of a domain."""
    if not domain or any(c in domain for c in ".*> \t"):
        raise ReplicationRefused(f"{domain!r} is not a JetStream domain name")
    return f"$JS.{domain}.API"


async def replicate(store: NatsStore, bucket: str, api: str, *, replicas: int = 1) -> dict[str, Any]:
    """Make `bucket` here a replica of the bucket of that name behind JetStream API `api`."""
    with contextlib.suppress(BucketNotFound):
        await store.stream_info(bucket)
        raise ReplicationRefused(f"bucket {bucket} exists here already; a replica needs a bucket name that does not")
    try:
        origin = await store.stream_info(bucket, api=api)
    except StoreUnavailable as exc:
        if isinstance(exc.__cause__, nats.errors.NoRespondersError):
            raise StoreUnavailable(f"no JetStream answers at {api}: is the domain right, and the link up?") from exc
        raise
    origin_config = origin.get("config") or {}
    stream = origin_config["name"]
    # The records first, so that gateways here never serve the bucket without its owner and policy.
    # Sourced even when the origin has no record yet (a bucket of an older gateway gets one at its
    # first write there), so that it follows once it has.
    await store.config_sources.add(bucket, api)
    try:
        if await _origin_record(store, bucket, api) is not None:
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
            "mirror": {"name": stream, "external": {"api": api, "deliver": ""}},
            "metadata": {"nats-s3.bucket": bucket, META_REPLICA_OF: api},
        }
        resp = await store._api(f"STREAM.CREATE.{stream}", config)
        if err := resp.get("error"):
            if err.get("err_code") == ERR_STREAM_NAME_IN_USE:
                raise ReplicationRefused(f"bucket {bucket} exists here already")
            raise StoreUnavailable(f"creating the mirror {stream}: {err.get('description')}")
    except BaseException:
        # Nothing half made is left: the records' sources would otherwise bring the origin's settings
        # into a bucket of this name made here later.
        with contextlib.suppress(Exception):
            await store.config_sources.remove(bucket)
        raise
    store.replica_origins.learn(bucket, resp)
    return {"bucket": bucket, "stream": stream, "origin": api, "replicas": replicas}


async def promote(store: NatsStore, bucket: str) -> dict[str, Any]:
    """Make a replica this site's own bucket: its sources stop, its stream takes writes.

    The records' sources go first: should the second step fail, the bucket is still a replica
    (read-only) and promoting again finishes the job, rather than a writable bucket whose settings
    the origin keeps overwriting."""
    info = await store.stream_info(bucket)
    config = dict(info["config"])
    origin = origin_in(config)
    if origin is None:
        if await store.config_sources.remove(bucket):
            return {"bucket": bucket, "promoted": True, "origin": None}  # the second step was done already
        raise ReplicationRefused(f"bucket {bucket} is not a replica")
    version = store.nc.connected_server_version
    if (version.major, version.minor) < PROMOTE_SINCE:
        raise ReplicationRefused(
            f"promotion needs nats-server 2.12 or later (it turns a mirror into a stream); this one is {version}"
        )
    await store.config_sources.remove(bucket)
    config.pop("mirror", None)
    config["subjects"] = naming.stream_subjects(naming.nats_bucket(bucket))
    config["discard"] = "new"
    config["max_bytes"] = stream_max_bytes(store.configs.get(bucket).quota)
    metadata = {k: v for k, v in (config.get("metadata") or {}).items() if not k.startswith("_nats")}
    metadata.pop(META_REPLICA_OF, None)
    metadata[META_PROMOTED_FROM] = origin.api
    config["metadata"] = metadata
    resp = await store._api(f"STREAM.UPDATE.{config['name']}", config)
    if err := resp.get("error"):
        if err.get("err_code") == ERR_MIRROR_NOT_UPDATABLE:
            # A server of the cluster is older than 2.12: the bucket stays the replica it was.
            await store.config_sources.add(bucket, origin.api)
            raise ReplicationRefused(f"the stream's servers cannot promote a mirror: {err.get('description')}")
        raise StoreUnavailable(f"promoting {config['name']}: {err.get('description')}")
    store.replica_origins.learn(bucket, resp)
    return {"bucket": bucket, "promoted": True, "origin": origin.api}


def state(store_info: dict[str, Any], record_sources: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A replica's replication as NATS reports it: for the mirror and for the sources of its records
    (`ConfigSources.of` of the KV stream's info), the lag (messages not copied yet), the last contact
    with the origin, and any error. None: not a replica."""
    origin = origin_in(store_info.get("config"))
    if origin is None:
        return None
    records = dict(zip(("configuration", "uploads"), record_sources, strict=False))
    return {
        "origin": origin.api,
        "domain": origin.domain,
        "stream": _source_state(store_info.get("mirror")),
        "configuration": _source_state(records.get("configuration")),
        "uploads": _source_state(records.get("uploads")),
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


async def _origin_record(store: NatsStore, bucket: str, api: str) -> bytes | None:
    """The bucket's configuration record at the origin; None when it has none (deleted counts as none)."""
    kv = store.configs.records
    at_origin = Records(store.nc, store.js, store.publisher, kv.stream, kv.prefix, api=api)
    found = await at_origin.get(record_key(bucket))
    return found.value if found is not None else None


async def _wait_for_record(store: NatsStore, bucket: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECORD_WAIT
    while not store.configs.known(bucket):
        if loop.time() > deadline:
            sources = store.config_sources.of(bucket, (await store.config_sources.kv_info()).get("sources"))
            raise StoreUnavailable(
                f"the configuration of {bucket} did not arrive from the origin in {RECORD_WAIT:g}s "
                f"(its source: {_source_state(sources[0] if sources else None)})"
            )
        await asyncio.sleep(0.1)
