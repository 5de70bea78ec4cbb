"""A lease in the gateway's KV bucket: at most one gateway holds it, and it lapses when its holder stops
renewing it (a holder that died), so another gateway takes over."""

from __future__ import annotations

import contextlib
import secrets
import time

from pydantic import BaseModel, ValidationError

from .errors import StoreUnavailable
from .records import KvRecords, RecordConflict

# What the holder keeps in hand: it stops acting this long before the lease would lapse, so clocks a
# little apart never let two holders act at once.
SAFETY_MARGIN = 0.25


class LeaseRecord(BaseModel):
    holder: str
    expires: float  # POSIX seconds


class Lease:
    def __init__(self, records: KvRecords, name: str, ttl: float, holder: str | None = None) -> None:
        self._records = records
        self._key = f"lease.{name}"
        self.ttl = ttl
        self.holder = holder or secrets.token_hex(8)
        self._revision = 0
        self._valid_until = 0.0

    @property
    def held(self) -> bool:
        return time.monotonic() < self._valid_until

    async def acquire(self) -> bool:
        """Take or renew the lease; False while another live holder has it."""
        try:
            found, revision = await self._records.read(self._key)
        except StoreUnavailable:
            self._valid_until = 0.0
            raise
        now = time.time()
        if found is not None:
            try:
                current = LeaseRecord.model_validate_json(found.value)
            except ValidationError:
                current = LeaseRecord(holder="", expires=0.0)
            if current.holder != self.holder and current.expires > now:
                self._valid_until = 0.0
                return False
        started = time.monotonic()
        record = LeaseRecord(holder=self.holder, expires=now + self.ttl)
        try:
            self._revision = await self._records.update(self._key, record.model_dump_json().encode(), revision)
        except RecordConflict:
            self._valid_until = 0.0
            return False
        self._valid_until = started + self.ttl * (1 - SAFETY_MARGIN)
        return True

    async def release(self) -> None:
        if not self._revision:
            return
        self._valid_until = 0.0
        with contextlib.suppress(RecordConflict, StoreUnavailable):
            await self._records.delete(self._key, self._revision)
        self._revision = 0
