"""Canned ACLs: accepted on writes and by Put{Bucket,Object}Acl, kept with the bucket or object, answered by
Get{Bucket,Object}Acl. Grants to other principals, and enforcement, come with authorization (issue 11)."""

from __future__ import annotations

from aiohttp import web

from ..protocol.errors import S3Error
from ..protocol.headers import ACL, CANNED_ACLS, canned_acl
from ..protocol.xml import S3_NS, XML_DECLARATION, child_text, children, escape_text, local_name, parse_xml
from .body import read_request_xml
from .context import XML_TYPE, S3Context
from .objects import read_version_headers
from .services import Services
from .versions import version_id_arg

MAX_ACL_BODY = 64 * 1024
_XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
_ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
_AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
_LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"

# What each canned ACL grants besides the owner's FULL_CONTROL: (group URI, permission).
_CANNED_GRANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "private": (),
    "public-read": ((_ALL_USERS, "READ"),),
    "public-read-write": ((_ALL_USERS, "READ"), (_ALL_USERS, "WRITE")),
    "authenticated-read": ((_AUTHENTICATED_USERS, "READ"),),
    "aws-exec-read": (),
    "bucket-owner-read": (),
    "bucket-owner-full-control": (),
    "log-delivery-write": ((_LOG_DELIVERY, "WRITE"), (_LOG_DELIVERY, "READ_ACP")),
}
assert set(_CANNED_GRANTS) == CANNED_ACLS


def render_acl(services: Services, ctx: S3Context, canned: str, owner_id: str = "") -> web.Response:
    """`owner_id`: the resource's owner (a bucket records who created it); else the caller, as for
    buckets made before owners were recorded."""
    # Written by hand: a Grantee needs an xsi:type attribute (s3cmd reads it), which build() does not do.
    principal = services.principals.get(ctx.auth.access_key)
    if owner_id and owner_id != principal.user_id:
        found = services.principals.by_user_id(owner_id)
        display = found.display_name if found is not None else owner_id
        owner_id, name = escape_text(owner_id), escape_text(display)
    else:
        owner_id, name = escape_text(principal.user_id), escape_text(principal.display_name)
    owner = f"<ID>{owner_id}</ID><DisplayName>{name}</DisplayName>"
    full = "<Permission>FULL_CONTROL</Permission>"
    grants = [f'<Grant><Grantee {_XSI} xsi:type="CanonicalUser">{owner}</Grantee>{full}</Grant>']
    for uri, permission in _CANNED_GRANTS.get(canned, ()):
        grants.append(
            f'<Grant><Grantee {_XSI} xsi:type="Group"><URI>{uri}</URI></Grantee>'
            f"<Permission>{permission}</Permission></Grant>"
        )
    body = (
        f'{XML_DECLARATION}<AccessControlPolicy xmlns="{S3_NS}"><Owner>{owner}</Owner>'
        f"<AccessControlList>{''.join(grants)}</AccessControlList></AccessControlPolicy>"
    )
    return web.Response(body=body.encode(), content_type=XML_TYPE, headers=ctx.base_headers())


async def requested_acl(services: Services, ctx: S3Context) -> str:
    """The canned ACL a Put*Acl request sets: its x-amz-acl header, or a body granting only the owner."""
    header = canned_acl(ctx.headers)  # refuses x-amz-grant-* too
    # S3 does not insist on Content-MD5 here, and s3cmd's copy sends an ACL without one.
    body = await read_request_xml(ctx, MAX_ACL_BODY)
    if header is not None:
        if body.strip():
            raise S3Error("UnexpectedContent", "This request does not support content when x-amz-acl is given.")
        return header
    if not body.strip():
        raise S3Error("MissingSecurityHeader", "Your request was missing a required header.",
                      extra={"MissingHeaderName": "x-amz-acl"})  # fmt: skip
    root = parse_xml(body)
    if local_name(root) != "AccessControlPolicy":
        raise S3Error("MalformedACLError")
    owner_id = services.principals.get(ctx.auth.access_key).user_id
    lists = children(root, "AccessControlList")
    if len(lists) != 1:
        raise S3Error("MalformedACLError")
    for grant in children(lists[0], "Grant"):
        grantees = children(grant, "Grantee")
        permission = (child_text(grant, "Permission") or "").strip()
        if len(grantees) != 1 or permission not in ("FULL_CONTROL", "READ", "WRITE", "READ_ACP", "WRITE_ACP"):
            raise S3Error("MalformedACLError")
        if (child_text(grantees[0], "ID") or "").strip() != owner_id or permission != "FULL_CONTROL":
            raise S3Error("NotImplemented", "Only the owner's FULL_CONTROL (the private ACL) can be set in a body yet.")
    return "private"


async def get_bucket_acl(services: Services, ctx: S3Context) -> web.Response:
    await services.store.head_bucket(ctx.bucket)
    config = services.store.configs.get(ctx.bucket)
    return render_acl(services, ctx, config.acl, config.owner)


async def put_bucket_acl(services: Services, ctx: S3Context) -> web.Response:
    acl = await requested_acl(services, ctx)
    await services.store.head_bucket(ctx.bucket)

    await services.store.configs.set_fields(ctx.bucket, acl=acl)
    return ctx.empty()


async def get_object_acl(services: Services, ctx: S3Context) -> web.Response:
    info = await services.store.head_object(ctx.bucket, ctx.key, version_id_arg(ctx.query.get("versionId")))
    ctx.response_headers.update(read_version_headers(services, ctx, info))
    return render_acl(services, ctx, info.headers.get(ACL, "private"))


async def put_object_acl(services: Services, ctx: S3Context) -> web.Response:
    acl = await requested_acl(services, ctx)

    def change(headers: dict[str, str]) -> dict[str, str]:
        headers.pop(ACL, None)
        if acl != "private":
            headers[ACL] = acl
        return headers

    version_id = version_id_arg(ctx.query.get("versionId"))
    info = await services.store.update_headers(ctx.bucket, ctx.key, change, version_id)
    ctx.response_headers.update(read_version_headers(services, ctx, info))
    return ctx.empty()
