"""The S3 front door: authenticates, routes to one handler per operation, renders every failure as S3 XML."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from urllib.parse import unquote

from aiohttp import web

from ..observability.metrics import Metrics
from ..protocol.errors import S3Error
from ..protocol.headers import http_date
from ..protocol.routing import resolve, split_path
from ..protocol.sigv4 import AuthResult, SigV4Verifier
from ..settings import Settings
from ..store import errors as store_errors
from ..store import naming
from . import acl, attributes, buckets, listing, multipart, objects, versions
from .context import (
    S3Context,
    error_response,
    lower_headers,
    new_request_id,
    query_pairs,
    signed_request,
)
from .services import Services

log = logging.getLogger("nats_s3.access")

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
    "GetBucketTagging": buckets.get_bucket_tagging,
    "PutBucketTagging": buckets.put_bucket_tagging,
    "DeleteBucketTagging": buckets.delete_bucket_tagging,
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


def store_error_to_s3(
    exc: store_errors.StoreError, ctx_bucket: str | None, key: str | None, method: str = "GET"
) -> S3Error:
    if isinstance(exc, store_errors.BucketNotFound):
        return S3Error("NoSuchBucket", extra={"BucketName": ctx_bucket or ""})
    if isinstance(exc, store_errors.ObjectNotFound):
        return S3Error("NoSuchKey", extra={"Key": key or ""})
    if isinstance(exc, store_errors.BucketAlreadyExists):
        return S3Error("BucketAlreadyOwnedByYou", extra={"BucketName": ctx_bucket or ""})
    if isinstance(exc, store_errors.BucketNotEmpty):
        return S3Error("BucketNotEmpty", extra={"BucketName": ctx_bucket or ""})
    if isinstance(exc, store_errors.LatestIsDeleteMarker):
        return S3Error(
            "NoSuchKey", extra={"Key": key or ""},
            headers={"x-amz-delete-marker": "true", "x-amz-version-id": exc.version_id},
        )  # fmt: skip
    if isinstance(exc, store_errors.VersionIsDeleteMarker):
        headers = {"x-amz-delete-marker": "true", "x-amz-version-id": exc.version_id}
        if isinstance(exc.last_modified, datetime):
            headers["Last-Modified"] = http_date(exc.last_modified)
        return S3Error("MethodNotAllowed", headers=headers, extra={"Method": method, "ResourceType": "DeleteMarker"})
    if isinstance(exc, store_errors.VersionNotFound):
        return S3Error("NoSuchVersion", extra={"Key": key or ""})
    if isinstance(exc, store_errors.BucketBusy):
        return S3Error("OperationAborted")
    if isinstance(exc, store_errors.UploadBusy):
        return S3Error("SlowDown", "Another CompleteMultipartUpload of this upload is in progress; retry.", status=503)
    if isinstance(exc, store_errors.UploadNotFound):
        return S3Error("NoSuchUpload", extra={"UploadId": str(exc)})
    if isinstance(exc, store_errors.InvalidPart):
        return S3Error("InvalidPart", extra={"PartNumber": str(exc)})
    if isinstance(exc, store_errors.PartTooSmall):
        return S3Error("EntityTooSmall", extra={"PartNumber": str(exc), "MinSizeAllowed": str(5 * 1024 * 1024)})
    if isinstance(exc, store_errors.PreconditionFailed):
        return S3Error("PreconditionFailed")
    if isinstance(exc, store_errors.WriteConflict):
        return S3Error("SlowDown", "Too many concurrent writes to this key; please retry.", status=503)
    if isinstance(exc, store_errors.StoreUnavailable):
        return S3Error("ServiceUnavailable", "The storage backend (NATS JetStream) is not available.")
    return S3Error("InternalError")


def _preflight_refusal(request: web.Request) -> S3Error:
    """OPTIONS is a CORS preflight (unsigned, as browsers send it); no bucket has a CORS configuration yet."""
    if "Origin" not in request.headers or "Access-Control-Request-Method" not in request.headers:
        return S3Error("BadRequest", "Insufficient information. Origin request header needed.")
    return S3Error("AccessDenied", "CORSResponse: This CORS request is not allowed.")


class Gateway:
    """Serves from the moment the gateway listens: until NATS is reached and the store is up (`attach`),
    S3 requests get 503 and /readyz says why."""

    def __init__(self, settings: Settings, verifier: SigV4Verifier, metrics: Metrics) -> None:
        self.settings = settings
        self.verifier = verifier
        self.metrics = metrics
        self.services: Services | None = None
        self.not_ready = "starting"

    def attach(self, services: Services) -> None:
        self.services = services

    def detach(self, reason: str) -> None:
        self.services = None
        self.not_ready = reason

    def _authenticate(self, request: web.Request) -> tuple[dict[str, str], list[tuple[str, str]], AuthResult]:
        cached = request.get("s3.auth")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        headers = lower_headers(request)
        try:
            pairs = query_pairs(request)
        except (UnicodeDecodeError, ValueError):
            raise S3Error("InvalidArgument", "The query string is not valid.") from None
        req = signed_request(request, headers, pairs)
        if not self.verifier.is_signed(req):
            raise S3Error("AccessDenied")
        auth = self.verifier.verify(req)
        request["s3.auth"] = (headers, pairs, auth)
        return headers, pairs, auth

    async def expect_continue(self, request: web.Request) -> web.StreamResponse | None:
        """Answer `Expect: 100-continue` only once the header signature checks out."""
        request_id = new_request_id()
        request["s3.request_id"] = request_id
        try:
            self._authenticate(request)
        except S3Error as err:
            request["s3.status"] = err.status
            resp = error_response(err, request, request_id)
            resp.force_close()
            return resp
        if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    def _address(self, request: web.Request) -> tuple[str | None, str | None]:
        """Bucket and key: from `<bucket>.<domain>` hosts when --domain is set, else path style."""
        domain = self.settings.domain
        if domain:
            host = (request.host or "").rsplit(":", 1)[0].lower() if "]" not in (request.host or "") else ""
            if host.endswith("." + domain):
                path = request.raw_path.split("?", 1)[0]
                key = unquote(path[1:], errors="strict") if len(path) > 1 else None
                return host[: -len(domain) - 1], key
        return split_path(request.raw_path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        request_id = request.get("s3.request_id") or new_request_id()
        operation, bucket, key, access_key = "-", None, None, "-"
        error_code = error_reason = ""
        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            bucket, key = self._address(request)
            if request.method == "OPTIONS":
                operation = "PreflightRequest"
                raise _preflight_refusal(request)
            headers, pairs, auth = self._authenticate(request)
            access_key = auth.access_key
            query: dict[str, str] = {}
            for name, value in pairs:
                query.setdefault(name, value)
            route = resolve(request.method, bucket, key, query)
            operation = route.operation
            # Before anything reaches NATS: a name that cannot be a bucket never becomes a subject.
            if route.bucket is not None and not naming.is_valid_bucket_name(route.bucket):
                raise S3Error("InvalidBucketName", extra={"BucketName": route.bucket[:255]})
            if route.key is not None and len(route.key.encode()) > naming.MAX_KEY_BYTES:
                raise S3Error("KeyTooLongError", extra={"Size": str(len(route.key.encode())), "MaxSizeAllowed": "1024"})
            if operation in ("PutObject", "UploadPart") and "x-amz-copy-source" in headers:
                operation = "CopyObject" if operation == "PutObject" else "UploadPartCopy"
            ctx = S3Context(request, request_id, route, headers, query, auth)
            services = self.services
            if services is None:
                raise S3Error("ServiceUnavailable", f"The gateway is not ready: {self.not_ready}; retry shortly.")
            if not services.store.nc.is_connected:
                raise S3Error("ServiceUnavailable", "The storage backend (NATS) is not connected; retry shortly.")
            try:
                response = await HANDLERS[route.operation](services, ctx)
            except store_errors.StoreError as exc:
                raise store_error_to_s3(exc, bucket, key, request.method) from exc
        except S3Error as err:
            error_code = err.code
            if err.status == 403:  # which check refused it: expired, not yet valid, skewed, ...
                error_reason = err.message[:200]
            response = error_response(err, request, request_id)
            if err.status >= 500:
                log.warning("request failed", extra={"request_id": request_id, "error": str(err)})
            if request.method in ("PUT", "POST") and not request.content.at_eof():
                # The body was not read: close rather than let it be parsed as the next request.
                response.force_close()
        except UnicodeEncodeError:
            # Raw (not UTF-8) header bytes reaching text that must be UTF-8: the client's input, not ours.
            log.info("non-UTF-8 header bytes refused", extra={"request_id": request_id}, exc_info=True)
            error_code = "InvalidArgument"
            response = error_response(
                S3Error("InvalidArgument", "A header carries bytes that are not UTF-8 where text is required."),
                request,
                request_id,
            )
            if request.method in ("PUT", "POST") and not request.content.at_eof():
                response.force_close()
        except UnicodeDecodeError:
            error_code = "InvalidURI"
            response = error_response(
                S3Error("InvalidURI", "Couldn't parse the specified URI.", status=400), request, request_id
            )
        except asyncio.CancelledError:
            # Shutdown past its grace period, or the client went away: the store purged any partial write.
            log.warning("request cancelled", extra={"request_id": request_id, "operation": operation})
            raise
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            error_code = "InternalError"
            response = error_response(S3Error("InternalError"), request, request_id)
            response.force_close()
        finally:
            metrics.in_flight.dec()
        elapsed = time.monotonic() - started
        bytes_in = request.content.total_bytes
        bytes_out = request.get("s3.bytes_out") or _body_bytes(response)
        metrics.observe(operation, response.status, elapsed, bytes_in, bytes_out)
        if log.isEnabledFor(logging.INFO):
            # Names and numbers only: never the Authorization header, a signature or a query string.
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "access_key": access_key,
                    "operation": operation,
                    "method": request.method,
                    "bucket": bucket or "",
                    "key": key or "",
                    "status": response.status,
                    "bytes_in": bytes_in,
                    "bytes_out": bytes_out,
                    "duration_ms": round(elapsed * 1000, 2),
                    # Why a request was refused (SignatureDoesNotMatch, RequestTimeTooSkewed, expired, ...).
                    **({"error": error_code} if error_code else {}),
                    **({"reason": error_reason} if error_reason else {}),
                },
            )
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness: the process serves requests (NATS state is /readyz's business)."""
        return web.json_response({"status": "ok"}, headers={"x-amz-request-id": new_request_id()})

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: NATS connected, JetStream answering, the gateway's KV bucket present."""
        reason = self.not_ready if self.services is None else await self.services.readiness()
        return web.json_response(
            {"status": "ready" if reason is None else "not ready", **({"reason": reason} if reason else {})},
            status=200 if reason is None else 503,
            headers={"x-amz-request-id": new_request_id()},
        )

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        token = self.settings.metrics_token
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.Response(status=401, text="unauthorized\n", headers={"WWW-Authenticate": "Bearer"})
        return web.Response(
            body=self.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


def _body_bytes(response: web.StreamResponse) -> int:
    """Body bytes of a response built in one piece (streamed bodies count themselves as they go)."""
    if isinstance(response, web.Response):
        body = response.body
        return len(body) if isinstance(body, bytes | bytearray) else 0
    return 0
