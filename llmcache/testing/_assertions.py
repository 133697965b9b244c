"""Helpers for users' own tests: count the real calls and the hits a block of code made.

from llmcache.testing import count_calls

with count_calls(cache) as calls:
    summarise(doc)
    summarise(doc)
assert calls.real == 1 and calls.hits == 1
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from llmcache._cache import Cache

__all__ = ["CallCounts", "assert_calls", "count_calls"]


@dataclasses.dataclass
class CallCounts:
    """What a block of code did through a cache (filled in when the block ends)."""

    real: int = 0  # real calls made (misses)
    hits: int = 0  # calls served from a tier
    coalesced: int = 0  # calls that waited for an identical in-flight real call
    bypassed: int = 0  # calls that went straight through (bypass, or cache off)

    @property
    def calls(self) -> int:
        return self.real + self.hits + self.coalesced + self.bypassed


def _totals(cache: Cache) -> CallCounts:
    stats = cache.stats()
    return CallCounts(stats.misses, stats.hits, stats.coalesced, stats.bypassed)


@contextlib.contextmanager
def count_calls(cache: Cache) -> Iterator[CallCounts]:
    """Count real calls, hits, coalesced and bypassed calls made inside the block."""
    before = _totals(cache)
    counts = CallCounts()
    try:
        yield counts
    finally:
        after = _totals(cache)
        for field in dataclasses.fields(CallCounts):
            setattr(counts, field.name, getattr(after, field.name) - getattr(before, field.name))


@contextlib.contextmanager
def assert_calls(
    cache: Cache, *, real: int | None = None, hits: int | None = None
) -> Iterator[None]:
    """Fail (AssertionError) unless the block made exactly `real` real calls / `hits` hits."""
    with count_calls(cache) as counts:
        yield
    problems = []
    if real is not None and counts.real != real:
        problems.append(f"expected {real} real call(s), got {counts.real}")
    if hits is not None and counts.hits != hits:
        problems.append(f"expected {hits} hit(s), got {counts.hits}")
    if problems:
        raise AssertionError("; ".join(problems) + f" ({counts})")
