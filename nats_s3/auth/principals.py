"""Who an access key is: a principal with a stable canonical user id and a display name, as S3 reports
an Owner. From the credentials file's optional `userId` / `displayName`; derived when absent, the same
way every time (the id is the SHA-256 of the access key, the name the access key), so owners shown
before these fields existed stay the same."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from .credentials import Credential
from .policy import Policy, policy_from_document


@dataclass(frozen=True, slots=True)
class Principal:
    access_key: str
    user_id: str
    display_name: str
    admin: bool = False
    policy: Policy | None = None  # the credential's own policy

    @classmethod
    def derived(cls, access_key: str) -> Principal:
        return cls(access_key, hashlib.sha256(access_key.encode()).hexdigest(), access_key)


class Principals:
    """Access key -> principal; replaced whole when the credentials file is reloaded."""

    def __init__(self, credentials: Iterable[Credential] = ()) -> None:
        self._by_key: dict[str, Principal] = {}
        # False while no credential uses `admin` or `policy`: then every key may do everything, as the
        # Go nats-s3's file always meant.
        self.multi_user = False
        self.replace(credentials)

    def replace(self, credentials: Iterable[Credential]) -> None:
        table: dict[str, Principal] = {}
        multi_user = False
        for cred in credentials:
            derived = Principal.derived(cred.access_key)
            policy = policy_from_document(cred.policy, None) if cred.policy is not None else None
            table[cred.access_key] = Principal(
                cred.access_key,
                cred.user_id or derived.user_id,
                cred.display_name or derived.display_name,
                admin=cred.admin,
                policy=policy,
            )
            multi_user = multi_user or cred.scoped
        self._by_key, self.multi_user = table, multi_user

    def by_user_id(self, user_id: str) -> Principal | None:
        """The principal with this canonical user id (any of its keys), if the file still names it."""
        return next((p for p in self._by_key.values() if p.user_id == user_id), None)

    def get(self, access_key: str) -> Principal:
        """The key's principal (derived for a key the file does not name, such as an upload's initiator
        whose key was removed since)."""
        found = self._by_key.get(access_key)
        return found if found is not None else Principal.derived(access_key)
