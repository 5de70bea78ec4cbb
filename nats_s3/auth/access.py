"""Whether a caller may do what a request asks, as AWS documents the evaluation: an explicit Deny in
the caller's own policy or the bucket policy wins; otherwise an Allow from any of the caller's own
rights, its policy, the bucket policy or an ACL grants it; otherwise it is refused.

A caller's own rights: with no `admin` or `policy` in the credentials file (one-user mode), every key
may do everything, as the Go nats-s3 meant. Otherwise an admin may do everything, any key may list its
buckets, a key without a policy may create buckets, and a bucket's owner may do everything on it.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..store.bucket_config import BucketConfig
from . import grants
from .actions import BUCKET, OBJECT, POLICY_ACTIONS, SERVICE, Requirement, resource_arn
from .policy import Decision, Facts, Policy, parse_policy
from .principals import Principal


class Verdict(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    NEED_OBJECT = "need-object"  # ask again with the object's ACL, owner and tags


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What authorization needs to know of an existing object."""

    acl: str  # as kept (auth/grants.py)
    owner: str  # "" where the bucket's owner owns it
    tags: Mapping[str, str]


@functools.lru_cache(maxsize=1024)
def bucket_policy(text: str, bucket: str) -> Policy:
    """A bucket's policy, parsed once per text (it was checked when it was put)."""
    return parse_policy(text, bucket)


def quick_allow(principal: Principal | None, multi_user: bool, config: BucketConfig | None) -> bool:
    """The common case decided without building any facts: a key with every right, on a bucket
    without a policy (nothing there could deny it)."""
    if principal is None or (multi_user and not principal.admin):
        return False
    return config is None or config.policy is None


def judge(
    principal: Principal | None,
    multi_user: bool,
    requirement: Requirement,
    action: str,
    bucket: str | None,
    key: str | None,
    config: BucketConfig | None,
    context: Callable[[], Mapping[str, Sequence[str]]],
    obj: ObjectFacts | None = None,
) -> Verdict:
    """`config`: the bucket's configuration (None for ListBuckets, or a bucket that has none);
    `context`: the request's condition keys, asked for only where a policy is to be evaluated; `obj`:
    the object, once NEED_OBJECT asked for it (it does only for an object that exists)."""
    identity = principal.policy if principal is not None else None
    policy = bucket_policy(config.policy, config.name) if config is not None and config.policy else None
    on_object = requirement.resource == OBJECT and key is not None
    if obj is None and on_object and any(p is not None and p.reads_existing_tags for p in (identity, policy)):
        return Verdict.NEED_OBJECT
    facts: Facts | None = None
    if identity is not None or policy is not None:
        keys = context()
        if obj is not None and obj.tags:
            keys = {**keys, **{f"s3:existingobjecttag/{k}": [v] for k, v in obj.tags.items()}}
        facts = Facts(
            action,
            resource_arn(bucket, key if on_object else None) if requirement.resource != SERVICE else "*",
            principal.user_id if principal is not None else None,
            principal.display_name if principal is not None else None,
            keys,
        )
    owner = config.owner if config is not None else ""
    is_owner = principal is not None and bool(owner) and principal.user_id == owner
    superuser = principal is not None and (principal.admin or not multi_user)

    by_identity = identity.evaluate(facts) if identity is not None and facts is not None else Decision.NONE
    if by_identity is Decision.DENY:
        return Verdict.DENY
    by_bucket = Decision.NONE
    if policy is not None:
        assert config is not None and facts is not None
        restricted = config.blocks("RestrictPublicBuckets") and policy.is_public and not (is_owner or superuser)
        by_bucket = policy.evaluate(facts, skip_public=restricted)
        if by_bucket is Decision.DENY and not ((is_owner or superuser) and action in POLICY_ACTIONS):
            return Verdict.DENY
    if superuser:
        return Verdict.ALLOW
    if principal is not None:
        if requirement.resource == SERVICE:
            return Verdict.ALLOW  # ListBuckets: the handler lists the caller's own
        if is_owner or (action == "s3:CreateBucket" and identity is None):
            return Verdict.ALLOW
    if Decision.ALLOW in (by_identity, by_bucket):
        return Verdict.ALLOW
    if requirement.acl is not None and config is not None and config.acls_enabled:
        ignore_public = config.blocks("IgnorePublicAcls")
        user_id = principal.user_id if principal is not None else None
        if requirement.acl_on == BUCKET or not on_object:
            acl = grants.resolve(config.acl, owner, owner)
        elif obj is None:
            return Verdict.NEED_OBJECT
        else:
            acl = grants.resolve(obj.acl, obj.owner or owner, owner)
        if grants.allows(acl, user_id, requirement.acl, ignore_public):
            return Verdict.ALLOW
    return Verdict.DENY
