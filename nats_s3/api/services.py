"""What every handler may use: the store, the signature verifier and the settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.sigv4 import SigV4Verifier
from ..settings import Settings
from ..store.multipart import MultipartStore
from ..store.nats_store import NatsStore


@dataclass
class Services:
    store: NatsStore
    verifier: SigV4Verifier
    settings: Settings
    multipart: MultipartStore
