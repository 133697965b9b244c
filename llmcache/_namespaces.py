"""Namespaces, their generations, and the watcher that keeps them current.

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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._generations import (
    WORKSPACE_FIELD,
    GenerationBook,
    Invalidation,
    RecordFormat,
    SharedRuns,
    function_field,
)
from ._io import await_future, wait_future
from ._keys import KeySchedule, check_name

if TYPE_CHECKING:
    from ._cache import Cache
    from ._resilience import GuardedTier

__all__ = ["GenerationWatcher", "Namespace", "Namespaces"]


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


class Namespaces:
    """A cache's namespaces (and each cached function's scope in one), keyed under the
    current generations of their records, which `GenerationBook` keeps in the persistent
    tiers.

    The first call of a namespace loads its records, at most `load_deadline` long (then
    provisionally: nothing stored before is served until the tiers answer). `on_change` is
    called whenever the records were read or changed here: the cache starts its watcher.
    """

    def __init__(
        self,
        keys: KeySchedule,
        persistent: Sequence[GuardedTier],
        default: str,
        on_change: Callable[[], None],
    ) -> None:
        self.keys = keys
        self.default = check_name("namespace", default)
        self._book = GenerationBook(RecordFormat(keys), persistent)
        self._first_loads = SharedRuns()
        # A first load waits for the tiers at most this long, then goes on provisionally.
        self._load_deadline = max((t.async_timeout for t in persistent), default=1.0)
        self._by_fields: dict[tuple[str, ...], Namespace] = {}
        self._lock = threading.Lock()
        self._on_change = on_change

    def get(self, name: str | None = None, function: str | None = None) -> Namespace:
        """A namespace (default: the cache's), or one function's scope in it.

        A function's scope has a generation record of its own besides the workspace's and
        the namespace's, so that its `cache_clear()` drops its entries alone, in every
        process; `invalidate()` of the namespace still drops them too.
        """
        name = check_name("namespace", name or self.default)
        fields: tuple[str, ...] = (WORKSPACE_FIELD, name)
        if function is not None:
            fields += (function_field(name, function),)
        found = self._by_fields.get(fields)
        if found is None:
            with self._lock:
                found = self._by_fields.get(fields)
                if found is None:
                    found = self._by_fields[fields] = Namespace(name, self.keys, fields)
                    label = self._book.label(fields)
                    if label is not None:  # its records are known already (another scope's)
                        found.set_generation(label)
        return found

    # -- the first load of a namespace ------------------------------------------------------
    # The one difference between the two: how the caller waits (see `_io`).
    def load(self, namespace: Namespace) -> Namespace:
        """Know the namespace's current generation (once; the watcher keeps it fresh)."""
        if not namespace.loaded and not wait_future(
            self._start_load(namespace), self._load_deadline
        ):
            self._load_provisionally(namespace)
        return namespace

    async def aload(self, namespace: Namespace) -> Namespace:
        """`load` for coroutines: the tiers are read off the event loop, within the deadline."""
        if not namespace.loaded and not await await_future(
            self._start_load(namespace), self._load_deadline
        ):
            self._load_provisionally(namespace)
        return namespace

    def _start_load(self, namespace: Namespace) -> Any:
        # One load per set of records at a time: callers of the same namespace share it.
        return self._first_loads.start(
            "\x1f".join(namespace.fields), lambda: self._load_now(namespace)
        )

    def _load_now(self, namespace: Namespace) -> None:
        self._book.load(namespace.fields)
        self.apply()  # its scopes and the namespace itself
        self._on_change()

    def _load_provisionally(self, namespace: Namespace) -> None:
        """Late or failed: never a reason to fail the caller's call."""
        self._book.assume_provisional(namespace.fields)
        self.apply()
        self._on_change()  # the watcher keeps asking the tiers

    # -- new generations --------------------------------------------------------------------
    def advance(self, field: str) -> Invalidation:
        """A new generation for `field` (a namespace, a function's, or the workspace's ``*``)."""
        result = self._book.advance(field)
        self.apply()
        self._on_change()  # the watcher re-publishes a pending invalidation
        return result

    def refresh(self) -> None:
        """Read every known record again (the watcher's tick); apply what changed."""
        if self._book.refresh():
            self.apply()

    def apply(self) -> None:
        """Key each namespace under its current generation (those not known yet: untouched)."""
        for namespace in list(self._by_fields.values()):
            label = self._book.label(namespace.fields)
            if label is not None:
                namespace.set_generation(label)

    @property
    def pending(self) -> int:
        """Invalidations applied here that the shared tier has not taken yet."""
        return self._book.pending

    def after_fork_in_child(self) -> None:
        """Every namespace loads again in the child (its watcher is not running yet)."""
        self._lock = threading.Lock()  # a thread that held it at the fork is not here
        for namespace in list(self._by_fields.values()):
            namespace.loaded = False


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
