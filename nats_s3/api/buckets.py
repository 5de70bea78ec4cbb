"""Service and bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation."""

from __future__ import annotations

from aiohttp import web

from ..protocol.errors import S3Error
from ..protocol.xml import S3_NS, XML_DECLARATION, XmlChild, child_text, escape_text, iso8601, local_name, parse_xml
from ..store import naming
from .body import read_small_body
from .context import XML_TYPE, S3Context
from .listing import owner_items
from .services import Services

MAX_CONFIG_BYTES = 64 * 1024


def _check_name(bucket: str) -> None:
    if not naming.is_valid_bucket_name(bucket):
        raise S3Error("InvalidBucketName", extra={"BucketName": bucket})


async def list_buckets(services: Services, ctx: S3Context) -> web.Response:
    buckets = await services.store.list_buckets()
    entries: list[XmlChild] = [("Bucket", [("Name", b.name), ("CreationDate", iso8601(b.created))]) for b in buckets]
    return ctx.xml("ListAllMyBucketsResult", [("Owner", owner_items(ctx.auth.access_key)), ("Buckets", entries)])


async def create_bucket(services: Services, ctx: S3Context) -> web.Response:
    _check_name(ctx.bucket)
    body = await read_small_body(ctx.request, MAX_CONFIG_BYTES)
    if body.strip():
        root = parse_xml(body)
        if local_name(root) != "CreateBucketConfiguration":
            raise S3Error("MalformedXML")
        child_text(root, "LocationConstraint")  # any region is accepted: NATS decides placement
    await services.store.create_bucket(ctx.bucket)
    return ctx.empty(headers={"Location": f"/{ctx.bucket}"})


async def head_bucket(services: Services, ctx: S3Context) -> web.Response:
    await services.store.head_bucket(ctx.bucket)
    return ctx.empty(headers={"x-amz-bucket-region": "us-east-1"})


async def delete_bucket(services: Services, ctx: S3Context) -> web.Response:
    await services.store.delete_bucket(ctx.bucket)
    return ctx.empty(204)


async def get_bucket_location(services: Services, ctx: S3Context) -> web.Response:
    await services.store.head_bucket(ctx.bucket)
    return ctx.xml("LocationConstraint", [])


def _acl(ctx: S3Context) -> web.Response:
    # Written by hand: the Grantee needs an xsi:type attribute (s3cmd reads it), which build() does not do.
    owner_id, name = owner_items(ctx.auth.access_key)[0][1], escape_text(ctx.auth.access_key)
    owner = f"<ID>{owner_id}</ID><DisplayName>{name}</DisplayName>"
    body = (
        f'{XML_DECLARATION}<AccessControlPolicy xmlns="{S3_NS}"><Owner>{owner}</Owner><AccessControlList>'
        '<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
        f"{owner}</Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList></AccessControlPolicy>"
    )
    return web.Response(body=body.encode(), content_type=XML_TYPE, headers=ctx.base_headers())


async def get_bucket_acl(services: Services, ctx: S3Context) -> web.Response:
    await services.store.head_bucket(ctx.bucket)
    return _acl(ctx)


async def get_object_acl(services: Services, ctx: S3Context) -> web.Response:
    await services.store.head_object(ctx.bucket, ctx.key)
    return _acl(ctx)
