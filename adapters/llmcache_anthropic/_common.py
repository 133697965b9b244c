"""Pieces the sync and async wrappers share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmcache.ext import Cache, current_options

from ._keys import client_fields

if TYPE_CHECKING:
    from ._sites import Sites

__all__ = ["ClientState", "Delegate", "Endpoints", "bypassed"]


class ClientState:
    """What the wrappers of one client read from it on every call, computed once."""

    __slots__ = ("client", "fields")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.fields = client_fields(client)

    def refresh(self) -> None:
        self.fields = client_fields(self.client)


class Delegate:
    """Forwards every attribute it does not define to the SDK object it wraps."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":  # not set yet (copy, pickle): no endless recursion
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._inner)) | set(dir(type(self))))

    def __repr__(self) -> str:
        return f"<llmcache cached {self._inner!r}>"


class Endpoints(Delegate):
    """A resource with cached endpoints: the SDK resource, the client's keyed fields, sites."""

    __slots__ = ("_sites", "_state")

    def __init__(self, inner: Any, state: ClientState, sites: Sites) -> None:
        super().__init__(inner)
        self._state = state
        self._sites = sites


def bypassed(cache: Cache) -> bool:
    """True when the cache is switched off for this call (disabled, or options(bypass=True))."""
    if not cache.enabled:
        return True
    current = current_options()
    return current is not None and current.bypass
