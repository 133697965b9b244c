"""Namespaces and the watcher that keeps their generations current.

A namespace's entries are keyed under its current generation, so a new generation makes all
of them unreachable at once, without a scan. The generation records themselves (what they
are, where they live, why they never go backwards) are in `_generations`. A background
thread re-reads them twice a second, so the memory tier of every other process stops
serving an invalidated namespace within a second, whether the shared tier is Redis, Upstash
or the disk file.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._keys import KeySchedule, check_name

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = ["GenerationWatcher", "Namespace"]


class Namespace:
    """One namespace of a cache (or one function's entries in it): its name, the generation
    records it is keyed by, and the key material of their current generations.

    `fields` are those records: the workspace's, the namespace's and, for the scope of one
    cached function, that function's own (which its `cache_clear()` advances).

    `state` is one tuple, replaced whole, so a reader never sees a seed from one generation
    with a key prefix from another. `loaded` turns True once `state` holds a generation
    (a verified one, or a provisional one nothing was ever stored under); the hit path
    reads both directly.
    """

    __slots__ = ("fields", "generation", "keys", "loaded", "name", "state")

    def __init__(self, name: str, keys: KeySchedule, fields: tuple[str, ...]) -> None:
        self.name = check_name("namespace", name)
        self.keys = keys
        self.fields = fields
        self.loaded = False
        self.generation = ""
        self.state: tuple[int, str] = (0, "")  # never read before `loaded`

    def set_generation(self, generation: str) -> None:
        """Key everything from now on under `generation` (see `namespace_label`)."""
        if generation != self.generation:
            self.state = (
                self.keys.seed(self.name, generation),
                self.keys.key_prefix(self.name, generation),
            )
            self.generation = generation
        self.loaded = True


class GenerationWatcher(threading.Thread):
    """Polls the shared generations (and flushes the ledger) until its cache is gone."""

    def __init__(self, cache: Cache, interval: float, tick: Callable[[Cache], None]) -> None:
        super().__init__(name="llmcache-watcher", daemon=True)
        self._cache = weakref.ref(cache)
        self._interval = interval
        self._tick = tick
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self._interval):
            cache = self._cache()
            if cache is None:
                return
            # Never let the watcher die: whatever failed, the next tick tries again.
            with contextlib.suppress(Exception):
                self._tick(cache)
            del cache
