"""Multipart operations: Create, UploadPart(Copy), Complete, Abort, ListParts, ListMultipartUploads."""

from __future__ import annotations

import itertools
from datetime import timedelta
from urllib.parse import quote

from aiohttp import web

from ..protocol import checksums
from ..protocol.errors import S3Error
from ..protocol.headers import check_copy_source_conditions, stored_headers
from ..protocol.numbers import int_argument, parse_uint, parse_uint_clamped
from ..protocol.xml import XmlChild, child_text, children, iso8601, local_name, parse_xml
from ..store import errors as store_errors
from ..store.models import BodyDigests, Checksum, ObjectInfo, Sealing
from ..store.multipart import MAX_PART_NUMBER, OPEN, PartRecord, UploadRecord
from . import encryption, notify
from .body import UploadBody, copy_source, read_request_xml
from .bucket_access import writer_owner
from .context import S3Context
from .listing import owner_items
from .objects import (
    check_key,
    copy_source_headers,
    head_copy_source,
    new_version_headers,
    parse_copy_source,
    write_condition,
)
from .services import Services

MAX_COMPLETE_BODY = 4 * 1024 * 1024
MAX_LIST = 1000
CHECKSUM_TYPES = ("COMPOSITE", "FULL_OBJECT")


def _int_arg(ctx: S3Context, name: str, default: int, low: int, high: int | None = None) -> int:
    return int_argument(ctx.query.get(name), name, default, low, high)


def _upload_id(ctx: S3Context) -> str:
    return ctx.query.get("uploadId", "")


def _checksum_items(algorithm: str | None, value: str | None) -> list[XmlChild]:
    if not algorithm or not value:
        return []
    return [(f"Checksum{algorithm}", value)]


async def create_multipart_upload(services: Services, ctx: S3Context) -> web.Response:
    check_key(ctx.key)
    algorithm = ctx.headers.get("x-amz-checksum-algorithm") or ctx.headers.get("x-amz-sdk-checksum-algorithm")
    algorithm = checksums.normalize_algorithm(algorithm) if algorithm else None
    checksum_type = ctx.headers.get("x-amz-checksum-type", "").upper() or None
    if checksum_type is not None:
        if checksum_type not in CHECKSUM_TYPES:
            raise S3Error("InvalidRequest", f"Value for x-amz-checksum-type header is invalid: {checksum_type}.")
        if algorithm is None:
            raise S3Error("InvalidRequest", "x-amz-checksum-type requires x-amz-checksum-algorithm.")
    if algorithm is not None and checksum_type is None:
        checksum_type = "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
    if checksum_type == "FULL_OBJECT" and algorithm not in checksums.FULL_OBJECT_ALGORITHMS:
        raise S3Error("InvalidRequest", f"The FULL_OBJECT checksum type is not supported for {algorithm}.")
    if checksum_type == "COMPOSITE" and algorithm == "CRC64NVME":
        raise S3Error("InvalidRequest", "The COMPOSITE checksum type is not supported for CRC64NVME.")
    meta = stored_headers(ctx.headers)
    writer_owner(services, ctx, meta)
    sealing, sse_headers = encryption.for_write(services, ctx)
    upload = await services.multipart.create(
        ctx.bucket, ctx.key, meta,
        checksum_algorithm=algorithm, checksum_type=checksum_type, owner=ctx.auth.access_key,
        expiry=timedelta(seconds=services.settings.multipart_expiry),
        encryption=sealing.envelope if sealing is not None else None,
    )  # fmt: skip
    ctx.response_headers.update(sse_headers)
    if algorithm is not None and checksum_type is not None:
        ctx.response_headers["x-amz-checksum-algorithm"] = algorithm
        ctx.response_headers["x-amz-checksum-type"] = checksum_type
    return ctx.xml(
        "InitiateMultipartUploadResult",
        [("Bucket", ctx.bucket), ("Key", ctx.key), ("UploadId", upload.upload_id)],
    )


def _part_number(ctx: S3Context) -> int:
    return _int_arg(ctx, "partNumber", 0, 1, MAX_PART_NUMBER)


async def upload_part(services: Services, ctx: S3Context) -> web.Response:
    check_key(ctx.key)
    number = _part_number(ctx)
    _, upload = await services.multipart.get_upload(ctx.bucket, ctx.key, _upload_id(ctx))
    sealing, sse_headers = encryption.for_part(services, ctx, upload)
    if "x-amz-copy-source" in ctx.headers:
        return await _upload_part_copy(services, ctx, number, upload, sealing, sse_headers)
    settings = services.settings
    body = UploadBody(
        ctx.request,
        ctx.headers,
        ctx.auth,
        settings.http_read_timeout or settings.http_idle_timeout,
        required_algorithm=upload.checksum_algorithm,
    )
    part = await services.multipart.upload_part(
        ctx.bucket,
        ctx.key,
        upload.upload_id,
        number,
        body.stream(),
        _checksum_value(body.before_commit),
        sha256=body.needs_sha256,
        size=body.size,
        sealing=sealing,
    )
    headers = {"ETag": f'"{part.etag}"', **sse_headers}
    if upload.checksum_algorithm and part.checksum:
        headers[checksums.header_for(upload.checksum_algorithm)] = part.checksum
        headers[checksums.TYPE_HEADER] = upload.checksum_type or "COMPOSITE"
    return ctx.empty(headers=headers)


def _checksum_value(before_commit):  # type: ignore[no-untyped-def]
    async def check(digests: BodyDigests) -> str | None:
        checksum: Checksum | None = await before_commit(digests)
        return checksum[1] if checksum else None

    return check


async def _upload_part_copy(
    services: Services,
    ctx: S3Context,
    number: int,
    upload: UploadRecord,
    sealing: Sealing | None,
    sse_headers: dict[str, str],
) -> web.Response:
    src = parse_copy_source(ctx.headers["x-amz-copy-source"])
    source = await head_copy_source(services, src)
    source_key, _ = encryption.for_read(services, ctx, source, copy_source=True)
    check_copy_source_conditions(ctx.headers, source.etag, source.last_modified)
    start, end = 0, source.size - 1
    if raw_range := ctx.headers.get("x-amz-copy-source-range"):
        start, end = _copy_range(raw_range, source.size)
    hasher = checksums.new_hasher(upload.checksum_algorithm) if upload.checksum_algorithm else None

    async def before_commit(digests: BodyDigests) -> str | None:
        if digests.size != end - start + 1:
            raise store_errors.CorruptObject("copy source changed while copying")
        return hasher.b64digest() if hasher is not None else None

    part = await services.multipart.upload_part(
        ctx.bucket,
        ctx.key,
        upload.upload_id,
        number,
        copy_source(services.store.read_object(source, start, end, data_key=source_key), hasher),
        before_commit,
        sha256=False,  # the part's checksum, if any, comes from `hasher`
        size=end - start + 1,
        sealing=sealing,
    )
    items: list[XmlChild] = [("ETag", f'"{part.etag}"'), ("LastModified", part.last_modified[:23] + "Z")]
    items += _checksum_items(upload.checksum_algorithm, part.checksum)
    ctx.response_headers.update({**copy_source_headers(services, src, source), **sse_headers})
    return ctx.xml("CopyPartResult", items)


def _copy_range(value: str, size: int) -> tuple[int, int]:
    spec = value.strip()
    first, sep, last = spec.removeprefix("bytes=").partition("-")
    start_at, end_at = parse_uint_clamped(first), parse_uint_clamped(last)
    if not spec.startswith("bytes=") or not sep or start_at is None or end_at is None:
        raise S3Error(
            "InvalidArgument",
            "The x-amz-copy-source-range value must be of the form bytes=first-last",
            extra={"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": value},
        )
    start, end = start_at, end_at
    if start > end:
        raise S3Error(
            "InvalidArgument",
            f"Range specified is not valid for source object of size: {size}",
            extra={"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": value},
        )
    if end >= size:
        raise S3Error("InvalidRange", f"Range specified is not valid for source object of size: {size}", status=400)
    return start, end


def _parse_complete(body: bytes) -> list[tuple[int, str, dict[str, str]]]:
    root = parse_xml(body)
    if local_name(root) != "CompleteMultipartUpload":
        raise S3Error("MalformedXML")
    parts: list[tuple[int, str, dict[str, str]]] = []
    for element in children(root, "Part"):
        number_text = child_text(element, "PartNumber")
        etag = child_text(element, "ETag")
        number = parse_uint(number_text.strip(), 5) if number_text is not None else None
        if number is None or etag is None:
            raise S3Error("MalformedXML") if number_text is None or etag is None else S3Error("InvalidPart")
        sums = {name: child_text(element, f"Checksum{name}") or "" for name in checksums.ALGORITHMS}
        parts.append((number, etag.strip().strip('"'), {k: v for k, v in sums.items() if v}))
    if not parts:
        raise S3Error(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our "
            "published schema: it must list at least one part.",
        )
    numbers = [number for number, _, _ in parts]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise S3Error("InvalidPartOrder")
    if numbers[0] < 1 or numbers[-1] > MAX_PART_NUMBER:
        raise S3Error("InvalidPart")
    return parts


async def complete_multipart_upload(services: Services, ctx: S3Context) -> web.Response:
    check_key(ctx.key)
    body = await read_request_xml(ctx, MAX_COMPLETE_BODY, checksum_is_of_body=False)
    requested = _parse_complete(body)
    try:
        _, upload = await services.multipart.get_upload(ctx.bucket, ctx.key, _upload_id(ctx))
    except store_errors.UploadNotFound:
        # Completed already? A retried Complete gets the same answer.
        listed = [(n, e) for n, e, _ in requested]
        info = await services.multipart.complete(ctx.bucket, ctx.key, _upload_id(ctx), listed, lambda _: None)
        # Sent again: the first attempt may have ended before its event went out (a stream capturing
        # the subject keeps it once).
        await notify.object_created(services, ctx, "CompleteMultipartUpload", info)
        return _complete_result(ctx, info, None)
    algorithm, checksum_type = upload.checksum_algorithm, upload.checksum_type
    sent_type = ctx.headers.get(checksums.TYPE_HEADER, "").strip().upper()
    if sent_type and sent_type != (checksum_type or ""):
        raise S3Error(
            "InvalidRequest",
            f"The upload was created using the {checksum_type or 'null'} checksum mode. "
            f"The complete request must use the same checksum mode.",
        )
    # The whole object's checksum, if the client sends one: verified against what the parts make.
    object_claim = _object_checksum_claim(ctx.headers) if algorithm is not None else None
    if object_claim is not None and object_claim[0] != algorithm:
        raise S3Error(
            "InvalidRequest",
            f"Checksum Type mismatch occurred, expected checksum Type: {(algorithm or '').lower()}, "
            f"actual checksum Type: {object_claim[0].lower()}",
        )

    def finalize(parts: list[PartRecord]) -> Checksum | None:
        for part, (_, _, sums) in zip(parts, requested, strict=True):
            claimed = sums.get(algorithm or "")
            if claimed is not None and claimed != part.checksum:
                raise store_errors.InvalidPart(str(part.number))
        if algorithm is None or any(part.checksum is None for part in parts):
            return None
        values = [part.checksum or "" for part in parts]
        if checksum_type == "FULL_OBJECT":
            value = checksums.combine_full_object(algorithm, [(v, p.size) for v, p in zip(values, parts, strict=True)])
        else:
            value = checksums.composite(algorithm, values)
        if object_claim is not None and object_claim[1] != value.split("-", 1)[0]:
            raise S3Error("BadDigest", f"The {algorithm} you specified did not match the calculated checksum.")
        return (algorithm, value)

    data_key, sse_headers = encryption.for_complete(services, ctx, upload)
    info = await services.multipart.complete(
        ctx.bucket, ctx.key, upload.upload_id, [(n, etag) for n, etag, _ in requested], finalize,
        condition=write_condition(ctx), data_key=data_key,
    )  # fmt: skip
    await notify.object_created(services, ctx, "CompleteMultipartUpload", info)
    ctx.response_headers.update(sse_headers)
    return _complete_result(ctx, info, checksum_type)


def _object_checksum_claim(headers: dict[str, str]) -> Checksum | None:
    """The x-amz-checksum-<alg> a Complete names for the whole object; a COMPOSITE value may carry its -<parts>."""
    plain = {}
    for name, value in headers.items():
        if checksums.algorithm_for_header(name) is not None:
            base, _, count = value.strip().partition("-")
            value = base if count.isascii() and count.isdigit() else value
        plain[name] = value
    return checksums.checksum_from_headers(plain)


def _complete_result(ctx: S3Context, info: ObjectInfo, checksum_type: str | None) -> web.Response:
    items: list[XmlChild] = [
        ("Location", f"/{quote(ctx.bucket)}/{quote(ctx.key)}"),
        ("Bucket", ctx.bucket),
        ("Key", ctx.key),
        ("ETag", f'"{info.etag}"'),
    ]
    if info.checksum is not None:
        items += _checksum_items(info.checksum[0], info.checksum[1])
        items.append(("ChecksumType", checksum_type or "COMPOSITE"))
    ctx.response_headers.update(new_version_headers(info))
    return ctx.xml("CompleteMultipartUploadResult", items)


async def abort_multipart_upload(services: Services, ctx: S3Context) -> web.Response:
    await services.multipart.abort(ctx.bucket, ctx.key, _upload_id(ctx))
    return ctx.empty(204)


async def list_parts(services: Services, ctx: S3Context) -> web.Response:
    _, upload = await services.multipart.get_upload(ctx.bucket, ctx.key, _upload_id(ctx))
    if upload.state != OPEN:
        raise store_errors.UploadNotFound(upload.upload_id)
    ctx.response_headers.update(encryption.upload_headers(ctx, upload))
    max_parts = min(_int_arg(ctx, "max-parts", MAX_LIST, 0), MAX_LIST)
    marker = _int_arg(ctx, "part-number-marker", 0, 0)
    parts = [p for p in await services.multipart.list_parts(ctx.bucket, upload.upload_id) if p.number > marker]
    page, truncated = parts[:max_parts], len(parts) > max_parts
    owner = owner_items(services.principals.get(upload.owner or ctx.auth.access_key))
    items: list[XmlChild] = [
        ("Bucket", ctx.bucket),
        ("Key", ctx.key),
        ("UploadId", upload.upload_id),
        ("Initiator", owner),
        ("Owner", owner),
        ("StorageClass", "STANDARD"),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", page[-1].number if page else marker),
        ("MaxParts", max_parts),
        ("IsTruncated", truncated),
    ]
    if upload.checksum_algorithm:
        items += [("ChecksumAlgorithm", upload.checksum_algorithm), ("ChecksumType", upload.checksum_type)]
    for part in page:
        entry: list[XmlChild] = [
            ("PartNumber", part.number),
            ("LastModified", part.last_modified[:23] + "Z"),
            ("ETag", f'"{part.etag}"'),
            ("Size", part.size),
        ]
        entry += _checksum_items(upload.checksum_algorithm, part.checksum)
        items.append(("Part", entry))
    return ctx.xml("ListPartsResult", items)


async def list_multipart_uploads(services: Services, ctx: S3Context) -> web.Response:
    q = ctx.query
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    max_uploads = min(_int_arg(ctx, "max-uploads", MAX_LIST, 0), MAX_LIST)
    encode = (lambda s: quote(s, safe="/")) if q.get("encoding-type", "").lower() == "url" else (lambda s: s)
    uploads = await services.multipart.list_uploads(ctx.bucket)
    start = 0
    if key_marker:
        marker_b = key_marker.encode()
        start = next((i for i, u in enumerate(uploads) if u.key.encode() > marker_b), len(uploads))
        if id_marker:
            # Uploads are ordered by key, then initiation: resume right after the marked upload.
            start = next(
                (i + 1 for i, u in enumerate(uploads) if u.key == key_marker and u.upload_id == id_marker), start
            )
    entries: list[tuple[str, UploadRecord | None]] = []
    seen: set[str] = set()
    for upload in uploads[start:]:
        if not upload.key.startswith(prefix):
            continue
        if delimiter and (cut := upload.key.find(delimiter, len(prefix))) >= 0:
            common = upload.key[: cut + len(delimiter)]
            if common not in seen:
                seen.add(common)
                entries.append((common, None))
            continue
        entries.append((upload.key, upload))
    page, truncated = entries[:max_uploads], len(entries) > max_uploads
    items: list[XmlChild] = [
        ("Bucket", ctx.bucket),
        ("KeyMarker", encode(key_marker)),
        ("UploadIdMarker", id_marker),
    ]
    if truncated and page:
        last_key, last_upload = page[-1]
        items.append(("NextKeyMarker", encode(last_key)))
        if last_upload is not None:
            items.append(("NextUploadIdMarker", last_upload.upload_id))
    items += [("MaxUploads", max_uploads), ("IsTruncated", truncated)]
    if prefix:
        items.append(("Prefix", encode(prefix)))
    if delimiter:
        items.append(("Delimiter", encode(delimiter)))
    if "encoding-type" in q:
        items.append(("EncodingType", "url"))
    for key, listed in page:
        if listed is None:
            continue
        owner = owner_items(services.principals.get(listed.owner or ctx.auth.access_key))
        entry: list[XmlChild] = [
            ("Key", encode(key)),
            ("UploadId", listed.upload_id),
            ("Initiator", owner),
            ("Owner", owner),
            ("StorageClass", "STANDARD"),
            ("Initiated", iso8601(listed.initiated_at)),
        ]
        if listed.checksum_algorithm:
            entry += [("ChecksumAlgorithm", listed.checksum_algorithm), ("ChecksumType", listed.checksum_type)]
        items.append(("Upload", entry))
    items += [("CommonPrefixes", [("Prefix", encode(key))]) for key, listed in page if listed is None]
    return ctx.xml("ListMultipartUploadsResult", items)
