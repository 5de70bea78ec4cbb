"""Publishing event messages on the subjects buckets name for them.

Each message carries a `Nats-Msg-Id` made from the change it reports, so a JetStream stream capturing
the subject keeps it once however often it is sent (a gateway resending after a lost ack, two
attempts of one request). Where a stream captures the subject the publish waits for its ack and is sent
again, same id, when none comes; where none does, it is a core publish flushed to the server before
the request is answered, so a subscriber sees a key's events in the order their requests were answered.
"""

from __future__ import annotations

import time

import nats.errors
from nats.aio.client import Client as NatsClient

from .errors import StoreUnavailable
from .jsapi import js_request
from .publisher import NoStream, Publisher, PublishRejected

EVENT_ACK_TIMEOUT = 5.0  # per attempt; an event is small, a stream that takes longer is in trouble
ATTEMPTS = 3
CAPTURE_TTL = 10.0  # how long whether a stream captures a subject is believed (a new stream: this late)
FLUSH_TIMEOUT = 5


class EventNotDelivered(Exception):
    """No attempt to publish an event got through (the change it reports stands)."""


class EventPublisher:
    def __init__(self, nc: NatsClient, publisher: Publisher) -> None:
        self._nc = nc
        self._publisher = publisher
        self._captured: dict[str, tuple[float, bool]] = {}
        self.published = 0
        self.failed = 0

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        headers = {"Nats-Msg-Id": msg_id}
        last: BaseException | None = None
        for _ in range(ATTEMPTS):
            try:
                if await self._stream_captures(subject):
                    try:
                        pending = await self._publisher.publish(subject, payload, headers)
                        await pending.wait(EVENT_ACK_TIMEOUT)
                        self.published += 1
                        return
                    except NoStream:
                        self._captured.pop(subject, None)  # the stream went: a core publish now
                await self._nc.publish(subject, payload, headers=headers)
                await self._nc.flush(FLUSH_TIMEOUT)
                self.published += 1
                return
            except (TimeoutError, StoreUnavailable, PublishRejected, nats.errors.Error) as exc:
                last = exc
        self.failed += 1
        raise EventNotDelivered(f"event on {subject}: {last!r}")

    async def _stream_captures(self, subject: str) -> bool:
        now = time.monotonic()
        known = self._captured.get(subject)
        if known is not None and known[0] > now:
            return known[1]
        resp = await js_request(self._nc, "STREAM.NAMES", {"subject": subject})
        captured = bool(resp.get("streams")) if not resp.get("error") else False
        self._captured[subject] = (now + CAPTURE_TTL, captured)
        return captured
