"""Versioning: Get/PutBucketVersioning, ListObjectVersions, and the version ids requests carry."""

from __future__ import annotations

from aiohttp import web

from ..protocol.errors import S3Error
from ..protocol.xml import (
    S3_NS,
    XML_DECLARATION,
    XmlChild,
    child_text,
    escape_text,
    iso8601_seconds,
    local_name,
    parse_xml,
    render_items,
)
from ..store.versions import NULL, Versioning, is_uid
from .body import read_request_xml
from .context import XML_TYPE, S3Context
from .listing import MAX_KEYS, bucket_owner_items, encoder, max_keys
from .services import Services

MAX_CONFIG_BYTES = 64 * 1024


def version_id_arg(raw: str | None, name: str = "versionId") -> str | None:
    """A version id from the query (or a copy source): `null` or one of ours; anything else is S3's 400."""
    if raw is None:
        return None
    if raw == NULL or is_uid(raw):
        return raw
    raise S3Error("InvalidArgument", "Invalid version id specified", extra={"ArgumentName": name, "ArgumentValue": raw})


def shows_versions(services: Services, bucket: str) -> bool:
    """S3 sends x-amz-version-id on reads once a bucket has had versioning (null included)."""
    return services.store.versioning(bucket) is not Versioning.NEVER


async def get_bucket_versioning(services: Services, ctx: S3Context) -> web.Response:
    await services.store.head_bucket(ctx.bucket)
    state = services.store.versioning(ctx.bucket)
    items: list[XmlChild] = [] if state is Versioning.NEVER else [("Status", state.value)]
    return ctx.xml("VersioningConfiguration", items)


async def put_bucket_versioning(services: Services, ctx: S3Context) -> web.Response:
    body = await read_request_xml(ctx, MAX_CONFIG_BYTES)
    root = parse_xml(body)
    if local_name(root) != "VersioningConfiguration":
        raise S3Error("MalformedXML")
    status = child_text(root, "Status")
    mfa_delete = child_text(root, "MfaDelete")
    if mfa_delete is not None and mfa_delete.strip() not in ("Enabled", "Disabled"):
        raise S3Error("MalformedXML")
    if mfa_delete is not None and mfa_delete.strip() == "Enabled":
        raise S3Error("NotImplemented", "MFA Delete is not supported by this gateway; leave MfaDelete Disabled.")
    if status is None:
        await services.store.head_bucket(ctx.bucket)
        return ctx.empty()
    try:
        state = Versioning(status.strip())
    except ValueError:
        raise S3Error("MalformedXML") from None
    if state is Versioning.NEVER:
        raise S3Error("MalformedXML")
    await services.store.set_versioning(ctx.bucket, state)
    return ctx.empty()


def _owner_xml(services: Services, ctx: S3Context) -> str:
    parts: list[str] = []
    render_items(parts, [("Owner", bucket_owner_items(services, ctx))])
    return "".join(parts)


async def list_object_versions(services: Services, ctx: S3Context) -> web.Response:
    q = ctx.query
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    limit = max_keys(ctx)
    enc = encoder(ctx)
    key_marker = q.get("key-marker", "")
    version_marker = q.get("version-id-marker")
    if version_marker is not None and version_marker != "":
        if not key_marker:
            raise S3Error(
                "InvalidArgument",
                "A version-id marker cannot be specified without a key marker.",
                extra={"ArgumentName": "version-id-marker", "ArgumentValue": version_marker},
            )
        version_id_arg(version_marker, "version-id-marker")
    else:
        version_marker = None
    if limit > 0:
        page = await services.store.list_versions_page(ctx.bucket, prefix, delimiter, key_marker, version_marker, limit)
    else:
        await services.store.head_bucket(ctx.bucket)
        page = None
    items: list[XmlChild] = [
        ("Name", ctx.bucket),
        ("Prefix", enc(prefix)),
        ("KeyMarker", enc(key_marker)),
        ("VersionIdMarker", version_marker or ""),
    ]
    if page is not None and page.truncated and page.next_key is not None:
        items.append(("NextKeyMarker", enc(page.next_key)))
        if page.next_version is not None:
            items.append(("NextVersionIdMarker", page.next_version))
    items.append(("MaxKeys", limit))
    if delimiter:
        items.append(("Delimiter", enc(delimiter)))
    if "encoding-type" in q:
        items.append(("EncodingType", "url"))
    items.append(("IsTruncated", page is not None and page.truncated))
    out = [XML_DECLARATION, f'<ListVersionsResult xmlns="{S3_NS}">']
    render_items(out, items)
    if page is not None:
        owner = _owner_xml(services, ctx)
        last_key, key = None, ""
        for entry in page.entries:
            if entry.key != last_key:  # a key's versions come together: escape it once
                last_key, key = entry.key, escape_text(enc(entry.key))
            latest = "true" if entry.is_latest else "false"
            when = iso8601_seconds(entry.mtime)
            if entry.delete_marker:
                out.append(
                    f"<DeleteMarker><Key>{key}</Key><VersionId>{entry.version_id}</VersionId>"
                    f"<IsLatest>{latest}</IsLatest><LastModified>{when}</LastModified>{owner}</DeleteMarker>"
                )
                continue
            checksum = (
                f"<ChecksumAlgorithm>{entry.checksum_algorithm}</ChecksumAlgorithm>" if entry.checksum_algorithm else ""
            )
            out.append(
                f"<Version><Key>{key}</Key><VersionId>{entry.version_id}</VersionId><IsLatest>{latest}</IsLatest>"
                f"<LastModified>{when}</LastModified><ETag>&quot;{escape_text(entry.etag)}&quot;</ETag>{checksum}"
                f"<Size>{entry.size}</Size><StorageClass>STANDARD</StorageClass>{owner}</Version>"
            )
        for common in page.prefixes:
            out.append(f"<CommonPrefixes><Prefix>{escape_text(enc(common))}</Prefix></CommonPrefixes>")
    out.append("</ListVersionsResult>")
    return web.Response(body="".join(out).encode(), content_type=XML_TYPE, headers=ctx.base_headers())


__all__ = [
    "MAX_KEYS",
    "get_bucket_versioning",
    "list_object_versions",
    "put_bucket_versioning",
    "shows_versions",
    "version_id_arg",
]
