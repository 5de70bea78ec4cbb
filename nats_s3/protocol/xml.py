"""S3 XML: a hardened lxml parser for request bodies and a small builder for responses."""

from __future__ import annotations

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
    elem = etree.Element(root, nsmap={None: namespace} if namespace else None)
    _append(elem, items)
    out: bytes = etree.tostring(elem, xml_declaration=True, encoding="UTF-8")
    return out


def _append(parent: etree._Element, items: Iterable[XmlChild]) -> None:
    for name, value in items:
        if value is None:
            continue
        child = etree.SubElement(parent, name)
        if isinstance(value, list):
            _append(child, value)
        elif isinstance(value, bool):
            child.text = "true" if value else "false"
        else:
            child.text = _xml_safe(str(value))


def _xml_safe(text: str) -> str:
    # lxml refuses control characters; S3 keys may hold them only URL-encoded (encoding-type=url).
    if all(c >= " " or c in "\t\n\r" for c in text):
        return text
    return "".join(c if c >= " " or c in "\t\n\r" else f"&#x{ord(c):x};" for c in text)


def iso8601(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
