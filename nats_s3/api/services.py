"""What every handler may use: the store, the signature verifier and the settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..auth.principals import Principals
from ..crypto.master_keys import MasterKeyHolder
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
    principals: Principals = field(default_factory=Principals)
    master_keys: MasterKeyHolder = field(default_factory=MasterKeyHolder)

    async def readiness(self) -> str | None:
        """None when the gateway can serve; otherwise why not, in a few words."""
        if not self.store.nc.is_connected:
            return "not connected to NATS"
        if (problem := await self.store.jetstream_problem()) is not None:
            return problem
        records = self.store.configs.records
        if not await records.present():
            return f"KV bucket {records.bucket} is missing"
        return None
