"""How a process of this project authenticates to NATS (the gateway and `nats-s3 admin` alike)."""

from __future__ import annotations

from .settings import Settings


def nats_auth_options(settings: Settings) -> dict[str, object]:
    """nats-py connect options for the user/password, token, NKey seed or .creds file given."""
    options: dict[str, object] = {}
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password or ""
    if settings.nats_token:
        options["token"] = settings.nats_token
    if settings.nats_nkey_file:
        options["nkeys_seed"] = str(settings.nats_nkey_file)
    if settings.nats_creds_file:
        options["user_credentials"] = str(settings.nats_creds_file)
    return options
