"""Per-call controls, scoped with a context manager over contextvars.

`contextvars` makes the scope follow the code that opened it: a `with options(...)` block
affects calls made inside it, in this thread or in asyncio tasks created inside it, and
nothing else (other threads, other tasks).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any

from ._errors import ConfigError

__all__ = ["Options", "current_options", "options"]


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """Controls for the calls made inside an `options(...)` block.

    Attributes:
        bypass: neither read nor write the cache; call the function.
        refresh: do not read; call the function and store the fresh result.
        no_store: read as usual, but do not store what a miss computes.
        ttl: store new entries for this many seconds.
        max_age: accept only entries younger than this many seconds.
        namespace: use this namespace instead of the decorator's.
        sample: a sample id that enters the key (and is never sent to a provider), to ask
            for a fresh sample of a nondeterministic call on purpose.
    """

    bypass: bool = False
    refresh: bool = False
    no_store: bool = False
    ttl: float | None = None
    max_age: float | None = None
    namespace: str | None = None
    sample: str | int | None = None


_CURRENT: contextvars.ContextVar[Options | None] = contextvars.ContextVar(
    "llmcache_options", default=None
)
current_options = _CURRENT.get


@contextlib.contextmanager
def options(
    *,
    bypass: bool | None = None,
    refresh: bool | None = None,
    no_store: bool | None = None,
    ttl: float | None = None,
    max_age: float | None = None,
    namespace: str | None = None,
    sample: str | int | None = None,
) -> Iterator[Options]:
    """Change how cached calls behave inside the block; nested blocks add to outer ones."""
    for label, value in (("ttl", ttl), ("max_age", max_age)):
        if value is not None and (not isinstance(value, int | float) or value <= 0):
            raise ConfigError(f"options({label}=...) must be a positive number of seconds")
    given: dict[str, Any] = {
        "bypass": bypass,
        "refresh": refresh,
        "no_store": no_store,
        "ttl": ttl,
        "max_age": max_age,
        "namespace": namespace,
        "sample": sample,
    }
    base = _CURRENT.get() or Options()
    merged = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    token = _CURRENT.set(merged)
    try:
        yield merged
    finally:
        _CURRENT.reset(token)
