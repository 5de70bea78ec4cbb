"""`nats-s3 admin [connection flags] [--json] COMMAND`: parse, connect to NATS, run one command, print.

Exit codes: 0 done; 1 NATS unreachable or refusing; 2 bad usage; 3 not found (a bucket, or no collector
pass recorded yet); 4 a credentials file that does not load; 5 refused (a bucket not empty, one that
exists already, a placement NATS cannot meet)."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors

from ..auth.credentials import CredentialsError, load_credentials
from ..cli import FLAGS, _Parser, add_flags, parse_size, settings_of
from ..embedded import URL_FILE
from ..nats_auth import nats_auth_options
from ..settings import Settings
from ..store import naming, replication
from ..store.errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    BucketNotFound,
    InvalidPlacement,
    ReplicationRefused,
    StoreUnavailable,
)
from ..store.multipart import MultipartStore
from ..store.nats_store import NatsStore
from ..store.placement import PlacementError, load_placement_map
from ..store.quotas import Quota
from . import inventory, report

EXIT_OK, EXIT_NATS, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_BAD_CREDENTIALS, EXIT_REFUSED = 0, 1, 2, 3, 4, 5
_CONNECTION = {"natsServers", "natsUser", "natsPassword", "natsToken", "natsNKeyFile", "natsCredsFile", "placement"}
CONNECTION_FLAGS = [f for f in FLAGS if f.name in _CONNECTION]
CONNECT_TIMEOUT = 5.0


class UsageError(Exception):
    pass


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    info = bucket.add_parser("info", help="one bucket: owner, versioning, quota, usage, placement, replication")
    info.add_argument("bucket")
    create = bucket.add_parser("create", help="create a bucket (as CreateBucket does)")
    create.add_argument("bucket")
    create.add_argument("--region", help="a region of the placement map (--placement): where its stream goes")
    create.add_argument("--owner", default="", help="canonical user id of its owner (default: none)")
    create.add_argument("--owner-access-key", help="owner given by access key (its derived canonical id)")
    delete = bucket.add_parser("delete", help="delete an empty bucket (as DeleteBucket does)")
    delete.add_argument("bucket")
    quota = bucket.add_parser("quota", help="set or remove a bucket's quota")
    quota.add_argument("bucket")
    quota.add_argument("--max-bytes", type=_size, required=True, metavar="SIZE", help="e.g. 10GiB; 0 removes it")
    quota.add_argument("--max-objects", type=int, default=0, metavar="N", help="live objects (default 0: no limit)")
    replicate = bucket.add_parser(
        "replicate", help="make a bucket here a read-only replica of the bucket of that name in another domain"
    )
    replicate.add_argument("bucket")
    origin = replicate.add_mutually_exclusive_group(required=True)
    origin.add_argument("--from-domain", metavar="DOMAIN", help="the origin's JetStream domain")
    origin.add_argument("--from-api", metavar="PREFIX", help="the origin's JetStream API prefix, e.g. an import")
    replicate.add_argument("--replicas", type=int, default=None, help="the replica stream's replicas (--natsReplicas)")
    promote = bucket.add_parser("promote", help="make a replica this site's own, writable bucket")
    promote.add_argument("bucket")
    drop = bucket.add_parser(
        "drop-replica", help="delete a replica here with all it holds (the origin's bucket is not touched)"
    )
    drop.add_argument("bucket")
    owner = commands.add_parser("owner", help="owners").add_subparsers(dest="action", required=True)
    owner_quota = owner.add_parser("quota", help="set or remove the quota of all buckets one owner has")
    owner_quota.add_argument("owner", nargs="?", default=None, help="canonical user id")
    owner_quota.add_argument("--access-key", help="the owner given by access key (its derived canonical id)")
    owner_quota.add_argument("--max-bytes", type=_size, required=True, metavar="SIZE", help="0 removes it")
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


def _derived_owner(access_key: str) -> str:
    # As auth/principals.py derives it for a credential without a userId.
    return hashlib.sha256(access_key.encode()).hexdigest()


@dataclass
class Admin:
    """What a command works with: the store over the admin's own NATS connection, and the arguments."""

    store: NatsStore
    uploads: MultipartStore
    args: argparse.Namespace

    def out(self, value: object, human: Callable[[], object]) -> None:
        if self.args.json:
            report.as_json(value)
        else:
            human()


async def bucket_list(a: Admin) -> int:
    rows = []
    for b in await a.store.list_buckets():
        rows.append({**await inventory.usage(a.store, a.uploads, b.name, _progress), "created": b.created.isoformat()})
    a.out(
        rows,
        lambda: report.table(
            ["BUCKET", "CREATED", "OBJECTS", "SIZE", "QUOTA", "UPLOADS"],
            [
                [
                    r["bucket"],
                    r["created"][:19],
                    r["objects"],
                    report.human_size(r["bytes"]),
                    report.human_size(r["quota"]["max_bytes"]) if r["quota"] else None,
                    r["uploads_in_progress"],
                ]
                for r in rows
            ],
        ),
    )
    return EXIT_OK


async def bucket_info(a: Admin) -> int:
    found = await inventory.bucket_info(a.store, a.uploads, a.args.bucket, _progress)
    a.out(found, lambda: report.fields(inventory.info_fields(found)))
    return EXIT_OK


async def bucket_create(a: Admin) -> int:
    bucket = a.args.bucket
    if not naming.is_valid_bucket_name(bucket):
        raise UsageError(f"{bucket!r} is not a valid S3 bucket name")
    owner = _derived_owner(a.args.owner_access_key) if a.args.owner_access_key else a.args.owner
    try:
        created = await a.store.create_bucket(bucket, owner, a.args.region)
    except BucketAlreadyExists:
        sys.stderr.write(f"nats-s3 admin: bucket {bucket} exists already\n")
        return EXIT_REFUSED
    except InvalidPlacement as exc:
        sys.stderr.write(f"nats-s3 admin: {exc}\n")
        return EXIT_REFUSED
    result = {"bucket": bucket, "created": created.created.isoformat(), "region": a.args.region, "owner": owner}
    a.out(result, lambda: sys.stdout.write(f"created {bucket}\n"))
    return EXIT_OK


async def bucket_delete(a: Admin) -> int:
    bucket = a.args.bucket
    try:
        await a.store.delete_bucket(bucket)
    except BucketNotEmpty:
        sys.stderr.write(f"nats-s3 admin: bucket {bucket} is not empty (delete its objects and versions first)\n")
        return EXIT_REFUSED
    a.out({"bucket": bucket, "deleted": True}, lambda: sys.stdout.write(f"deleted {bucket}\n"))
    return EXIT_OK


async def bucket_quota(a: Admin) -> int:
    if a.args.max_objects < 0:
        raise UsageError("--max-objects must be 0 or more")
    quota = Quota(max_bytes=a.args.max_bytes, max_objects=a.args.max_objects)
    config = await a.store.set_quota(a.args.bucket, quota)
    shown = config.quota.model_dump() if config.quota else None
    a.out(
        {"bucket": a.args.bucket, "quota": shown},
        lambda: sys.stdout.write(f"{a.args.bucket}: {inventory.describe_quota(config.quota)}\n"),
    )
    return EXIT_OK


async def bucket_replicate(a: Admin) -> int:
    bucket = a.args.bucket
    if not naming.is_valid_bucket_name(bucket):
        raise UsageError(f"{bucket!r} is not a valid S3 bucket name")
    replicas = a.args.replicas if a.args.replicas is not None else a.store.replicas
    if not 1 <= replicas <= 5:
        raise UsageError("--replicas must be 1 to 5")
    try:
        api = replication.domain_api(a.args.from_domain) if a.args.from_domain is not None else a.args.from_api
    except ReplicationRefused as exc:
        raise UsageError(str(exc)) from None
    done = await replication.replicate(a.store, bucket, api, replicas=replicas)
    a.out(done, lambda: sys.stdout.write(f"{bucket}: replica of {api}\n"))
    return EXIT_OK


async def bucket_promote(a: Admin) -> int:
    done = await replication.promote(a.store, a.args.bucket)
    a.out(done, lambda: sys.stdout.write(f"{a.args.bucket}: promoted, now written here\n"))
    return EXIT_OK


async def bucket_drop_replica(a: Admin) -> int:
    await a.store.drop_replica(a.args.bucket)
    a.out({"bucket": a.args.bucket, "dropped": True}, lambda: sys.stdout.write(f"{a.args.bucket}: replica dropped\n"))
    return EXIT_OK


async def owner_quota(a: Admin) -> int:
    if (a.args.owner is None) == (a.args.access_key is None):
        raise UsageError("name the owner by canonical user id or by --access-key, one of them")
    owner = a.args.owner if a.args.owner is not None else _derived_owner(a.args.access_key)
    await a.store.owner_quotas.set(owner, a.args.max_bytes)
    shown = a.args.max_bytes or None
    a.out(
        {"owner": owner, "max_bytes": shown},
        lambda: sys.stdout.write(f"owner {owner}: {report.human_size(shown) if shown else 'no quota'}\n"),
    )
    return EXIT_OK


async def usage(a: Admin) -> int:
    found = await inventory.total_usage(a.store, a.uploads, _progress)
    rows, total = found["buckets"], found["total"]
    a.out(
        found,
        lambda: report.table(
            ["BUCKET", "OBJECTS", "SIZE", "QUOTA", "UPLOADS"],
            [
                [
                    r["bucket"],
                    r["objects"],
                    report.human_size(r["bytes"]),
                    report.human_size(r["quota"]["max_bytes"]) if r["quota"] else None,
                    r["uploads_in_progress"],
                ]
                for r in rows
            ]
            + [["TOTAL", total["objects"], report.human_size(total["bytes"]), None, total["uploads_in_progress"]]],
        ),
    )
    return EXIT_OK


async def gc_status(a: Admin) -> int:
    status = await inventory.collector_status(a.store)
    if status is None:
        sys.stderr.write("nats-s3 admin: no collector pass recorded yet (is a gateway running?)\n")
        return EXIT_NOT_FOUND
    blocked = status.get("blocked") or {}
    a.out(
        status,
        lambda: report.fields([
            ("leader", status.get("holder")), ("last pass", status.get("finished_at")),
            ("took", f"{status.get('seconds')} s"), ("buckets", status.get("buckets")),
            ("behind", status.get("behind")), ("grace", f"{status.get('grace_seconds')} s"),
            ("passes", status.get("passes")), ("freed subjects", status.get("freed_subjects")),
            ("settled claims", status.get("settled_claims")),
            ("expired uploads", status.get("expired_uploads")),
            ("renewed snapshots", status.get("renewed_snapshots")),
            ("blocked", ", ".join(f"{b}: {why}" for b, why in blocked.items()) or "none"),
        ]),
    )  # fmt: skip
    return EXIT_OK


COMMANDS: dict[tuple[str, str | None], Callable[[Admin], Awaitable[int]]] = {
    ("bucket", "list"): bucket_list,
    ("bucket", "info"): bucket_info,
    ("bucket", "create"): bucket_create,
    ("bucket", "delete"): bucket_delete,
    ("bucket", "quota"): bucket_quota,
    ("bucket", "replicate"): bucket_replicate,
    ("bucket", "promote"): bucket_promote,
    ("bucket", "drop-replica"): bucket_drop_replica,
    ("owner", "quota"): owner_quota,
    ("usage", None): usage,
    ("gc", "status"): gc_status,
}


async def _connect(servers: list[str], settings: Settings) -> nats.NATS:
    errors: list[BaseException] = []

    async def on_error(exc: BaseException) -> None:
        errors.append(exc)

    try:
        # nats-py keeps trying a refused first connect even without reconnects: the deadline is ours.
        return await asyncio.wait_for(
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
        raise ConnectionError(repr(errors[-1] if errors else exc)) from None


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    servers = _servers(settings, args.data_dir)
    try:
        placements = load_placement_map(settings.placement_file) if settings.placement_file else None
    except PlacementError as exc:
        raise UsageError(str(exc)) from None
    try:
        nc = await _connect(servers, settings)
    except ConnectionError as exc:
        sys.stderr.write(f"nats-s3 admin: NATS at {','.join(servers)} not reached: {exc}\n")
        return EXIT_NATS
    store = NatsStore(nc, replicas=settings.nats_replicas, placements=placements)
    uploads = MultipartStore(store)
    command = COMMANDS[(args.command, getattr(args, "action", None))]
    try:
        await store.start()
        code = await command(Admin(store, uploads, args))
        await store.index.wait_saves()
        return code
    except BucketNotFound as exc:
        sys.stderr.write(f"nats-s3 admin: no such bucket: {exc}\n")
        return EXIT_NOT_FOUND
    except ReplicationRefused as exc:
        sys.stderr.write(f"nats-s3 admin: {exc}\n")
        return EXIT_REFUSED
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
