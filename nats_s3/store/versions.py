"""Object versions: version ids, and what a stored meta document says about the version it records.

A key's latest version (live object or delete marker) is its Object Store meta message; older
versions live on version subjects (`V.<key>.<uid>`). Every version has a unique internal id, the
`uid`: 16 hex digits of nanoseconds since the epoch, then 8 random hex digits, so ids sort in time
order. S3 shows the uid as the version id, except for the "null" version (written while versioning
was never enabled, or is suspended), whose S3 version id is `null`.
"""

from __future__ import annotations

import enum
import random
import re
import secrets
import time

from .models import StoredObjectInfo, parse_mtime

META_VID = "s3-vid"  # the version's uid
META_NULL = "s3-null"  # "1": S3 calls this version "null"
META_MARKER = "s3-marker"  # "1": an S3 delete marker (deleted=true with a version id)
META_GONE = "s3-gone"  # "1": a version subject whose version was permanently deleted
META_NULLV = "s3-nullv"  # on the latest version: uid of the null version kept among older versions

NULL = "null"
_UID_RE = re.compile(r"^[0-9a-f]{24}$")


class Versioning(enum.Enum):
    """A bucket's versioning state as S3 has it (NEVER: the state of a new bucket)."""

    NEVER = "Never"
    ENABLED = "Enabled"
    SUSPENDED = "Suspended"


# The uid's random tail tells apart versions made in the same nanosecond by different writers; it need
# not be secret (who may read a version is the policy's business), so no OS random read per write.
_TAIL = random.Random(secrets.randbits(64))


def new_uid(after: str | None = None) -> str:
    """A fresh uid, later than `after` even if this gateway's clock is behind the one that wrote it."""
    now = time.time_ns()
    if after is not None and _UID_RE.match(after):
        now = max(now, int(after[:16], 16) + 1)
    return f"{now:016x}{_TAIL.getrandbits(32):08x}"


def is_uid(text: str) -> bool:
    return _UID_RE.match(text) is not None


def uid_time_ns(uid: str) -> int:
    return int(uid[:16], 16) if is_uid(uid) else 0


def legacy_uid(doc: StoredObjectInfo) -> str:
    """The uid of a meta document written without one (before versions, or by another Object Store client)."""
    ns = int(parse_mtime(doc.mtime).timestamp() * 1_000_000) * 1000
    return f"{ns:016x}00000000"


def uid_of(doc: StoredObjectInfo) -> str:
    return (doc.metadata or {}).get(META_VID) or legacy_uid(doc)


def is_null(doc: StoredObjectInfo) -> bool:
    meta = doc.metadata or {}
    return META_VID not in meta or meta.get(META_NULL) == "1"


def is_marker(doc: StoredObjectInfo) -> bool:
    """An S3 delete marker: a version of its own (unlike an Object Store deletion, which leaves no version)."""
    return doc.deleted and (doc.metadata or {}).get(META_MARKER) == "1"


def is_gone(doc: StoredObjectInfo) -> bool:
    return (doc.metadata or {}).get(META_GONE) == "1"


def is_version(doc: StoredObjectInfo) -> bool:
    """A live object or a delete marker; not an Object Store deletion and not a tombstone."""
    return (not doc.deleted or is_marker(doc)) and not is_gone(doc)


def nullv_of(doc: StoredObjectInfo) -> str | None:
    return (doc.metadata or {}).get(META_NULLV)


def s3_version_id(doc: StoredObjectInfo) -> str:
    return NULL if is_null(doc) else uid_of(doc)


def effective_versioning(configured: Versioning, head: StoredObjectInfo | None) -> Versioning:
    """The state writes follow. A gateway whose bucket configuration is a moment old may still think a
    bucket never had versioning when its latest version says otherwise: then it acts as if suspended,
    which keeps every non-null version (S3 itself asks for a wait after enabling versioning)."""
    if configured is Versioning.NEVER and head is not None:
        meta = head.metadata or {}
        if meta.get(META_NULLV) or (META_VID in meta and meta.get(META_NULL) != "1") or is_marker(head):
            return Versioning.SUSPENDED
    return configured
