"""The gateway's own records in a NATS KV bucket, read from the stream leader and written compare-and-set."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api as js_api
from nats.js.client import JetStreamContext

from .errors import StoreUnavailable
from .jsapi import API_TIMEOUT, ERR_NO_MESSAGE, ERR_STREAM_NOT_FOUND, ERR_WRONG_LAST_SEQUENCE, js_request

SCAN_TIMEOUT = 30.0


class RecordConflict(Exception):
    """The record changed (or appeared) since the revision the writer expected."""


@dataclass(frozen=True, slots=True)
class Record:
    key: str
    revision: int
    value: bytes


class RecordStore:
    """A KV bucket in the standard format (so `nats kv` can inspect it), accessed strongly:

    gets go to the stream leader rather than any replica, and every write states the revision it
    replaces, so two gateways can never both believe they own the same change.
    """

    def __init__(self, nc: NatsClient, js: JetStreamContext, bucket: str, replicas: int) -> None:
        self._nc = nc
        self._js = js
        self.bucket = bucket
        self.stream = f"KV_{bucket}"
        self._prefix = f"$KV.{bucket}."
        self._replicas = replicas
        self._ready = False
        self._lock = asyncio.Lock()

    async def ensure(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            resp = await js_request(self._nc, f"STREAM.INFO.{self.stream}")
            if (resp.get("error") or {}).get("err_code") == ERR_STREAM_NOT_FOUND:
                with contextlib.suppress(nats.js.errors.BadRequestError):
                    # Two gateways starting at once: the loser's create fails, the bucket exists.
                    await self._js.create_key_value(
                        js_api.KeyValueConfig(bucket=self.bucket, history=1, replicas=self._replicas)
                    )
            elif resp.get("error"):
                raise StoreUnavailable(f"records bucket {self.bucket}: {resp['error'].get('description')}")
            self._ready = True

    async def present(self) -> bool:
        try:
            resp = await js_request(self._nc, f"STREAM.INFO.{self.stream}")
        except StoreUnavailable:
            return False
        return "error" not in resp

    async def get(self, key: str) -> Record | None:
        await self.ensure()
        resp = await js_request(self._nc, f"STREAM.MSG.GET.{self.stream}", {"last_by_subj": self._prefix + key})
        if err := resp.get("error"):
            if err.get("err_code") == ERR_NO_MESSAGE:
                return None
            raise StoreUnavailable(f"record {key}: {err.get('description')}")
        message = resp["message"]
        headers = base64.b64decode(message.get("hdrs") or "")
        if b"KV-Operation" in headers:
            return None  # deleted or purged
        return Record(key, int(message["seq"]), base64.b64decode(message.get("data") or ""))

    async def _publish(self, key: str, value: bytes, expected: int, headers: dict[str, str] | None = None) -> int:
        hdrs = {"Nats-Expected-Last-Subject-Sequence": str(expected), **(headers or {})}
        try:
            ack = await self._js.publish(self._prefix + key, value, timeout=API_TIMEOUT, headers=hdrs)
        except nats.js.errors.APIError as exc:
            if exc.err_code == ERR_WRONG_LAST_SEQUENCE:
                raise RecordConflict(key) from exc
            raise StoreUnavailable(f"record {key}: {exc.description}") from exc
        except (nats.errors.TimeoutError, nats.errors.Error) as exc:
            raise StoreUnavailable(f"record {key}: {exc!r}") from exc
        return int(ack.seq)

    async def create(self, key: str, value: bytes) -> int:
        """Write a record that must not exist yet (a deleted one counts as absent)."""
        await self.ensure()
        current = await self._last_revision(key)
        return await self._publish(key, value, current)

    async def update(self, key: str, value: bytes, revision: int) -> int:
        return await self._publish(key, value, revision)

    async def delete(self, key: str, revision: int | None = None) -> None:
        """Remove a record (purging its history); with `revision`, only if it is still that one."""
        await self.ensure()
        expected = revision if revision is not None else await self._last_revision(key)
        if expected == 0:
            return
        with contextlib.suppress(RecordConflict):
            await self._publish(key, b"", expected, {"KV-Operation": "PURGE", "Nats-Rollup": "sub"})

    async def _last_revision(self, key: str) -> int:
        resp = await js_request(self._nc, f"STREAM.MSG.GET.{self.stream}", {"last_by_subj": self._prefix + key})
        if err := resp.get("error"):
            if err.get("err_code") == ERR_NO_MESSAGE:
                return 0
            raise StoreUnavailable(f"record {key}: {err.get('description')}")
        return int(resp["message"]["seq"])

    async def scan(self, prefix: str) -> list[Record]:
        """Every live record whose key starts with `prefix` (which must end at a '.' boundary)."""
        await self.ensure()
        subject = self._prefix + prefix + ">"
        info = await js_request(self._nc, f"STREAM.INFO.{self.stream}", {"subjects_filter": subject})
        if not (info.get("state") or {}).get("subjects"):
            return []
        records: list[Record] = []
        done = asyncio.get_running_loop().create_future()

        async def on_msg(msg: Msg) -> None:
            meta = msg.metadata
            if not (msg.headers and "KV-Operation" in msg.headers):
                records.append(Record(msg.subject[len(self._prefix) :], meta.sequence.stream, msg.data))
            if meta.num_pending == 0 and not done.done():
                done.set_result(None)

        try:
            sub = await self._js.subscribe(
                subject,
                stream=self.stream,
                ordered_consumer=True,
                deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
                cb=on_msg,
            )
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"scanning {prefix}: {exc!r}") from exc
        try:
            await asyncio.wait_for(done, SCAN_TIMEOUT)
        except TimeoutError as exc:
            raise StoreUnavailable(f"scanning {prefix} timed out") from exc
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return records
