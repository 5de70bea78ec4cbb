"""S3 XML: a hardened lxml parser for request bodies and a small builder for responses."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from lxml import etree

from .errors import S3Error

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BYTES = 2 * 1024 * 1024

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def parse_xml(data: bytes) -> etree._Element:
    """Parse a request body; DTDs, entities and oversized documents are MalformedXML."""
    if not data.strip():
        raise S3Error("MalformedXML")
    if len(data) > MAX_XML_BYTES:
        raise S3Error("MalformedXML", "The XML you provided was larger than the maximum allowed size.")
    try:
        root = etree.fromstring(data, parser=_PARSER)
    except (etree.XMLSyntaxError, ValueError):
        raise S3Error("MalformedXML") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise S3Error("MalformedXML", "DTDs are not allowed.")
    for node in root.iter():
        if not isinstance(node.tag, str):  # entity references left unresolved
            raise S3Error("MalformedXML", "Entities are not allowed.")
    return root


def local_name(element: etree._Element) -> str:
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def children(element: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in element if isinstance(c.tag, str) and local_name(c) == name]


def child_text(element: etree._Element, name: str) -> str | None:
    found = children(element, name)
    if not found:
        return None
    return found[0].text or ""


XmlValue = str | int | bool | None
XmlChild = tuple[str, "XmlValue | list[XmlChild]"]


def build(root: str, items: Iterable[XmlChild], *, namespace: str | None = S3_NS) -> bytes:
    """Render `<root>` with nested (name, value-or-children) pairs; None values are left out."""
    out = [XML_DECLARATION, f'<{root} xmlns="{namespace}">' if namespace else f"<{root}>"]
    render_items(out, items)
    out.append(f"</{root}>")
    # "replace": a value echoed from a header that was not UTF-8 (surrogate escapes) must not break the answer.
    return "".join(out).encode("utf-8", "replace")


XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


def render_items(out: list[str], items: Iterable[XmlChild]) -> None:
    """Append the XML text of (name, value-or-children) pairs to `out` (strings joined once, no tree)."""
    for name, value in items:
        if value is None:
            continue
        if isinstance(value, list):
            out.append(f"<{name}>")
            render_items(out, value)
            out.append(f"</{name}>")
        elif isinstance(value, bool):
            out.append(f"<{name}>{'true' if value else 'false'}</{name}>")
        else:
            out.append(f"<{name}>{escape_text(str(value))}</{name}>")


_SPECIAL = re.compile(r"[&<>\x00-\x08\x0b\x0c\x0e-\x1f]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def escape_text(text: str) -> str:
    """Element text: markup escaped; control characters (which S3 keys may hold) as character references."""
    if _SPECIAL.search(text) is None:
        return text
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _CONTROL.sub(lambda m: f"&#x{ord(m.group()):x};", text)


def iso8601(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def iso8601_seconds(timestamp: float) -> str:
    """A POSIX time as S3 lists it, whole seconds (cheaper than going through datetime)."""
    return _iso8601_second(int(timestamp // 1))


@functools.lru_cache(maxsize=4096)
def _iso8601_second(second: int) -> str:
    # Cached: a listing page's entries were mostly written within a few seconds of each other.
    t = time.gmtime(second)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.000Z"
