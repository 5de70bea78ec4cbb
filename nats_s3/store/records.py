"""Small JSON records on the subjects of a stream, read from the stream leader and written compare-and-set.

Records use the NATS KV conventions (a `KV-Operation` header marks a deletion), so the gateway's own
KV bucket can be inspected with `nats kv`, and the same code keeps records inside a bucket's stream.
"""

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

from .errors import BucketNotFound, StoreUnavailable
from .jsapi import API_PREFIX, ERR_NO_MESSAGE, ERR_STREAM_NOT_FOUND, ERR_WRONG_LAST_SEQUENCE, js_request
from .publisher import NoStream, Publisher, PublishRejected
from .quotas import refusal

SCAN_TIMEOUT = 30.0


class RecordConflict(Exception):
    """The record changed (or appeared) since the revision the writer expected."""


@dataclass(frozen=True, slots=True)
class Record:
    key: str
    revision: int
    value: bytes


class Records:
    """Records `<prefix><key>` in one stream; every write states the revision it replaces, so two
    gateways can never both believe they made the same change."""

    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        publisher: Publisher,
        stream: str,
        prefix: str,
        *,
        api: str = API_PREFIX,
    ) -> None:
        """`api`: the JetStream API the records are read through (another domain's, to read only)."""
        self._nc = nc
        self._api = api
        self._js = js
        self._publisher = publisher
        self.stream = stream
        self.prefix = prefix

    async def ensure(self) -> None:
        """Make sure the stream exists (the KV bucket creates itself; a bucket's stream must already be there)."""

    def _missing(self) -> Exception:
        return BucketNotFound(self.stream)

    async def _last(self, key: str) -> dict | None:
        resp = await js_request(
            self._nc, f"STREAM.MSG.GET.{self.stream}", {"last_by_subj": self.prefix + key}, api=self._api
        )
        if err := resp.get("error"):
            if err.get("err_code") == ERR_NO_MESSAGE:
                return None
            if err.get("err_code") == ERR_STREAM_NOT_FOUND:
                raise self._missing()
            raise StoreUnavailable(f"record {key}: {err.get('description')}")
        message: dict = resp["message"]
        return message

    async def get(self, key: str) -> Record | None:
        return (await self.read(key))[0]

    async def read(self, key: str) -> tuple[Record | None, int]:
        """The live record (None when absent or deleted) and the revision a write replacing it must
        state, both from one read: reading the revision apart from the record would let a record
        written in between be overwritten unseen."""
        await self.ensure()
        message = await self._last(key)
        if message is None:
            return None, 0
        revision = int(message["seq"])
        headers = base64.b64decode(message.get("hdrs") or "")
        if b"KV-Operation" in headers:
            return None, revision  # deleted or purged
        return Record(key, revision, base64.b64decode(message.get("data") or "")), revision

    async def last_revision(self, key: str) -> int:
        """The sequence of the key's last message, deletions included (0: none)."""
        message = await self._last(key)
        return int(message["seq"]) if message else 0

    async def _publish(self, key: str, value: bytes, expected: int, headers: dict[str, str] | None = None) -> int:
        hdrs = {"Nats-Expected-Last-Subject-Sequence": str(expected), **(headers or {})}
        try:
            ack = await self._publisher.request(self.prefix + key, value, hdrs)
        except PublishRejected as exc:
            if exc.err_code == ERR_WRONG_LAST_SEQUENCE:
                raise RecordConflict(key) from exc
            if (full := refusal(exc.err_code, exc.description, self.stream)) is not None:
                raise full from exc
            raise StoreUnavailable(f"record {key}: {exc.description}") from exc
        except NoStream:
            raise self._missing() from None
        return ack.seq

    async def create(self, key: str, value: bytes) -> int:
        """Write a record that must not exist yet (a deleted one counts as absent)."""
        await self.ensure()
        message = await self._last(key)
        if message is not None and b"KV-Operation" not in base64.b64decode(message.get("hdrs") or ""):
            raise RecordConflict(key)
        return await self._publish(key, value, int(message["seq"]) if message else 0)

    async def update(self, key: str, value: bytes, revision: int) -> int:
        return await self._publish(key, value, revision)

    async def delete(self, key: str, revision: int) -> int:
        """Delete the record if it is still at `revision` (RecordConflict otherwise); returns the
        sequence of the deletion mark, which `purge_through` can then remove."""
        return await self._publish(key, b"", revision, {"KV-Operation": "PURGE", "Nats-Rollup": "sub"})

    async def purge_through(self, key: str, seq: int) -> None:
        """Drop the key's messages up to and including `seq` (a newer write survives)."""
        resp = await js_request(self._nc, f"STREAM.PURGE.{self.stream}", {"filter": self.prefix + key, "seq": seq + 1})
        if (err := resp.get("error")) and err.get("err_code") != ERR_STREAM_NOT_FOUND:
            raise StoreUnavailable(f"purging record {key}: {err.get('description')}")

    async def purge_all(self, key_prefix: str) -> None:
        """Drop every record under `key_prefix` (which ends at a '.' boundary), deletions included."""
        resp = await js_request(self._nc, f"STREAM.PURGE.{self.stream}", {"filter": f"{self.prefix}{key_prefix}>"})
        if (err := resp.get("error")) and err.get("err_code") != ERR_STREAM_NOT_FOUND:
            raise StoreUnavailable(f"purging records {key_prefix}: {err.get('description')}")

    async def scan(self, key_prefix: str = "") -> list[Record]:
        """Every live record whose key starts with `key_prefix` (which must end at a '.' boundary)."""
        await self.ensure()
        subject = self.prefix + key_prefix + ">"
        info = await js_request(self._nc, f"STREAM.INFO.{self.stream}", {"subjects_filter": subject})
        if (err := info.get("error")) and err.get("err_code") == ERR_STREAM_NOT_FOUND:
            raise self._missing()
        if not (info.get("state") or {}).get("subjects"):
            return []
        records: list[Record] = []
        done = asyncio.get_running_loop().create_future()

        async def on_msg(msg: Msg) -> None:
            meta = msg.metadata
            if not (msg.headers and "KV-Operation" in msg.headers):
                records.append(Record(msg.subject[len(self.prefix) :], meta.sequence.stream, msg.data))
            if meta.num_pending == 0 and not done.done():
                done.set_result(None)

        try:
            sub = await self._js.subscribe(
                subject,
                stream=self.stream,
                ordered_consumer=True,
                deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
                cb=on_msg,
                pending_msgs_limit=-1,
            )
        except nats.js.errors.NotFoundError:
            raise self._missing() from None
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"scanning {subject}: {exc!r}") from exc
        try:
            await asyncio.wait_for(done, SCAN_TIMEOUT)
        except TimeoutError as exc:
            raise StoreUnavailable(f"scanning {subject} timed out") from exc
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return records


class KvRecords(Records):
    """The gateway's own KV bucket (created on first use, with `replicas`)."""

    def __init__(self, nc: NatsClient, js: JetStreamContext, publisher: Publisher, bucket: str, replicas: int) -> None:
        super().__init__(nc, js, publisher, f"KV_{bucket}", f"$KV.{bucket}.")
        self.bucket = bucket
        self._replicas = replicas
        self._ready = False
        self._lock = asyncio.Lock()

    def _missing(self) -> Exception:
        self._ready = False
        return StoreUnavailable(f"KV bucket {self.bucket} is missing")

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
                raise StoreUnavailable(f"KV bucket {self.bucket}: {resp['error'].get('description')}")
            self._ready = True

    async def present(self) -> bool:
        try:
            resp = await js_request(self._nc, f"STREAM.INFO.{self.stream}")
        except StoreUnavailable:
            return False
        return "error" not in resp
