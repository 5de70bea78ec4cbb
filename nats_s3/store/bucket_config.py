"""Bucket configuration: one typed record per bucket in the gateway's KV bucket, cached in every gateway.

Each gateway watches the records (an ordered consumer on the KV subjects), so a change made through
any gateway reaches all of them in milliseconds, and reading a bucket's configuration on the request
path is a dictionary lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api as js_api
from nats.js.client import JetStreamContext
from pydantic import BaseModel, ConfigDict, ValidationError

from . import naming
from .errors import StoreUnavailable
from .models import format_mtime
from .publisher import Publisher
from .quotas import Quota
from .records import KvRecords, RecordConflict
from .versions import Versioning

log = logging.getLogger("nats_s3.store.config")

GATEWAY_KV = "nats_s3"
BUCKET_PREFIX = "bucket."
SYNC_TIMEOUT = 30.0
CAS_RETRIES = 16


class BucketConfig(BaseModel):
    """What the gateway remembers about a bucket beyond its objects (more settings join it later)."""

    model_config = ConfigDict(extra="allow")

    name: str
    created: str = ""
    versioning: str = Versioning.NEVER.value
    owner: str = ""  # canonical user id of the principal that created it ("" for buckets made before owners)
    acl: str = "private"  # a canned ACL's name, or explicit grants (auth/grants.py)
    tags: dict[str, str] | None = None  # None: no tag set (GetBucketTagging answers NoSuchTagSet)
    cors: list[dict[str, object]] | None = None  # CORS rules (protocol/cors.py); None: no configuration
    policy: str | None = None  # the bucket policy as it was put (auth/policy.py)
    ownership: str | None = None  # ObjectOwnership of the ownership controls; None: none set
    public_access_block: dict[str, bool] | None = None  # BlockPublicAcls, ...; None: none set
    quota: Quota | None = None  # store/quotas.py; None: no quota
    region: str | None = None  # the LocationConstraint it was created with (placement map); None: none
    notifications: list[dict[str, object]] | None = None  # event rules (protocol/notifications.py); None: none
    encryption: dict[str, object] | None = None  # default encryption (protocol/encryption_config.py); None: none

    @property
    def acls_enabled(self) -> bool:
        """BucketOwnerEnforced turns ACLs off: only policies grant access, the bucket owner owns all."""
        return self.ownership != "BucketOwnerEnforced"

    def blocks(self, setting: str) -> bool:
        return bool(self.public_access_block and self.public_access_block.get(setting))

    @property
    def versioning_state(self) -> Versioning:
        try:
            return Versioning(self.versioning)
        except ValueError:
            return Versioning.NEVER


def record_key(bucket: str) -> str:
    """The key of the bucket's configuration record in the gateway's KV bucket."""
    return BUCKET_PREFIX + naming.nats_bucket(bucket)


def upload_prefix(kv_prefix: str, bucket: str) -> str:
    """Where one bucket's multipart records sit in the gateway's KV bucket."""
    return f"{kv_prefix}mp.{naming.nats_bucket(bucket)}."


class BucketConfigs:
    """The records, their in-memory copy, and the watch that keeps the copy current."""

    def __init__(self, nc: NatsClient, js: JetStreamContext, publisher: Publisher, replicas: int) -> None:
        self._js = js
        self.records = KvRecords(nc, js, publisher, GATEWAY_KV, replicas)
        self._cache: dict[str, BucketConfig] = {}
        self._sub: Subscription | None = None
        self._synced = asyncio.Event()

    async def start(self) -> None:
        """Load every record and keep following changes; returns once the copy is complete."""
        await self.records.ensure()
        subject = f"{self.records.prefix}{BUCKET_PREFIX}>"
        info = await self._js.stream_info(self.records.stream, subjects_filter=subject)
        if not info.state.subjects:
            self._synced.set()
        try:
            self._sub = await self._js.subscribe(
                subject,
                stream=self.records.stream,
                ordered_consumer=True,
                deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
                cb=self._on_msg,
                pending_msgs_limit=-1,
            )
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"watching bucket configuration: {exc!r}") from exc
        try:
            await asyncio.wait_for(self._synced.wait(), SYNC_TIMEOUT)
        except TimeoutError as exc:
            raise StoreUnavailable("bucket configuration did not load in time") from exc

    async def _on_msg(self, msg: Msg) -> None:
        name = msg.subject[len(self.records.prefix) + len(BUCKET_PREFIX) :]
        if msg.headers and "KV-Operation" in msg.headers:
            self._cache.pop(name, None)
        else:
            try:
                self._cache[name] = BucketConfig.model_validate_json(msg.data)
            except ValidationError:
                log.error("unreadable bucket configuration record", extra={"record": msg.subject})
        if msg.metadata.num_pending == 0:
            self._synced.set()

    def get(self, bucket: str) -> BucketConfig:
        """The bucket's configuration as this gateway last saw it (defaults when it has no record)."""
        found = self._cache.get(naming.nats_bucket(bucket))
        return found if found is not None else BucketConfig(name=bucket)

    def cached(self, bucket: str) -> BucketConfig | None:
        """The bucket's record as this gateway last saw it; None when it has none."""
        return self._cache.get(naming.nats_bucket(bucket))

    def versioning(self, bucket: str) -> Versioning:
        found = self._cache.get(naming.nats_bucket(bucket))
        return found.versioning_state if found is not None else Versioning.NEVER

    def known(self, bucket: str) -> bool:
        return naming.nats_bucket(bucket) in self._cache

    async def adopt(self, bucket: str, created: datetime) -> None:
        """A record for a bucket that has none (made before bucket records existed), unless one appeared."""
        config = BucketConfig(name=bucket, created=format_mtime(created.astimezone(UTC)))
        with contextlib.suppress(RecordConflict):
            await self.records.create(record_key(bucket), config.model_dump_json().encode())
            self._cache.setdefault(naming.nats_bucket(bucket), config)

    async def create(self, bucket: str, created: datetime, owner: str = "", region: str | None = None) -> None:
        """A new bucket's record, replacing whatever a deleted bucket of that name left."""
        config = BucketConfig(name=bucket, created=format_mtime(created.astimezone(UTC)), owner=owner, region=region)
        key = record_key(bucket)
        for _ in range(CAS_RETRIES):
            revision = await self.records.last_revision(key)
            try:
                await self.records.update(key, config.model_dump_json().encode(), revision)
            except RecordConflict:
                continue
            self._cache[naming.nats_bucket(bucket)] = config
            return
        raise StoreUnavailable(f"could not write the configuration of {bucket}")

    async def update(self, bucket: str, change: Callable[[BucketConfig], BucketConfig]) -> BucketConfig:
        """Apply `change` (a function of the current config returning the new one), compare-and-set."""
        key = record_key(bucket)
        for _ in range(CAS_RETRIES):
            found, revision = await self.records.read(key)
            current = BucketConfig.model_validate_json(found.value) if found else BucketConfig(name=bucket)
            updated = change(current.model_copy(deep=True))
            try:
                await self.records.update(key, updated.model_dump_json().encode(), revision)
            except RecordConflict:
                continue
            self._cache[naming.nats_bucket(bucket)] = updated
            return updated
        raise StoreUnavailable(f"too many concurrent changes to the configuration of {bucket}")

    async def set_fields(self, bucket: str, **fields: object) -> BucketConfig:
        """Set some of the bucket's settings (acl=..., tags=..., cors=...), compare-and-set."""
        return await self.update(bucket, lambda config: config.model_copy(update=fields))

    async def forget(self, bucket: str) -> None:
        key = record_key(bucket)
        with contextlib.suppress(RecordConflict):
            revision = await self.records.last_revision(key)
            if revision:
                await self.records.delete(key, revision)
        self._cache.pop(naming.nats_bucket(bucket), None)

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
