"""A response that sends header values holding non-UTF-8 bytes (protocol/raw_headers.py) as those bytes."""

from __future__ import annotations

import secrets

from aiohttp import web

from ..protocol.raw_headers import has_raw_bytes, raw_bytes


class RawHeadersResponse(web.StreamResponse):
    """A StreamResponse whose header values may hold surrogate-escaped bytes, sent as those bytes."""

    async def _write_headers(self) -> None:
        replaced: dict[bytes, bytes] = {}
        for name, value in list(self.headers.items()):
            if has_raw_bytes(value):
                placeholder = f"raw-{secrets.token_hex(12)}"
                replaced[placeholder.encode()] = raw_bytes(value)
                self.headers[name] = placeholder
        if not replaced:
            await super()._write_headers()
            return
        immediately = self._send_headers_immediately
        self._send_headers_immediately = False
        try:
            await super()._write_headers()
        finally:
            self._send_headers_immediately = immediately
        writer = self._payload_writer
        buf = getattr(writer, "_headers_buf", None)
        if isinstance(buf, bytes | bytearray):
            block = bytes(buf)
            for marker, value_bytes in replaced.items():
                block = block.replace(marker, value_bytes)
            writer._headers_buf = block  # type: ignore[union-attr]
        if immediately and writer is not None:
            writer.send_headers()
