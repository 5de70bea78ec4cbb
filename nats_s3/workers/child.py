"""A worker of `--workers N`: `python -m nats_s3.workers.child`, started by the supervisor alone, which
hands it its role (settings included) in the environment."""

from __future__ import annotations

import os
import sys

from ..cli import run_until_done, secrets_of
from ..observability.logging import setup_logging
from .role import ROLE_ENV, WorkerRole


def main() -> int:
    raw = os.environ.pop(ROLE_ENV, None)
    if raw is None:
        sys.stderr.write("nats-s3: this is a worker process; run `nats-s3 --workers N` instead\n")
        return 2
    role = WorkerRole.model_validate_json(raw)
    settings = role.settings
    setup_logging(settings.log_format, settings.log_level, fields={"worker": role.index})
    secrets = secrets_of(settings)
    if secrets is None:
        return 2
    from ..server import serve

    return run_until_done(lambda: serve(settings, secrets, worker=role))


if __name__ == "__main__":
    sys.exit(main())
