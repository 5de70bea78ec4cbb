"""ListObjects (v1) and ListObjectsV2: prefix, any delimiter, paging and URL encoding over sorted keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from urllib.parse import quote

from aiohttp import web

from ..protocol.errors import S3Error
from ..protocol.xml import XmlChild, iso8601
from ..store.list_index import ListedObject
from .context import S3Context
from .services import Services

MAX_KEYS = 1000


def _max_keys(ctx: S3Context) -> int:
    raw = ctx.query.get("max-keys")
    if raw is None:
        return MAX_KEYS
    try:
        value = int(raw)
    except ValueError:
        raise S3Error(
            "InvalidArgument",
            "Provided max-keys not an integer or within integer range",
            extra={"ArgumentName": "max-keys", "ArgumentValue": raw},
        ) from None
    if value < 0:
        raise S3Error(
            "InvalidArgument",
            "Argument maxKeys must be an integer between 0 and 2147483647",
            extra={"ArgumentName": "maxKeys", "ArgumentValue": raw},
        )
    return min(value, MAX_KEYS)


Encoder = Callable[[str], str]


def _identity(value: str) -> str:
    return value


def _url_encode(value: str) -> str:
    return quote(value, safe="/") if value else value


def _encoder(ctx: S3Context) -> Encoder:
    encoding = ctx.query.get("encoding-type")
    if encoding is None:
        return _identity
    if encoding.lower() != "url":
        raise S3Error(
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            extra={"ArgumentName": "encoding-type", "ArgumentValue": encoding},
        )
    return _url_encode


def owner_items(access_key: str) -> list[XmlChild]:
    return [("ID", hashlib.sha256(access_key.encode()).hexdigest()), ("DisplayName", access_key)]


def _object_items(info: ListedObject, enc: Encoder, owner: list[XmlChild] | None) -> list[XmlChild]:
    items: list[XmlChild] = [
        ("Key", enc(info.key)),
        # Whole seconds, as S3 lists them: the same instant HEAD's Last-Modified shows.
        ("LastModified", iso8601(info.last_modified.replace(microsecond=0))),
        ("ETag", f'"{info.etag}"'),
        ("Size", info.size),
    ]
    if info.checksum_algorithm is not None:
        items.append(("ChecksumAlgorithm", info.checksum_algorithm))
    items.append(("StorageClass", "STANDARD"))
    if owner is not None:
        items.append(("Owner", owner))
    return items


async def list_objects(services: Services, ctx: S3Context, *, v2: bool) -> web.Response:
    q = ctx.query
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    max_keys = _max_keys(ctx)
    enc = _encoder(ctx)
    if v2:
        token = q.get("continuation-token")
        start_after = q.get("start-after", "")
        after = start_after
        if token is not None:
            after = _decode_token(token)
    else:
        after = q.get("marker", "")
    page = await services.store.list_page(ctx.bucket, prefix, delimiter, after, max_keys)
    owner = owner_items(ctx.auth.access_key)
    fetch_owner = q.get("fetch-owner", "").lower() == "true"
    items: list[XmlChild] = [("Name", ctx.bucket), ("Prefix", enc(prefix))]
    if v2:
        if "continuation-token" in q:
            items.append(("ContinuationToken", q["continuation-token"]))
        if "start-after" in q:
            items.append(("StartAfter", enc(q["start-after"])))
        items.append(("KeyCount", len(page.objects) + len(page.prefixes)))
        if page.truncated and page.last is not None:
            items.append(("NextContinuationToken", _encode_token(page.last)))
    else:
        items.append(("Marker", enc(after)))
        if page.truncated and delimiter and page.last is not None:
            items.append(("NextMarker", enc(page.last)))
    items.append(("MaxKeys", max_keys))
    if delimiter:
        items.append(("Delimiter", enc(delimiter)))
    if "encoding-type" in q:
        items.append(("EncodingType", "url"))
    items.append(("IsTruncated", page.truncated))
    show_owner = (not v2) or fetch_owner
    for info in page.objects:
        items.append(("Contents", _object_items(info, enc, owner if show_owner else None)))
    for common in page.prefixes:
        items.append(("CommonPrefixes", [("Prefix", enc(common))]))
    return ctx.xml("ListBucketResult", items)


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(b"k1:" + key.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        if raw.startswith(b"k1:"):
            return raw[3:].decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise S3Error(
        "InvalidArgument", "The continuation token provided is incorrect", extra={"ArgumentName": "continuation-token"}
    )
