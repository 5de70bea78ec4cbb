"""Storage quotas: per bucket (bytes, and optionally objects), per owner and in total.

A write is admitted before it takes a byte: the bytes it brings (its Content-Length, a copy's source
size) are added to the usage read from NATS stream state, and so are the writes this gateway admitted
since that reading. That check gives the clear refusal. The hard limit is JetStream's: a bucket's byte
quota is also its stream's `max_bytes` (discard new), so no writer can go past it, another gateway's, an
older gateway's or a plain NATS client's included, and what JetStream refuses is a QuotaExceeded too.

The stream limit is the quota plus a reserve for records (version, deletion and claim messages): a
bucket that is full must still let its objects be deleted, and a deletion is a message. Object bytes are
held to the quota itself by the admission check; only records, and writes racing through several
gateways at once, can reach into the reserve. Owner and total quotas have no stream to map onto (the
NATS account's JetStream limits are the hard cap there, and their refusals are QuotaExceeded too).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field

from .errors import QuotaExceeded

# JetStream refusals that mean "no room": the stream's max_bytes (discard new), the account's limits,
# the server's storage.
ERR_STREAM_FULL = 10077
ERR_ACCOUNT_LIMITS = 10002
ERR_NO_STORAGE = 10047
STORAGE_FULL = frozenset({ERR_STREAM_FULL, ERR_ACCOUNT_LIMITS, ERR_NO_STORAGE})

RESERVE_MIN = 1024 * 1024
RESERVE_MAX = 64 * 1024 * 1024
BUCKET_READ_TTL = 0.5  # a quota'd bucket's stream info is read at most this often per gateway
ALL_READ_TTL = 2.0  # every bucket's stream state (owner and total quotas) at most this often


class Quota(BaseModel):
    """A limit on bytes (what the bucket's stream holds) and on live objects; 0: no limit."""

    model_config = ConfigDict(extra="ignore")

    max_bytes: int = Field(default=0, ge=0)
    max_objects: int = Field(default=0, ge=0)

    @property
    def unlimited(self) -> bool:
        return self.max_bytes == 0 and self.max_objects == 0


def stream_max_bytes(quota: Quota | None) -> int:
    """The bucket stream's `max_bytes` for a quota (-1: none): the quota and the records' reserve."""
    if quota is None or quota.max_bytes == 0:
        return -1
    return quota.max_bytes + max(RESERVE_MIN, min(quota.max_bytes // 64, RESERVE_MAX))


def refusal(err_code: int, description: str, where: str) -> QuotaExceeded | None:
    """The QuotaExceeded for a JetStream refusal that means no room, else None."""
    if err_code == ERR_STREAM_FULL:
        return QuotaExceeded(f"The quota of bucket stream {where} is reached ({description}).")
    if err_code in (ERR_ACCOUNT_LIMITS, ERR_NO_STORAGE):
        return QuotaExceeded(f"The NATS account's JetStream storage is full ({description}).")
    return None


class UsageReading:
    """A usage figure read from NATS at most every `ttl` seconds (one read for all who wait), plus the
    bytes this gateway admitted since the read began: a burst of writes sees its own bytes at once."""

    def __init__(self, read: Callable[[], Awaitable[int]], ttl: float) -> None:
        self._read = read
        self._ttl = ttl
        self._value = 0
        self._read_began: float | None = None
        self._pending: asyncio.Future[None] | None = None
        self._admitted: deque[tuple[float, int]] = deque()

    async def current(self) -> int:
        now = time.monotonic()
        if self._read_began is None or now - self._read_began > self._ttl:
            await self._refresh()
        while self._admitted and self._read_began is not None and self._admitted[0][0] < self._read_began:
            self._admitted.popleft()
        return self._value + sum(n for _, n in self._admitted)

    async def _refresh(self) -> None:
        if self._pending is not None:
            await asyncio.shield(self._pending)
            return
        self._pending = asyncio.get_running_loop().create_future()
        began = time.monotonic()
        try:
            self._value = await self._read()
            self._read_began = began
            self._pending.set_result(None)
        except BaseException as exc:
            self._pending.set_exception(exc)
            self._pending.exception()  # retrieved: the waiters raise it themselves
            raise
        finally:
            self._pending = None

    def admitted(self, size: int) -> None:
        if size > 0:
            self._admitted.append((time.monotonic(), size))


class QuotaEnforcer:
    """Admits writes against the quotas; the store supplies how usage is read."""

    def __init__(
        self,
        *,
        total_max_bytes: int,
        bucket_bytes: Callable[[str], Awaitable[int]],
        all_bucket_bytes: Callable[[], Awaitable[dict[str, int]]],
        live_objects: Callable[[str], Awaitable[int]],
        owner_of: Callable[[str], str],
        owner_limit: Callable[[str], Awaitable[int]],
    ) -> None:
        self.total_max_bytes = total_max_bytes
        self._bucket_bytes = bucket_bytes
        self._all_bucket_bytes = all_bucket_bytes
        self._live_objects = live_objects
        self._owner_of = owner_of
        self._owner_limit = owner_limit
        self._buckets: dict[str, UsageReading] = {}
        self._all: dict[str, int] = {}
        self._all_reading = UsageReading(self._read_all, ALL_READ_TTL)
        self._owners: dict[str, UsageReading] = {}
        self._new_objects: dict[str, int] = {}  # new keys admitted and not yet finished, per bucket

    async def _read_all(self) -> int:
        self._all = await self._all_bucket_bytes()
        return sum(self._all.values())

    def _bucket_reading(self, bucket: str) -> UsageReading:
        reading = self._buckets.get(bucket)
        if reading is None:

            async def read() -> int:
                return await self._bucket_bytes(bucket)

            reading = self._buckets[bucket] = UsageReading(read, BUCKET_READ_TTL)
        return reading

    def _owner_reading(self, owner: str) -> UsageReading:
        reading = self._owners.get(owner)
        if reading is None:

            async def read() -> int:
                await self._all_reading.current()  # the shared reading of every bucket, at most every ALL_READ_TTL
                return sum(n for b, n in self._all.items() if self._owner_of(b) == owner)

            reading = self._owners[owner] = UsageReading(read, ALL_READ_TTL)
        return reading

    @contextlib.asynccontextmanager
    async def admit(
        self, bucket: str, quota: Quota | None, size: int | None, *, adds_object: bool
    ) -> AsyncIterator[None]:
        """Refuse (QuotaExceeded) a write of `size` bytes (None: not known; only a full quota refuses
        it) that `adds_object` or not; else hold its place while it runs (a new key counts against
        max_objects until the write ends, by when the index holds it if it landed)."""
        owner = self._owner_of(bucket)
        owner_max = await self._owner_limit(owner) if owner else 0
        bytes_needed = size or 0
        if quota is not None and quota.max_bytes:
            used = await self._bucket_reading(bucket).current()
            _check(used, bytes_needed, size, quota.max_bytes, f"bucket {bucket}")
        if owner_max:
            used = await self._owner_reading(owner).current()
            _check(used, bytes_needed, size, owner_max, f"owner {owner}")
        if self.total_max_bytes:
            used = await self._all_reading.current()
            _check(used, bytes_needed, size, self.total_max_bytes, "this gateway's total")
        counted = False
        if adds_object and quota is not None and quota.max_objects:
            live = await self._live_objects(bucket) + self._new_objects.get(bucket, 0)
            if live + 1 > quota.max_objects:
                raise QuotaExceeded(
                    f"The object quota of bucket {bucket} is reached: {live} of {quota.max_objects} objects."
                )
            self._new_objects[bucket] = self._new_objects.get(bucket, 0) + 1
            counted = True
        for reading in self._readings(bucket, quota, owner_max, owner):
            reading.admitted(bytes_needed)
        try:
            yield
        finally:
            if counted:
                left = self._new_objects[bucket] - 1
                if left:
                    self._new_objects[bucket] = left
                else:
                    del self._new_objects[bucket]

    def _readings(self, bucket: str, quota: Quota | None, owner_max: int, owner: str) -> list[UsageReading]:
        readings = []
        if quota is not None and quota.max_bytes:
            readings.append(self._bucket_reading(bucket))
        if owner_max:
            readings.append(self._owner_reading(owner))
        if self.total_max_bytes:
            readings.append(self._all_reading)
        return readings

    def forget(self, bucket: str) -> None:
        """A bucket deleted or re-limited: read its usage afresh next time."""
        self._buckets.pop(bucket, None)


def _check(used: int, needed: int, size: int | None, limit: int, what: str) -> None:
    if used + needed > limit or (size is None and used >= limit):
        asked = f" and this write needs {needed} more" if needed else ""
        raise QuotaExceeded(f"The storage quota of {what} is {limit} bytes: {used} are in use{asked}.")
