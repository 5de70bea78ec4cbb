"""Service and bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation."""

from __future__ import annotations

import base64

from aiohttp import web

from ..protocol.errors import S3Error
from ..protocol.headers import canned_acl, tag_set_items, tags_from_xml
from ..protocol.numbers import parse_int
from ..protocol.xml import (
    S3_NS,
    XML_DECLARATION,
    XmlChild,
    child_text,
    escape_text,
    iso8601,
    local_name,
    parse_xml,
)
from ..store import errors as store_errors
from ..store import naming
from .body import read_request_xml
from .bucket_access import check_ownership_allowed, parse_ownership
from .bucket_setting import clear_setting, stored_setting
from .context import XML_TYPE, S3Context
from .listing import owner_items
from .services import Services

MAX_CONFIG_BYTES = 64 * 1024


def _check_name(bucket: str) -> None:
    if not naming.is_valid_bucket_name(bucket):
        raise S3Error("InvalidBucketName", extra={"BucketName": bucket})


MAX_BUCKETS_PER_PAGE = 10000


def _max_buckets(ctx: S3Context) -> int | None:
    raw = ctx.query.get("max-buckets")
    if raw is None:
        return None
    value = parse_int(raw.strip())
    if value is None or not 1 <= value <= MAX_BUCKETS_PER_PAGE:
        raise S3Error(
            "InvalidArgument",
            f"Argument max-buckets must be an integer between 1 and {MAX_BUCKETS_PER_PAGE}",
            extra={"ArgumentName": "max-buckets", "ArgumentValue": raw[:64]},
        )
    return value


def _encode_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _decode_token(token: str) -> str:
    """The bucket name a continuation token was made from (a page starts after it)."""
    try:
        name = base64.urlsafe_b64decode(token.encode("ascii")).decode()
    except (ValueError, UnicodeError):
        name = ""
    if not naming.is_valid_bucket_name(name):
        raise S3Error(
            "InvalidArgument",
            "The continuation token provided is incorrect",
            extra={"ArgumentName": "continuation-token"},
        )
    return name


async def list_buckets(services: Services, ctx: S3Context) -> web.Response:
    limit = _max_buckets(ctx)
    prefix = ctx.query.get("prefix", "")
    token = ctx.query.get("continuation-token")
    after = _decode_token(token) if token else None
    wanted_region = ctx.query.get("bucket-region")
    buckets = await services.store.list_buckets()
    principal = ctx.principal
    if services.principals.multi_user and principal is not None and not principal.admin:
        configs = services.store.configs
        buckets = [b for b in buckets if configs.get(b.name).owner == principal.user_id]
    region_of = {b.name: bucket_region(services, b.name) for b in buckets}
    if wanted_region is not None:
        buckets = [b for b in buckets if region_of[b.name] == wanted_region]
    chosen = [b for b in buckets if b.name.startswith(prefix) and (after is None or b.name > after)]
    more = limit is not None and len(chosen) > limit
    if limit is not None:
        chosen = chosen[:limit]
    entries: list[XmlChild] = [
        ("Bucket", [("Name", b.name), ("CreationDate", iso8601(b.created)), ("BucketRegion", region_of[b.name])])
        for b in chosen
    ]
    assert principal is not None  # an anonymous ListBuckets was refused
    items: list[XmlChild] = [("Owner", owner_items(principal)), ("Buckets", entries)]
    if more:
        items.append(("ContinuationToken", _encode_token(chosen[-1].name)))
    if "prefix" in ctx.query:
        items.append(("Prefix", prefix))
    return ctx.xml("ListAllMyBucketsResult", items)


def _placed_region(services: Services, constraint: str) -> str | None:
    """The placement-map region a LocationConstraint names; None for the gateway's own region (default
    placement) or none at all. Another region is refused: unknown to the map, or (with no map) not this
    gateway's, as S3 refuses a constraint sent to another region's endpoint."""
    region = services.settings.region
    if constraint in services.store.placements:
        return constraint
    if constraint == "us-east-1" and region == "us-east-1":
        # S3 names us-east-1 by the absence of a constraint; naming it is refused there.
        raise S3Error("InvalidLocationConstraint", extra={"LocationConstraint": constraint[:64]})
    if not constraint or constraint == region:
        return None
    if services.store.placements:
        raise S3Error(
            "InvalidLocationConstraint",
            f"The specified location-constraint is not valid: {constraint[:64]} is not a region of this "
            f"gateway's placement map ({', '.join(sorted(services.store.placements))}).",
            extra={"LocationConstraint": constraint[:64]},
        )
    raise S3Error(
        "IllegalLocationConstraintException",
        f"The {constraint[:64]} location constraint is incompatible for the region specific endpoint "
        f"this request was sent to ({region}).",
    )


def bucket_region(services: Services, bucket: str) -> str:
    """The region a bucket answers: the one it was placed in, else the gateway's."""
    config = services.store.configs.cached(bucket)
    return (config.region if config is not None else None) or services.settings.region


async def create_bucket(services: Services, ctx: S3Context) -> web.Response:
    _check_name(ctx.bucket)
    region = services.settings.region
    canned = canned_acl(ctx.headers)
    body = await read_request_xml(ctx, MAX_CONFIG_BYTES)
    placed: str | None = None
    if body.strip():
        root = parse_xml(body)
        if local_name(root) != "CreateBucketConfiguration":
            raise S3Error("MalformedXML")
        constraint = (child_text(root, "LocationConstraint") or "").strip()
        placed = _placed_region(services, constraint)
    ownership = (
        parse_ownership(ctx.headers["x-amz-object-ownership"]) if "x-amz-object-ownership" in ctx.headers else None
    )
    assert ctx.principal is not None  # an anonymous CreateBucket was refused
    owner = ctx.principal.user_id
    if ownership is not None:
        check_ownership_allowed(canned or "private", owner, ownership)
    try:
        await services.store.create_bucket(ctx.bucket, owner, placed)
    except store_errors.BucketAlreadyExists:
        existing = services.store.configs.get(ctx.bucket).owner
        if services.principals.multi_user and existing != owner:
            raise S3Error("BucketAlreadyExists", extra={"BucketName": ctx.bucket}) from None
        # S3's legacy rule in us-east-1: creating a bucket you already own succeeds and changes nothing.
        if region != "us-east-1":
            raise
        return ctx.empty(headers={"Location": f"/{ctx.bucket}"})
    settings: dict[str, object] = {}
    if canned not in (None, "private"):
        settings["acl"] = canned
    if ownership is not None:
        settings["ownership"] = ownership
    if settings:
        await services.store.configs.set_fields(ctx.bucket, **settings)
    return ctx.empty(headers={"Location": f"/{ctx.bucket}"})


async def head_bucket(services: Services, ctx: S3Context) -> web.Response:
    await services.store.head_bucket(ctx.bucket)
    return ctx.empty(headers={"x-amz-bucket-region": bucket_region(services, ctx.bucket)})


async def delete_bucket(services: Services, ctx: S3Context) -> web.Response:
    await services.store.delete_bucket(ctx.bucket)
    return ctx.empty(204)


async def get_bucket_location(services: Services, ctx: S3Context) -> web.Response:
    await services.store.head_bucket(ctx.bucket)
    region = bucket_region(services, ctx.bucket)
    # S3 answers an empty constraint for us-east-1 (SDKs map it back), the region's name elsewhere.
    text = "" if region == "us-east-1" else escape_text(region)
    body = f'{XML_DECLARATION}<LocationConstraint xmlns="{S3_NS}">{text}</LocationConstraint>'
    return web.Response(body=body.encode(), content_type=XML_TYPE, headers=ctx.base_headers())


MAX_TAGGING_BODY = 64 * 1024


async def get_bucket_tagging(services: Services, ctx: S3Context) -> web.Response:
    tags = await stored_setting(services, ctx, "tags", "NoSuchTagSet")
    assert isinstance(tags, dict)
    return ctx.xml("Tagging", [("TagSet", tag_set_items(tags.items()))])


async def put_bucket_tagging(services: Services, ctx: S3Context) -> web.Response:
    body = await read_request_xml(ctx, MAX_TAGGING_BODY, integrity_required=True)
    tags = tags_from_xml(body, bucket=True)
    await services.store.head_bucket(ctx.bucket)
    await services.store.configs.set_fields(ctx.bucket, tags=tags)
    return ctx.empty(204)


async def delete_bucket_tagging(services: Services, ctx: S3Context) -> web.Response:
    return await clear_setting(services, ctx, "tags")
