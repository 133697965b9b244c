"""Replay mode: every call must be a recorded hit; a miss raises `CacheMiss` instead of
making its real call (for tests, CI and notebooks that must run offline and for free)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._errors import CacheMiss

if TYPE_CHECKING:
    from ._cache import Cache
    from ._gate import PendingCall

__all__ = ["ReplayCheck"]


class ReplayCheck:
    """Refuses a real call when the mode in force is "replay"."""

    __slots__ = ("cache",)

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def mode(self, call: PendingCall) -> str:
        opts = call.opts
        if opts is not None and opts.mode is not None:
            return opts.mode
        return self.cache.mode

    def enter(self, call: PendingCall) -> None:
        if self.mode(call) == "replay":
            raise CacheMiss(
                f"replay mode: no recorded entry for {call.identity} in namespace "
                f"{call.namespace.name!r} of workspace {self.cache.workspace!r}; run once in "
                f"'record' mode (LLMCACHE_MODE=record, or options(mode='record')) to record it"
            )

    async def aenter(self, call: PendingCall) -> None:
        self.enter(call)

    def settle(self, ticket: Any, meta: Mapping[str, Any] | None) -> None:
        """Nothing to settle: replay refuses or lets through."""
