"""`--workers N`: N gateway processes on one listen port (SO_REUSEPORT), under a supervisor that owns the
embedded nats-server, forwards signals, drains them all on SIGTERM and restarts one that dies."""
