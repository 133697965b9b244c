"""Per-call controls, scoped with a context manager over contextvars.

`contextvars` makes the scope follow the code that opened it: a `with options(...)` block
affects calls made inside it, in this thread or in asyncio tasks created inside it, and
nothing else (other threads, other tasks).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import math
from collections.abc import Iterable, Iterator
from typing import Any, TypedDict, Unpack

from ._errors import ConfigError
from ._keys import check_name

__all__ = ["Options", "check_seconds", "current_options", "options", "unknown_names"]


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
_NAMES = tuple(field.name for field in dataclasses.fields(Options))


class OptionArguments(TypedDict, total=False):
    """The keyword arguments of `options(...)` (for type checkers and editors)."""

    bypass: bool
    refresh: bool
    no_store: bool
    ttl: float
    max_age: float
    namespace: str
    sample: str | int


def check_seconds(label: str, value: Any) -> float | None:
    """A duration in seconds, or None; a one-line ConfigError for anything else.

    Refuses what would slip through a bare `value <= 0`: a str ("10"), a bool, nan (every
    comparison with nan is False) and infinity (write None for "no expiry").
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{label} must be a number of seconds, not a {type(value).__name__} ({value!r}): "
            f"write {label}=10, or None for no limit"
        )
    if not 0 < value < math.inf:  # also false for nan
        raise ConfigError(
            f"{label} must be a finite number of seconds above zero, got {value!r}: "
            f"write None for no limit"
        )
    return float(value)


def unknown_names(where: str, given: Iterable[str], valid: Iterable[str]) -> TypeError | None:
    """A TypeError naming the valid keywords and the closest one, or None if all are valid."""
    valid = tuple(valid)
    unknown = [name for name in given if name not in valid]
    if not unknown:
        return None
    close = difflib.get_close_matches(unknown[0], valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return TypeError(
        f"{where} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}{hint}; "
        f"it takes {', '.join(valid)}"
    )


def options(**given: Unpack[OptionArguments]) -> contextlib.AbstractContextManager[Options]:
    """Change how cached calls behave inside the block; nested blocks add to outer ones.

    Checked when called, before the block: a misspelt name is a TypeError that lists the
    valid ones, a bad value a ConfigError.
    """
    error = unknown_names("llmcache.options()", given, _NAMES)
    if error is not None:
        raise error
    changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    for label in ("ttl", "max_age"):
        if label in changes:
            changes[label] = check_seconds(f"options({label}=...)", changes[label])
    for label in ("bypass", "refresh", "no_store"):
        if label in changes and not isinstance(changes[label], bool):
            raise ConfigError(f"options({label}=...) takes True or False, not {changes[label]!r}")
    if "namespace" in changes:
        check_name("namespace", changes["namespace"])
    sample = changes.get("sample")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, str | int)):
        raise ConfigError(f"options(sample=...) takes a str or an int, not {sample!r}")
    return _scope(changes)


@contextlib.contextmanager
def _scope(changes: dict[str, Any]) -> Iterator[Options]:
    base = _CURRENT.get() or Options()
    merged = dataclasses.replace(base, **changes)
    token = _CURRENT.set(merged)
    try:
        yield merged
    finally:
        _CURRENT.reset(token)
