"""The HTTPS context for --tls.cert/--tls.key."""

from __future__ import annotations

import ssl

from .settings import Settings
from .startup_errors import TlsConfigError


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load --tls.cert/--tls.key: {exc}") from None
    return context
