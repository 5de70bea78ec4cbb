"""Raw JetStream API requests (JSON in, JSON out) and the API error codes the store acts on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient

from .errors import BucketNotFound, StoreUnavailable
from .replies import replies_for

API_PREFIX = "$JS.API"
API_TIMEOUT = 10.0

ERR_NO_MESSAGE = 10037
ERR_STREAM_NAME_IN_USE = 10058
ERR_STREAM_NOT_FOUND = 10059
ERR_WRONG_LAST_SEQUENCE = 10071


# Requests that only read, asked again when unanswered: while a stream (or the meta layer) elects a new
# leader after a server died, about five seconds, its requests are dropped rather than refused. Asking
# again every few seconds answers soon after the election instead of after the whole timeout.
_READS = ("STREAM.INFO.", "STREAM.MSG.GET.", "STREAM.NAMES", "STREAM.LIST", "CONSUMER.INFO.")
# Twice API_TIMEOUT in all: an election after a crash takes five seconds, sometimes over ten.
_READ_ATTEMPT_TIMEOUTS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.0, 3.0, 4.0)


async def js_request(
    nc: NatsClient, subject: str, payload: dict[str, Any] | None = None, *, api: str = API_PREFIX
) -> dict[str, Any]:
    """`$JS.API.<subject>` with a JSON body; transport failures are StoreUnavailable, API errors are returned.
    `api`: another JetStream API prefix, such as another domain's `$JS.<domain>.API`."""
    data = json.dumps(payload).encode() if payload is not None else b""
    read = subject.startswith(_READS)
    attempts = _READ_ATTEMPT_TIMEOUTS if read else (API_TIMEOUT,)
    for n, timeout in enumerate(attempts, 1):
        try:
            msg = await replies_for(nc).request(f"{api}.{subject}", data, timeout)
        except nats.errors.NoRespondersError as exc:
            raise StoreUnavailable("JetStream is not enabled or not answering") from exc
        except nats.errors.TimeoutError as exc:
            if n == len(attempts):
                raise StoreUnavailable(f"JetStream API {subject}: no answer in {sum(attempts):g}s") from exc
            continue
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"JetStream API {subject}: {exc!r}") from exc
        resp: dict[str, Any] = json.loads(msg.data)
        # "JetStream system temporarily unavailable" (503): a leader was just lost; a read may ask again.
        if read and n < len(attempts) and (resp.get("error") or {}).get("code") == 503:
            await asyncio.sleep(0.25)
            continue
        return resp
    raise AssertionError("unreachable")


async def stream_info(
    nc: NatsClient, stream: str, *, api: str = API_PREFIX, missing: str | None = None
) -> dict[str, Any]:
    """STREAM.INFO: BucketNotFound (naming `missing`, else the stream) when there is no such stream,
    StoreUnavailable for any other error."""
    resp = await js_request(nc, f"STREAM.INFO.{stream}", api=api)
    if err := resp.get("error"):
        if err.get("err_code") == ERR_STREAM_NOT_FOUND:
            raise BucketNotFound(missing or stream)
        where = "" if api == API_PREFIX else f" at {api}"
        raise StoreUnavailable(f"stream info {stream}{where}: {err.get('description')}")
    return resp


async def stream_update(nc: NatsClient, config: dict[str, Any], *, missing: str | None = None) -> dict[str, Any]:
    """STREAM.UPDATE of the stream `config` names, with the errors of `stream_info`."""
    stream = config["name"]
    resp = await js_request(nc, f"STREAM.UPDATE.{stream}", config)
    if err := resp.get("error"):
        if err.get("err_code") == ERR_STREAM_NOT_FOUND:
            raise BucketNotFound(missing or stream)
        raise StoreUnavailable(f"stream update {stream}: {err.get('description')}")
    return resp
