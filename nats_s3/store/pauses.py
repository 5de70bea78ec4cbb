"""Named points in the store's multi-step operations where a test can hold one operation while
others run, to force an interleaving instead of hoping a race hits it. Inactive, a point costs one
attribute test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Hook = Callable[[], Awaitable[None]]


class PausePoints:
    def __init__(self) -> None:
        self.active = False
        self._hooks: dict[str, Hook] = {}

    def set(self, name: str, hook: Hook) -> None:
        self._hooks[name] = hook
        self.active = True

    def clear(self, name: str | None = None) -> None:
        if name is None:
            self._hooks.clear()
        else:
            self._hooks.pop(name, None)
        self.active = bool(self._hooks)

    async def reach(self, name: str) -> None:
        hook = self._hooks.get(name)
        if hook is not None:
            await hook()
