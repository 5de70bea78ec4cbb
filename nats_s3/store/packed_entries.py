"""A sorted map from object key to what a listing shows of it, packed into bytes.

A listing index of a million keys held as Python objects (a str, a tuple, an int, two more str per key,
and the dict and sorted-list slots) costs about 340 bytes per key. Here a key costs its UTF-8 bytes plus
a 45-byte record and a 4-byte offset: no Python object per key at all. Keys live in blocks of at most
BLOCK_MAX records, each block one `bytes` of records in key order and an array of record offsets; a
top list of each block's first key finds the block by bisection. An insert or delete rewrites one
block (a few KiB copied), so a write costs microseconds whatever the size of the bucket.

Keys are compared as UTF-8 bytes, which is code point order: the order S3 lists keys in, and the order
of Python's str comparison.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from typing import NamedTuple

BLOCK_MAX = 128  # records per block before it splits in two


class Entry(NamedTuple):
    """What a listing shows of one object."""

    size: int
    etag: str
    mtime: float  # POSIX seconds
    checksum_algorithm: str | None
    version_id: str  # "null" unless versioning made this version


# Record: the header, then the key, the version id, a raw ETag (only when it is not MD5-shaped) and a
# raw checksum algorithm name (only when it is not one of CHECKSUMS).
_HEAD = struct.Struct("<HHHHBBQdI16s")  # key len, vid len, raw etag len, raw checksum len, etag kind,
# checksum code, size, mtime, multipart part count, MD5
_KEY_LEN = struct.Struct("<H")
_ETAG_MD5, _ETAG_PARTS, _ETAG_RAW = 0, 1, 2
CHECKSUMS: tuple[str | None, ...] = (None, "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
_CHECKSUM_CODE = {name: code for code, name in enumerate(CHECKSUMS)}
_RAW_CHECKSUM = 255
_NULL = "null"
_HEX = frozenset("0123456789abcdef")


def encode_key(key: str) -> bytes:
    # surrogatepass: a key a client escaped as a lone surrogate still round-trips, in code point order.
    return key.encode("utf-8", "surrogatepass")


def _decode_key(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _split_etag(etag: str) -> tuple[int, int, bytes, bytes]:
    """(kind, parts, md5, raw): an MD5 or multipart ETag packs into 20 bytes; anything else stays text."""
    digest, dash, count = etag.partition("-")
    if len(digest) == 32 and _HEX.issuperset(digest):
        if not dash:
            return _ETAG_MD5, 0, bytes.fromhex(digest), b""
        if count.isdigit() and count[0] != "0" and int(count) < 2**32:
            return _ETAG_PARTS, int(count), bytes.fromhex(digest), b""
    return _ETAG_RAW, 0, b"\0" * 16, etag.encode()


def encode_record(key: bytes, entry: Entry) -> bytes:
    kind, parts, md5, raw_etag = _split_etag(entry.etag)
    vid = b"" if entry.version_id == _NULL else entry.version_id.encode()
    code = _CHECKSUM_CODE.get(entry.checksum_algorithm, _RAW_CHECKSUM)
    raw_checksum = b"" if code != _RAW_CHECKSUM else (entry.checksum_algorithm or "").encode()
    head = _HEAD.pack(
        len(key), len(vid), len(raw_etag), len(raw_checksum), kind, code, entry.size, entry.mtime, parts, md5
    )
    return b"".join((head, key, vid, raw_etag, raw_checksum))


def _decode_at(blob: bytes, offset: int) -> tuple[bytes, Entry]:
    klen, vlen, elen, clen, kind, code, size, mtime, parts, md5 = _HEAD.unpack_from(blob, offset)
    at = offset + _HEAD.size
    key = blob[at : at + klen]
    at += klen
    vid = blob[at : at + vlen].decode() if vlen else _NULL
    at += vlen
    if kind == _ETAG_RAW:
        etag = blob[at : at + elen].decode()
    elif kind == _ETAG_PARTS:
        etag = f"{md5.hex()}-{parts}"
    else:
        etag = md5.hex()
    at += elen
    checksum = CHECKSUMS[code] if code != _RAW_CHECKSUM else blob[at : at + clen].decode()
    return key, Entry(size, etag, mtime, checksum, vid)


def _key_at(blob: bytes, offset: int) -> bytes:
    (klen,) = _KEY_LEN.unpack_from(blob, offset)
    start = offset + _HEAD.size
    return blob[start : start + klen]


class _Block:
    __slots__ = ("blob", "offsets")

    def __init__(self, blob: bytes, offsets: array[int]) -> None:
        self.blob = blob
        self.offsets = offsets  # where each record starts in blob; a record ends where the next starts

    @classmethod
    def of(cls, records: list[bytes]) -> _Block:
        offsets = array("I")
        at = 0
        for record in records:
            offsets.append(at)
            at += len(record)
        return cls(b"".join(records), offsets)

    def __len__(self) -> int:
        return len(self.offsets)

    def key(self, i: int) -> bytes:
        return _key_at(self.blob, self.offsets[i])

    def find(self, key: bytes) -> tuple[int, bool]:
        """(position of the first record >= key, whether that record is key)."""
        lo, hi = 0, len(self.offsets)
        blob, offsets, unpack, head = self.blob, self.offsets, _KEY_LEN.unpack_from, _HEAD.size
        while lo < hi:  # inlined _key_at: this loop is most of a write's cost
            mid = (lo + hi) // 2
            at = offsets[mid]
            start = at + head
            if blob[start : start + unpack(blob, at)[0]] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo, lo < len(offsets) and _key_at(blob, offsets[lo]) == key

    def replace(self, i: int, stop: int, record: bytes) -> None:
        """Records [i, stop) become `record` (b"" to delete record i)."""
        start = self.offsets[i] if i < len(self.offsets) else len(self.blob)
        end = self.offsets[stop] if stop < len(self.offsets) else len(self.blob)
        shift = len(record) - (end - start)
        self.blob = b"".join((self.blob[:start], record, self.blob[end:]))
        tail = array("I", map(shift.__add__, self.offsets[stop:])) if shift else self.offsets[stop:]
        self.offsets = self.offsets[:i] + (array("I", (start,)) if record else array("I")) + tail

    def split(self) -> _Block:
        """Move the upper half into a new block, returned."""
        half = len(self.offsets) // 2
        cut = self.offsets[half]
        upper = _Block(self.blob[cut:], array("I", (o - cut for o in self.offsets[half:])))
        self.blob = self.blob[:cut]
        self.offsets = self.offsets[:half]
        return upper


class PackedEntries:
    """Sorted key -> Entry, packed. Iterators are for synchronous use: no write between their steps."""

    def __init__(self) -> None:
        self._blocks: list[_Block] = []
        self._firsts: list[bytes] = []  # first key of each block
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def load(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Replace the contents with (key, record) pairs given in strictly ascending key order."""
        self._blocks, self._firsts, self._count = [], [], 0
        batch: list[bytes] = []
        first = b""
        for key, record in records:
            if not batch:
                # A copy: the build's own key objects must all go, or the few kept as first keys would
                # pin every memory arena they sit in, and the process would never shrink back.
                first = bytes(memoryview(key))
            batch.append(record)
            if len(batch) == BLOCK_MAX // 2:  # half full: room to grow without splitting at once
                self._append_block(first, batch)
                batch = []
        if batch:
            self._append_block(first, batch)

    def _append_block(self, first: bytes, records: list[bytes]) -> None:
        self._blocks.append(_Block.of(records))
        self._firsts.append(first)
        self._count += len(records)

    def _block_for(self, key: bytes) -> int:
        """The block that holds `key` or would: the last whose first key is <= key (0 if none)."""
        return max(bisect_right(self._firsts, key) - 1, 0)

    def get(self, key: str) -> Entry | None:
        if not self._blocks:
            return None
        raw = encode_key(key)
        block = self._blocks[self._block_for(raw)]
        i, found = block.find(raw)
        return _decode_at(block.blob, block.offsets[i])[1] if found else None

    def __contains__(self, key: str) -> bool:
        if not self._blocks:
            return False
        raw = encode_key(key)
        return self._blocks[self._block_for(raw)].find(raw)[1]

    def set(self, key: str, entry: Entry) -> None:
        raw = encode_key(key)
        record = encode_record(raw, entry)
        if not self._blocks:
            self._append_block(raw, [record])
            return
        b = self._block_for(raw)
        block = self._blocks[b]
        i, found = block.find(raw)
        block.replace(i, i + 1 if found else i, record)
        if not found:
            self._count += 1
            if i == 0:
                self._firsts[b] = raw
            if len(block) > BLOCK_MAX:
                upper = block.split()
                self._blocks.insert(b + 1, upper)
                self._firsts.insert(b + 1, upper.key(0))

    def pop(self, key: str) -> Entry | None:
        if not self._blocks:
            return None
        raw = encode_key(key)
        b = self._block_for(raw)
        block = self._blocks[b]
        i, found = block.find(raw)
        if not found:
            return None
        entry = _decode_at(block.blob, block.offsets[i])[1]
        block.replace(i, i + 1, b"")
        self._count -= 1
        if not len(block):
            del self._blocks[b]
            del self._firsts[b]
        elif i == 0:
            self._firsts[b] = block.key(0)
        return entry

    def _positions_from(self, start: str, inclusive: bool) -> Iterator[tuple[_Block, int]]:
        raw = encode_key(start)
        b = self._block_for(raw) if self._blocks else 0
        if b < len(self._blocks):
            i, found = self._blocks[b].find(raw)
            if found and not inclusive:
                i += 1
        else:
            i = 0
        while b < len(self._blocks):
            block = self._blocks[b]
            for j in range(i, len(block)):
                yield block, j
            b += 1
            i = 0

    def keys_from(self, start: str, inclusive: bool = True) -> Iterator[str]:
        """Keys >= start (> start unless inclusive), ascending."""
        for block, i in self._positions_from(start, inclusive):
            yield _decode_key(block.key(i))

    def items_from(self, start: str, inclusive: bool = True) -> Iterator[tuple[str, Entry]]:
        for block, i in self._positions_from(start, inclusive):
            key, entry = _decode_at(block.blob, block.offsets[i])
            yield _decode_key(key), entry

    def export(self) -> list[tuple[bytes, array[int]]]:
        """Every block's (records, offsets), a consistent picture of now (bytes never change in place,
        and the offsets are copied)."""
        return [(b.blob, array("I", b.offsets)) for b in self._blocks]

    def restore(self, blocks: list[tuple[bytes, array[int]]]) -> None:
        """The contents `export` gave (a snapshot): blocks in key order, each sorted, none empty."""
        self._blocks = [_Block(blob, offsets) for blob, offsets in blocks if len(offsets)]
        self._firsts = [b.key(0) for b in self._blocks]
        self._count = sum(len(b) for b in self._blocks)
        for block in self._blocks:
            if block.offsets[0] != 0 or any(o >= len(block.blob) for o in block.offsets[-1:]):
                raise ValueError("a block's offsets do not fit its records")
        if any(a >= b for a, b in zip(self._firsts, self._firsts[1:], strict=False)):
            raise ValueError("blocks out of order")

    def held_bytes(self) -> int:
        """What the packed records and their offsets take (for the index's memory figure)."""
        return sum(len(b.blob) + 4 * len(b.offsets) for b in self._blocks)


def sorted_records(latest: dict[bytes, bytes]) -> Iterator[tuple[bytes, bytes]]:
    """A build's (key -> record) map in key order, for `PackedEntries.load`."""
    for key in sorted(latest):
        yield key, latest[key]
