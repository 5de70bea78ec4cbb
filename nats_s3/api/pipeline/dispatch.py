"""The end of the chain: the handler of the request's operation, once the store is attached."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ...protocol.errors import S3Error
from ...store import errors as store_errors
from .. import (
    acl,
    attributes,
    bucket_access,
    buckets,
    cors_config,
    encryption_config,
    listing,
    multipart,
    notification_config,
    objects,
    versions,
)
from ..context import S3Context, anonymous_auth
from ..services import Services
from .errors import store_error_to_s3
from .exchange import Exchange

Handler = Callable[[Services, S3Context], Awaitable[web.StreamResponse]]


async def _list_v1(services: Services, ctx: S3Context) -> web.StreamResponse:
    return await listing.list_objects(services, ctx, v2=False)


async def _list_v2(services: Services, ctx: S3Context) -> web.StreamResponse:
    return await listing.list_objects(services, ctx, v2=True)


HANDLERS: dict[str, Handler] = {
    "ListBuckets": buckets.list_buckets,
    "CreateBucket": buckets.create_bucket,
    "HeadBucket": buckets.head_bucket,
    "DeleteBucket": buckets.delete_bucket,
    "GetBucketLocation": buckets.get_bucket_location,
    "GetBucketVersioning": versions.get_bucket_versioning,
    "PutBucketVersioning": versions.put_bucket_versioning,
    "ListObjectVersions": versions.list_object_versions,
    "GetBucketAcl": acl.get_bucket_acl,
    "PutBucketAcl": acl.put_bucket_acl,
    "GetObjectAcl": acl.get_object_acl,
    "PutObjectAcl": acl.put_object_acl,
    "GetBucketCors": cors_config.get_bucket_cors,
    "PutBucketCors": cors_config.put_bucket_cors,
    "DeleteBucketCors": cors_config.delete_bucket_cors,
    "GetBucketEncryption": encryption_config.get_bucket_encryption,
    "PutBucketEncryption": encryption_config.put_bucket_encryption,
    "DeleteBucketEncryption": encryption_config.delete_bucket_encryption,
    "GetBucketNotificationConfiguration": notification_config.get_bucket_notification_configuration,
    "PutBucketNotificationConfiguration": notification_config.put_bucket_notification_configuration,
    "GetBucketTagging": buckets.get_bucket_tagging,
    "PutBucketTagging": buckets.put_bucket_tagging,
    "DeleteBucketTagging": buckets.delete_bucket_tagging,
    "GetBucketPolicy": bucket_access.get_bucket_policy,
    "PutBucketPolicy": bucket_access.put_bucket_policy,
    "DeleteBucketPolicy": bucket_access.delete_bucket_policy,
    "GetBucketPolicyStatus": bucket_access.get_bucket_policy_status,
    "GetBucketOwnershipControls": bucket_access.get_bucket_ownership_controls,
    "PutBucketOwnershipControls": bucket_access.put_bucket_ownership_controls,
    "DeleteBucketOwnershipControls": bucket_access.delete_bucket_ownership_controls,
    "GetPublicAccessBlock": bucket_access.get_public_access_block,
    "PutPublicAccessBlock": bucket_access.put_public_access_block,
    "DeletePublicAccessBlock": bucket_access.delete_public_access_block,
    "ListObjects": _list_v1,
    "ListObjectsV2": _list_v2,
    "DeleteObjects": objects.delete_objects,
    "PutObject": objects.put_object,
    "GetObject": objects.get_object,
    "HeadObject": objects.head_object,
    "DeleteObject": objects.delete_object,
    "GetObjectAttributes": attributes.get_object_attributes,
    "GetObjectTagging": objects.get_object_tagging,
    "PutObjectTagging": objects.put_object_tagging,
    "DeleteObjectTagging": objects.delete_object_tagging,
    "CreateMultipartUpload": multipart.create_multipart_upload,
    "UploadPart": multipart.upload_part,
    "CompleteMultipartUpload": multipart.complete_multipart_upload,
    "AbortMultipartUpload": multipart.abort_multipart_upload,
    "ListParts": multipart.list_parts,
    "ListMultipartUploads": multipart.list_multipart_uploads,
}


# What a read-only replica bucket refuses (store/replicas.py): everything but reading. CreateBucket of
# its name gets S3's answer for a name taken (BucketAlreadyOwnedByYou / BucketAlreadyExists) instead.
WRITES = frozenset(op for op in HANDLERS if not op.startswith(("Get", "Head", "List")) and op != "CreateBucket")


class Dispatch:
    """Calls the handler; `services()` is the attached store (None while NATS is being reached), and
    `not_ready()` says why it is not there."""

    def __init__(self, services: Callable[[], Services | None], not_ready: Callable[[], str]) -> None:
        self.services = services
        self.not_ready = not_ready

    async def __call__(self, exchange: Exchange) -> web.StreamResponse:
        services = self.services()
        if services is None:
            raise S3Error("ServiceUnavailable", f"The gateway is not ready: {self.not_ready()}; retry shortly.")
        if not services.store.nc.is_connected:
            raise S3Error("ServiceUnavailable", "The storage backend (NATS) is not connected; retry shortly.")
        route, auth = exchange.route, exchange.auth
        assert route is not None  # routing came first
        if auth is None:
            auth = anonymous_auth(exchange.headers)
        ctx = S3Context(
            exchange.request, exchange.request_id, route, exchange.headers, exchange.query, auth,
            exchange.principal, exchange.may_delete,
        )  # fmt: skip
        ctx.response_headers.update(exchange.cors_headers)
        try:
            if exchange.bucket and route.operation in WRITES:
                await _refuse_replica(services, exchange.bucket)
            return await HANDLERS[route.operation](services, ctx)
        except store_errors.StoreError as exc:
            raise store_error_to_s3(exc, exchange.bucket, exchange.key, exchange.request.method) from exc


async def _refuse_replica(services: Services, bucket: str) -> None:
    origin = await services.store.replica_origins.origin(bucket)
    if origin is not None:
        raise S3Error(
            "AccessDenied",
            f"Bucket {bucket} is a read-only replica of {origin.describe()}: write to the origin, or promote "
            f"this replica first (nats-s3 admin bucket promote {bucket}).",
        )
