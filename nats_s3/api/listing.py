"""ListObjects (v1) and ListObjectsV2: prefix, any delimiter, paging and URL encoding over sorted keys."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from urllib.parse import quote

from aiohttp import web

from ..auth.principals import Principal
from ..protocol.errors import S3Error
from ..protocol.numbers import parse_int
from ..protocol.xml import S3_NS, XML_DECLARATION, XmlChild, escape_text, iso8601_seconds, render_items
from ..store.list_index import ListedObject
from .context import XML_TYPE, S3Context
from .services import Services

MAX_KEYS = 1000


def max_keys(ctx: S3Context) -> int:
    raw = ctx.query.get("max-keys")
    if raw is None:
        return MAX_KEYS
    value = parse_int(raw)
    if value is None:
        raise S3Error(
            "InvalidArgument",
            "Provided max-keys not an integer or within integer range",
            extra={"ArgumentName": "max-keys", "ArgumentValue": raw},
        )
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


_URL_UNSAFE = re.compile(r"[^A-Za-z0-9_.~/-]")


def _url_encode(value: str) -> str:
    # Most keys need no escaping; quote() is pure Python and shows up in listing profiles.
    return quote(value, safe="/") if _URL_UNSAFE.search(value) else value


def encoder(ctx: S3Context) -> Encoder:
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


def owner_items(principal: Principal) -> list[XmlChild]:
    return [("ID", principal.user_id), ("DisplayName", principal.display_name)]


def bucket_owner_items(services: Services, ctx: S3Context) -> list[XmlChild]:
    """The Owner a listing shows: the bucket's (the caller, for a bucket from before owners)."""
    owner = services.store.configs.get(ctx.bucket).owner
    found = services.principals.by_user_id(owner) if owner else ctx.principal
    if found is not None:
        return owner_items(found)
    return [("ID", owner), ("DisplayName", owner)] if owner else []


def _render_contents(out: list[str], objects: list[ListedObject], enc: Encoder, owner: str | None) -> None:
    """The <Contents> entries, written directly: this loop is most of a listing's cost."""
    for key, size, etag, mtime, algorithm, _ in objects:
        # LastModified in whole seconds, as S3 lists it: the same instant HEAD's Last-Modified shows.
        out.append(
            f"<Contents><Key>{escape_text(enc(key))}</Key>"
            f"<LastModified>{iso8601_seconds(mtime)}</LastModified>"
            f"<ETag>&quot;{escape_text(etag)}&quot;</ETag><Size>{size}</Size>"
        )
        if algorithm is not None:
            out.append(f"<ChecksumAlgorithm>{algorithm}</ChecksumAlgorithm>")
        out.append("<StorageClass>STANDARD</StorageClass>")
        if owner is not None:
            out.append(owner)
        out.append("</Contents>")


async def list_objects(services: Services, ctx: S3Context, *, v2: bool) -> web.Response:
    q = ctx.query
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    limit = max_keys(ctx)
    enc = encoder(ctx)
    if v2:
        token = q.get("continuation-token")
        start_after = q.get("start-after", "")
        after = start_after
        if token:  # an empty token is the start of the listing
            after = _decode_token(token)
    else:
        after = q.get("marker", "")
    page = await services.store.list_page(ctx.bucket, prefix, delimiter, after, limit)
    owner = bucket_owner_items(services, ctx)
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
    items.append(("MaxKeys", limit))
    if delimiter:
        items.append(("Delimiter", enc(delimiter)))
    if "encoding-type" in q:
        items.append(("EncodingType", "url"))
    items.append(("IsTruncated", page.truncated))
    out = [XML_DECLARATION, f'<ListBucketResult xmlns="{S3_NS}">']
    render_items(out, items)
    owner_xml = None
    if (not v2) or fetch_owner:
        owner_parts: list[str] = []
        render_items(owner_parts, [("Owner", owner)])
        owner_xml = "".join(owner_parts)
    _render_contents(out, page.objects, enc, owner_xml)
    for common in page.prefixes:
        out.append(f"<CommonPrefixes><Prefix>{escape_text(enc(common))}</Prefix></CommonPrefixes>")
    out.append("</ListBucketResult>")
    return web.Response(body="".join(out).encode(), content_type=XML_TYPE, headers=ctx.base_headers())


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
