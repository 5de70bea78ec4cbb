"""`nats-s3 admin [connection flags] [--json] COMMAND`: parse, connect to NATS, run one command, print.

Exit codes: 0 done; 1 NATS unreachable or refusing; 2 bad usage; 3 not found (a bucket, or no collector
pass recorded yet); 4 a credentials file that does not load."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import nats
import nats.errors

from ..auth.credentials import CredentialsError, load_credentials
from ..cli import FLAGS, _Parser, add_flags, settings_of
from ..embedded import URL_FILE
from ..nats_auth import nats_auth_options
from ..settings import Settings
from ..store.errors import BucketNotFound, StoreUnavailable
from ..store.multipart import MultipartStore
from ..store.nats_store import NatsStore
from . import inventory, report

EXIT_OK, EXIT_NATS, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_BAD_CREDENTIALS = 0, 1, 2, 3, 4
_CONNECTION = {"natsServers", "natsUser", "natsPassword", "natsToken", "natsNKeyFile", "natsCredsFile"}
CONNECTION_FLAGS = [f for f in FLAGS if f.name in _CONNECTION]
CONNECT_TIMEOUT = 5.0


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nats-s3 admin", description="operate a nats-s3 deployment through NATS", allow_abbrev=False)
    add_flags(parser, CONNECTION_FLAGS)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="with no --natsServers: the embedded server of this gateway data dir",
    )
    parser.add_argument("--json", action="store_true", help="JSON output, for scripts")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bucket = commands.add_parser("bucket", help="buckets").add_subparsers(dest="action", required=True)
    bucket.add_parser("list", help="every bucket, with its usage")
    info = bucket.add_parser("info", help="one bucket: owner, versioning, replicas, placement, usage")
    info.add_argument("bucket")
    commands.add_parser("usage", help="bytes, objects and uploads in progress per bucket, and in total")
    gc = commands.add_parser("gc", help="the collector").add_subparsers(dest="action", required=True)
    gc.add_parser("status", help="the collector leader's last pass")
    creds = commands.add_parser("credentials", help="credentials files").add_subparsers(dest="action", required=True)
    check = creds.add_parser("check", help="validate a credentials file (no NATS needed)")
    check.add_argument("file", type=Path)
    return parser


def _servers(settings: Settings, data_dir: Path | None) -> list[str]:
    if settings.nats_servers:
        return settings.nats_servers
    where = data_dir or settings.data_dir
    try:
        return [(where / URL_FILE).read_text().strip()]
    except OSError:
        raise UsageError(f"no --natsServers given, and no gateway's embedded nats-server runs on {where}") from None


def _progress(line: str) -> None:
    sys.stderr.write(line + "\n")


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    servers = _servers(settings, args.data_dir)
    errors: list[BaseException] = []

    async def on_error(exc: BaseException) -> None:
        errors.append(exc)

    try:
        # nats-py keeps trying a refused first connect even without reconnects: the deadline is ours.
        nc = await asyncio.wait_for(
            nats.connect(
                servers=servers,
                name="nats-s3-admin",
                connect_timeout=CONNECT_TIMEOUT,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                error_cb=on_error,
                **nats_auth_options(settings),  # type: ignore[arg-type]
            ),
            CONNECT_TIMEOUT,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        why = errors[-1] if errors else exc
        sys.stderr.write(f"nats-s3 admin: NATS at {','.join(servers)} not reached: {why!r}\n")
        return EXIT_NATS
    store = NatsStore(nc, replicas=settings.nats_replicas)
    uploads = MultipartStore(store)
    try:
        await store.start()
        if args.command == "bucket" and args.action == "list":
            rows = []
            for b in await store.list_buckets():
                rows.append(
                    {**await inventory.usage(store, uploads, b.name, _progress), "created": b.created.isoformat()}
                )
            if args.json:
                report.as_json(rows)
            else:
                report.table(
                    ["BUCKET", "CREATED", "OBJECTS", "SIZE", "UPLOADS"],
                    [
                        [
                            r["bucket"],
                            r["created"][:19],
                            r["objects"],
                            report.human_size(r["bytes"]),
                            r["uploads_in_progress"],
                        ]
                        for r in rows
                    ],
                )
        elif args.command == "bucket" and args.action == "info":
            found = await inventory.bucket_info(store, uploads, args.bucket, _progress)
            if args.json:
                report.as_json(found)
            else:
                use = found["usage"]
                report.fields([
                    ("bucket", found["bucket"]), ("stream", found["stream"]), ("created", found["created"]),
                    ("owner", found["owner"]), ("versioning", found["versioning"]),
                    ("replicas", found["replicas"]), ("placement", found["placement"]),
                    ("cluster", found["cluster"]), ("leader", found["leader"]),
                    ("servers", ", ".join(found["servers"]) or None),
                    ("objects", use["objects"]), ("delete markers", use["delete_markers"]),
                    ("size", f"{report.human_size(use['bytes'])} ({use['bytes']} bytes)"),
                    ("uploads in progress", use["uploads_in_progress"]),
                ])  # fmt: skip
        elif args.command == "usage":
            rows = [await inventory.usage(store, uploads, b.name, _progress) for b in await store.list_buckets()]
            total = {
                "bytes": sum(r["bytes"] for r in rows),
                "objects": sum(r["objects"] for r in rows),
                "uploads_in_progress": sum(r["uploads_in_progress"] for r in rows),
            }
            if args.json:
                report.as_json({"buckets": rows, "total": total})
            else:
                report.table(
                    ["BUCKET", "OBJECTS", "SIZE", "UPLOADS"],
                    [[r["bucket"], r["objects"], report.human_size(r["bytes"]), r["uploads_in_progress"]] for r in rows]
                    + [["TOTAL", total["objects"], report.human_size(total["bytes"]), total["uploads_in_progress"]]],
                )
        elif args.command == "gc" and args.action == "status":
            status = await inventory.collector_status(store)
            if status is None:
                sys.stderr.write("nats-s3 admin: no collector pass recorded yet (is a gateway running?)\n")
                return EXIT_NOT_FOUND
            if args.json:
                report.as_json(status)
            else:
                blocked = status.get("blocked") or {}
                report.fields([
                    ("leader", status.get("holder")), ("last pass", status.get("finished_at")),
                    ("took", f"{status.get('seconds')} s"), ("buckets", status.get("buckets")),
                    ("behind", status.get("behind")), ("grace", f"{status.get('grace_seconds')} s"),
                    ("passes", status.get("passes")), ("freed subjects", status.get("freed_subjects")),
                    ("settled claims", status.get("settled_claims")),
                    ("expired uploads", status.get("expired_uploads")),
                    ("renewed snapshots", status.get("renewed_snapshots")),
                    ("blocked", ", ".join(f"{b}: {why}" for b, why in blocked.items()) or "none"),
                ])  # fmt: skip
        await store.index.wait_saves()
        return EXIT_OK
    except BucketNotFound as exc:
        sys.stderr.write(f"nats-s3 admin: no such bucket: {exc}\n")
        return EXIT_NOT_FOUND
    except StoreUnavailable as exc:
        sys.stderr.write(f"nats-s3 admin: {exc}\n")
        return EXIT_NATS
    finally:
        await store.close()
        await nc.close()


def _check_credentials(args: argparse.Namespace) -> int:
    try:
        secrets = load_credentials(args.file)
    except CredentialsError as exc:
        if args.json:
            report.as_json({"file": str(args.file), "valid": False, "error": str(exc)})
        else:
            sys.stderr.write(f"nats-s3 admin: {exc}\n")
        return EXIT_BAD_CREDENTIALS
    if args.json:
        report.as_json({"file": str(args.file), "valid": True, "access_keys": sorted(secrets)})
    else:
        sys.stdout.write(f"{args.file}: valid, {len(secrets)} credential(s): {', '.join(sorted(secrets))}\n")
    return EXIT_OK


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "credentials":
        return _check_credentials(args)
    try:
        settings = settings_of(args, CONNECTION_FLAGS)
        return asyncio.run(_run(args, settings))
    except (ValueError, UsageError) as exc:
        sys.stderr.write(f"nats-s3 admin: {exc}\n")
        return EXIT_USAGE
