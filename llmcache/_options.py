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

__all__ = [
    "BUDGET_ACTIONS",
    "MODES",
    "Options",
    "check_mode",
    "check_seconds",
    "current_options",
    "options",
    "options_for",
    "unknown_names",
]


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
        mode: "record" (the default: serve hits, make and store misses), "replay" (every
            call must be a hit: a miss raises `CacheMiss` instead of calling) or "refresh"
            (re-record: do not read, call and store). Overrides the cache's `mode`.
        budget: what a miss does once a spend budget is used up: "raise" (the default,
            `BudgetExceeded`) or "stale" (serve an expired or too old entry if one is
            still stored, else raise).
        limit_wait: the longest a miss waits for a rate limit's slot, in seconds, before
            `RateLimited`; 0 fails at once (default: the cache's `limit_wait`).
    """

    bypass: bool = False
    refresh: bool = False
    no_store: bool = False
    ttl: float | None = None
    max_age: float | None = None
    namespace: str | None = None
    sample: str | int | None = None
    mode: str | None = None
    budget: str | None = None
    limit_wait: float | None = None


MODES = ("record", "replay", "refresh")
BUDGET_ACTIONS = ("raise", "stale")
_CURRENT: contextvars.ContextVar[Options | None] = contextvars.ContextVar(
    "llmcache_options", default=None
)
current_options = _CURRENT.get
_MODE_OPTIONS = {"replay": Options(mode="replay"), "refresh": Options(mode="refresh", refresh=True)}
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
    mode: str
    budget: str
    limit_wait: float


def check_mode(label: str, value: Any) -> str:
    """One of `MODES`, or a ConfigError that lists them."""
    if value not in MODES:
        raise ConfigError(
            f"{label} must be one of {', '.join(map(repr, MODES))}, not {value!r}: 'replay' "
            f"makes every miss an error (CacheMiss), 'refresh' re-records every call"
        )
    return str(value)


def options_for(cache_mode: str) -> Options | None:
    """The options in force for a cache whose mode is `cache_mode`: the caller's, with the
    cache's mode when the caller set none. The flows read options through this; the hot
    path never sees a cache in refresh mode (`Cache._serving` is off)."""
    opts = _CURRENT.get()
    if cache_mode == "record" or (opts is not None and opts.mode is not None):
        return opts
    refresh = cache_mode == "refresh"
    if opts is None:
        return _MODE_OPTIONS[cache_mode]
    return dataclasses.replace(opts, mode=cache_mode, refresh=opts.refresh or refresh)


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
    if "mode" in changes:
        changes["mode"] = check_mode("options(mode=...)", changes["mode"])
        if changes["mode"] == "refresh":
            changes["refresh"] = True
        elif "refresh" not in changes:  # an inner mode ends an outer block's refresh mode
            changes["refresh"] = False
    if "budget" in changes and changes["budget"] not in BUDGET_ACTIONS:
        raise ConfigError(
            f"options(budget=...) takes 'raise' or 'stale', not {changes['budget']!r}"
        )
    if "limit_wait" in changes:
        wait = changes["limit_wait"]
        changes["limit_wait"] = 0.0 if wait == 0 else check_seconds("options(limit_wait=...)", wait)
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
