"""The bytes of small objects recently read, so that a GET of one costs a single NATS request.

Every GET still reads the key's meta message from NATS (store/direct_reads.py): that is what keeps a
read consistent with any gateway's writes. Only the chunk fetch that follows is saved. An entry is
named by the version's chunk subject id and its SHA-256 digest, and holds only bytes whose SHA-256
was checked against that digest when they were read: a meta message naming the same id and digest
names exactly these bytes, whoever wrote it, so an entry never needs invalidating. Overwritten and
deleted objects age out; the cache holds at most `max_bytes`, each object at most 1/256 of it, so
one object never pushes out many.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import OrderedDict

from .models import ObjectInfo

PER_ENTRY_OVERHEAD = 200  # the key tuple, its strings and the dict slot, roughly


class ReadCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_object = max_bytes // 256
        self._entries: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def holds(self, info: ObjectInfo) -> bool:
        """Whether this version is one the cache takes: small, one chunk subject, a SHA-256 digest."""
        return (
            0 < info.size <= self.max_object
            and not info.parts
            and bool(info.nuid)
            and info.digest.upper().startswith("SHA-256=")
        )

    def get(self, info: ObjectInfo) -> bytes | None:
        key = (info.bucket, info.nuid, info.digest)
        data = self._entries.get(key)
        if data is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return data

    def put(self, info: ObjectInfo, data: bytes) -> None:
        """Keep `data` as this version's bytes, if its SHA-256 is the version's digest."""
        if len(data) != info.size or not _matches(info.digest, data):
            return
        key = (info.bucket, info.nuid, info.digest)
        if key in self._entries:
            return
        self._entries[key] = data
        self.bytes += len(data) + PER_ENTRY_OVERHEAD
        while self.bytes > self.max_bytes and self._entries:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= len(dropped) + PER_ENTRY_OVERHEAD

    def __len__(self) -> int:
        return len(self._entries)


def _matches(digest: str, data: bytes) -> bool:
    value = digest.split("=", 1)[1]
    try:
        expected = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return False
    return hashlib.sha256(data).digest() == expected
