"""AWS Signature Version 2 presigned URLs (AWSAccessKeyId/Expires/Signature), as `aws s3 presign` still makes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from .errors import S3Error
from .numbers import parse_uint_clamped

# Query parameters that are part of the signed resource (the rest are not signed in SigV2).
SIGNED_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory", "lifecycle",
        "location", "logging", "metrics", "notification", "object-lock", "partNumber", "policy", "replication",
        "requestPayment", "response-cache-control", "response-content-disposition", "response-content-encoding",
        "response-content-language", "response-content-type", "response-expires", "restore", "select",
        "select-type", "storageClass", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning",
        "versions", "website",
    }
)  # fmt: skip


def is_presigned_v2(query: list[tuple[str, str]]) -> bool:
    names = {name for name, _ in query}
    return "AWSAccessKeyId" in names and "Signature" in names


def string_to_sign(
    method: str, raw_path: str, query: list[tuple[str, str]], headers: Mapping[str, str], expires: str
) -> str:
    amz = sorted((name, value.strip()) for name, value in headers.items() if name.startswith("x-amz-"))
    lines = [method.upper(), headers.get("content-md5", ""), headers.get("content-type", ""), expires]
    lines += [f"{name}:{value}" for name, value in amz]
    resource = raw_path
    subresources = sorted((n, v) for n, v in query if n in SIGNED_SUBRESOURCES)
    if subresources:
        resource += "?" + "&".join(f"{n}={v}" if v else n for n, v in subresources)
    return "\n".join([*lines, resource])


def verify_presigned_v2(
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    secrets: Mapping[str, str],
    now: datetime,
) -> tuple[str, str]:
    """(access key, signature) of a valid SigV2 presigned request; S3Error otherwise."""
    params = dict(query)
    access_key = params.get("AWSAccessKeyId", "")
    expires = params.get("Expires", "")
    signature = params.get("Signature", "")
    expires_at = parse_uint_clamped(expires)
    if expires_at is None:
        raise S3Error(
            "AccessDenied", "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
        )
    secret = secrets.get(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key})
    if now.astimezone(UTC).timestamp() > expires_at:
        raise S3Error(
            "AccessDenied",
            "Request has expired",
            extra={"Expires": datetime.fromtimestamp(min(expires_at, 2**33), UTC).isoformat()},
        )
    sts = string_to_sign(method, raw_path, query, headers, expires)
    expected = base64.b64encode(
        hmac.new(secret.encode(), sts.encode("utf-8", "surrogateescape"), hashlib.sha1).digest()
    ).decode()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape")):
        # Clients percent-encode the path differently; S3 signs the path as sent, so try the canonical encoding too.
        alt = string_to_sign(method, quote(unquote(raw_path), safe="/~"), query, headers, expires)
        alt_sig = base64.b64encode(
            hmac.new(secret.encode(), alt.encode("utf-8", "surrogateescape"), hashlib.sha1).digest()
        ).decode()
        if not hmac.compare_digest(alt_sig.encode(), signature.encode("utf-8", "surrogateescape")):
            raise S3Error("SignatureDoesNotMatch", extra={"StringToSign": sts, "AWSAccessKeyId": access_key})
    return access_key, signature
