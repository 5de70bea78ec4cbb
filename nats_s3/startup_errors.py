"""Why the gateway did not start, each with a one-line message (in a module of their own, so the
command line and the supervisor of --workers catch them without importing the whole server)."""


class TlsConfigError(Exception):
    """The TLS certificate or key could not be loaded."""


class NatsUnreachable(Exception):
    """NATS was not reached within --nats.connect-timeout."""
