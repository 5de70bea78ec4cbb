"""`python -m nats_s3.healthcheck [FLAGS]`: exit 0 when the gateway's /healthz answers 200.

The container HEALTHCHECK runs it with no flags: it then reads the gateway's own command line (PID 1 in
the container) and environment, so it follows --listen and --tls.* however they were given, instead of
a URL written into the image.
"""

from __future__ import annotations

import ssl
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .cli import settings_from


def _gateway_args(pid: int = 1) -> list[str]:
    """The flags of the nats-s3 process `pid`, or none if it is not one (defaults and environment apply)."""
    try:
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []
    for index, arg in enumerate(argv):
        if arg.endswith("nats-s3") or arg == "nats_s3":
            return argv[index + 1 :]
    return []


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or _gateway_args()
    try:
        settings = settings_from(args)
    except (ValueError, SystemExit):
        return 1
    host = settings.listen_host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    host = f"[{host}]" if ":" in host else host
    tls = settings.tls_cert is not None
    url = f"{'https' if tls else 'http'}://{host}:{settings.listen_port}/healthz"
    # The gateway's own certificate may not name 127.0.0.1: liveness is checked, not identity.
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=4, context=context) as resp:
            return 0 if resp.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
