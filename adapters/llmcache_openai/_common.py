"""Pieces the sync and async wrappers share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmcache.ext import Cache, current_options

from ._keys import client_fields

if TYPE_CHECKING:
    from ._sites import Sites

__all__ = [
    "ClientState",
    "Delegate",
    "Endpoints",
    "asks_for_usage",
    "bypassed",
    "is_reusable_response",
    "with_usage_requested",
]


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


# A Responses API result is an answer worth reusing only once the model has finished;
# "incomplete" (it hit max_output_tokens) is as reproducible as a finished one.
_REUSABLE_STATUSES = frozenset({"completed", "incomplete", None})


def is_reusable_response(response: Any) -> bool:
    """Whether a Responses API result may be stored: only a finished answer is reused."""
    return getattr(response, "status", None) in _REUSABLE_STATUSES


def asks_for_usage(kwargs: Mapping[str, Any]) -> bool:
    """True when the caller asked for the usage chunk of a chat completion stream."""
    stream_options = kwargs.get("stream_options")
    return isinstance(stream_options, Mapping) and bool(stream_options.get("include_usage"))


def with_usage_requested(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments, asking the API for the usage chunk (so the stream can be priced)."""
    upstream = dict(kwargs)
    given = kwargs.get("stream_options")
    options = dict(given) if isinstance(given, Mapping) else {}
    options["include_usage"] = True
    upstream["stream_options"] = options
    return upstream


def bypassed(cache: Cache) -> bool:
    """True when the cache is switched off for this call (disabled, or options(bypass=True))."""
    if not cache.enabled:
        return True
    current = current_options()
    return current is not None and current.bypass
