"""HTTP header semantics S3 uses: Range, conditional requests, dates, stored content headers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, quote, urlencode

from ..auth import grants
from .errors import S3Error
from .numbers import parse_uint_clamped
from .raw_headers import has_raw_bytes, stored_size, to_stored
from .xml import XmlChild, child_text, children, local_name, parse_xml

# Headers stored with an object and returned on GET/HEAD (with x-amz-meta-*).
CONTENT_HEADERS = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
)
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
META_PREFIX = "x-amz-meta-"
MAX_USER_METADATA_BYTES = 2048
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
TAGGING = "x-amz-tagging"
MAX_TAGS = 10
MAX_BUCKET_TAGS = 50
# A canned ACL is kept with an object under the name of the header that set it (never sent back on GET).
ACL = "x-amz-acl"
# Who wrote an object, kept where that is not the bucket's owner (a bucket with ObjectWriter ownership).
OWNER = "x-amz-object-owner"
CANNED_ACLS = frozenset(
    {
        "private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
        "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write",
    }
)  # fmt: skip

_RANGE_RE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(value: datetime) -> str:
    """RFC 7231 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), formatted directly: email.utils'
    general formatter was a visible part of every GET's and HEAD's CPU."""
    t = value.astimezone(UTC)
    return (
        f"{_WEEKDAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT"
    )


def parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # "31 Dec 9999 23:59:59 -2359" is past the largest datetime in UTC
        return None


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The satisfiable range of a `Range` header, None for the whole object.

    Like S3: a header it cannot parse, or several ranges, is answered with the whole object; a
    well-formed range that starts past the end is InvalidRange (416).
    """
    if not header:
        return None
    match = _RANGE_RE.match(header.strip().replace(" ", ""))
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = parse_uint_clamped(last) or 0
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return ByteRange(max(size - suffix, 0), size - 1)
    start = parse_uint_clamped(first) or 0
    end = (parse_uint_clamped(last) or 0) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return ByteRange(start, min(end, size - 1))


def _unsatisfiable(size: int) -> S3Error:
    return S3Error("InvalidRange", headers={"Content-Range": f"bytes */{size}"}, extra={"ActualObjectSize": str(size)})


def _etags(value: str) -> list[str]:
    return [tag.strip().removeprefix("W/").strip('"') for tag in value.split(",") if tag.strip()]


def etag_matches(header: str, etag: str) -> bool:
    tags = _etags(header)
    return "*" in tags or etag in tags


def check_read_conditions(headers: Mapping[str, str], etag: str, last_modified: datetime) -> None:
    """GET/HEAD preconditions; raises PreconditionFailed (412) or NotModified (304)."""
    modified = last_modified.replace(microsecond=0)
    if_match = headers.get("if-match")
    if if_match is not None:
        if not etag_matches(if_match, etag):
            raise S3Error("PreconditionFailed", extra={"Condition": "If-Match"})
    else:
        since = parse_http_date(headers.get("if-unmodified-since"))
        if since is not None and modified > since:
            raise S3Error("PreconditionFailed", extra={"Condition": "If-Unmodified-Since"})
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if etag_matches(if_none_match, etag):
            raise S3Error("NotModified")
    else:
        since = parse_http_date(headers.get("if-modified-since"))
        if since is not None and modified <= since:
            raise S3Error("NotModified")


def check_copy_source_conditions(headers: Mapping[str, str], etag: str, last_modified: datetime) -> None:
    """x-amz-copy-source-if-*: every failure is PreconditionFailed (412), as S3 answers."""
    modified = last_modified.replace(microsecond=0)
    if_match = headers.get("x-amz-copy-source-if-match")
    if_none_match = headers.get("x-amz-copy-source-if-none-match")
    unmodified = parse_http_date(headers.get("x-amz-copy-source-if-unmodified-since"))
    modified_since = parse_http_date(headers.get("x-amz-copy-source-if-modified-since"))
    if if_match is not None and not etag_matches(if_match, etag):
        raise S3Error("PreconditionFailed", extra={"Condition": "x-amz-copy-source-If-Match"})
    if if_match is None and unmodified is not None and modified > unmodified:
        raise S3Error("PreconditionFailed", extra={"Condition": "x-amz-copy-source-If-Unmodified-Since"})
    if if_none_match is not None and etag_matches(if_none_match, etag):
        raise S3Error("PreconditionFailed", extra={"Condition": "x-amz-copy-source-If-None-Match"})
    if if_none_match is None and modified_since is not None and modified <= modified_since:
        raise S3Error("PreconditionFailed", extra={"Condition": "x-amz-copy-source-If-Modified-Since"})


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The content headers and x-amz-meta-* of a request, as kept with the object."""
    kept: dict[str, str] = {}
    for name in CONTENT_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        if name == "content-encoding":
            # aws-chunked is transfer framing, not a property of the stored bytes.
            codings = [c.strip() for c in value.split(",") if c.strip()]
            kept_codings = [c for c in codings if c.lower() != "aws-chunked"]
            if not kept_codings:
                continue
            if len(kept_codings) != len(codings):  # otherwise stored exactly as sent
                value = ", ".join(kept_codings)
        kept[name] = to_stored(value)
    if "content-type" not in kept:
        kept["content-type"] = DEFAULT_CONTENT_TYPE
    if TAGGING in headers:
        kept[TAGGING] = encode_tags(parse_tagging_header(headers[TAGGING]))
    acl = canned_acl(headers)
    if acl is not None and acl != "private":
        kept[ACL] = acl
    meta_size = 0
    for name, value in headers.items():
        if name.startswith(META_PREFIX) and len(name) > len(META_PREFIX):
            kept[name] = stored = to_stored(value)
            meta_size += len(name) - len(META_PREFIX) + stored_size(stored)
    if meta_size > MAX_USER_METADATA_BYTES:
        raise S3Error(
            "MetadataTooLarge",
            "Your metadata headers exceed the maximum allowed metadata size.",
            status=400,
            extra={"Size": str(meta_size), "MaxSizeAllowed": str(MAX_USER_METADATA_BYTES)},
        )
    return kept


def canned_acl(headers: Mapping[str, str]) -> str | None:
    """The ACL a request's headers set, as it is kept (auth/grants.py): an `x-amz-acl` canned ACL's name
    (another name is InvalidArgument), or the `x-amz-grant-*` grants; None when it sets none."""
    explicit = grants.from_headers(headers)
    value = headers.get(ACL)
    if explicit is not None:
        if value is not None:
            raise S3Error("InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed")
        return grants.encode(explicit)
    if value is None:
        return None
    value = value.strip()
    if value not in CANNED_ACLS:
        raise S3Error("InvalidArgument", None, extra={"ArgumentName": ACL, "ArgumentValue": value[:64]})
    return value


def _check_tags(tags: dict[str, str], limit: int = MAX_TAGS, what: str = "Object") -> dict[str, str]:
    if len(tags) > limit:
        raise S3Error("InvalidTag", f"{what} tags cannot be greater than {limit}", status=400)
    for name, value in tags.items():
        if not name or len(name) > 128 or len(value) > 256:
            raise S3Error("InvalidTag", "The TagKey or TagValue you have provided is invalid", status=400)
    return tags


def parse_tagging_header(value: str) -> dict[str, str]:
    """`x-amz-tagging: k1=v1&k2=v2` (URL-encoded) as a dict; duplicate keys are InvalidTag."""
    if has_raw_bytes(value):
        raise S3Error("InvalidArgument", "The x-amz-tagging header must be URL-encoded.",
                      extra={"ArgumentName": TAGGING})  # fmt: skip
    pairs = parse_qsl(value, keep_blank_values=True)
    tags = dict(pairs)
    if len(tags) != len(pairs):
        raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key", status=400)
    return _check_tags(tags)


def tag_set_items(tags: Iterable[tuple[str, str]]) -> list[XmlChild]:
    """A TagSet's <Tag> elements, for Get{Object,Bucket}Tagging."""
    return [("Tag", [("Key", key), ("Value", value)]) for key, value in tags]


def encode_tags(tags: dict[str, str]) -> str:
    return urlencode(tags, quote_via=quote)


def tags_from_xml(body: bytes, *, bucket: bool = False) -> dict[str, str]:
    """A Put{Object,Bucket}Tagging body's TagSet: at most 10 tags on an object and 50 on a bucket, no
    key twice, and on a bucket no `aws:` key (those are the system's)."""
    root = parse_xml(body)
    tag_sets = children(root, "TagSet")
    if local_name(root) != "Tagging" or len(tag_sets) != 1:
        raise S3Error("MalformedXML")
    pairs: list[tuple[str, str]] = []
    for tag in children(tag_sets[0], "Tag"):
        name, value = child_text(tag, "Key"), child_text(tag, "Value")
        if name is None or value is None:
            raise S3Error("MalformedXML")
        if bucket and name.lower().startswith("aws:"):
            raise S3Error("InvalidTag", "System tags cannot be added/updated by requester")
        pairs.append((name, value))
    tags = dict(pairs)
    if len(tags) != len(pairs):
        raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key", status=400)
    if bucket:
        return _check_tags(tags, MAX_BUCKET_TAGS, "Bucket")
    return _check_tags(tags)
