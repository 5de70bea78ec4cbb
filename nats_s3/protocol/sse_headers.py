"""Server-side encryption headers: what a request asks for (SSE-S3, SSE-KMS, or SSE-C with its key), checked
as S3 checks them, and the headers that report an object's encryption back."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import S3Error

SSE = "x-amz-server-side-encryption"
KMS_KEY_ID = "x-amz-server-side-encryption-aws-kms-key-id"
CONTEXT = "x-amz-server-side-encryption-context"
BUCKET_KEY = "x-amz-server-side-encryption-bucket-key-enabled"
CUSTOMER = "x-amz-server-side-encryption-customer-"
COPY_SOURCE_CUSTOMER = "x-amz-copy-source-server-side-encryption-customer-"
CUSTOMER_KEY_SIZE = 32

AES256 = "AES256"
KMS = "aws:kms"
# Values S3 defines that this gateway does not: dual-layer KMS, and those of other AWS services.
UNSUPPORTED_MODES = frozenset({"aws:kms:dsse", "aws:fsx", "aws:backup"})
MAX_CONTEXT_BYTES = 8 * 1024

WRONG_CUSTOMER_KEY = (
    "Requests specifying Server Side Encryption with Customer provided keys must provide the correct secret key."
)
NOT_APPLICABLE = "The encryption parameters are not applicable to this object."
KEY_REQUIRED = (
    "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to "
    "retrieve the object."
)
HTTPS_REQUIRED = (
    "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
)


@dataclass(frozen=True, slots=True)
class CustomerKey:
    """An SSE-C key as a request sent it: the 32 bytes, and the base64 MD5 its responses echo."""

    key: bytes
    md5: str


@dataclass(frozen=True, slots=True)
class SseRequest:
    """What a write asks for with x-amz-server-side-encryption and its companions (nothing: mode None)."""

    mode: str | None = None  # AES256 | aws:kms
    kms_key_id: str | None = None  # as sent (an id, an ARN or alias/<id>)
    context: str | None = None  # SSE-KMS encryption context, base64 of a JSON string map, as sent
    bucket_key: bool | None = None


def _argument(message: str, name: str = SSE, value: str | None = None, code: str = "InvalidArgument") -> S3Error:
    extra = {"ArgumentName": name}
    if value is not None:
        extra["ArgumentValue"] = value
    return S3Error(code, message, extra=extra)


def customer_key(headers: Mapping[str, str], *, writing: bool, prefix: str = CUSTOMER) -> CustomerKey | None:
    """The SSE-C key a request names under `prefix` (the object's, or with COPY_SOURCE_CUSTOMER a copy
    source's), or None when it names none. `writing`: the key will seal new data, so it must be well
    formed and come with its MD5; a read only needs it to be the object's key (any other is 403)."""
    algorithm = headers.get(prefix + "algorithm")
    raw_key = headers.get(prefix + "key")
    key_md5 = headers.get(prefix + "key-md5")
    if algorithm is None and raw_key is None and key_md5 is None:
        return None
    if algorithm is None:
        raise _argument(
            "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption "
            "algorithm.",
            value="null",
        )
    if algorithm != AES256:
        raise _argument(
            "The Encryption request you specified is not valid. Supported value: AES256.",
            value=algorithm,
            code="InvalidEncryptionAlgorithmError",
        )
    if not raw_key:
        raise _argument(
            "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate "
            "secret key."
        )
    try:
        key = base64.b64decode(raw_key, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
    if key_md5 is not None and key_md5.strip() != md5:
        raise _argument("The calculated MD5 hash of the key did not match the hash that was provided.", value="null")
    if len(key) != CUSTOMER_KEY_SIZE:
        if writing:
            raise _argument("The secret key was invalid for the specified algorithm.")
        raise S3Error("AccessDenied", WRONG_CUSTOMER_KEY)
    if writing and key_md5 is None:
        raise _argument(
            "Requests specifying Server Side Encryption with Customer provided keys must provide the client "
            "calculated MD5 of the secret key."
        )
    return CustomerKey(key, md5)


def sse_request(headers: Mapping[str, str]) -> SseRequest:
    """x-amz-server-side-encryption and its companions on a write, checked; SSE-C is `customer_key`'s."""
    mode = headers.get(SSE)
    kms_key_id = headers.get(KMS_KEY_ID)
    context = headers.get(CONTEXT)
    bucket_key = headers.get(BUCKET_KEY)
    if mode is not None:
        mode = mode.strip()
        if any(name.startswith(CUSTOMER) for name in headers):
            raise _argument(
                "Server Side Encryption with Customer provided key is incompatible with the encryption method "
                "specified",
                value=mode,
            )
        if mode in UNSUPPORTED_MODES:
            raise S3Error("NotImplemented", f"Server-side encryption {mode} is not implemented by this gateway.")
        if mode not in (AES256, KMS):
            raise _argument("The encryption method specified is not supported", value=mode)
    if mode != KMS:
        if kms_key_id is not None:
            raise _argument(
                "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : "
                "aws:kms",
                KMS_KEY_ID,
            )
        if context is not None:
            raise _argument(
                "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : "
                "aws:kms",
                CONTEXT,
            )
    if kms_key_id is not None and not kms_key_id.strip():
        raise S3Error("KMS.NotFoundException", "Invalid keyId ''")
    if context is not None:
        check_context(context)
    enabled: bool | None = None
    if bucket_key is not None:
        if bucket_key.strip().lower() not in ("true", "false"):
            raise _argument("The bucket key enabled header must be true or false.", BUCKET_KEY, bucket_key)
        enabled = bucket_key.strip().lower() == "true"
    return SseRequest(mode, kms_key_id.strip() if kms_key_id else None, context, enabled)


def check_context(value: str) -> None:
    """An SSE-KMS encryption context: base64 of UTF-8 JSON holding a map of strings to strings."""
    problem = _argument(
        "The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 string holding JSON which "
        "represents a string-string map",
        CONTEXT,
    )
    if len(value) > MAX_CONTEXT_BYTES:
        raise problem
    try:
        parsed = json.loads(base64.b64decode(value, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise problem from None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise problem


def refuse_on_read(headers: Mapping[str, str]) -> None:
    """GET and HEAD take no x-amz-server-side-encryption (an object's encryption is not chosen by a read)."""
    for name in (SSE, KMS_KEY_ID, CONTEXT):
        if name in headers:
            raise _argument(f"{name} header is not supported for this operation.", name, headers[name])


def kms_key_name(value: str) -> str:
    """The key id in an SSE-KMS key reference: a bare id, `alias/<id>`, or an ARN ending in `:key/<id>` or
    `:alias/<id>`."""
    if value.startswith("arn:"):
        for marker in (":key/", ":alias/"):
            if marker in value:
                return value.split(marker, 1)[1]
        return value
    return value.removeprefix("alias/")


def customer_key_headers(key: CustomerKey) -> dict[str, str]:
    return {CUSTOMER + "algorithm": AES256, CUSTOMER + "key-MD5": key.md5}
