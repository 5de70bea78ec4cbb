"""Access control lists: grants of READ, WRITE, READ_ACP, WRITE_ACP or FULL_CONTROL to a canonical user
or to a group (everyone, or every signed caller).

An ACL is kept as text with its bucket or object: a canned ACL's name ("private", "public-read", ...),
resolved against the owners when judged, or a JSON list of explicit grants.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..protocol.errors import S3Error

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY})
PUBLIC_GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS})

READ, WRITE, READ_ACP, WRITE_ACP, FULL_CONTROL = "READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"
PERMISSIONS = (FULL_CONTROL, WRITE, WRITE_ACP, READ, READ_ACP)

USER, GROUP = "CanonicalUser", "Group"
MAX_GRANTS = 100  # S3's limit per ACL

# The header each permission is granted by (x-amz-grant-*), in S3's order.
GRANT_HEADERS = {
    "x-amz-grant-read": READ,
    "x-amz-grant-write": WRITE,
    "x-amz-grant-read-acp": READ_ACP,
    "x-amz-grant-write-acp": WRITE_ACP,
    "x-amz-grant-full-control": FULL_CONTROL,
}


@dataclass(frozen=True, slots=True)
class Grant:
    kind: str  # USER or GROUP
    grantee: str  # canonical user id, or group URI
    permission: str

    def covers(self, user_id: str | None, permission: str, ignore_public: bool) -> bool:
        if self.permission != FULL_CONTROL and self.permission != permission:
            return False
        if self.kind == USER:
            return user_id is not None and self.grantee == user_id
        if self.grantee == ALL_USERS:
            return not ignore_public
        if self.grantee == AUTHENTICATED_USERS:
            return user_id is not None and not ignore_public
        return False


def canned(name: str, owner: str, bucket_owner: str) -> tuple[Grant, ...]:
    """The grants a canned ACL stands for, on a resource owned by `owner` in a bucket owned by
    `bucket_owner` (the same for a bucket)."""
    grants = [Grant(USER, owner, FULL_CONTROL)] if owner else []
    if name in ("public-read", "public-read-write"):
        grants.append(Grant(GROUP, ALL_USERS, READ))
    if name == "public-read-write":
        grants.append(Grant(GROUP, ALL_USERS, WRITE))
    elif name == "authenticated-read":
        grants.append(Grant(GROUP, AUTHENTICATED_USERS, READ))
    elif name == "log-delivery-write":
        grants += [Grant(GROUP, LOG_DELIVERY, WRITE), Grant(GROUP, LOG_DELIVERY, READ_ACP)]
    elif name in ("bucket-owner-read", "bucket-owner-full-control") and bucket_owner and bucket_owner != owner:
        grants.append(Grant(USER, bucket_owner, READ if name == "bucket-owner-read" else FULL_CONTROL))
    return tuple(grants)


def resolve(stored: str, owner: str, bucket_owner: str) -> tuple[Grant, ...]:
    """A kept ACL as its grants."""
    if stored.startswith("["):
        try:
            return tuple(Grant(kind, grantee, permission) for kind, grantee, permission in json.loads(stored))
        except (ValueError, TypeError):
            return canned("private", owner, bucket_owner)
    return canned(stored or "private", owner, bucket_owner)


def encode(grants: Iterable[Grant]) -> str:
    return json.dumps([[g.kind, g.grantee, g.permission] for g in grants], separators=(",", ":"))


def allows(grants: Iterable[Grant], user_id: str | None, permission: str, ignore_public: bool = False) -> bool:
    return any(grant.covers(user_id, permission, ignore_public) for grant in grants)


def is_public(stored: str) -> bool:
    """Whether a kept ACL grants anything to everyone or to every signed caller."""
    if stored.startswith("["):
        return any(g.kind == GROUP and g.grantee in PUBLIC_GROUPS for g in resolve(stored, "", ""))
    return stored in ("public-read", "public-read-write", "authenticated-read")


def _grantee(text: str) -> Grant:
    kind, sep, value = text.strip().partition("=")
    value = value.strip()
    if not sep or len(value) < 2 or value[0] != '"' or value[-1] != '"':
        raise S3Error("InvalidArgument", 'Invalid grantee: grants are id="...", uri="..." or emailAddress="...".')
    value = value[1:-1]
    kind = kind.strip().lower()
    if kind == "id" and value:
        return Grant(USER, value, "")
    if kind == "uri":
        if value not in GROUPS:
            raise S3Error("InvalidArgument", f"Invalid group uri: {value[:128]}", extra={"ArgumentName": "uri"})
        return Grant(GROUP, value, "")
    if kind == "emailaddress":
        raise S3Error(
            "UnresolvableGrantByEmailAddress", "The e-mail address you provided does not match any account on record."
        )
    raise S3Error("InvalidArgument", f"Invalid grantee type: {kind[:32]}")


def from_headers(headers: Mapping[str, str]) -> list[Grant] | None:
    """The explicit grants of `x-amz-grant-*` headers (a comma-separated list of grantees each), or
    None when the request has none."""
    found: list[Grant] = []
    named = False
    for header, permission in GRANT_HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        named = True
        for part in _split_grantees(value):
            grantee = _grantee(part)
            found.append(Grant(grantee.kind, grantee.grantee, permission))
    if len(found) > MAX_GRANTS:
        raise S3Error("MalformedACLError", "An ACL can hold at most 100 grants.")
    return found if named else None


def _split_grantees(value: str) -> list[str]:
    """Split on commas outside quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]
