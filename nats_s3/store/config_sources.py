"""The sources of the gateway's KV bucket that bring a replica's records from its origin's KV: the
bucket's configuration record and its multipart upload records (store/replication.py adds them).

All replicas of a site share the one KV stream, whose configuration JetStream replaces as a whole on
update and without compare-and-set: every change of its sources is made under a lease, so two admin
commands (or a CreateBucket cleaning up after a crashed one) never drop each other's sources.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import Client as NatsClient

from .bucket_config import record_key, upload_prefix
from .errors import StoreUnavailable
from .jsapi import stream_info, stream_update
from .lease import Lease
from .records import KvRecords

LEASE_TTL = 20.0
LEASE_WAIT = 45.0
LEASE_STEP = 0.2


def record_subjects(kv_prefix: str, bucket: str) -> tuple[str, str]:
    """The subjects of the bucket's records in a gateway KV whose subjects start with `kv_prefix`:
    its configuration record, and (a wildcard) its multipart upload records."""
    return kv_prefix + record_key(bucket), upload_prefix(kv_prefix, bucket) + ">"


class ConfigSources:
    def __init__(self, nc: NatsClient, records: KvRecords) -> None:
        self._nc = nc
        self._records = records

    def subjects(self, bucket: str) -> tuple[str, str]:
        return record_subjects(self._records.prefix, bucket)

    async def kv_info(self) -> dict[str, Any]:
        return await stream_info(self._nc, self._records.stream)

    def of(self, bucket: str, sources: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """Those of `sources` (a KV stream info's, with their state, or its config's) that bring the
        bucket's records, the configuration record's first."""
        wanted = self.subjects(bucket)
        found = [s for s in sources or [] if s.get("filter_subject") in wanted]
        return sorted(found, key=lambda s: wanted.index(s["filter_subject"]))

    async def present(self, bucket: str) -> bool:
        return bool(self.of(bucket, (await self.kv_info())["config"].get("sources")))

    async def add(self, bucket: str, api: str) -> None:
        """Source the bucket's records from the KV of the same name behind JetStream API `api`."""
        kv = self._records.stream

        def change(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
            # From the start of the origin's KV: a source added to a stream with messages would otherwise
            # begin at the time of its last message, and miss every record written before that.
            return sources + [
                {"name": kv, "filter_subject": subject, "external": {"api": api, "deliver": ""}, "opt_start_seq": 1}
                for subject in self.subjects(bucket)
            ]

        await self._change(bucket, change)

    async def remove(self, bucket: str) -> bool:
        """Stop sourcing the bucket's records; False when they were not sourced."""
        return await self._change(bucket, lambda sources: sources)

    async def _change(self, bucket: str, change: Any) -> bool:
        """Replace the bucket's sources by what `change` makes of the others; True when some of the
        bucket's were there before."""
        lease = Lease(self._records, "kv-sources", LEASE_TTL)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEASE_WAIT
        while not await lease.acquire():
            if loop.time() > deadline:
                raise StoreUnavailable(f"the KV's sources are being changed by someone else for over {LEASE_WAIT:g}s")
            await asyncio.sleep(LEASE_STEP)
        try:
            config = dict((await self.kv_info())["config"])
            wanted = self.subjects(bucket)
            sources = config.get("sources") or []
            others = [s for s in sources if s.get("filter_subject") not in wanted]
            changed = change(others)
            if changed != sources:
                if not lease.held:
                    raise StoreUnavailable("the lease on the KV's sources ran out before the change")
                config["sources"] = changed
                await stream_update(self._nc, config)
            return len(others) != len(sources)
        finally:
            await lease.release()
