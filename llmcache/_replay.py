"""Replay mode: every call must be a recorded hit; a miss raises `CacheMiss` instead of
making its real call (for tests, CI and notebooks that must run offline and for free).

The refusal says what to fix. Each recorded entry's encrypted metadata names its call
(`_gate.call_fields`: the site, the request's digest and a keyed hash of each argument), so
the message can name the arguments in which the refused call differs from the nearest
recorded call of the same function, in the same namespace generation: the one with the
most equal argument hashes. No argument value is ever read or printed, only names.

Finding that call reads the memory tier's records and walks the tiers below it with
`Backend.scan` (optional: a tier without it, or one that is down, gives no candidates).
It is a courtesy, so it is bounded: `HINT_ENTRIES` entries and `HINT_SECONDS` at most, and
whatever goes wrong only makes the hint vaguer; it never hides the `CacheMiss`.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import CacheMiss
from ._gate import call_fields
from ._record import Record, decode_entry

if TYPE_CHECKING:
    from ._cache import Cache
    from ._gate import PendingCall
    from ._resilience import GuardedTier

__all__ = ["HINT_ENTRIES", "HINT_SECONDS", "RecordedCalls", "ReplayCheck", "nearest_difference"]

HINT_ENTRIES = 2_000  # recorded entries read at most to find the nearest call
HINT_SECONDS = 0.5  # and for how long at most
_BATCH = 100  # keys read from a tier per `get_many`
_MEMORY_WINDOW = 50_000  # memory entries looked at (a key-prefix test each) under its lock

# What `nearest_difference` returns when nothing of the function was found or could be read.
Difference = tuple[list[str] | None, int]


class ReplayCheck:
    """Refuses a real call when the mode in force is "replay"."""

    __slots__ = ("cache", "refusals")

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        # The latest refusals' messages (not the exceptions: their tracebacks would keep the
        # callers' frames alive): the pytest plugin fails a test whose code caught one.
        self.refusals: collections.deque[str] = collections.deque(maxlen=8)

    def mode(self, call: PendingCall) -> str:
        opts = call.opts
        if opts is not None and opts.mode is not None:
            return opts.mode
        return self.cache.mode

    def enter(self, call: PendingCall) -> None:
        if self.mode(call) == "replay":
            fields = _fields_of(call)
            recorded = RecordedCalls(self.cache, call.prefix, call.identity)
            raise self.refused(call, fields, recorded.nearest(fields), recorded.incomplete)

    async def aenter(self, call: PendingCall) -> None:
        if self.mode(call) == "replay":
            from ._backend import run_in_thread

            fields = _fields_of(call)
            recorded = RecordedCalls(self.cache, call.prefix, call.identity)
            # The tiers below memory are read with blocking calls: off the event loop.
            nearest = await run_in_thread(recorded.nearest, fields)
            raise self.refused(call, fields, nearest, recorded.incomplete)

    def settle(self, ticket: Any, meta: Mapping[str, Any] | None) -> None:
        """Nothing to settle: replay refuses or lets through."""

    def refused(
        self,
        call: PendingCall,
        fields: Mapping[str, Any] | None,
        nearest: Difference,
        incomplete: bool = False,
    ) -> CacheMiss:
        """The `CacheMiss` of `call` (kept in `refusals`): what was refused, how it
        differs, what to do. `incomplete`: not every recorded entry could be read."""
        differs, compared = nearest
        identity = call.identity
        if call.opts is not None and call.opts.refresh:
            hint = "options(refresh=True) is in force, which reads no recorded entry"
        elif fields is None or "args" not in fields:
            hint = "its arguments could not be compared with recorded calls"
        elif differs is None and incomplete:
            hint = (
                f"no recorded call of {identity} was found among the entries that could be "
                f"read (a tier cannot list its entries or is down, or the search stopped "
                f"after {HINT_ENTRIES} entries or {HINT_SECONDS} s)"
            )
        elif differs is None:
            hint = f"no call of {identity} was recorded in this namespace"
        elif differs:
            hint = (
                f"it differs from the nearest of {compared} recorded call"
                f"{'s' if compared > 1 else ''} of this function in: {', '.join(differs)}"
            )
        else:
            hint = (
                "a recorded call has the same arguments, but its entry has expired, is older "
                "than max_age, or was recorded under another sample or version"
            )
        error = CacheMiss(
            f"replay mode: no recorded entry for {identity} in namespace "
            f"{call.namespace.name!r} of workspace {self.cache.workspace!r}: {hint}. Run it "
            f"once in 'record' mode (LLMCACHE_MODE=record, options(mode='record'), or pytest "
            f"--llmcache=record) to record it",
            identity=identity,
            namespace=call.namespace.name,
            differs=differs,
        )
        self.refusals.append(str(error))
        return error


def _fields_of(call: PendingCall) -> dict[str, Any] | None:
    """The refused call's site, digest and argument hashes (as an entry would record them)."""
    try:
        fields = call_fields(call).get("call")
    except Exception:  # the hint is a courtesy: an argument that will not hash loses it
        return None
    return fields if isinstance(fields, dict) else None


def nearest_difference(
    fields: Mapping[str, Any], recorded: Iterable[Mapping[str, Any]]
) -> Difference:
    """(names of the arguments that differ from the nearest recorded call, calls compared).

    Nearest: the most argument hashes equal to the refused call's, then the fewest that
    differ (an argument only one of them has differs). The names come in the
    refused call's order, then those only the recorded call had. None when nothing was
    recorded. An empty list: a recorded call has the same arguments (its entry is gone or
    unusable, or it differs in what is not an argument: a sample id, a version).
    """
    args = fields.get("args")
    mine: Mapping[str, Any] = args if isinstance(args, Mapping) else {}
    mine_items = mine.items()
    nearest: Mapping[str, Any] | None = None
    best_score = (-1, 0)
    compared = 0
    for other in recorded:
        theirs = other.get("args")
        if not isinstance(theirs, Mapping):
            continue
        compared += 1
        # The most equal arguments; of those, the fewest differences (set operations on
        # the (name, hash) pairs: this runs for up to `HINT_ENTRIES` recorded calls).
        equal = len(mine_items & theirs.items())
        named = len(mine.keys() | theirs.keys())  # each name that differs, counted once
        score = (equal, equal - named)
        if score > best_score:
            best_score, nearest = score, theirs
    if nearest is None:
        return None, compared
    best = [name for name, value in mine_items if nearest.get(name) != value]
    best += [name for name in nearest if name not in mine]
    return best, compared


class RecordedCalls:
    """The recorded calls of one function or endpoint in one namespace generation: the
    `meta["call"]` of its entries in memory and in the tiers below, within the bounds."""

    __slots__ = ("cache", "deadline", "identity", "incomplete", "left", "prefix", "seen")

    def __init__(self, cache: Cache, prefix: str, identity: str) -> None:
        self.cache = cache
        self.prefix = prefix  # the namespace generation's key prefix
        self.identity = identity
        self.left = HINT_ENTRIES
        self.deadline = 0.0
        self.seen: set[str] = set()  # digests already given (an entry is in several tiers)
        self.incomplete = False  # a tier could not be read, or the bounds were reached

    def nearest(self, fields: Mapping[str, Any] | None) -> Difference:
        """`nearest_difference` among the recorded calls (None if nothing can be compared)."""
        if fields is None or "args" not in fields:
            return None, 0
        self.deadline = time.monotonic() + HINT_SECONDS
        return nearest_difference(fields, self.calls())

    def calls(self) -> Iterator[Mapping[str, Any]]:
        """The recorded calls of the function, memory first; each digest once."""
        for record in itertools.chain(self.in_memory(), *map(self.in_tier, self.cache._tiers)):
            call = record.meta.get("call")
            if not isinstance(call, Mapping) or call.get("site") != self.identity:
                continue
            digest = str(call.get("digest"))
            if digest in self.seen:
                continue
            self.seen.add(digest)
            yield call

    def spend(self) -> bool:
        """Count one more entry read; False once the bounds are reached."""
        self.left -= 1
        if self.left >= 0 and time.monotonic() < self.deadline:
            return True
        self.incomplete = True
        return False

    def in_memory(self) -> Iterator[Record]:
        """The memory tier's records of this namespace generation (expired ones too: a
        recorded call is what is compared, not whether it may be served)."""
        memory = self.cache.memory
        if memory is None:
            return
        # Its order is changed by writers under its lock: a snapshot of the records, taken
        # under the lock, bounded (a key-prefix test each), is read afterwards.
        with memory._lock:
            window = list(itertools.islice(memory._entries.values(), _MEMORY_WINDOW))
        prefix = self.prefix
        for item in window:
            if isinstance(item, Record) and item.signed_key.startswith(prefix):
                if not self.spend():
                    return
                yield item

    def in_tier(self, tier: GuardedTier) -> Iterator[Record]:
        """The entries of this namespace generation in one tier below memory, decrypted;
        nothing from a tier that is down, fails, or cannot list its keys."""
        if tier.reads.is_open() or self.left <= 0 or time.monotonic() >= self.deadline:
            self.incomplete = True
            return
        backend = tier.backend
        aead = self.cache._entry_aead
        is_entry_key = self.cache._keys.is_entry_key
        try:
            keys = (key for key in backend.scan(self.prefix) if is_entry_key(key))
            while True:
                batch = list(itertools.islice(keys, _BATCH))
                if not batch:
                    return
                for key, data in zip(batch, backend.get_many(batch), strict=True):
                    if data is None:
                        continue
                    if not self.spend():
                        return
                    try:
                        yield decode_entry(data, key, aead)
                    except Exception:  # not authentic, or not ours: never a candidate
                        continue
        except Exception:  # NotImplementedError, a tier that is down: no candidates here
            self.incomplete = True
            return
