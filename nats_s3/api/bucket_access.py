"""A bucket's access settings besides its ACL: the bucket policy (Put/Get/DeleteBucketPolicy,
GetBucketPolicyStatus), ownership controls (Put/Get/DeleteBucketOwnershipControls) and the public
access block (Put/Get/DeletePublicAccessBlock), all kept in its configuration record; and who owns an
object written into it."""

from __future__ import annotations

from aiohttp import web

from ..auth import grants
from ..auth.access import bucket_policy
from ..auth.policy import parse_policy
from ..protocol.errors import S3Error
from ..protocol.headers import ACL, OWNER
from ..protocol.xml import XmlChild, child_text, children, local_name, parse_xml
from .body import read_request_xml
from .bucket_setting import clear_setting, stored_setting
from .context import S3Context
from .services import Services

MAX_SETTINGS_BODY = 64 * 1024
OWNERSHIPS = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")
PUBLIC_ACCESS_SETTINGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def writer_owner(services: Services, ctx: S3Context, meta: dict[str, str]) -> None:
    """Record who writes an object where that is not the bucket's owner and the bucket lets writers own
    objects (ObjectWriter or no ownership controls; BucketOwnerPreferred unless the write hands the
    object to the bucket owner with bucket-owner-full-control)."""
    if not services.principals.multi_user:
        return
    config = services.store.configs.get(ctx.bucket)
    writer = ctx.principal.user_id if ctx.principal is not None else "anonymous"
    if writer == config.owner or config.ownership == "BucketOwnerEnforced":
        return
    if config.ownership == "BucketOwnerPreferred" and meta.get(ACL) == "bucket-owner-full-control":
        return
    meta[OWNER] = writer


# ---- bucket policy ----


async def get_bucket_policy(services: Services, ctx: S3Context) -> web.Response:
    text = str(await stored_setting(services, ctx, "policy", "NoSuchBucketPolicy"))
    return web.Response(body=text.encode(), content_type="application/json", headers=ctx.base_headers())


async def put_bucket_policy(services: Services, ctx: S3Context) -> web.Response:
    body = await read_request_xml(ctx, 2 * MAX_SETTINGS_BODY)  # a JSON body, read and checked alike
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise S3Error("MalformedPolicy", "Policies must be valid JSON and the first byte must be '{'") from None
    policy = parse_policy(text, ctx.bucket)
    await services.store.head_bucket(ctx.bucket)
    config = services.store.configs.get(ctx.bucket)
    if config.blocks("BlockPublicPolicy") and policy.is_public:
        raise S3Error("AccessDenied", "Access Denied: the bucket's public access block forbids public policies.")
    await services.store.configs.set_fields(ctx.bucket, policy=text)
    return ctx.empty(204)


async def delete_bucket_policy(services: Services, ctx: S3Context) -> web.Response:
    return await clear_setting(services, ctx, "policy")


async def get_bucket_policy_status(services: Services, ctx: S3Context) -> web.Response:
    text = str(await stored_setting(services, ctx, "policy", "NoSuchBucketPolicy"))
    return ctx.xml("PolicyStatus", [("IsPublic", bucket_policy(text, ctx.bucket).is_public)])


# ---- ownership controls ----


def parse_ownership(value: str) -> str:
    value = value.strip()
    if value not in OWNERSHIPS:
        raise S3Error("InvalidArgument", "Invalid x-amz-object-ownership header",
                      extra={"ArgumentName": "x-amz-object-ownership", "ArgumentValue": value[:64]})  # fmt: skip
    return value


def check_ownership_allowed(acl: str, owner: str, ownership: str) -> None:
    """BucketOwnerEnforced needs the bucket's own ACL to grant nothing beyond its owner."""
    if ownership == "BucketOwnerEnforced":
        found = grants.resolve(acl, owner, owner)
        if any(g.kind != grants.USER or g.grantee != owner for g in found):
            raise S3Error("InvalidBucketAclWithObjectOwnership")


async def get_bucket_ownership_controls(services: Services, ctx: S3Context) -> web.Response:
    ownership = str(await stored_setting(services, ctx, "ownership", "OwnershipControlsNotFoundError"))
    return ctx.xml("OwnershipControls", [("Rule", [("ObjectOwnership", ownership)])])


async def put_bucket_ownership_controls(services: Services, ctx: S3Context) -> web.Response:
    body = await read_request_xml(ctx, MAX_SETTINGS_BODY, integrity_required=True)
    root = parse_xml(body)
    rules = children(root, "Rule")
    if local_name(root) != "OwnershipControls" or len(rules) != 1:
        raise S3Error("MalformedXML")
    ownership = (child_text(rules[0], "ObjectOwnership") or "").strip()
    if ownership not in OWNERSHIPS:
        raise S3Error("MalformedXML")
    await services.store.head_bucket(ctx.bucket)
    config = services.store.configs.get(ctx.bucket)
    check_ownership_allowed(config.acl, config.owner, ownership)
    await services.store.configs.set_fields(ctx.bucket, ownership=ownership)
    return ctx.empty()


async def delete_bucket_ownership_controls(services: Services, ctx: S3Context) -> web.Response:
    return await clear_setting(services, ctx, "ownership")


# ---- public access block ----


async def get_public_access_block(services: Services, ctx: S3Context) -> web.Response:
    block = await stored_setting(services, ctx, "public_access_block", "NoSuchPublicAccessBlockConfiguration")
    assert isinstance(block, dict)
    items: list[XmlChild] = [(name, bool(block.get(name))) for name in PUBLIC_ACCESS_SETTINGS]
    return ctx.xml("PublicAccessBlockConfiguration", items)


async def put_public_access_block(services: Services, ctx: S3Context) -> web.Response:
    body = await read_request_xml(ctx, MAX_SETTINGS_BODY, integrity_required=True)
    root = parse_xml(body)
    if local_name(root) != "PublicAccessBlockConfiguration":
        raise S3Error("MalformedXML")
    block: dict[str, bool] = {}
    for name in PUBLIC_ACCESS_SETTINGS:
        found = children(root, name)
        if len(found) > 1:
            raise S3Error("MalformedXML")
        value = (child_text(root, name) or "false").strip().lower() if found else "false"
        if value not in ("true", "false"):
            raise S3Error("MalformedXML")
        block[name] = value == "true"
    await services.store.head_bucket(ctx.bucket)
    await services.store.configs.set_fields(ctx.bucket, public_access_block=block)
    return ctx.empty()


async def delete_public_access_block(services: Services, ctx: S3Context) -> web.Response:
    return await clear_setting(services, ctx, "public_access_block")
