"""Reclamation claims: what a request writes instead of freeing chunks.

No request frees storage. Before a chunk subject is first written, and before anything stops
referencing one (an overwrite, a delete, an abort, a superseded part), the request appends a claim
on `G.<nuid>` naming who may reference those chunks: a version of a key, or a part of an upload.
Claims on one subject add up; the collector (store/collector.py) frees the chunks once the newest
claim is older than the grace period and none of the owners named by any of them still references
them. A false claim (a write that lost a race, say) costs one check; a missing one would leak, so a
claim is always written first.
"""

from __future__ import annotations

import json
import logging
import time
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from . import naming
from .errors import StoreUnavailable
from .fence import ERR_MESSAGE_TOO_BIG, wait_unfenced
from .publisher import NoStream, PendingAck, Publisher, PublishRejected

log = logging.getLogger("nats_s3.store.claims")
CONFIRM_ATTEMPTS = 3


class Owner(BaseModel):
    """A version (`v`: its uid, of the claim's key) or a multipart part (`u`: upload id, `n`: number)."""

    model_config = ConfigDict(frozen=True)

    v: str | None = None
    u: str | None = None
    n: int | None = None


class Claim(BaseModel):
    k: str | None = None  # the key the versions named belong to
    o: list[Owner]
    t: float  # when it was written (POSIX seconds)


def version_owner(uid: str) -> Owner:
    return Owner(v=uid)


def part_owner(upload_id: str, number: int) -> Owner:
    return Owner(u=upload_id, n=number)


async def write_claim(
    publisher: Publisher, nats_bucket: str, nuid: str, key: str | None, owners: list[Owner]
) -> PendingAck:
    """Send a claim without waiting; it lands before any later publish of this gateway to the same stream."""
    return await publisher.publish(naming.claim_subject(nats_bucket, nuid), claim_payload(key, owners, time.time()))


def claim_payload(key: str | None, owners: list[Owner], at: float) -> bytes:
    """A Claim's JSON (as `Claim(...).model_dump_json(exclude_none=True)` writes it), built directly:
    every write sends one or more, and the model's validation and dump were a visible part of its CPU."""
    listed = [
        {name: value for name, value in (("v", o.v), ("u", o.u), ("n", o.n)) if value is not None} for o in owners
    ]
    doc: dict[str, object] = {"k": key, "o": listed, "t": at} if key is not None else {"o": listed, "t": at}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


class ClaimSpec(NamedTuple):
    nuid: str
    key: str | None
    owners: list[Owner]


class ClaimBatch:
    """Claims sent ahead of the change that needs them, confirmed once the change is made."""

    def __init__(self, publisher: Publisher, nats_bucket: str, specs: list[ClaimSpec]) -> None:
        self._publisher = publisher
        self._nb = nats_bucket
        self._specs = specs
        self._pending: list[PendingAck] = []

    async def send(self) -> ClaimBatch:
        self._pending = [await write_claim(self._publisher, self._nb, s.nuid, s.key, s.owners) for s in self._specs]
        return self

    async def confirm(self) -> None:
        """Wait for every ack; should a claim have been refused (a fence raised between it and the
        change, say), wait the fence out and write them all again: late rather than never."""
        for _ in range(CONFIRM_ATTEMPTS):
            fenced = missing = failed = False
            for item in self._pending:
                try:
                    await item.wait()
                except PublishRejected as exc:
                    failed = True
                    fenced = fenced or exc.err_code == ERR_MESSAGE_TOO_BIG
                except NoStream:
                    failed = missing = True
                except StoreUnavailable:
                    failed = True
            if not failed:
                return
            if missing:
                return  # the bucket is gone, its chunks with it
            if fenced:
                await wait_unfenced(self._publisher.nc, naming.stream_name(self._nb))
            await self.send()
        # The change they go with is made; failing its request now would undo nothing.
        log.error(
            "reclamation claims could not be written: their chunks stay until a later change claims them",
            extra={"bucket": self._nb, "subjects": [s.nuid for s in self._specs]},
        )

    def abandon(self) -> None:
        for item in self._pending:
            item.abandon()


async def send_claims(publisher: Publisher, nats_bucket: str, specs: list[ClaimSpec]) -> ClaimBatch:
    return await ClaimBatch(publisher, nats_bucket, specs).send()
