"""Raw JetStream API requests (JSON in, JSON out) and the API error codes the store acts on."""

from __future__ import annotations

import json
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient

from .errors import StoreUnavailable
from .replies import replies_for

API_PREFIX = "$JS.API"
API_TIMEOUT = 10.0

ERR_NO_MESSAGE = 10037
ERR_STREAM_NAME_IN_USE = 10058
ERR_STREAM_NOT_FOUND = 10059
ERR_WRONG_LAST_SEQUENCE = 10071


async def js_request(nc: NatsClient, subject: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """`$JS.API.<subject>` with a JSON body; transport failures are StoreUnavailable, API errors are returned."""
    data = json.dumps(payload).encode() if payload is not None else b""
    try:
        msg = await replies_for(nc).request(f"{API_PREFIX}.{subject}", data, API_TIMEOUT)
    except nats.errors.NoRespondersError as exc:
        raise StoreUnavailable("JetStream is not enabled or not answering") from exc
    except (nats.errors.TimeoutError, nats.errors.Error) as exc:
        raise StoreUnavailable(f"JetStream API {subject}: {exc!r}") from exc
    resp: dict[str, Any] = json.loads(msg.data)
    return resp
