"""How S3 names map onto NATS names and subjects (the Object Store layout)."""

from __future__ import annotations

import base64
import re

# S3 bucket rules: 3..63 chars of [a-z0-9.-], starting and ending with a letter or digit,
# no "..", not shaped like an IPv4 address, no reserved prefixes/suffixes.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# NATS object store names: [A-Za-z0-9_-]
_NATS_BUCKET_RE = re.compile(r"^[A-Za-z0-9_-]+$")

MAX_KEY_BYTES = 1024


def is_valid_bucket_name(name: str) -> bool:
    if not _BUCKET_RE.match(name) or ".." in name or _IPV4_RE.match(name):
        return False
    if ".-" in name or "-." in name:
        return False
    return not (name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES))


def nats_bucket(s3_bucket: str) -> str:
    """S3 bucket -> Object Store bucket. Reversible: S3 names never contain '_'."""
    return s3_bucket.replace(".", "_")


def s3_bucket(nats_name: str) -> str | None:
    """Object Store bucket -> S3 bucket, or None when the store has no valid S3 name."""
    if not _NATS_BUCKET_RE.match(nats_name):
        return None
    name = nats_name.replace("_", ".")
    return name if is_valid_bucket_name(name) else None


def stream_name(nats_name: str) -> str:
    return f"OBJ_{nats_name}"


def encode_key(key: str) -> str:
    # Same encoding as the NATS clients: URL-safe base64 with padding.
    return base64.urlsafe_b64encode(key.encode()).decode()


def decode_key(token: str) -> str:
    return base64.urlsafe_b64decode(token).decode()


def meta_subject(nats_name: str, key: str) -> str:
    """The key's latest version, in the Object Store format (what `nats object get` reads)."""
    return f"$O.{nats_name}.M.{encode_key(key)}"


def meta_wildcard(nats_name: str) -> str:
    return f"$O.{nats_name}.M.>"


def chunk_subject(nats_name: str, nuid: str) -> str:
    return f"$O.{nats_name}.C.{nuid}"


def chunk_wildcard(nats_name: str) -> str:
    return f"$O.{nats_name}.C.>"


# Beyond the Object Store format, the bucket's stream holds the gateway's own records (see README,
# "How data is laid out in NATS"). Plain Object Store clients never look at these subjects.


def version_subject(nats_name: str, key: str, uid: str) -> str:
    """A version of `key` that is not its latest (or a copy of the latest, see store/versions.py)."""
    return f"$O.{nats_name}.V.{encode_key(key)}.{uid}"


def version_wildcard(nats_name: str) -> str:
    return f"$O.{nats_name}.V.>"


def claim_subject(nats_name: str, nuid: str) -> str:
    """Reclamation claims about one chunk subject: who may still reference it (store/claims.py)."""
    return f"$O.{nats_name}.G.{nuid}"


def claim_wildcard(nats_name: str) -> str:
    return f"$O.{nats_name}.G.>"


def stream_subjects(nats_name: str) -> list[str]:
    """Every subject a bucket's stream listens on."""
    return [
        chunk_wildcard(nats_name),
        meta_wildcard(nats_name),
        version_wildcard(nats_name),
        claim_wildcard(nats_name),
    ]


def stream_of(subject: str) -> str | None:
    """The stream of this project's that captures a subject: a bucket's (`$O.<name>.`) or a KV
    bucket's (`$KV.<name>.`); None for others."""
    head, _, rest = subject.partition(".")
    name = rest.partition(".")[0]
    if not name:
        return None
    if head == "$O":
        return stream_name(name)
    if head == "$KV":
        return f"KV_{name}"
    return None
