"""ACLs: set by a write's `x-amz-acl` / `x-amz-grant-*` headers or by Put{Bucket,Object}Acl (headers or
an AccessControlPolicy body), kept with the bucket or object (auth/grants.py), answered by
Get{Bucket,Object}Acl, and enforced by authorization."""

from __future__ import annotations

from aiohttp import web

from ..auth import grants
from ..protocol.errors import S3Error
from ..protocol.headers import ACL, OWNER, canned_acl
from ..protocol.xml import S3_NS, XML_DECLARATION, child_text, children, escape_text, local_name, parse_xml
from ..store.bucket_config import BucketConfig
from . import notify
from .body import read_request_xml
from .context import XML_TYPE, S3Context
from .objects import read_version_headers
from .services import Services
from .versions import version_id_arg

MAX_ACL_BODY = 64 * 1024
_XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
# What a bucket that turns ACLs off still accepts: the ACL that changes nothing there.
_OWNER_ENFORCED_ACLS = frozenset({"bucket-owner-full-control"})


def check_acl_settable(config: BucketConfig, stored: str) -> None:
    """Refuse an ACL the bucket does not take: any but bucket-owner-full-control where ownership is
    BucketOwnerEnforced (400, as S3), a public one where BlockPublicAcls is on (403)."""
    owner_only = stored in _OWNER_ENFORCED_ACLS or (stored.startswith("[") and _owner_only(stored, config.owner))
    if not config.acls_enabled and not owner_only:
        raise S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs")
    if config.blocks("BlockPublicAcls") and grants.is_public(stored):
        raise S3Error("AccessDenied", "Access Denied: the bucket's public access block forbids public ACLs.")


def _owner_only(stored: str, owner: str) -> bool:
    found = grants.resolve(stored, owner, owner)
    return all(g.kind == grants.USER and g.grantee == owner and g.permission == grants.FULL_CONTROL for g in found)


def _principal_xml(services: Services, user_id: str) -> str:
    found = services.principals.by_user_id(user_id)
    name = found.display_name if found is not None else user_id
    return f"<ID>{escape_text(user_id)}</ID><DisplayName>{escape_text(name)}</DisplayName>"


def render_acl(services: Services, ctx: S3Context, stored: str, owner_id: str, bucket_owner: str) -> web.Response:
    """`owner_id`: the resource's owner; "" for one from before owners were recorded (the caller is
    shown, as before)."""
    # Written by hand: a Grantee needs an xsi:type attribute (s3cmd reads it), which build() does not do.
    if not owner_id and ctx.principal is not None:
        owner_id = ctx.principal.user_id
    owner = _principal_xml(services, owner_id)
    rendered = []
    for grant in grants.resolve(stored, owner_id, bucket_owner or owner_id):
        if grant.kind == grants.USER:
            grantee = f'<Grantee {_XSI} xsi:type="CanonicalUser">{_principal_xml(services, grant.grantee)}</Grantee>'
        else:
            grantee = f'<Grantee {_XSI} xsi:type="Group"><URI>{escape_text(grant.grantee)}</URI></Grantee>'
        rendered.append(f"<Grant>{grantee}<Permission>{grant.permission}</Permission></Grant>")
    body = (
        f'{XML_DECLARATION}<AccessControlPolicy xmlns="{S3_NS}"><Owner>{owner}</Owner>'
        f"<AccessControlList>{''.join(rendered)}</AccessControlList></AccessControlPolicy>"
    )
    return web.Response(body=body.encode(), content_type=XML_TYPE, headers=ctx.base_headers())


def _grants_from_body(body: bytes) -> str:
    root = parse_xml(body)
    if local_name(root) != "AccessControlPolicy":
        raise S3Error("MalformedACLError")
    lists = children(root, "AccessControlList")
    if len(lists) != 1:
        raise S3Error("MalformedACLError")
    found: list[grants.Grant] = []
    for grant in children(lists[0], "Grant"):
        grantees = children(grant, "Grantee")
        permission = (child_text(grant, "Permission") or "").strip()
        if len(grantees) != 1 or permission not in grants.PERMISSIONS:
            raise S3Error("MalformedACLError")
        grantee = grantees[0]
        user_id = (child_text(grantee, "ID") or "").strip()
        uri = (child_text(grantee, "URI") or "").strip()
        if child_text(grantee, "EmailAddress") is not None:
            raise S3Error("UnresolvableGrantByEmailAddress",
                          "The e-mail address you provided does not match any account on record.")  # fmt: skip
        if user_id and not uri:
            found.append(grants.Grant(grants.USER, user_id, permission))
        elif uri in grants.GROUPS and not user_id:
            found.append(grants.Grant(grants.GROUP, uri, permission))
        else:
            raise S3Error("MalformedACLError")
    if len(found) > grants.MAX_GRANTS:
        raise S3Error("MalformedACLError", "An ACL can hold at most 100 grants.")
    return grants.encode(found)


async def requested_acl(ctx: S3Context) -> str:
    """The ACL a Put*Acl request sets, as kept: its x-amz-acl or x-amz-grant-* headers, or its body."""
    header = canned_acl(ctx.headers)
    # S3 does not insist on Content-MD5 here, and s3cmd's copy sends an ACL without one.
    body = await read_request_xml(ctx, MAX_ACL_BODY)
    if header is not None:
        if body.strip():
            raise S3Error("UnexpectedContent", "This request does not support content when x-amz-acl is given.")
        return header
    if not body.strip():
        raise S3Error("MissingSecurityHeader", "Your request was missing a required header.",
                      extra={"MissingHeaderName": "x-amz-acl"})  # fmt: skip
    return _grants_from_body(body)


async def get_bucket_acl(services: Services, ctx: S3Context) -> web.Response:
    await services.store.head_bucket(ctx.bucket)
    config = services.store.configs.get(ctx.bucket)
    return render_acl(services, ctx, config.acl if config.acls_enabled else "private", config.owner, config.owner)


async def put_bucket_acl(services: Services, ctx: S3Context) -> web.Response:
    acl = await requested_acl(ctx)
    await services.store.head_bucket(ctx.bucket)
    check_acl_settable(services.store.configs.get(ctx.bucket), acl)
    await services.store.configs.set_fields(ctx.bucket, acl=acl)
    return ctx.empty()


async def get_object_acl(services: Services, ctx: S3Context) -> web.Response:
    info = await services.store.head_object(ctx.bucket, ctx.key, version_id_arg(ctx.query.get("versionId")))
    ctx.response_headers.update(read_version_headers(services, ctx, info))
    config = services.store.configs.get(ctx.bucket)
    if not config.acls_enabled:
        return render_acl(services, ctx, "private", config.owner, config.owner)
    owner = info.headers.get(OWNER) or config.owner
    return render_acl(services, ctx, info.headers.get(ACL, "private"), owner, config.owner)


async def put_object_acl(services: Services, ctx: S3Context) -> web.Response:
    acl = await requested_acl(ctx)
    check_acl_settable(services.store.configs.get(ctx.bucket), acl)

    def change(headers: dict[str, str]) -> dict[str, str]:
        headers.pop(ACL, None)
        if acl != "private":
            headers[ACL] = acl
        return headers

    version_id = version_id_arg(ctx.query.get("versionId"))
    info = await services.store.update_headers(ctx.bucket, ctx.key, change, version_id)
    await notify.object_changed(services, ctx, "ObjectAcl:Put", info)
    ctx.response_headers.update(read_version_headers(services, ctx, info))
    return ctx.empty()
