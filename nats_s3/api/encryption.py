"""Server-side encryption for each request: which data key seals a new object or part (the request's
SSE-C key, a master key for SSE-S3 / SSE-KMS, or the bucket's default), which opens a stored one, and
the headers that say so. The keys themselves live in crypto/; the chunks are sealed by the store."""

from __future__ import annotations

from ..crypto.chunk_cipher import TamperedData
from ..crypto.envelope import (
    Envelope,
    MasterKeyMissing,
    Mode,
    WrongCustomerKey,
    seal_for_customer,
    seal_for_master,
)
from ..crypto.master_keys import MasterKeys
from ..protocol.encryption_config import EncryptionConfig
from ..protocol.errors import S3Error
from ..protocol.sse_headers import (
    AES256,
    COPY_SOURCE_CUSTOMER,
    CUSTOMER,
    HTTPS_REQUIRED,
    KEY_REQUIRED,
    KMS,
    KMS_KEY_ID,
    NOT_APPLICABLE,
    SSE,
    WRONG_CUSTOMER_KEY,
    CustomerKey,
    customer_key,
    customer_key_headers,
    kms_key_name,
    sse_request,
)
from ..store import errors as store_errors
from ..store.models import ObjectInfo, Sealing
from ..store.multipart import UploadRecord
from ..store.sealed import envelope_of
from .context import S3Context
from .services import Services

NO_KEY_FILE = (
    "Server-side encryption with keys the gateway manages (AES256, aws:kms) needs a key file: start the gateway "
    "with --sse.keys FILE."
)
PART_PARAMETERS = (
    "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate "
    "encryption parameters."
)
PARTS_DO_NOT_MATCH = "The provided encryption parameters did not match the ones used originally."

Headers = dict[str, str]


def bucket_default(services: Services, bucket: str) -> EncryptionConfig | None:
    config = services.store.configs.cached(bucket)
    stored = config.encryption if config is not None else None
    return EncryptionConfig.from_dict(stored) if stored else None


def master_keys(services: Services) -> MasterKeys:
    keys = services.master_keys.current
    if keys is None:
        raise S3Error("NotImplemented", NO_KEY_FILE)
    return keys


def master_key_id(services: Services, requested: str | None) -> str:
    """The master key an SSE-S3 / SSE-KMS write is sealed under: the one named, or the default."""
    keys = master_keys(services)
    if requested is None:
        return keys.default_id
    key_id = kms_key_name(requested)
    if keys.get(key_id) is None:
        raise S3Error("KMS.NotFoundException", f"Invalid keyId '{requested}'")
    return key_id


def _require_tls(services: Services, ctx: S3Context) -> None:
    if not ctx.request.secure and not services.settings.sse_allow_http:
        raise S3Error("InvalidRequest", HTTPS_REQUIRED)


def envelope_headers(envelope: Envelope | None, customer: CustomerKey | None = None) -> Headers:
    """What a response says of an object's encryption (SSE-C's key MD5 only where the request sent the key)."""
    if envelope is None:
        return {}
    if envelope.mode is Mode.CUSTOMER:
        return customer_key_headers(customer) if customer is not None else {CUSTOMER + "algorithm": AES256}
    headers = {SSE: envelope.mode.value}
    if envelope.mode is Mode.KMS and envelope.key_id is not None:
        headers[KMS_KEY_ID] = envelope.key_id
    return headers


def for_write(services: Services, ctx: S3Context) -> tuple[Sealing | None, Headers]:
    """How a new object (PUT, the target of a copy, a multipart upload) is sealed: as its headers ask, or
    else by the bucket's default; and the headers its response carries."""
    asked = sse_request(ctx.headers)
    customer = customer_key(ctx.headers, writing=True)
    default = bucket_default(services, ctx.bucket)
    if customer is not None:
        if default is not None and default.blocks_customer_keys:
            raise S3Error(
                "AccessDenied",
                f"Bucket {ctx.bucket} has blocked upload requests that specify Server Side Encryption with Customer "
                "provided keys (SSE-C). Please specify a different server-side encryption type.",
            )
        _require_tls(services, ctx)
        envelope, data_key = seal_for_customer(customer.key)
        return Sealing(envelope, data_key), customer_key_headers(customer)
    mode, key_ref, context = asked.mode, asked.kms_key_id, asked.context
    if mode is None and default is not None and default.algorithm is not None:
        mode, key_ref = default.algorithm, default.kms_key_id
    if mode is None:
        return None, {}
    key_id = master_key_id(services, key_ref if mode == KMS else None)
    envelope, data_key = seal_for_master(Mode(mode), master_keys(services), key_id, context)
    headers = envelope_headers(envelope)
    if context is not None:
        headers["x-amz-server-side-encryption-context"] = context
    return Sealing(envelope, data_key), headers


def for_read(
    services: Services, ctx: S3Context, info: ObjectInfo, *, copy_source: bool = False
) -> tuple[bytes | None, Headers]:
    """The data key that opens a stored version (None: it is plaintext), from the request's SSE-C key
    (the copy source's with `copy_source`) or the master keys; and the headers that report it."""
    envelope = envelope_of(info)
    customer = customer_key(ctx.headers, writing=False, prefix=COPY_SOURCE_CUSTOMER if copy_source else CUSTOMER)
    data_key = _open_for(services, ctx, envelope, customer, info, unneeded=NOT_APPLICABLE, missing=KEY_REQUIRED)
    return data_key, envelope_headers(envelope, customer)


def for_part(services: Services, ctx: S3Context, upload: UploadRecord) -> tuple[Sealing | None, Headers]:
    """The data key that seals a part of `upload` (UploadPart, UploadPartCopy): the upload's, opened with
    the request's SSE-C key where the upload was started with one (which each part must repeat)."""
    envelope = upload.encryption
    customer = customer_key(ctx.headers, writing=True)
    data_key = _open_for(
        services, ctx, envelope, customer, None,
        unneeded=PART_PARAMETERS, missing=PART_PARAMETERS, mismatch=PARTS_DO_NOT_MATCH,
    )  # fmt: skip
    if envelope is None or data_key is None:
        return None, {}
    return Sealing(envelope, data_key), envelope_headers(envelope, customer)


def for_complete(services: Services, ctx: S3Context, upload: UploadRecord) -> tuple[bytes | None, Headers]:
    """The data key a Complete seals the object's layout with, where it can be had: always for SSE-S3 /
    SSE-KMS; for SSE-C only when the request repeats the key (S3 does not require it there)."""
    envelope = upload.encryption
    customer = customer_key(ctx.headers, writing=False)
    data_key = _open_for(
        services, ctx, envelope, customer, None, unneeded=NOT_APPLICABLE, missing=None, mismatch=PARTS_DO_NOT_MATCH
    )
    return data_key, envelope_headers(envelope, customer) if data_key is not None else {}


def _open_for(
    services: Services,
    ctx: S3Context,
    envelope: Envelope | None,
    customer: CustomerKey | None,
    info: ObjectInfo | None,
    *,
    unneeded: str,
    missing: str | None,
    mismatch: str | None = None,
) -> bytes | None:
    """The data key of `envelope` (None where there is none to open) as a request with SSE-C key
    `customer` may have it. The InvalidRequest messages: `unneeded` for a key the envelope does not take,
    `missing` for none where it does (None: then there is no data key, and no error), `mismatch` for
    another key than the envelope's (None: 403, a read's answer)."""
    if envelope is None or envelope.mode is not Mode.CUSTOMER:
        if customer is not None:
            raise S3Error("InvalidRequest", unneeded)
        return open_envelope(services, info, envelope) if envelope is not None else None
    if customer is None:
        if missing is None:
            return None
        raise S3Error("InvalidRequest", missing)
    _require_tls(services, ctx)
    if mismatch is not None and not envelope.matches_customer_key(customer.key):
        raise S3Error("InvalidRequest", mismatch)
    return open_envelope(services, info, envelope, customer)


def open_envelope(
    services: Services, info: ObjectInfo | None, envelope: Envelope, customer: CustomerKey | None = None
) -> bytes:
    """The data key in `envelope`, or the S3 error that says why it cannot be had."""
    what = f"{info.bucket}/{info.key}" if info is not None else "this upload"
    try:
        return envelope.open(
            customer_key=customer.key if customer is not None else None, master_keys=services.master_keys.current
        )
    except WrongCustomerKey:
        raise S3Error("AccessDenied", WRONG_CUSTOMER_KEY) from None
    except MasterKeyMissing as exc:
        why = (
            "the gateway has no key file (--sse.keys)"
            if services.master_keys.current is None
            else "that key is not in the gateway's key file (--sse.keys)"
        )
        raise S3Error(
            "KMS.NotFoundException", f"{what} is encrypted under master key '{exc.key_id}', and {why}."
        ) from None
    except TamperedData as exc:
        raise store_errors.CorruptObject(f"{what}: {exc}") from None


def upload_headers(ctx: S3Context, upload: UploadRecord) -> Headers:
    """ListParts: the upload's encryption, without needing its key."""
    customer = None
    if upload.encryption is not None and upload.encryption.mode is Mode.CUSTOMER:
        customer = customer_key(ctx.headers, writing=False)
    return envelope_headers(upload.encryption, customer)


def names_encryption(ctx: S3Context) -> bool:
    """Whether a request names any server-side encryption (a copy onto itself may then change only that)."""
    return any(name.startswith(SSE) for name in ctx.headers)
