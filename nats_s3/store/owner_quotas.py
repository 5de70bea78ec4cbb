"""Per-owner byte quotas: one record per owner (canonical user id) in the gateway's KV bucket, read by
every gateway at most every few seconds."""

from __future__ import annotations

import base64
import time

from pydantic import BaseModel, Field

from .records import KvRecords, RecordConflict

PREFIX = "quota.owner."
TTL = 5.0
CAS_RETRIES = 16


class OwnerQuota(BaseModel):
    owner: str
    max_bytes: int = Field(ge=1)


def _key(owner: str) -> str:
    # Canonical ids are any text a credentials file gives; the KV key alphabet is narrower.
    return PREFIX + base64.urlsafe_b64encode(owner.encode()).decode()


class OwnerQuotas:
    def __init__(self, records: KvRecords) -> None:
        self._records = records
        self._table: dict[str, int] = {}
        self._read_at: float | None = None

    @property
    def maybe_any(self) -> bool:
        """Whether a write must ask: some owner had a quota at the last reading, or that reading is old."""
        return bool(self._table) or self._read_at is None or time.monotonic() - self._read_at > TTL

    async def all(self) -> dict[str, int]:
        table: dict[str, int] = {}
        for record in await self._records.scan(PREFIX):
            try:
                found = OwnerQuota.model_validate_json(record.value)
            except ValueError:
                continue  # an unreadable record limits no one; `admin usage` shows the rest
            table[found.owner] = found.max_bytes
        self._table, self._read_at = table, time.monotonic()
        return table

    async def limit(self, owner: str) -> int:
        if self._read_at is None or time.monotonic() - self._read_at > TTL:
            await self.all()
        return self._table.get(owner, 0)

    async def set(self, owner: str, max_bytes: int) -> None:
        """Set an owner's quota; 0 removes it."""
        key = _key(owner)
        for _ in range(CAS_RETRIES):
            revision = await self._records.last_revision(key)
            try:
                if max_bytes > 0:
                    value = OwnerQuota(owner=owner, max_bytes=max_bytes).model_dump_json().encode()
                    await self._records.update(key, value, revision)
                elif revision:
                    await self._records.delete(key, revision)
            except RecordConflict:
                continue
            self._read_at = None
            return
        raise RecordConflict(key)
