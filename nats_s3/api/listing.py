"""ListObjects (v1) and ListObjectsV2: prefix, any delimiter, paging and URL encoding over sorted keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from ..protocol.errors import S3Error
from ..protocol.xml import XmlChild, iso8601
from ..store.models import ObjectInfo
from .context import S3Context
from .services import Services

MAX_KEYS = 1000


@dataclass(slots=True)
class Page:
    contents: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    last: str | None  # the last key or common prefix returned


def paginate(objects: Iterable[ObjectInfo], prefix: str, delimiter: str, after: str, max_keys: int) -> Page:
    """One page of a listing: keys after `after`, common prefixes rolled up, at most max_keys entries."""
    contents: list[ObjectInfo] = []
    prefixes: list[str] = []
    after_b = after.encode()
    last: str | None = None
    count = 0
    for info in objects:
        key = info.key
        if not key.startswith(prefix) or key.encode() <= after_b:
            continue
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                common = key[: cut + len(delimiter)]
                if prefixes and prefixes[-1] == common:
                    continue
                # A marker inside a common prefix resumes after the whole prefix.
                if after.startswith(common) and after_b >= common.encode():
                    continue
                if count >= max_keys:
                    return Page(contents, prefixes, True, last)
                prefixes.append(common)
                last = common
                count += 1
                continue
        if count >= max_keys:
            return Page(contents, prefixes, True, last)
        contents.append(info)
        last = key
        count += 1
    return Page(contents, prefixes, False, last)


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


def _encoder(ctx: S3Context):  # type: ignore[no-untyped-def]
    encoding = ctx.query.get("encoding-type")
    if encoding is None:
        return lambda s: s
    if encoding.lower() != "url":
        raise S3Error(
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            extra={"ArgumentName": "encoding-type", "ArgumentValue": encoding},
        )
    return lambda s: quote(s, safe="/") if s else s


def owner_items(access_key: str) -> list[XmlChild]:
    return [("ID", hashlib.sha256(access_key.encode()).hexdigest()), ("DisplayName", access_key)]


def _object_items(info: ObjectInfo, enc, owner: list[XmlChild] | None) -> list[XmlChild]:  # type: ignore[no-untyped-def]
    items: list[XmlChild] = [
        ("Key", enc(info.key)),
        ("LastModified", iso8601(info.last_modified)),
        ("ETag", f'"{info.etag}"'),
        ("Size", info.size),
    ]
    if info.checksum is not None:
        items.append(("ChecksumAlgorithm", info.checksum[0]))
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
    objects = await services.store.list_objects(ctx.bucket, prefix)
    page = paginate(objects, prefix, delimiter, after, max_keys) if max_keys else Page([], [], False, None)
    if max_keys == 0:
        page.truncated = any(o.key.encode() > after.encode() for o in objects)
    owner = owner_items(ctx.auth.access_key)
    fetch_owner = q.get("fetch-owner", "").lower() == "true"
    items: list[XmlChild] = [("Name", ctx.bucket), ("Prefix", enc(prefix))]
    if v2:
        if "continuation-token" in q:
            items.append(("ContinuationToken", q["continuation-token"]))
        if "start-after" in q:
            items.append(("StartAfter", enc(q["start-after"])))
        items.append(("KeyCount", len(page.contents) + len(page.prefixes)))
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
    for info in page.contents:
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
