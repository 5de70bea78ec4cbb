"""Log setup: logfmt or JSON (python-json-logger) lines on stderr, written in batches from the event loop."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
# A value is quoted when empty or holding a space, '=', '"', '\\' or a control character.
_NEEDS_QUOTES = re.compile(r'[\x00-\x1f ="\\]')
# Linux's PIPE_BUF: a write of at most this many bytes to a pipe is never interleaved with another
# process's, so the lines of workers sharing one stderr pipe stay whole.
_ATOMIC_WRITE = 4096


def _logfmt_value(value: object) -> str:
    if type(value) is int:
        return str(value)
    text = value if type(value) is str else str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class _SecondCache:
    """The part of a log time up to the second, formatted once a second instead of once a line."""

    second = -1
    text = ""


def _utc_time(created: float) -> str:
    """`created` as ISO 8601 in UTC with microseconds."""
    second = int(created)
    if _SecondCache.second != second:
        _SecondCache.text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _SecondCache.second = second
    return f"{_SecondCache.text}.{min(999999, round((created - second) * 1e6)):06d}Z"


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"time={_utc_time(record.created)}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_logfmt_value(record.getMessage())}",
        ]
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                parts.append(f"{name}={_logfmt_value(value)}")
        if record.exc_info:
            parts.append(f"exc={_logfmt_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class _JsonFormatter(JsonFormatter):
    """JSON lines whose time is ISO 8601 in UTC with microseconds (the default is local, comma-separated)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_time(record.created)


class _Fields(logging.Filter):
    """Fields every line of this process carries (a worker's index, so a group's log stays readable)."""

    def __init__(self, fields: dict[str, object]) -> None:
        super().__init__()
        self._fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in self._fields.items():
            setattr(record, name, value)
        return True


class LineBatchingHandler(logging.StreamHandler[TextIO]):
    """Writes the lines logged on the event loop's thread once per loop iteration instead of one write
    (a syscall) per line: an access line per request made that a tenth of a small request's CPU.

    Lines are packed into writes of at most PIPE_BUF bytes, each ending with a whole line. Lines from
    other threads, or while no loop is attached, are written at once, after any still pending, so the
    order stays the order they were logged in."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.acquire()
        try:
            self._loop, self._loop_thread = loop, threading.get_ident()
        finally:
            self.release()

    def detach(self) -> None:
        self.acquire()
        try:
            self._loop = self._loop_thread = None
            self._write_pending()
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        loop = self._loop
        if loop is not None and self._loop_thread == threading.get_ident() and not loop.is_closed():
            if not self._pending:
                loop.call_soon(self.flush)
            self._pending.append(line)
            return
        self._pending.append(line)
        self._write_pending()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_pending()
        finally:
            self.release()

    def _write_pending(self) -> None:
        lines, self._pending = self._pending, []
        if not lines:
            return
        try:
            pack: list[str] = []
            size = 0
            for line in lines:
                n = len(line) if line.isascii() else len(line.encode())
                if pack and size + n > _ATOMIC_WRITE:
                    self._write("".join(pack))
                    pack, size = [], 0
                pack.append(line)
                size += n
            self._write("".join(pack))
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "log lines lost", "levelname": "ERROR"}))

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _batching_handlers() -> list[LineBatchingHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, LineBatchingHandler)]


def attach_log_batching(loop: asyncio.AbstractEventLoop) -> None:
    """Batch the lines logged on `loop`'s thread while it runs (call from the loop)."""
    for handler in _batching_handlers():
        handler.attach(loop)


def detach_log_batching() -> None:
    """Write what is pending and go back to writing each line at once (before the loop stops)."""
    for handler in _batching_handlers():
        handler.detach()


def setup_logging(fmt: str, level: str, fields: dict[str, object] | None = None) -> None:
    handler = LineBatchingHandler(sys.stderr)
    if fields:
        handler.addFilter(_Fields(fields))
    if fmt == "json":
        handler.setFormatter(
            _JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(LogfmtFormatter())
    # No line shows a record's thread or process, and finding them costs a getpid() syscall per line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": "WARNING"}.get(level, level.upper()))
    # aiohttp's own access log duplicates ours.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
