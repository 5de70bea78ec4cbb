"""Command line: Go nats-s3 compatible flags (each also a NATS_S3_* variable) -> Settings -> serve."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import __version__
from .auth.credentials import CredentialsError, load_credentials
from .crypto.master_keys import KeyFileError, MasterKeys
from .datadir_lock import DataDirLocked
from .embedded import EmbeddedServerError
from .observability.logging import attach_log_batching, detach_log_batching, setup_logging
from .settings import Settings
from .startup_errors import NatsUnreachable, TlsConfigError
from .store.placement import PlacementError, load_placement_map
from .workers.cores import usable_cores

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"\d+(?:\.\d+)?"


def parse_duration(text: str) -> float:
    """Go-style durations ('30s', '1m30s', '500ms') or plain seconds."""
    rest = text.strip()
    if re.fullmatch(_NUMBER, rest):
        return float(rest)
    if not re.fullmatch(f"(?:{_NUMBER}(?:ms|d|h|m|s))+", rest):
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(v) * _UNITS[u] for v, u in re.findall(f"({_NUMBER})(ms|d|h|m|s)", rest))


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
               "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}  # fmt: skip


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(text)


def parse_size(text: str) -> int:
    """Bytes, or a number with a unit: '32MiB', '1.5GB', '512k' (binary units where an 'i' says so)."""
    match = re.fullmatch(f"({_NUMBER})\\s*([A-Za-z]*)", text.strip())
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"invalid size {text!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


@dataclass(frozen=True)
class Flag:
    name: str  # as on the command line, without dashes
    field: str  # Settings field
    env: str
    help: str
    kind: str = "str"  # str | int | size | duration | list | path | workers | bool
    metavar: str = ""  # what --help shows the value as (default from kind)


_METAVARS = {
    "duration": "DURATION",
    "path": "FILE",
    "int": "N",
    "size": "SIZE",
    "list": "URL[,URL...]",
    "str": "VALUE",
    "workers": "N|auto",
    "bool": "true|false",
}


FLAGS = (
    Flag("listen", "listen", "NATS_S3_LISTEN", "HTTP listen address (default 0.0.0.0:5222)", metavar="HOST:PORT"),
    Flag(
        "natsServers",
        "nats_servers",
        "NATS_S3_NATS_SERVERS",
        "comma-separated NATS URLs (nats://, tls://, ws://, wss://); empty starts an embedded nats-server",
        "list",
    ),
    Flag(
        "nats.connect-timeout",
        "nats_connect_timeout",
        "NATS_S3_NATS_CONNECT_TIMEOUT",
        "exit non-zero if NATS is not reached within this long at start (default 0: keep trying)",
        "duration",
    ),
    Flag("natsUser", "nats_user", "NATS_S3_NATS_USER", "NATS user", metavar="USER"),
    Flag("natsPassword", "nats_password", "NATS_S3_NATS_PASSWORD", "NATS password", metavar="PASSWORD"),
    Flag("natsToken", "nats_token", "NATS_S3_NATS_TOKEN", "NATS token", metavar="TOKEN"),
    Flag("natsNKeyFile", "nats_nkey_file", "NATS_S3_NATS_NKEY_FILE", "NATS NKey seed file", "path"),
    Flag("natsCredsFile", "nats_creds_file", "NATS_S3_NATS_CREDS_FILE", "NATS credentials (.creds) file", "path"),
    Flag(
        "natsReplicas",
        "nats_replicas",
        "NATS_S3_NATS_REPLICAS",
        "replicas for every stream and KV bucket created (default 1)",
        "int",
    ),
    Flag(
        "s3.credentials",
        "credentials_file",
        "NATS_S3_S3_CREDENTIALS",
        'credentials file {"credentials":[{"accessKey","secretKey"}]}',
        "path",
    ),
    Flag("log.format", "log_format", "NATS_S3_LOG_FORMAT", "logfmt or json (default logfmt)", metavar="FORMAT"),
    Flag("log.level", "log_level", "NATS_S3_LOG_LEVEL", "debug, info, warn or error (default info)", metavar="LEVEL"),
    Flag(
        "http.read-timeout",
        "http_read_timeout",
        "NATS_S3_HTTP_READ_TIMEOUT",
        "body read inactivity limit, 0 = use the idle timeout",
        "duration",
    ),
    Flag(
        "http.write-timeout",
        "http_write_timeout",
        "NATS_S3_HTTP_WRITE_TIMEOUT",
        "response write limit, 0 = none",
        "duration",
    ),
    Flag(
        "http.idle-timeout",
        "http_idle_timeout",
        "NATS_S3_HTTP_IDLE_TIMEOUT",
        "keep-alive idle timeout (default 120s)",
        "duration",
    ),
    Flag(
        "http.read-header-timeout",
        "http_read_header_timeout",
        "NATS_S3_HTTP_READ_HEADER_TIMEOUT",
        "time allowed to send request headers (default 30s)",
        "duration",
    ),
    Flag(
        "multipart.expiry",
        "multipart_expiry",
        "NATS_S3_MULTIPART_EXPIRY",
        "abort multipart uploads older than this (default 168h)",
        "duration",
    ),
    Flag(
        "gc.grace",
        "gc_grace",
        "NATS_S3_GC_GRACE",
        "free orphaned chunks (overwritten, deleted, aborted, failed writes) this long after (default 1h)",
        "duration",
    ),
    Flag(
        "gc.interval",
        "gc_interval",
        "NATS_S3_GC_INTERVAL",
        "how often the collector looks for chunks to free (default 1m)",
        "duration",
    ),
    Flag(
        "shutdown-timeout",
        "shutdown_timeout",
        "NATS_S3_SHUTDOWN_TIMEOUT",
        "on SIGTERM/SIGINT, how long in-flight requests may finish (default 30s)",
        "duration",
    ),
    Flag(
        "workers",
        "workers",
        "NATS_S3_WORKERS",
        "gateway processes sharing the listen port (default 1; auto = one per CPU core)",
        "workers",
    ),
    Flag(
        "metrics.listen",
        "metrics_listen",
        "NATS_S3_METRICS_LISTEN",
        "serve /metrics on this HOST:PORT instead of the S3 port",
        metavar="HOST:PORT",
    ),
    Flag(
        "metrics.token", "metrics_token", "NATS_S3_METRICS_TOKEN", "bearer token required on /metrics", metavar="TOKEN"
    ),
    Flag("tls.cert", "tls_cert", "NATS_S3_TLS_CERT", "PEM certificate (chain): serve HTTPS", "path"),
    Flag("tls.key", "tls_key", "NATS_S3_TLS_KEY", "PEM private key for --tls.cert", "path"),
    Flag(
        "domain",
        "domain",
        "NATS_S3_DOMAIN",
        "base domain for virtual-host-style requests (<bucket>.<domain>); path style always works",
        metavar="DOMAIN",
    ),
    Flag(
        "region",
        "region",
        "NATS_S3_REGION",
        "the S3 region this gateway answers for: SigV4 scopes must name it (default us-east-1)",
        metavar="REGION",
    ),
    Flag(
        "cache.size",
        "read_cache_size",
        "NATS_S3_CACHE_SIZE",
        "memory for the bytes of small objects recently read, each up to 1/256 of it (default 32MiB; 0: off)",
        "size",
    ),
    Flag(
        "quota.total",
        "quota_total",
        "NATS_S3_QUOTA_TOTAL",
        "the most all buckets together may hold, e.g. 500GiB (default 0: no limit); per bucket: nats-s3 admin",
        "size",
    ),
    Flag(
        "placement",
        "placement_file",
        "NATS_S3_PLACEMENT",
        'JSON map of regions for LocationConstraint: {"eu-central-1": {"cluster": "c1", "tags": ["region:eu"], '
        '"replicas": 3}}',
        "path",
    ),
    Flag(
        "sse.keys",
        "sse_keys_file",
        "NATS_S3_SSE_KEYS",
        'master keys for SSE-S3 and SSE-KMS: {"keys": [{"id": "k1", "key": "<base64 of 32 bytes>", "default": '
        "true}]} (reloaded on SIGHUP)",
        "path",
    ),
    Flag(
        "sse.allow-http",
        "sse_allow_http",
        "NATS_S3_SSE_ALLOW_HTTP",
        "accept SSE-C keys over plain HTTP (only where a proxy in front ends TLS); default false",
        "bool",
    ),
    Flag("data-dir", "data_dir", "NATS_S3_DATA_DIR", "embedded nats-server storage (default ./data)", "path", "DIR"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"nats-s3: {message}\n")
        raise SystemExit(2)


EXAMPLES = """examples:
  embedded NATS, storing in ./data:
    nats-s3 --listen 127.0.0.1:5222 --s3.credentials credentials.json
  an existing NATS cluster, three replicas per bucket:
    nats-s3 --natsServers nats://n1:4222,nats://n2:4222 --natsReplicas 3 --s3.credentials credentials.json
"""


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: a mistyped flag (--natsServer) is an error, never taken for another one.
    parser = _Parser(
        prog="nats-s3",
        description="S3-compatible gateway whose storage is NATS JetStream",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"nats-s3 {__version__}\n")
    add_flags(parser, FLAGS)
    return parser


def add_flags(parser: argparse.ArgumentParser, flags: Sequence[Flag]) -> None:
    for flag in flags:
        parser.add_argument(
            f"--{flag.name}",
            dest=flag.field,
            default=None,
            metavar=flag.metavar or _METAVARS[flag.kind],
            help=f"{flag.help} [env {flag.env}]",
        )


def _convert(flag: Flag, raw: str) -> object:
    if flag.kind == "list":
        return [s for s in (p.strip() for p in raw.split(",")) if s]
    if flag.kind == "duration":
        return parse_duration(raw)
    if flag.kind == "int":
        return int(raw)
    if flag.kind == "size":
        return parse_size(raw)
    if flag.kind == "path":
        return Path(raw) if raw else None
    if flag.kind == "workers":
        return usable_cores() if raw.strip().lower() == "auto" else int(raw)
    if flag.kind == "bool":
        return parse_bool(raw)
    return raw


def settings_from(argv: Sequence[str] | None, environ: dict[str, str] | None = None) -> Settings:
    """Flags win over environment variables, which win over defaults. Raises ValueError with one line."""
    return settings_of(build_parser().parse_args(argv), FLAGS, environ)


def settings_of(args: argparse.Namespace, flags: Sequence[Flag], environ: dict[str, str] | None = None) -> Settings:
    """Settings from parsed `flags` (those not given come from their environment variables, then defaults)."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for flag in flags:
        raw = getattr(args, flag.field)
        source = f"--{flag.name}"
        if raw is None and flag.env in env:
            raw, source = env[flag.env], flag.env
        if raw is None:
            continue
        try:
            values[flag.field] = _convert(flag, raw)
        except ValueError:
            raise ValueError(f"{source}: invalid value {raw!r}") from None
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        name = next((f"--{f.name}" for f in flags if f.field == field), field)
        message = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{name}: {message}" if name else message) from None


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (a dependency): its C event loop and transports cut the gateway's
    CPU per small request (bench/request_cpu.py); NATS_S3_EVENT_LOOP=asyncio keeps the standard one."""
    if os.environ.get("NATS_S3_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def secrets_of(settings: Settings) -> dict[str, str] | None:
    """The credentials file's keys; None, with the reason on stderr, if there is none or it does not load."""
    if settings.credentials_file is None:
        sys.stderr.write("nats-s3: --s3.credentials is required (a JSON credentials file)\n")
        return None
    try:
        return load_credentials(settings.credentials_file)
    except CredentialsError as exc:
        sys.stderr.write(f"nats-s3: {exc}\n")
        return None


def sse_keys_load(settings: Settings) -> bool:
    """Whether --sse.keys, if given, is a valid key file (the reason on stderr if not)."""
    if settings.sse_keys_file is None:
        return True
    try:
        MasterKeys.load(settings.sse_keys_file)
    except KeyFileError as exc:
        sys.stderr.write(f"nats-s3: {exc}\n")
        return False
    return True


def placement_loads(settings: Settings) -> bool:
    """Whether --placement, if given, is a valid placement map (the reason on stderr if not)."""
    if settings.placement_file is None:
        return True
    try:
        load_placement_map(settings.placement_file)
    except PlacementError as exc:
        sys.stderr.write(f"nats-s3: {exc}\n")
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["admin"]:
        from .admin.main import main as admin_main

        return admin_main(args[1:])
    try:
        settings = settings_from(argv)
    except ValueError as exc:
        sys.stderr.write(f"nats-s3: {exc}\n")
        return 2
    secrets = secrets_of(settings)
    if secrets is None or not placement_loads(settings) or not sse_keys_load(settings):
        return 2
    setup_logging(settings.log_format, settings.log_level)
    if settings.workers > 1:
        from .workers.supervisor import supervise

        return run_until_done(lambda: supervise(settings, secrets))
    from .server import serve  # heavy imports only once the flags are good

    return run_until_done(lambda: serve(settings, secrets))


async def _with_log_batching(start: Callable[[], Coroutine[Any, Any, int | None]]) -> int | None:
    attach_log_batching(asyncio.get_running_loop())
    try:
        return await start()
    finally:
        detach_log_batching()


def run_until_done(start: Callable[[], Coroutine[Any, Any, int | None]]) -> int:
    """Run the gateway (one process, a supervisor or a worker) on the event loop; its exit code, with a
    failure to start as one line on stderr."""
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            code = runner.run(_with_log_batching(start))
    except TlsConfigError as exc:
        sys.stderr.write(f"nats-s3: {exc}\n")
        return 2
    except DataDirLocked as exc:
        sys.stderr.write(f"nats-s3: {exc}\n")
        return 1
    except NatsUnreachable as exc:
        sys.stderr.write(f"nats-s3: {exc}\n")
        return 1
    except EmbeddedServerError as exc:
        sys.stderr.write(f"nats-s3: embedded NATS: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"nats-s3: {exc.strerror or exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a startup failure is one line, not a traceback
        sys.stderr.write(f"nats-s3: {type(exc).__name__}: {exc}\n")
        return 1
    return code or 0
