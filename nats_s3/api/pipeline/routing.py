"""Which S3 operation a request is, and the checks on its names that come before anything reaches NATS."""

from __future__ import annotations

from aiohttp import web

from ...protocol.errors import S3Error
from ...protocol.routing import resolve
from ...store import naming
from .exchange import Exchange, Next, Step


class Routing(Step):
    async def __call__(self, exchange: Exchange, next: Next) -> web.StreamResponse:
        try:
            route = resolve(exchange.request.method, exchange.bucket, exchange.key, exchange.query)
        except S3Error:
            if exchange.auth is None:
                raise S3Error("AccessDenied") from None  # an anonymous caller learns nothing of the API
            raise
        exchange.route = route
        exchange.operation = route.operation
        # A name that cannot be a bucket never becomes a NATS subject.
        if route.bucket is not None and not naming.is_valid_bucket_name(route.bucket):
            raise S3Error("InvalidBucketName", extra={"BucketName": route.bucket[:255]})
        if route.key is not None and len(route.key.encode()) > naming.MAX_KEY_BYTES:
            size = str(len(route.key.encode()))
            raise S3Error("KeyTooLongError", extra={"Size": size, "MaxSizeAllowed": str(naming.MAX_KEY_BYTES)})
        if exchange.operation in ("PutObject", "UploadPart") and "x-amz-copy-source" in exchange.headers:
            exchange.operation = "CopyObject" if exchange.operation == "PutObject" else "UploadPartCopy"
        return await next(exchange)
