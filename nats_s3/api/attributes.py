"""GetObjectAttributes: what HeadObject and ListParts would tell of one version, in one XML answer."""

from __future__ import annotations

from aiohttp import web

from ..protocol import checksums
from ..protocol.errors import S3Error
from ..protocol.headers import http_date
from ..protocol.numbers import int_argument
from ..protocol.xml import XmlChild
from ..store.models import ObjectInfo
from . import encryption
from .context import S3Context
from .objects import check_key, read_version_headers
from .services import Services
from .versions import version_id_arg

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
MAX_PARTS = 1000


def _requested(ctx: S3Context) -> set[str]:
    raw = ctx.headers.get("x-amz-object-attributes", "")
    names = {name.strip() for name in raw.split(",") if name.strip()}
    if not names:
        raise S3Error(
            "InvalidArgument",
            "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty",
            extra={"ArgumentName": "x-amz-object-attributes"},
        )
    unknown = names - set(ATTRIBUTES)
    if unknown:
        raise S3Error(
            "InvalidArgument",
            "Invalid attribute name specified.",
            extra={"ArgumentName": "x-amz-object-attributes", "ArgumentValue": sorted(unknown)[0][:64]},
        )
    return names


def _object_parts(info: ObjectInfo, max_parts: int, marker: int) -> list[XmlChild]:
    numbers = info.part_numbers or tuple((index + 1, None) for index in range(len(info.parts)))
    sizes = [part.size for part in info.parts]
    after = [
        (number, checksum, size) for (number, checksum), size in zip(numbers, sizes, strict=True) if number > marker
    ]
    page, truncated = after[:max_parts], len(after) > max_parts
    items: list[XmlChild] = [
        ("PartsCount", len(info.parts)),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", page[-1][0] if page else marker),
        ("MaxParts", max_parts),
        ("IsTruncated", truncated),
    ]
    # S3 lists the parts of an object that has part checksums only.
    algorithm = info.checksum[0] if info.checksum is not None else None
    if algorithm is not None and all(checksum for _, checksum, _ in page):
        for number, checksum, size in page:
            items.append(("Part", [("PartNumber", number), ("Size", size), (f"Checksum{algorithm}", checksum)]))
    return items


async def get_object_attributes(services: Services, ctx: S3Context) -> web.Response:
    check_key(ctx.key)
    wanted = _requested(ctx)
    max_parts = int_argument(ctx.headers.get("x-amz-max-parts"), "x-amz-max-parts", MAX_PARTS, 0, 2**31 - 1)
    marker = int_argument(ctx.headers.get("x-amz-part-number-marker"), "x-amz-part-number-marker", 0, 0, 2**31 - 1)
    info = await services.store.head_object(ctx.bucket, ctx.key, version_id_arg(ctx.query.get("versionId")))
    # An SSE-C version's attributes are its key holder's to see, as its HeadObject is; the headers say
    # how it is encrypted.
    _, sse_headers = encryption.for_read(services, ctx, info)
    items: list[XmlChild] = []
    if "ETag" in wanted:
        items.append(("ETag", info.etag))  # unquoted here, unlike every other answer
    if "Checksum" in wanted and info.checksum is not None:
        algorithm, value = info.checksum
        # The parts' count is ObjectParts' business: a COMPOSITE value is given without its -<parts>.
        items.append(
            (
                "Checksum",
                [(f"Checksum{algorithm}", value.split("-", 1)[0]), ("ChecksumType", checksums.checksum_type(value))],
            )
        )
    if "ObjectParts" in wanted and info.parts:
        items.append(("ObjectParts", _object_parts(info, max_parts, marker)))
    if "StorageClass" in wanted:
        items.append(("StorageClass", "STANDARD"))
    if "ObjectSize" in wanted:
        items.append(("ObjectSize", info.size))
    ctx.response_headers["Last-Modified"] = http_date(info.last_modified)
    ctx.response_headers.update(read_version_headers(services, ctx, info))
    ctx.response_headers.update(sse_headers)
    return ctx.xml("GetObjectAttributesResponse", items)
