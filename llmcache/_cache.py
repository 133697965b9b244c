"""`Cache`: the tiers, the workspace's keys, namespaces, and the operations on all of them."""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._backend import Backend
from ._checks import DEFAULT_LIMIT_WAIT, install_checks
from ._config import load_or_create_secret
from ._errors import ConfigError
from ._flights import Flights
from ._fork import track_for_fork
from ._gate import Gate
from ._generations import WORKSPACE_FIELD, Invalidation, function_field
from ._keys import KeySchedule, check_name
from ._ledger import Ledger
from ._memory import MemoryTier
from ._namespaces import GenerationWatcher, Namespace, Namespaces
from ._options import check_mode, check_seconds
from ._registry import backend_from_url, load_providers
from ._resilience import FAILED, GuardedTier
from ._site import SiteCounters
from ._usage import UsageHook

if TYPE_CHECKING:
    from ._budget import BudgetCheck
    from ._decorator import CachedDecorator, CachedFunction
    from ._report import Report
    from ._sharing import ExportSummary, ImportSummary
    from ._site import CallSite
    from ._stats import CacheStats, Health

__all__ = ["Cache"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")
DEFAULT_TIERS = ("memory", "disk")
DEFAULT_LOCK_TTL = 3.0
DEFAULT_LOCK_WAIT = 60.0
_SECRET_HINT = (
    "set LLMCACHE_SECRET or pass Cache(secret=...) with the same value in every process that "
    "shares the tier; make one with: python -c 'import secrets; print(secrets.token_hex(32))'"
)


def _positive_seconds(name: str, value: float, zero_ok: bool = False) -> float:
    """`value` as seconds, or a ConfigError that says what is wanted (nan is not a number)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (value >= 0 if zero_ok else value > 0)
        or value == float("inf")
    ):
        wanted = "zero or more" if zero_ok else "more than zero"
        raise ConfigError(f"{name} must be a finite number of seconds, {wanted}; got {value!r}")
    return float(value)


def _as_secret(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


class Cache:
    """A cache for LLM calls: a workspace, its secret, and an ordered list of tiers.

    Args:
        workspace: the tenant name; entries of different workspaces never mix.
        secret: signs keys and entries. Required when any tier is shared (Redis, Upstash);
            the embedded default generates one and keeps it, mode 0600, in the cache folder.
        tiers: tier URLs or `Backend` objects, fastest first. Default: memory, then disk.
        ttl: default time to live of new entries in seconds (None: no expiry).
        namespace: default namespace of `cached` functions.
        enabled: False makes every cached call go straight to the real function.
        compress_above: lz4-compress entries larger than this many bytes.
        lock_ttl: the lease of a cross-process single-flight lock, in seconds: its leader
            renews it while its call runs, so a crashed leader blocks the others for about
            this long; waiters give up and call after `lock_wait` (default: 60 s or
            `lock_ttl`, whichever is longer).
        clock: wall-clock seconds, `time.time` by default: when entries are made and when
            they expire, in the core and in every tier that keeps time itself (memory, disk).
            Tests pass a fake one to move time instead of waiting, like
            `cachetools.TTLCache(timer=...)`.
        mode: "record" (the default), "replay" (every call must be a hit: a miss raises
            `CacheMiss`; for tests, CI and notebooks that must not call a provider) or
            "refresh" (re-record every call). Default: the LLMCACHE_MODE environment
            variable, else "record". `options(mode=...)` overrides it for a block.
        limits: rate limits on real calls (hits never count), by model: e.g.
            ``{"gpt-4o-mini": "500/min; 200000 tokens/min", "*": "60/min"}``. Enforced
            across processes through the shared tier (see the README's "Rate limits").
        limit_wait: the longest a miss waits for a rate limit's slot before `RateLimited`
            (seconds; 0 fails at once). `options(limit_wait=...)` overrides it.
        budget_usd: spend budgets from the cross-process ledger: a number (per day, for the
            workspace) or ``{"day": 5.0, "month": 100.0}``, optionally per namespace:
            ``{"research": {"day": 2.0}, "*": {"month": 50}}``. A miss once a budget is
            spent raises `BudgetExceeded` (or, under ``options(budget="stale")``, serves a
            stale entry). Hits are always served.
    """

    def __init__(
        self,
        workspace: str = "default",
        *,
        secret: str | bytes | None = None,
        tiers: Sequence[str | Backend] | None = None,
        ttl: float | None = None,
        namespace: str = "default",
        enabled: bool = True,
        compress_above: int = 1024,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        lock_wait: float | None = None,
        generation_poll: float = 0.5,
        clock: Callable[[], float] | None = None,
        mode: str | None = None,
        limits: Mapping[str, Any] | None = None,
        limit_wait: float = DEFAULT_LIMIT_WAIT,
        budget_usd: float | Mapping[str, Any] | None = None,
    ) -> None:
        check_name("workspace", workspace)
        mode = check_mode(
            "Cache(mode=...)" if mode is not None else "LLMCACHE_MODE",
            mode if mode is not None else os.environ.get("LLMCACHE_MODE") or "record",
        )
        if clock is not None and not callable(clock):
            raise ConfigError(
                f"clock must be a function returning seconds, like time.time; got {clock!r}"
            )
        check_name("namespace", namespace)
        ttl = check_seconds("ttl", ttl)
        backends = [
            backend_from_url(t) if isinstance(t, str) else t for t in (tiers or DEFAULT_TIERS)
        ]
        if not backends:
            raise ConfigError("a cache needs at least one tier, e.g. tiers=['memory']")
        for backend in backends:
            if not isinstance(backend, Backend):
                raise ConfigError(f"tier {backend!r} is neither a URL nor a Backend")
        self.memory: MemoryTier | None = None
        self.clock: Callable[[], float] = clock or time.time
        if clock is not None:
            for backend in backends:
                backend.clock = clock
        if isinstance(backends[0], MemoryTier):
            self.memory = backends[0]
            backends = backends[1:]
        if any(isinstance(b, MemoryTier) for b in backends):
            raise ConfigError("the memory tier must come first in the list of tiers")
        self.workspace = workspace
        self.default_namespace = namespace
        self.ttl = ttl
        self._enabled = enabled
        self._mode = mode
        # What the hot path reads (one attribute): serve hits here, unless the cache is
        # disabled or re-recording. Kept current by the `enabled` and `mode` setters.
        self._serving = enabled and mode != "refresh"
        self.compress_above = compress_above
        self.lock_ttl = _positive_seconds("lock_ttl", lock_ttl)
        self.lock_wait = (
            max(DEFAULT_LOCK_WAIT, self.lock_ttl)
            if lock_wait is None
            else _positive_seconds("lock_wait", lock_wait, zero_ok=True)
        )
        # The tiers below memory, each behind its breakers (`GuardedTier`), and the keys
        # derived from the secret: runtime state, private (`backends` shows the tiers).
        self._tiers = [GuardedTier(b) for b in backends]
        self._keys = KeySchedule(self._resolve_secret(secret, backends), workspace)
        self._entry_aead = self._keys.entry_aead
        persistent = [t for t in self._tiers if t.backend.persistent]
        self._persistent = persistent
        # The most shared tier holds counters (ledger) and takes cross-process locks: the last
        # persistent one, else the last tier of all (a third-party tier that does not
        # persist still keeps counts); with only the memory tier, the memory tier.
        self._authority: GuardedTier | None = (
            persistent[-1] if persistent else self._tiers[-1] if self._tiers else None
        )
        lockers = [t for t in self._tiers if t.backend.supports_locks]
        self._lock_tier: GuardedTier | None = lockers[-1] if lockers else None
        self.ledger = Ledger(self._keys.scope, self._keys.ledger_key, self.clock)
        self._lock = threading.Lock()
        self._namespaces = Namespaces(self._keys, persistent, namespace, self._start_watcher)
        # The sites of this cache, held weakly: a site that is gone leaves its counts in
        # `_retired`, so `stats()` still adds them up.
        self._sites: weakref.WeakSet[CallSite] = weakref.WeakSet()
        self._retired = SiteCounters()
        # Per-extension state (see `llmcache.ext.extension_state`): adapters keep theirs here.
        self._extension_state: dict[str, Any] = {}
        # In-flight real calls, for single-flight across threads and event loops.
        self._flights = Flights()
        # The checks a real call passes first: replay mode, budgets, rate limits (`_gate`).
        self._gate = Gate()
        self._budget: BudgetCheck | None = None  # set by install_checks, with `budget_usd`
        self.limit_wait = _positive_seconds("limit_wait", limit_wait, zero_ok=True)
        install_checks(self, limits, budget_usd)
        track_for_fork(self)
        self._watcher: GenerationWatcher | None = None
        self._generation_poll = generation_poll
        self.closed = False
        # Counts not yet flushed when the process exits would be missing from every report.
        atexit.register(_flush_at_exit, weakref.ref(self))

    # -- configuration ---------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """False: every cached call goes straight to the real function (and is counted)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        self._serving = self._enabled and self._mode != "refresh"

    @property
    def mode(self) -> str:
        """ "record", "replay" or "refresh" (see the class's docstring); settable."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = check_mode("Cache.mode", value)
        self._serving = self._enabled and self._mode != "refresh"

    @staticmethod
    def _resolve_secret(secret: str | bytes | None, backends: Sequence[Backend]) -> bytes:
        if secret is not None:
            value = _as_secret(secret)
            if len(value) < 16:
                raise ConfigError(f"the secret is too short (under 16 bytes); {_SECRET_HINT}")
            return value
        shared = [b.name for b in backends if b.shared]
        if shared:
            raise ConfigError(
                f"tier {shared[0]} is shared with other processes or machines, so the cache "
                f"needs an explicit secret (without one, anyone could forge entries): "
                f"{_SECRET_HINT}"
            )
        from ._disk import DiskTier  # sqlite3: only for a cache that has a disk tier

        disks = [b for b in backends if isinstance(b, DiskTier)]
        if disks:
            return load_or_create_secret(Path(disks[0].directory))
        import secrets

        return secrets.token_bytes(32)  # memory only: nothing outlives the process

    # -- the public surface ------------------------------------------------------------------------
    # `llmcache.cached` repeats these overloads for the default cache: type checkers need
    # each signature spelled out.
    @overload
    def cached(self, function: Callable[_P, _R]) -> CachedFunction[_P, _R]: ...

    @overload
    def cached(
        self,
        function: None = None,
        *,
        namespace: str | None = None,
        ttl: float | None = None,
        ignore: Iterable[str] = (),
        version: str | int | None = None,
        usage: UsageHook | None = None,
    ) -> CachedDecorator: ...

    def cached(
        self,
        function: Callable[_P, _R] | None = None,
        *,
        namespace: str | None = None,
        ttl: float | None = None,
        ignore: Iterable[str] = (),
        version: str | int | None = None,
        usage: UsageHook | None = None,
    ) -> CachedFunction[_P, _R] | CachedDecorator:
        """Cache a function (sync or async); use bare or with arguments.

        Args:
            namespace: group of entries, invalidated together (default: the cache's).
            ttl: time to live of this function's entries in seconds.
            ignore: parameter names left out of the key (clients, loggers, callbacks).
            version: bump it when the function's behaviour changes; it salts the key.
            usage: returns model / tokens / cost of a result for the ledger; by default a
                result's own ``.usage`` and ``.model`` are read when present.
        """
        from ._decorator import CachedDecorator

        decorator = CachedDecorator(
            self, namespace=namespace, ttl=ttl, ignore=ignore, version=version, usage=usage
        )
        return decorator(function) if function is not None else decorator

    def site(
        self,
        identity: str,
        # The same options as `CallSite.__init__`, which this builds: the public door to it.
        *,
        returns: Any = None,
        namespace: str | None = None,
        ttl: float | None = None,
        version: str | int | None = None,
        provider: str | None = None,
        usage: UsageHook | None = None,
    ) -> CallSite:
        """A call site keyed by plain request data: the extension point provider adapters use.

        Args:
            identity: a stable name for the endpoint, e.g. "openai.chat.completions.create".
            returns: the type results have (drives the codec, e.g. a pydantic model).
            usage: model / tokens / cost of a result for the ledger (default: the result's own
                ``.usage`` and ``.model``).
        """
        from ._site import CallSite

        return CallSite(
            self,
            identity,
            returns=returns,
            namespace=namespace,
            ttl=check_seconds("site(ttl=...)", ttl),
            version=version,
            provider=provider,
            usage=usage,
        )

    def wrap(self, client: _T, **options: Any) -> _T:
        """Return a caching wrapper of a provider client, e.g. ``cache.wrap(OpenAI())``."""
        providers = load_providers()
        for provider in providers:
            if provider.can_wrap(client):
                return provider.wrap(self, client, **options)  # type: ignore[no-any-return]
        names = ", ".join(p.name for p in providers) or "none installed"
        raise ConfigError(
            f"no provider adapter can wrap a {type(client).__qualname__} (adapters: {names}); "
            f"for OpenAI clients install: pip install 'llmcache[openai]'"
        )

    def namespace(self, name: str | None = None, function: str | None = None) -> Namespace:
        """A namespace (default: the cache's), or one cached function's scope in it."""
        return self._namespaces.get(name, function)

    def load(self, namespace: Namespace) -> Namespace:
        """Know the namespace's current generation (once; the watcher keeps it fresh).

        Bounded: if the tiers do not answer within the load deadline, the namespace goes on
        with a provisional generation (nothing stored before is served) until they do.
        """
        return self._namespaces.load(namespace)

    async def aload(self, namespace: Namespace) -> Namespace:
        """`load` for coroutines: the tiers are read off the event loop, within the deadline."""
        return await self._namespaces.aload(namespace)

    def invalidate(self, namespace: str | None = None) -> Invalidation:
        """Make every entry of `namespace` (default: of the cache's default namespace)
        unreachable in O(1), in this process at once and in every other within a second.

        Returns an `Invalidation`; its `published` is False when the shared tier could not
        take it yet (it is retried until it does, see `health().pending_invalidations`).
        """
        name = check_name("namespace", self.default_namespace if namespace is None else namespace)
        return self._namespaces.advance(name)

    def _clear_function(self, namespace: str, function: str) -> Invalidation:
        """`cache_clear()` of a cached function: its entries in `namespace`, everywhere."""
        return self._namespaces.advance(function_field(namespace, function))

    def delete(self, key: str) -> None:
        """Remove the entry with this signed key (see ``fn.cache_key(...)``) from every tier.

        Only this workspace's entry keys are accepted: the tiers may be shared with other
        workspaces and other data, and this must never delete any of it.
        """
        if not isinstance(key, str) or not self._keys.is_entry_key(key):
            raise ConfigError(
                f"delete() takes one of this cache's entry keys, as returned by "
                f"fn.cache_key(...): '{self._keys.workspace_prefix()}<namespace>:<generation>:"
                f"<32 hex digits>'; {key!r} is not one, so nothing was deleted"
            )
        if self.memory is not None:
            self.memory.discard_where(key)
        for tier in self._tiers:
            tier.call("delete", key)

    def clear(self) -> int:
        """Remove this workspace's entries from every tier (never anything else's)."""
        self._namespaces.advance(WORKSPACE_FIELD)
        removed = 0
        if self.memory is not None:
            removed += self.memory.size()[0]
            self.memory.clear()
        for tier in self._tiers:
            count = tier.call("delete_prefix", self._keys.workspace_prefix())
            removed += count if isinstance(count, int) else 0
        return removed

    def export_bundle(
        self,
        path: str | os.PathLike[str],
        namespace: str | None = None,
        *,
        key: str | bytes | None = None,
        progress: bool = False,
    ) -> ExportSummary:
        """Write `namespace`'s live entries (default: the default namespace) to one bundle
        file, sealed for a bundle key: `key`, else a new one (the summary's `key`). Whoever
        has the file and its key can import it; it holds nothing of this cache's secret."""
        from ._sharing import export_namespace

        return export_namespace(self, path, namespace, key, progress)

    def import_bundle(
        self,
        path: str | os.PathLike[str],
        key: str | bytes,
        *,
        tier: str | None = None,
        namespace: str | None = None,
        progress: bool = False,
    ) -> ImportSummary:
        """Import a bundle made by `export_bundle` (in any workspace) into this one: checked
        whole before anything is written, then re-sealed under this cache's secret in `tier`
        (default: every tier below memory). Its requests are then hits. Idempotent."""
        from ._sharing import import_into

        return import_into(self, path, key, tier, namespace, progress)

    def stats(self) -> CacheStats:
        """Calls, hits and misses in this process, and each tier's counters and size."""
        from ._status import stats_of

        return stats_of(self, self._all_counters())

    def _adopt(self, site: CallSite) -> None:
        """Count `site`'s calls in `stats()`, while it lives and after."""
        self._sites.add(site)
        weakref.finalize(site, self._retired.add, site.counters)

    def _all_counters(self) -> list[SiteCounters]:
        return [self._retired, *(site.counters for site in list(self._sites))]

    def health(self) -> Health:
        """Each tier's breakers, last errors, latency and write queue."""
        from ._status import health_of

        return health_of(self, self._namespaces.pending)

    def report(
        self,
        since: datetime.date | datetime.datetime | str | int | None = None,
        by: Sequence[str] = ("namespace", "model"),
    ) -> Report:
        """Calls, hits, money spent and saved, time saved: from the ledger of every process."""
        from ._report import build_report

        return build_report(self, since=since, by=by)

    def budgets(self) -> list[dict[str, Any]]:
        """Each spend budget (`budget_usd`) and its use now: one dict per budget with scope
        ("*" for the workspace, else a namespace), period ("day" or "month", UTC), name
        (e.g. "day:2026-12-02"), limit_usd, spent_usd, left_usd and used (a fraction).
        Read from every process's spend. A cache given no budgets shows those another
        process of the workspace declared. Empty when there are none."""
        from ._budget import budget_status

        return budget_status(self)

    def report_hours(self, hours: int = 48) -> list[dict[str, Any]]:
        """The workspace's totals per UTC hour, the last `hours` (this one included).

        From the ledger of every process, this one's unflushed counts included: one dict per
        hour that has counts, in order, with "hour" ("YYYY-MM-DDTHH"), "epoch_hour", and
        calls, hits, misses, spent_usd, saved_usd, spent_s, saved_s, unpriced_misses and
        unpriced_hits. Hours without any (or from before the ledger kept hours) are left out.
        """
        if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= 24 * 366:
            raise ConfigError(f"hours= takes a number of hours from 1 to 8784, got {hours!r}")
        now = int(self.clock() // 3600)
        return self.ledger.hour_rows(self.read_counters, range(now - hours + 1, now + 1))

    def flush(self) -> None:
        """Write pending ledger counts to the shared tier now (it also happens every second)."""
        self.ledger.flush(self._write_counters)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._watcher is not None:
            self._watcher.stopped.set()
        self.flush()
        for tier in self._tiers:
            tier.call("close")

    def _after_fork_in_child(self) -> None:
        """Forget, in a forked child, what belongs to the parent (see `_fork`)."""
        self._flights = Flights()  # the parent's calls in flight never land in this process
        self._lock = threading.Lock()  # a thread that held it at the fork is not here
        if self.memory is not None:
            self.memory.after_fork_in_child()  # its lock too, and so the tiers' below
        for tier in self._tiers:
            tier.after_fork_in_child()
        # Threads do not survive fork: the next load starts a watcher of this process, which
        # polls generations (invalidations) and flushes this process's own ledger counts.
        self._watcher = None
        self._namespaces.after_fork_in_child()
        self.ledger.forget_after_fork()
        self._gate.after_fork_in_child()  # the checks' locks and in-process windows

    @property
    def backends(self) -> tuple[Backend, ...]:
        """The tiers' backends, fastest first (the memory tier, when there is one, first)."""
        return (
            *([self.memory] if self.memory is not None else []),
            *(t.backend for t in self._tiers),
        )

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        names = (["memory"] if self.memory else []) + [t.name for t in self._tiers]
        return f"<llmcache.Cache workspace={self.workspace!r} tiers={names}>"

    def _repr_html_(self) -> str:
        return self.stats()._repr_html_()

    # -- counters: generations and ledger --------------------------------------------------------
    def _write_counters(self, key: str, deltas: dict[str, float]) -> bool:
        if self._authority is None:  # the memory tier alone (or no tier at all)
            if self.memory is not None:
                self.memory.incr_counters(key, deltas)
            return True
        return self._authority.call("incr_counters", key, deltas) is not FAILED

    def read_counters(self, key: str) -> dict[str, float]:
        if self._authority is None:
            return self.memory.read_counters(key) if self.memory is not None else {}
        found = self._authority.call("read_counters", key)
        return found if isinstance(found, dict) else {}

    def _start_watcher(self) -> None:
        if self._watcher is None and self._persistent and not self.closed:
            with self._lock:
                if self._watcher is None:
                    self._watcher = GenerationWatcher(self, self._generation_poll, Cache._tick)
                    self._watcher.start()

    @staticmethod
    def _tick(cache: Cache) -> None:
        cache._namespaces.refresh()
        cache.flush()


def _flush_at_exit(reference: weakref.ref[Cache]) -> None:
    cache = reference()
    if cache is not None and not cache.closed:
        with contextlib.suppress(Exception):  # exiting: nothing left to report a failure to
            cache.flush()
