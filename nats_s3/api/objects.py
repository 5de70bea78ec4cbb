"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, CopyObject, DeleteObjects."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from ..protocol import checksums
from ..protocol.errors import S3Error
from ..protocol.headers import (
    ACL,
    DEFAULT_CONTENT_TYPE,
    OWNER,
    RESPONSE_OVERRIDES,
    TAGGING,
    ByteRange,
    canned_acl,
    check_copy_source_conditions,
    check_read_conditions,
    encode_tags,
    http_date,
    parse_range,
    parse_tagging_header,
    stored_headers,
    tag_set_items,
    tags_from_xml,
)
from ..protocol.numbers import parse_uint
from ..protocol.raw_headers import from_stored
from ..protocol.sse_headers import refuse_on_read as refuse_sse_on_read
from ..protocol.xml import XmlChild, child_text, children, iso8601, local_name, parse_xml
from ..store import errors as store_errors
from ..store import naming
from ..store.models import BodyDigests, Checksum, ObjectInfo, WriteCondition
from ..store.sealed import envelope_of
from . import encryption, notify
from .body import UploadBody, copy_source, read_request_xml
from .bucket_access import writer_owner
from .context import S3Context
from .raw_response import RawHeadersBodyResponse, RawHeadersResponse
from .services import Services
from .versions import shows_versions, version_id_arg

log = logging.getLogger("nats_s3.api")
MAX_DELETE_KEYS = 1000
MAX_DELETE_BODY = 2 * 1024 * 1024


def check_key(key: str) -> None:
    if len(key.encode()) > naming.MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", extra={"Size": str(len(key.encode())), "MaxSizeAllowed": "1024"})


def write_condition(ctx: S3Context) -> WriteCondition | None:
    """If-None-Match / If-Match on PutObject, CopyObject and CompleteMultipartUpload (checked
    atomically with the write: the store compares with the version it replaces)."""
    if_none_match = ctx.headers.get("if-none-match")
    if_match = ctx.headers.get("if-match")
    if if_none_match is None and if_match is None:
        return None

    def etag(value: str | None) -> str | None:
        return value.strip().removeprefix("W/").strip('"') if value is not None else None

    return WriteCondition(if_none_match=etag(if_none_match), if_match=etag(if_match))


def object_headers(info: ObjectInfo, with_checksum: bool) -> dict[str, str]:
    headers = {
        "ETag": f'"{info.etag}"',
        "Last-Modified": http_date(info.last_modified),
        "Accept-Ranges": "bytes",
    }
    headers["content-type"] = DEFAULT_CONTENT_TYPE  # objects from other Object Store clients may have none
    for name, value in info.headers.items():
        headers[name] = from_stored(value)
    headers.pop(ACL, None)
    headers.pop(OWNER, None)
    if tagging := headers.pop(TAGGING, None):
        headers["x-amz-tagging-count"] = str(len(parse_qsl(tagging)))
    if with_checksum and info.checksum is not None:
        headers[checksums.header_for(info.checksum[0])] = info.checksum[1]
        headers[checksums.TYPE_HEADER] = checksums.checksum_type(info.checksum[1])
    return headers


async def put_object(services: Services, ctx: S3Context) -> web.Response:
    check_key(ctx.key)
    if "x-amz-copy-source" in ctx.headers:
        return await copy_object(services, ctx)
    meta = stored_headers(ctx.headers)
    writer_owner(services, ctx, meta)
    condition = write_condition(ctx)
    sealing, sse_headers = encryption.for_write(services, ctx)
    settings = services.settings
    body = UploadBody(ctx.request, ctx.headers, ctx.auth, settings.http_read_timeout or settings.http_idle_timeout)
    info = await services.store.put_object(
        ctx.bucket, ctx.key, body.stream(), meta, before_commit=body.before_commit, condition=condition,
        size=body.size, sealing=sealing, sha256=body.needs_sha256,
    )  # fmt: skip
    await notify.object_created(services, ctx, "Put", info)
    headers = {"ETag": f'"{info.etag}"', **new_version_headers(info), **sse_headers}
    if info.checksum is not None:
        headers[checksums.header_for(info.checksum[0])] = info.checksum[1]
        headers[checksums.TYPE_HEADER] = "FULL_OBJECT"
    return ctx.empty(headers=headers)


def new_version_headers(info: ObjectInfo) -> dict[str, str]:
    """A write's answer names the version it made, where versioning is enabled (S3 says nothing of a
    null version made while versioning is suspended or was never enabled)."""
    return {} if info.version_id == "null" else {"x-amz-version-id": info.version_id}


def read_version_headers(services: Services, ctx: S3Context, info: ObjectInfo) -> dict[str, str]:
    return {"x-amz-version-id": info.version_id} if shows_versions(services, ctx.bucket) else {}


@dataclass(frozen=True, slots=True)
class _Found:
    """The version a read names, with what opens it (an encrypted one's data key) and reports it."""

    info: ObjectInfo
    data_key: bytes | None
    sse_headers: dict[str, str]


async def _conditional_head(services: Services, ctx: S3Context) -> _Found | web.Response:
    refuse_sse_on_read(ctx.headers)
    info = await services.store.head_object(ctx.bucket, ctx.key, version_id_arg(ctx.query.get("versionId")))
    # The key comes first: without it, not even whether a condition holds is told.
    data_key, sse_headers = encryption.for_read(services, ctx, info)
    try:
        check_read_conditions(ctx.headers, info.etag, info.last_modified)
    except S3Error as err:
        if err.code != "NotModified":
            raise
        headers = {"ETag": f'"{info.etag}"', "Last-Modified": http_date(info.last_modified)}
        return ctx.empty(304, {**headers, **read_version_headers(services, ctx, info)})
    return _Found(info, data_key, sse_headers)


_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _with_overrides(ctx: S3Context, headers: dict[str, str]) -> dict[str, str]:
    for param, header in RESPONSE_OVERRIDES.items():
        if param in ctx.query:
            value = ctx.query[param]
            if _HEADER_UNSAFE.search(value):  # a CR or LF would split the response's headers
                raise S3Error(
                    "InvalidArgument", f"{param} is not a valid header value.",
                    extra={"ArgumentName": param, "ArgumentValue": value.encode("unicode_escape").decode()},
                )  # fmt: skip
            headers.pop(header.lower(), None)
            headers[header] = value
    return headers


@dataclass(slots=True)
class _ReadPlan:
    info: ObjectInfo
    status: int
    start: int
    end: int  # inclusive; -1 for an empty object
    headers: dict[str, str]
    data_key: bytes | None = None  # an encrypted version's


async def _plan_read(services: Services, ctx: S3Context) -> _ReadPlan | web.Response:
    """What GET and HEAD answer: conditions, range and headers (a 304 comes back as a ready response)."""
    check_key(ctx.key)
    found = await _conditional_head(services, ctx)
    if isinstance(found, web.Response):
        return found
    info = found.info
    if "partNumber" in ctx.query:
        if "range" in ctx.headers:
            raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber query parameter")
        byte_range = _part_range(ctx.query["partNumber"], info)
    else:
        byte_range = parse_range(ctx.headers.get("range"), info.size)
    # The stored checksum covers the whole object, so a ranged read does not carry it.
    with_checksum = ctx.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED" and byte_range is None
    headers = {**ctx.base_headers(), **_with_overrides(ctx, object_headers(info, with_checksum))}
    headers.update(read_version_headers(services, ctx, info))
    headers.update(found.sse_headers)
    if "partNumber" in ctx.query and info.parts:
        headers["x-amz-mp-parts-count"] = str(len(info.parts))
    if byte_range is None:
        return _ReadPlan(info, 200, 0, info.size - 1, headers, found.data_key)
    headers["Content-Range"] = byte_range.content_range(info.size)
    return _ReadPlan(info, 206, byte_range.start, byte_range.end, headers, found.data_key)


def _part_range(raw: str, info: ObjectInfo) -> ByteRange | None:
    """`partNumber=N`: the bytes of part N of a multipart object; part 1 of any other object is all of it."""
    parsed = parse_uint(raw, 5)
    if parsed is None or not 1 <= parsed <= 10000:
        raise S3Error(
            "InvalidArgument",
            "Part number must be an integer between 1 and 10000, inclusive",
            extra={"ArgumentName": "partNumber", "ArgumentValue": raw},
        )
    number = parsed
    count = len(info.parts) or 1
    if number > count:
        raise S3Error(
            "InvalidPartNumber",
            "The requested partnumber is not satisfiable",
            status=416,
            headers={"Content-Range": f"bytes */{info.size}"},
        )
    if not info.parts:
        return None
    start = sum(part.size for part in info.parts[: number - 1])
    return ByteRange(start, start + info.parts[number - 1].size - 1)


async def head_object(services: Services, ctx: S3Context) -> web.StreamResponse:
    plan = await _plan_read(services, ctx)
    if isinstance(plan, web.Response):
        return plan
    resp = RawHeadersResponse(status=plan.status, headers=plan.headers)
    resp.content_length = plan.end - plan.start + 1
    return resp


async def get_object(services: Services, ctx: S3Context) -> web.StreamResponse:
    plan = await _plan_read(services, ctx)
    if isinstance(plan, web.Response):
        return plan
    info, start, end = plan.info, plan.start, plan.end
    length = end - start + 1
    stream = services.store.read_object(info, start, end, data_key=plan.data_key)
    # Touch NATS before sending headers, so a missing chunk or lost connection is still an S3 error.
    first: bytes | None = None
    try:
        first = await anext(stream, None)
    except store_errors.StoreError:
        await _aclose(stream)
        raise
    if first is None or len(first) == length:
        # All of it in hand (most small objects are one chunk): headers and body leave in one write.
        await _aclose(stream)
        return RawHeadersBodyResponse(status=plan.status, headers=plan.headers, body=first or b"")
    resp = RawHeadersResponse(status=plan.status, headers=plan.headers)
    resp.content_length = length
    await resp.prepare(ctx.request)
    write_timeout = services.settings.http_write_timeout

    sent = 0

    async def write(data: bytes) -> None:
        nonlocal sent
        sent += len(data)
        ctx.request["s3.bytes_out"] = sent
        if write_timeout:
            await asyncio.wait_for(resp.write(data), write_timeout)
        else:
            await resp.write(data)

    try:
        if first is not None:
            await write(first)
            async for data in stream:
                await write(data)
    except (store_errors.StoreError, ConnectionError, TimeoutError) as exc:
        # Headers are gone: the only honest signal left is to cut the connection short.
        log.warning("GET aborted mid-stream", extra={"bucket": ctx.bucket, "key": ctx.key, "error": repr(exc)})
        if ctx.request.transport is not None:
            ctx.request.transport.close()
        return resp
    finally:
        await _aclose(stream)
    await resp.write_eof()
    return resp


async def _aclose(stream: AsyncIterator[bytes]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


async def delete_object(services: Services, ctx: S3Context) -> web.Response:
    check_key(ctx.key)
    version_id = version_id_arg(ctx.query.get("versionId"))
    result = await services.store.delete_object(ctx.bucket, ctx.key, version_id)
    await notify.object_removed(services, ctx, ctx.key, result, named_version=version_id is not None)
    headers: dict[str, str] = {}
    if result.version_id is not None:
        headers["x-amz-version-id"] = result.version_id
    if result.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    return ctx.empty(204, headers)


@dataclass(frozen=True, slots=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None


def parse_copy_source(value: str) -> CopySource:
    """`x-amz-copy-source`: `[/]bucket/key[?versionId=id]`, the bucket and key URL-encoded."""
    source, _, query = value.partition("?")
    try:
        source = unquote(source, errors="strict")
    except UnicodeDecodeError:
        raise S3Error("InvalidArgument", "Invalid copy source encoding.") from None
    source = source.removeprefix("/")
    bucket, sep, key = source.partition("/")
    if not sep or not bucket or not key:
        raise S3Error(
            "InvalidArgument",
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            extra={"ArgumentName": "x-amz-copy-source"},
        )
    version_id = None
    if query:
        params = dict(parse_qsl(query, keep_blank_values=True))
        if set(params) - {"versionId"}:
            raise S3Error(
                "InvalidArgument", "Unsupported copy source parameter.", extra={"ArgumentName": "x-amz-copy-source"}
            )
        version_id = version_id_arg(params.get("versionId"), "x-amz-copy-source")
    return CopySource(bucket, key, version_id)


async def head_copy_source(services: Services, source: CopySource) -> ObjectInfo:
    """The version a copy reads: a missing one is NoSuchKey / NoSuchVersion on the source; a delete
    marker named by version id is InvalidRequest, as S3 answers."""
    resource = f"/{source.bucket}/{source.key}"
    try:
        return await services.store.head_object(source.bucket, source.key, source.version_id)
    except (store_errors.ObjectNotFound, store_errors.LatestIsDeleteMarker):
        raise S3Error("NoSuchKey", resource=resource) from None
    except store_errors.VersionNotFound:
        raise S3Error("NoSuchVersion", resource=resource, extra={"VersionId": source.version_id or ""}) from None
    except store_errors.VersionIsDeleteMarker:
        raise S3Error(
            "InvalidRequest",
            "The source of a copy request may not specifically refer to a delete marker by version id.",
            resource=resource,
        ) from None


def copy_source_headers(services: Services, source: CopySource, info: ObjectInfo) -> dict[str, str]:
    if source.version_id is not None or shows_versions(services, source.bucket):
        return {"x-amz-copy-source-version-id": info.version_id}
    return {}


async def copy_object(services: Services, ctx: S3Context) -> web.Response:
    src = parse_copy_source(ctx.headers["x-amz-copy-source"])
    src_bucket, src_key = src.bucket, src.key
    check_key(src_key)
    directive = ctx.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error(
            "InvalidArgument", "Unknown metadata directive.", extra={"ArgumentName": "x-amz-metadata-directive"}
        )
    source = await head_copy_source(services, src)
    source_key, _ = encryption.for_read(services, ctx, source, copy_source=True)
    check_copy_source_conditions(ctx.headers, source.etag, source.last_modified)
    # A copy onto itself must change something: its metadata, or its encryption (asked for, or the
    # bucket's default, which S3 lets such a copy apply).
    changes_encryption = encryption.names_encryption(ctx) or encryption.bucket_default(services, ctx.bucket)
    if (
        directive == "COPY"
        and (src_bucket, src_key) == (ctx.bucket, ctx.key)
        and src.version_id is None
        and not changes_encryption
    ):
        raise S3Error(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself without changing "
            "the object's metadata, storage class, website redirect location or encryption attributes.",
        )
    meta = dict(source.headers) if directive == "COPY" else stored_headers(ctx.headers)
    tagging_directive = ctx.headers.get("x-amz-tagging-directive", "COPY").upper()
    if tagging_directive not in ("COPY", "REPLACE"):
        raise S3Error(
            "InvalidArgument", "Unknown tagging directive.", extra={"ArgumentName": "x-amz-tagging-directive"}
        )
    meta.pop(TAGGING, None)
    # An ACL is never copied: the copy gets the one its request names, private by default.
    meta.pop(ACL, None)
    meta.pop(OWNER, None)
    if (acl := canned_acl(ctx.headers)) not in (None, "private"):
        meta[ACL] = acl
    writer_owner(services, ctx, meta)
    if tagging_directive == "COPY" and TAGGING in source.headers:
        meta[TAGGING] = source.headers[TAGGING]
    elif tagging_directive == "REPLACE" and TAGGING in ctx.headers:
        meta[TAGGING] = encode_tags(parse_tagging_header(ctx.headers[TAGGING]))
    algorithm = (ctx.headers.get("x-amz-checksum-algorithm") or (source.checksum or ("", ""))[0]).upper() or None
    hasher = checksums.new_hasher(algorithm) if algorithm else None
    sealing, sse_headers = encryption.for_write(services, ctx)
    # The source's ETag is its plaintext's MD5 unless it is one S3 hides (SSE-C, SSE-KMS).
    source_envelope = envelope_of(source)
    etag_is_md5 = len(source.etag) == 32 and (source_envelope is None or not source_envelope.hides_md5)

    async def before_commit(digests: BodyDigests) -> Checksum | None:
        if digests.size != source.size:
            raise store_errors.CorruptObject("copy source changed size while copying")
        if etag_is_md5 and source.etag != digests.md5.hex():
            raise store_errors.CorruptObject("copy source changed while copying")
        if hasher is None or algorithm is None:
            return None
        value = base64.b64encode(digests.sha256).decode() if algorithm == "SHA256" else hasher.b64digest()
        return (algorithm, value)

    info = await services.store.put_object(
        ctx.bucket,
        ctx.key,
        copy_source(services.store.read_object(source, data_key=source_key), hasher),
        meta,
        before_commit=before_commit,
        condition=write_condition(ctx),
        size=source.size,
        sealing=sealing,
        sha256=algorithm == "SHA256",
    )
    await notify.object_created(services, ctx, "Copy", info)
    items: list[XmlChild] = [("LastModified", iso8601(info.last_modified)), ("ETag", f'"{info.etag}"')]
    if info.checksum is not None:
        items.append((f"Checksum{info.checksum[0]}", info.checksum[1]))
        items.append(("ChecksumType", checksums.checksum_type(info.checksum[1])))
    ctx.response_headers.update(
        {**new_version_headers(info), **copy_source_headers(services, src, source), **sse_headers}
    )
    return ctx.xml("CopyObjectResult", items)


async def delete_objects(services: Services, ctx: S3Context) -> web.Response:
    body = await read_request_xml(ctx, MAX_DELETE_BODY, integrity_required=True)
    root = parse_xml(body)
    if local_name(root) != "Delete":
        raise S3Error("MalformedXML")
    objects = children(root, "Object")
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise S3Error("MalformedXML")
    quiet = (child_text(root, "Quiet") or "").strip().lower() == "true"
    targets: list[tuple[str, str | None]] = []
    for obj in objects:
        key = child_text(obj, "Key")
        if key is None:
            raise S3Error("MalformedXML")
        raw_version = child_text(obj, "VersionId")
        targets.append((key, raw_version.strip() if raw_version is not None else None))
    await services.store.head_bucket(ctx.bucket)
    results: list[XmlChild] = []
    for key, raw_version in targets:
        try:
            if not key or len(key.encode()) > naming.MAX_KEY_BYTES:
                raise S3Error("KeyTooLongError" if key else "InvalidArgument")
            version_id = version_id_arg(raw_version) if raw_version else None
            if ctx.may_delete is not None and not await ctx.may_delete(key, version_id):
                raise S3Error("AccessDenied")
            result = await services.store.delete_object(ctx.bucket, key, version_id)
            await notify.object_removed(services, ctx, key, result, named_version=version_id is not None)
        except S3Error as err:
            results.append(("Error", [("Key", key), ("VersionId", raw_version), ("Code", err.code),
                                      ("Message", err.message)]))  # fmt: skip
            continue
        except store_errors.StoreError as exc:
            code = "ServiceUnavailable" if isinstance(exc, store_errors.StoreUnavailable) else "InternalError"
            results.append(("Error", [("Key", key), ("VersionId", raw_version), ("Code", code),
                                      ("Message", str(exc) or code)]))  # fmt: skip
            continue
        if quiet:
            continue
        entry: list[XmlChild] = [("Key", key)]
        if version_id is not None:
            entry.append(("VersionId", version_id))
        if result.delete_marker:
            entry += [("DeleteMarker", True), ("DeleteMarkerVersionId", result.version_id)]
        results.append(("Deleted", entry))
    return ctx.xml("DeleteResult", results)


MAX_TAGGING_BODY = 64 * 1024


async def get_object_tagging(services: Services, ctx: S3Context) -> web.Response:
    check_key(ctx.key)
    info = await services.store.head_object(ctx.bucket, ctx.key, version_id_arg(ctx.query.get("versionId")))
    tags = parse_qsl(info.headers.get(TAGGING, ""), keep_blank_values=True)
    ctx.response_headers.update(read_version_headers(services, ctx, info))
    return ctx.xml("Tagging", [("TagSet", tag_set_items(tags))])


async def _change_tags(
    services: Services, ctx: S3Context, change: Callable[[dict[str, str]], dict[str, str]], event: str
) -> None:
    version_id = version_id_arg(ctx.query.get("versionId"))
    info = await services.store.update_headers(ctx.bucket, ctx.key, change, version_id)
    await notify.object_changed(services, ctx, event, info)
    ctx.response_headers.update(read_version_headers(services, ctx, info))


async def put_object_tagging(services: Services, ctx: S3Context) -> web.Response:
    check_key(ctx.key)
    body = await read_request_xml(ctx, MAX_TAGGING_BODY)
    encoded = encode_tags(tags_from_xml(body))

    def change(headers: dict[str, str]) -> dict[str, str]:
        headers.pop(TAGGING, None)
        if encoded:
            headers[TAGGING] = encoded
        return headers

    await _change_tags(services, ctx, change, "ObjectTagging:Put")
    return ctx.empty()


async def delete_object_tagging(services: Services, ctx: S3Context) -> web.Response:
    check_key(ctx.key)

    def change(headers: dict[str, str]) -> dict[str, str]:
        headers.pop(TAGGING, None)
        return headers

    await _change_tags(services, ctx, change, "ObjectTagging:Delete")
    return ctx.empty(204)
