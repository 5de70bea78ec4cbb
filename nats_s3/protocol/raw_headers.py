"""Header values that are not UTF-8 (user metadata sent as Latin-1 bytes, as Python's http.client and so
boto3 send it), answered with the same bytes.

aiohttp reads header bytes as UTF-8 with surrogate escapes, and its writer drops the surrogates; S3 sends
back the bytes it was given. Such a value is stored as NUL + its bytes read as Latin-1 (NUL never comes
in a header, and the JSON meta keeps any code point), and sent through a response that puts the bytes
into the serialized header block itself (api/raw_response.py).
"""

from __future__ import annotations

_RAW_MARK = "\x00"


def has_raw_bytes(value: str) -> bool:
    """True for a header value that carried bytes that are not UTF-8 (surrogate escapes)."""
    if value.isascii():  # nearly every header: decided at C speed
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # only surrogate escapes fail to encode
        return True
    return False


def raw_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def to_stored(value: str) -> str:
    """A request header's value as kept in the object's meta (JSON-safe, reversible)."""
    if has_raw_bytes(value):
        return _RAW_MARK + raw_bytes(value).decode("latin-1")
    return value


def from_stored(value: str) -> str:
    """A stored value as a response header value (surrogate escapes for bytes that are not UTF-8)."""
    if value[:1] == _RAW_MARK:
        return value[1:].encode("latin-1").decode("utf-8", "surrogateescape")
    return value


def stored_size(value: str) -> int:
    """Bytes the value had on the wire."""
    return len(value) - 1 if value.startswith(_RAW_MARK) else len(value.encode())
