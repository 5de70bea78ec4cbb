"""Responses that send header values holding non-UTF-8 bytes (protocol/raw_headers.py) as those bytes."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..protocol.raw_headers import has_raw_bytes, raw_bytes


async def _write_raw_headers(resp: web.StreamResponse, write_headers: Callable[[], Awaitable[None]]) -> None:
    """Headers written by aiohttp (`write_headers`), with every surrogate-escaped value put back as its bytes."""
    replaced: dict[bytes, bytes] = {}
    for name, value in list(resp.headers.items()):
        if has_raw_bytes(value):
            placeholder = f"raw-{secrets.token_hex(12)}"
            replaced[placeholder.encode()] = raw_bytes(value)
            resp.headers[name] = placeholder
    if not replaced:
        await write_headers()
        return
    immediately = resp._send_headers_immediately
    resp._send_headers_immediately = False
    try:
        await write_headers()
    finally:
        resp._send_headers_immediately = immediately
    writer = resp._payload_writer
    buf = getattr(writer, "_headers_buf", None)
    if isinstance(buf, bytes | bytearray):
        block = bytes(buf)
        for marker, value_bytes in replaced.items():
            block = block.replace(marker, value_bytes)
        writer._headers_buf = block  # type: ignore[union-attr]
    if immediately and writer is not None:
        writer.send_headers()


class RawHeadersResponse(web.StreamResponse):
    """A streamed body (or none, for HEAD)."""

    async def _write_headers(self) -> None:
        await _write_raw_headers(self, super()._write_headers)


class RawHeadersBodyResponse(web.Response):
    """A body in hand: aiohttp sends it in one write with the headers."""

    async def _write_headers(self) -> None:
        await _write_raw_headers(self, super()._write_headers)
