"""The gateway's settings: one pydantic model, filled from flags and NATS_S3_* variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NATS_SCHEMES = ("nats", "tls", "ws", "wss")


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    listen: str = "0.0.0.0:5222"
    nats_servers: list[str] = Field(default_factory=list)
    nats_user: str | None = None
    nats_password: str | None = None
    nats_token: str | None = None
    nats_nkey_file: Path | None = None
    nats_creds_file: Path | None = None
    nats_connect_timeout: float = Field(default=0.0, ge=0)  # 0: keep trying to reach NATS at start
    nats_replicas: int = Field(default=1, ge=1, le=5)
    credentials_file: Path | None = None
    log_format: Literal["logfmt", "json"] = "logfmt"
    log_level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    http_read_timeout: float = Field(default=0.0, ge=0)
    http_write_timeout: float = Field(default=0.0, ge=0)
    http_idle_timeout: float = Field(default=120.0, ge=0)
    http_read_header_timeout: float = Field(default=30.0, ge=0)
    data_dir: Path = Path("./data")
    multipart_expiry: float = Field(default=7 * 24 * 3600.0, gt=0)
    # Chunks a request orphaned are freed by the collector once this long has passed (reads in flight
    # of an overwritten or deleted version finish within it), checked every gc_interval.
    gc_grace: float = Field(default=3600.0, ge=0)
    gc_interval: float = Field(default=60.0, gt=0)
    shutdown_timeout: float = Field(default=30.0, ge=0)
    # Gateway processes sharing the listen port (SO_REUSEPORT); more than one runs under a supervisor.
    workers: int = Field(default=1, ge=1, le=256)
    metrics_listen: str | None = None  # a separate HOST:PORT for /metrics; default: the S3 port
    metrics_token: str | None = None  # bearer token required on /metrics when set
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The one region this gateway is: SigV4 scopes must name it, and buckets report it.
    region: str = Field(default="us-east-1", min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    domain: str | None = None  # enables virtual-host-style addressing: <bucket>.<domain>
    # Object bytes are cut into NATS messages of this size (must stay under the server's max_payload).
    chunk_size: int = Field(default=256 * 1024, ge=1024, le=1024 * 1024)
    # Bytes of small objects recently read, kept per gateway process (store/read_cache.py); 0: none.
    read_cache_size: int = Field(default=32 * 1024 * 1024, ge=0)
    # The most all buckets together may hold, bytes of their streams (store/quotas.py); 0: no limit.
    quota_total: int = Field(default=0, ge=0)
    # Regions a CreateBucket's LocationConstraint may name, and where their streams go (store/placement.py).
    placement_file: Path | None = None
    # Master keys of SSE-S3 and SSE-KMS (crypto/master_keys.py); None: those requests are refused.
    sse_keys_file: Path | None = None
    # SSE-C over plain HTTP (S3 refuses it: the key crosses the wire): for TLS ended by a proxy in front.
    sse_allow_http: bool = False

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        _, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"listen address {value!r} is not HOST:PORT")
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _check_metrics_listen(cls, value: str | None) -> str | None:
        return None if value is None else cls._check_listen(value)

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().strip(".").lower()
        return value or None

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls.cert and --tls.key go together")
        return self

    @field_validator("nats_servers")
    @classmethod
    def _check_servers(cls, value: list[str]) -> list[str]:
        servers = [s.strip() for s in value if s.strip()]
        for server in servers:
            scheme, sep, _ = server.partition("://")
            if not sep or scheme.lower() not in NATS_SCHEMES:
                raise ValueError(
                    f"NATS server {server!r} is not a NATS URL: use nats://, tls://, ws:// or wss:// "
                    "(for example nats://127.0.0.1:4222)"
                )
            try:
                parsed = urlsplit(server)
                parsed.port  # noqa: B018 (raises on a port that is not a number)
            except ValueError:
                raise ValueError(f"NATS server {server!r} has an invalid host or port") from None
            if not parsed.hostname:
                raise ValueError(f"NATS server {server!r} names no host")
        return servers

    @property
    def listen_host(self) -> str:
        host = self.listen.rpartition(":")[0]
        return host.strip("[]") or "0.0.0.0"

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])
