"""How each client is pointed at the endpoint: temp config files, subprocess runners, and a gateway log reader."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import boto3
import pytest
from botocore.config import Config
from minio import Minio

from tests.support import tool

MiB = 1024 * 1024


@dataclass(frozen=True)
class Endpoint:
    url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    @property
    def secure(self) -> bool:
        return urlsplit(self.url).scheme == "https"

    @property
    def host_port(self) -> str:
        parts = urlsplit(self.url)
        return parts.netloc or parts.path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5_etag(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Cli:
    """One command-line client with its config; calling it runs a subcommand and fails the test on a non-zero exit."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path | None = None

    def __call__(self, *args: str | Path, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [*self.argv, *map(str, args)]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=self.env, cwd=self.cwd, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and proc.returncode != 0:
            shown = " ".join(cmd[len(self.argv) :])
            raise AssertionError(f"`{shown}` exited {proc.returncode}\nstdout: {proc.stdout[-3000:]}\n"
                                 f"stderr: {proc.stderr[-3000:]}")  # fmt: skip
        return proc


def aws_cli(endpoint: Endpoint, home: Path) -> Cli:
    """AWS CLI v1 (PyPI awscli) with its own config files, path-style, and the default 8 MiB multipart threshold."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config").write_text(
        f"[default]\nregion = {endpoint.region}\nretry_mode = standard\nmax_attempts = 2\n"
        "s3 =\n    addressing_style = path\n    multipart_threshold = 8MB\n    multipart_chunksize = 8MB\n"
    )
    (home / "credentials").write_text(
        f"[default]\naws_access_key_id = {endpoint.access_key}\naws_secret_access_key = {endpoint.secret_key}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",  # nothing else may answer for credentials
        "AWS_PAGER": "",
    }
    return Cli([tool("aws"), "--endpoint-url", endpoint.url, "--output", "json"], env, home)


def rclone(endpoint: Endpoint, home: Path) -> Cli:
    """rclone's S3 backend as remote `gw:`, path-style; one try per call so a failure shows at once."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "rclone.conf"
    config.write_text(
        "[gw]\ntype = s3\nprovider = Other\n"
        f"access_key_id = {endpoint.access_key}\nsecret_access_key = {endpoint.secret_key}\n"
        f"endpoint = {endpoint.url}\nregion = {endpoint.region}\nforce_path_style = true\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "AWS_"))}
    env |= {"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")}
    argv = [tool("rclone"), "--config", str(config), "--retries", "1", "--low-level-retries", "1"]
    return Cli(argv, env, home)


def s3cmd(endpoint: Endpoint, home: Path) -> Cli:
    """s3cmd with a --config file: path-style (host_bucket is the endpoint itself), SigV4, no retries."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "s3cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {endpoint.access_key}\nsecret_key = {endpoint.secret_key}\n"
        f"host_base = {endpoint.host_port}\nhost_bucket = {endpoint.host_port}\n"
        f"use_https = {endpoint.secure}\nsignature_v2 = False\nbucket_location = {endpoint.region}\n"
        "max_retries = 1\nprogress_meter = False\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"HOME": str(home)}
    return Cli([tool("s3cmd"), "--config", str(config)], env, home)


def boto3_client(endpoint: Endpoint, **config: Any) -> Any:
    cfg = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 2, "mode": "standard"},
        **({"signature_version": "s3v4"} | config),
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        region_name=endpoint.region,
        config=cfg,
    )


def minio_client(endpoint: Endpoint) -> Minio:
    return Minio(
        endpoint.host_port,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
        secure=endpoint.secure,
        region=endpoint.region,
    )


def versions() -> dict[str, str]:
    """Each client's own version string, as the matrix reports it."""
    import minio

    def first_line(*argv: str) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (out.stdout or out.stderr).strip().splitlines()[0]

    # `aws --version` also names the OS kernel; keep the parts that describe the client.
    aws = " ".join(t for t in first_line(tool("aws"), "--version").split() if t.startswith(("aws-cli/", "botocore/")))
    return {
        "aws-cli": aws,
        "boto3": f"boto3 {boto3.__version__}",
        "rclone": first_line(tool("rclone"), "version"),
        "s3cmd": first_line(tool("s3cmd"), "--version"),
        "minio-py": f"minio {minio.__version__}",
    }


# Access-log fields in either log format: logfmt (operation=X) or JSON ("operation": "X").
_LINE = re.compile(
    r'\boperation"?\s*[=:]\s*"?(?P<op>[\w-]+)"?.*?\bbucket"?\s*[=:]\s*"?(?P<bucket>[^"\s,]*)"?'
    r'.*?\bstatus"?\s*[=:]\s*"?(?P<status>\d+)'
)


@dataclass
class Watch:
    """Requests the gateway logged for one bucket from the moment the watch began."""

    wire: Wire
    bucket: str
    offset: int

    def requests(self) -> list[tuple[str, int]]:
        return self.wire.read(self.offset, self.bucket)

    def expect(self, operation: str | tuple[str, ...], *, status: int | None = None, at_least: int = 1) -> None:
        """Assert the client really sent `operation` (any of them, if several), where the gateway log can be read."""
        if not self.wire.available:
            return
        names = (operation,) if isinstance(operation, str) else operation
        deadline = time.monotonic() + 5  # the access log line is written as the response finishes
        while True:
            seen = self.requests()
            hits = [s for op, s in seen if op in names and (status is None or s == status)]
            if len(hits) >= at_least:
                return
            if time.monotonic() > deadline:
                want = f"{operation}" + (f" with status {status}" if status else "") + f" x{at_least}"
                raise AssertionError(f"gateway never logged {want} on bucket {self.bucket}; it logged {seen}")
            time.sleep(0.05)


@dataclass
class Wire:
    """The gateway's access log, when the suite can read it (it started the gateway, or was told where the log is)."""

    log: Path | None

    @property
    def available(self) -> bool:
        return self.log is not None and self.log.exists()

    def watch(self, bucket: str) -> Watch:
        return Watch(self, bucket, self.log.stat().st_size if self.available and self.log else 0)

    def read(self, offset: int, bucket: str) -> list[tuple[str, int]]:
        if not self.available or self.log is None:
            return []
        with self.log.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
        found = []
        for line in text.splitlines():
            match = _LINE.search(line)
            if match and match["bucket"] == bucket:
                found.append((match["op"], int(match["status"])))
        return found

    def tail(self, lines: int = 15) -> str:
        if not self.available or self.log is None:
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def put_many(client: Any, bucket: str, keys: Mapping[str, bytes] | list[str], workers: int = 8) -> None:
    """Fill a bucket through boto3 (setup, not the client under test), a few requests at a time."""
    from concurrent.futures import ThreadPoolExecutor

    items = list(keys.items()) if isinstance(keys, Mapping) else [(k, k.encode()) for k in keys]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), items))


NOT_SUPPORTED = "client has no such feature: "


def not_supported(reason: str) -> NoReturn:
    """End a cell as "—": the client cannot do this at all (said with the reason, which CONFORMANCE.md shows)."""
    pytest.skip(NOT_SUPPORTED + reason)


# The shared listing bucket: nested "directories", a space and non-ASCII, so delimiters and paging have work to do.
LISTING_KEYS = sorted(
    [
        "docs/a.txt",
        "docs/b.txt",
        "docs/sub/c.txt",
        "photos/2024/feb.jpg",
        "photos/2024/jan.jpg",
        "photos/2025/mar.jpg",
        "photos/readme.txt",
        "top.txt",
        "with space.txt",
        "ünï/kéy.txt",
    ],
    key=lambda k: k.encode(),  # S3 lists in UTF-8 byte order
)


def expected_listing(prefix: str = "", delimiter: str = "") -> tuple[list[str], list[str]]:
    """(keys, common prefixes) S3 returns for LISTING_KEYS."""
    keys: list[str] = []
    prefixes: list[str] = []
    for key in LISTING_KEYS:
        if not key.startswith(prefix):
            continue
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            keys.append(key)
        elif key[: cut + len(delimiter)] not in prefixes:
            prefixes.append(key[: cut + len(delimiter)])
    return keys, prefixes


# Presigned URLs carry the key in their path and signature: make the client encode a space, non-ASCII and "+&=".
PRESIGNED_KEY = "p/signed ü+&=.txt"


def tampered(url: str) -> str:
    """The same presigned URL for another key: the signature no longer matches, so the gateway must refuse it."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path + "x"))


# ListObjects v1 and v2, whichever name the gateway logs each under.
LIST = ("ListObjects", "ListObjectsV2")

# More keys than one 1000-key page: for clients (s3cmd, minio-py) that cannot ask for smaller pages.
THOUSAND_KEYS = [f"k/{i:05d}" for i in range(1003)]


def make_sync_tree(root: Path) -> Path:
    """The local tree every sync cell starts from: a.txt and sub/b.txt."""
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a1")
    (root / "sub" / "b.txt").write_text("b1")
    return root


def change_sync_tree(root: Path) -> None:
    """One changed, one removed and one new file: what the second sync must carry over."""
    (root / "a.txt").write_text("a2 is longer")
    (root / "sub" / "b.txt").unlink()
    (root / "c.txt").write_text("c1")


def assert_synced(probe: Any, bucket: str) -> None:
    listed = probe.list_objects_v2(Bucket=bucket, Prefix="tree/")["Contents"]
    assert sorted(o["Key"] for o in listed) == ["tree/a.txt", "tree/c.txt"]
