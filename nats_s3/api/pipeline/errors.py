"""Every failure as S3 answers it: S3 XML with a request id (empty for HEAD), the store's errors mapped
to S3 codes, and nothing but a fault of ours as 500 InternalError (with a log line)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from aiohttp import web

from ...protocol.errors import S3Error
from ...protocol.headers import http_date
from ...store import errors as store_errors
from ..context import error_response
from .exchange import Exchange, Next, Step

log = logging.getLogger("nats_s3.access")


class RenderErrors(Step):
    async def __call__(self, exchange: Exchange, next: Next) -> web.StreamResponse:
        request = exchange.request
        try:
            return await next(exchange)
        except S3Error as err:
            return self._refusal(exchange, err)
        except UnicodeEncodeError:
            # Raw (not UTF-8) header bytes reaching text that must be UTF-8: the client's input, not ours.
            log.info("non-UTF-8 header bytes refused", extra={"request_id": exchange.request_id}, exc_info=True)
            return self._refusal(
                exchange,
                S3Error("InvalidArgument", "A header carries bytes that are not UTF-8 where text is required."),
            )
        except UnicodeDecodeError:
            return self._refusal(exchange, S3Error("InvalidURI", "Couldn't parse the specified URI.", status=400))
        except asyncio.CancelledError:
            # Shutdown past its grace period, or the client went away: the store purged any partial write.
            log.warning("request cancelled", extra={"request_id": exchange.request_id, "operation": exchange.operation})
            raise
        except Exception:
            log.exception("unhandled error", extra={"request_id": exchange.request_id})
            exchange.error_code = "InternalError"
            response = error_response(S3Error("InternalError"), request, exchange.request_id)
            response.force_close()
            return response

    @staticmethod
    def _refusal(exchange: Exchange, err: S3Error) -> web.Response:
        request = exchange.request
        exchange.error_code = err.code
        if err.status == 403:  # which check refused it: expired, not yet valid, skewed, ...
            exchange.error_reason = err.message[:200]
        if exchange.cors_headers:  # a browser reads an error only if CORS allows it
            err.headers = {**exchange.cors_headers, **err.headers}
        response = error_response(err, request, exchange.request_id)
        if err.status >= 500:
            # The store's own words (a corrupt object's, say) are the operator's; the client gets S3's.
            cause = f" ({err.__cause__})" if err.__cause__ is not None else ""
            log.warning("request failed", extra={"request_id": exchange.request_id, "error": f"{err}{cause}"})
        if request.method in ("PUT", "POST") and not request.content.at_eof():
            # The body was not read: close rather than let it be parsed as the next request.
            response.force_close()
        return response


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
    if isinstance(exc, store_errors.QuotaExceeded):
        return S3Error("QuotaExceeded", str(exc))
    if isinstance(exc, store_errors.InvalidPlacement):
        return S3Error("InvalidLocationConstraint", f"The specified location-constraint is not valid: {exc}")
    if isinstance(exc, store_errors.StoreUnavailable):
        return S3Error("ServiceUnavailable", "The storage backend (NATS JetStream) is not available.")
    return S3Error("InternalError")
