"""Which S3 operation a request names: path-style bucket/key from the raw path, method and sub-resources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from .errors import S3Error

# Sub-resources S3 defines that this gateway does not serve (yet): answered 501 NotImplemented.
UNSUPPORTED_SUBRESOURCES = frozenset(
    {
        "accelerate", "analytics", "intelligent-tiering",
        "inventory", "legal-hold", "lifecycle", "logging", "metadataTable", "metrics",
        "object-lock",
        "replication", "requestPayment", "restore", "retention", "select", "session",
        "torrent", "website", "renameObject",
    }
)  # fmt: skip


def _get_put_delete(name: str) -> dict[str, str]:
    return {"GET": f"Get{name}", "PUT": f"Put{name}", "DELETE": f"Delete{name}"}


# Bucket sub-resources kept in the bucket's configuration: sub-resource -> method -> operation.
_BUCKET_SETTINGS: dict[str, dict[str, str]] = {
    "tagging": _get_put_delete("BucketTagging"),
    "cors": _get_put_delete("BucketCors"),
    "encryption": _get_put_delete("BucketEncryption"),
    "policy": _get_put_delete("BucketPolicy"),
    "policyStatus": {"GET": "GetBucketPolicyStatus"},
    "notification": {"GET": "GetBucketNotificationConfiguration", "PUT": "PutBucketNotificationConfiguration"},
    "ownershipControls": _get_put_delete("BucketOwnershipControls"),
    "publicAccessBlock": _get_put_delete("PublicAccessBlock"),
}


@dataclass(frozen=True, slots=True)
class Route:
    operation: str
    bucket: str | None
    key: str | None


def split_path(raw_path: str) -> tuple[str | None, str | None]:
    """Path-style `/bucket/key`: the key is everything after the first slash, decoded once."""
    path = raw_path.split("?", 1)[0]
    if not path.startswith("/"):
        raise S3Error("InvalidRequest", "The request path must start with '/'.")
    rest = path[1:]
    if not rest:
        return None, None
    bucket_raw, sep, key_raw = rest.partition("/")
    bucket = unquote(bucket_raw, errors="strict") if bucket_raw else None
    key = unquote(key_raw, errors="strict") if sep and key_raw else None
    if bucket is None and key is not None:
        raise S3Error("InvalidBucketName", resource=path)
    return bucket, key


def resolve(method: str, bucket: str | None, key: str | None, query: Mapping[str, str]) -> Route:
    if bucket is not None and "acl" in query:
        operation = {"GET": "Get", "PUT": "Put"}.get(method)
        if operation is None:
            raise S3Error("MethodNotAllowed")
        return Route(f"{operation}{'Object' if key else 'Bucket'}Acl", bucket, key)
    if bucket is not None and key is None:
        if "versioning" in query:
            operation = {"GET": "GetBucketVersioning", "PUT": "PutBucketVersioning"}.get(method)
            if operation is None:
                raise S3Error("MethodNotAllowed")
            return Route(operation, bucket, None)
        if "versions" in query:
            if method != "GET":
                raise S3Error("MethodNotAllowed")
            return Route("ListObjectVersions", bucket, None)
    for name in query:
        if name in UNSUPPORTED_SUBRESOURCES:
            raise S3Error("NotImplemented", f"The '{name}' sub-resource is not implemented.")
    if bucket is None:
        if method == "GET":
            return Route("ListBuckets", None, None)
        raise S3Error("MethodNotAllowed")
    if key is None:
        for name, operations in _BUCKET_SETTINGS.items():
            if name in query:
                if method not in operations:
                    raise S3Error("MethodNotAllowed")
                return Route(operations[method], bucket, None)
        if method == "GET":
            if "location" in query:
                return Route("GetBucketLocation", bucket, None)
            if "uploads" in query:
                return Route("ListMultipartUploads", bucket, None)
            if query.get("list-type") == "2":
                return Route("ListObjectsV2", bucket, None)
            if "list-type" in query:
                raise S3Error("InvalidArgument", "Invalid list type.", extra={"ArgumentName": "list-type"})
            return Route("ListObjects", bucket, None)
        if method == "PUT":
            return Route("CreateBucket", bucket, None)
        if method == "HEAD":
            return Route("HeadBucket", bucket, None)
        if method == "DELETE":
            return Route("DeleteBucket", bucket, None)
        if method == "POST" and "delete" in query:
            return Route("DeleteObjects", bucket, None)
        raise S3Error("MethodNotAllowed")
    if "tagging" in query:
        operation = {"GET": "GetObjectTagging", "PUT": "PutObjectTagging", "DELETE": "DeleteObjectTagging"}.get(method)
        if operation is None:
            raise S3Error("MethodNotAllowed")
        return Route(operation, bucket, key)
    for name in _BUCKET_SETTINGS:
        if name in query:  # a bucket sub-resource: on an object it is no operation S3 has
            raise S3Error("NotImplemented", f"The '{name}' sub-resource applies to buckets only.")
    if "attributes" in query:
        if method != "GET":
            raise S3Error("MethodNotAllowed")
        return Route("GetObjectAttributes", bucket, key)
    upload = "uploadId" in query
    if method == "GET":
        return Route("ListParts" if upload else "GetObject", bucket, key)
    if method == "HEAD":
        return Route("HeadObject", bucket, key)
    if method == "PUT":
        if upload or "partNumber" in query:
            if not (upload and "partNumber" in query):
                raise S3Error("InvalidRequest", "UploadPart needs both partNumber and uploadId.")
            return Route("UploadPart", bucket, key)
        return Route("PutObject", bucket, key)
    if method == "DELETE":
        return Route("AbortMultipartUpload" if upload else "DeleteObject", bucket, key)
    if method == "POST":
        if "uploads" in query:
            return Route("CreateMultipartUpload", bucket, key)
        if upload:
            return Route("CompleteMultipartUpload", bucket, key)
    raise S3Error("MethodNotAllowed")
