"""Generation records: invalidation that no fault and no tampering can undo or lose.

A namespace's entries are keyed under its generation, so a new generation makes all of them
unreachable at once. A generation is a record ``(counter, token)``: `counter` orders them,
`token` is 8 random bytes, so no two invalidations (in any process, before or after a Redis
restart that lost everything) ever produce the same generation. The field ``*`` is the
workspace's own generation, which `clear()` advances.

Records live in every persistent tier, one plain key per field, signed with a keyed BLAKE2b
under the workspace's `generation_key`. Anything that does not verify (garbage, ``inf``, a
counter set back, a record moved from another field or workspace) is an integrity failure:
counted, logged, ignored.

What a process promises itself (and so every process promises the others):

* It never moves a field backwards: it keeps the highest verified record it has seen and
  re-publishes it wherever a tier is missing it, holds a lower one or an invalid one. A
  Redis restarted empty, or a deleted or edited record, gets the current one back within a
  watcher tick.
* A field nobody has a record of gets a fresh random record (counter 1): deleting every
  record is at worst an invalidation, never a resurrection. Processes that meet such a field
  at once (a new workspace, every process starting together) take turns under the
  authority's lock (`try_lock`): the first publishes its record, the others adopt it, so
  they share entries from the first call rather than from the next watcher tick.
* A field whose authority (the most shared persistent tier) cannot be read at first load
  gets a provisional local record (counter 0, random token, never published): nothing cached
  before the process started is served until the authority answers.
* An invalidation stays *pending* until the authority took it, and is re-published until it
  does. A pending invalidation that meets a record at or above its own (from a concurrent
  invalidation, or one it could not see) is re-minted above that record, so two processes'
  invalidations never cancel each other, and neither can leave the pre-invalidation
  generation current.

The one limit: someone with write access who replays a complete, validly signed record older
than the current one, while no running process holds the current one, makes that older
generation current again for new processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from ._keys import KeySchedule
from ._resilience import FAILED, GuardedTier

if TYPE_CHECKING:
    import concurrent.futures

__all__ = [
    "WORKSPACE_FIELD",
    "Generation",
    "GenerationBook",
    "Invalidation",
    "RecordFormat",
    "SharedRuns",
    "function_field",
    "namespace_label",
]

log = logging.getLogger("llmcache")

#: The field `clear()` advances: the generation of the whole workspace.
WORKSPACE_FIELD = "*"


def function_field(namespace: str, function: str) -> str:
    """The generation record of one cached function in a namespace.

    The function is named by a digest of its identity (module and qualified name), so the
    record's key says nothing about the code; the colon keeps it apart from namespace names,
    which cannot hold one.
    """
    digest = hashlib.blake2b(function.encode(), digest_size=8).hexdigest()
    return f"{namespace}:fn:{digest}"


_VERSION = "g1"
_MAX_COUNTER = 2**62  # far beyond any real count; a bound that keeps arithmetic trivial
_COUNTER = re.compile(r"[1-9][0-9]{0,18}\Z")
_TOKEN = re.compile(r"[0-9a-f]{16}\Z")
_ABOVE = re.compile(r"(?:[0-9a-f]{16})?\Z")
_MAC = re.compile(r"[0-9a-f]{32}\Z")
_MAX_RECORD_BYTES = 128
# Claiming a field nobody has a record of: the lock is held for one read and one write, so
# its lease is short; a process that finds it taken re-reads until the record appears, for
# at most `_CLAIM_WAIT`. A tier that refuses the lock or the record (busy: another process
# writing) is asked again for at most `_CLAIM_BUSY_WAIT`: a write lock held elsewhere for
# long, or a tier that cannot write, must not hold up the first call for long. After either,
# this process mints its own record as if alone (the watcher settles all on the highest).
_CLAIM_TTL = 2.0
_CLAIM_WAIT = 2.0
_CLAIM_BUSY_WAIT = 0.25


class Generation(NamedTuple):
    """One generation record. Tuples order by (counter, token): the highest one wins.

    `above` is the token of the record its maker had read from the shared tier when it
    made this one ("" if none): a pending invalidation whose token it names is covered by
    it, since it was made after that invalidation was seen.
    """

    counter: int
    token: str
    above: str = ""

    @property
    def label(self) -> str:
        return f"{self.counter:x}-{self.token}"


def mint(counter: int, above: str = "") -> Generation:
    """A generation nobody has ever had: `counter` and 8 fresh random bytes."""
    return Generation(counter, secrets.token_hex(8), above)


def namespace_label(*generations: Generation) -> str:
    """The generation string a namespace's (or one function's) seeds and key prefixes are
    made from: of the workspace's record, the namespace's and, for one function, its own.

    It names every record: counters in the clear (for people reading keys) and a digest of
    all tokens, so it changes whenever any record does and never repeats.
    """
    tokens = hashlib.blake2b("".join(g.token for g in generations).encode(), digest_size=8)
    counters = ".".join(f"{g.counter:x}" for g in generations)
    return f"{counters}-{tokens.hexdigest()}"


@dataclasses.dataclass(frozen=True)
class Invalidation:
    """What `Cache.invalidate()` did.

    Attributes:
        namespace: the namespace invalidated.
        generation: its new generation.
        published: True when the shared tier (the most shared persistent one) stored it, so
            every other process follows within about a second. False when it is applied in
            this process only so far: it is then re-published until that tier takes it (see
            `cache.health().pending_invalidations`); a cache with no persistent tier has
            nothing to publish to.
    """

    namespace: str
    generation: str
    published: bool

    def __bool__(self) -> bool:  # `if cache.invalidate(...)` reads as "did it reach everyone"
        return self.published


class InvalidRecord(ValueError):
    """A stored generation record that does not parse or does not verify."""


class RecordFormat:
    """How a generation record is named and signed: ``g1:<counter>:<token>:<mac>``."""

    def __init__(self, keys: KeySchedule) -> None:
        self.scope = keys.scope
        self._mac = hashlib.blake2b(key=keys.generation_key, digest_size=16)

    def key(self, field: str) -> str:
        return f"llmc-meta:{self.scope}:gen:{field}"

    def claim_key(self) -> str:
        """The lock under which a field nobody has a record of gets its first one."""
        return f"llmc-meta:{self.scope}:gen-claim"

    def _sign(self, field: str, counter: int, token: str, above: str) -> str:
        mac = self._mac.copy()
        # The scope and field are signed too: a record copied to another field or workspace
        # does not verify there.
        mac.update(f"{_VERSION}\0{self.scope}\0{field}\0{counter}\0{token}\0{above}".encode())
        return mac.hexdigest()

    def seal(self, field: str, generation: Generation) -> bytes:
        counter, token, above = generation
        mac = self._sign(field, counter, token, above)
        return f"{_VERSION}:{counter}:{token}:{above}:{mac}".encode()

    def open(self, field: str, data: object) -> Generation:
        """The record stored as `data`; InvalidRecord for anything that is not one we signed."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidRecord(f"not bytes but {type(data).__name__}")
        if len(data) > _MAX_RECORD_BYTES:
            raise InvalidRecord("too long")
        try:
            version, counter, token, above, mac = bytes(data).decode("ascii").split(":")
        except (UnicodeDecodeError, ValueError):
            raise InvalidRecord("malformed") from None
        if version != _VERSION or not (
            _COUNTER.match(counter)
            and _TOKEN.match(token)
            and _ABOVE.match(above)
            and _MAC.match(mac)
        ):
            raise InvalidRecord("malformed")
        value = int(counter)
        if value > _MAX_COUNTER:
            raise InvalidRecord("counter out of range")
        if not hmac.compare_digest(mac, self._sign(field, value, token, above)):
            raise InvalidRecord("bad signature")
        return Generation(value, token, above)


# What one tier said about the fields asked: None if the read failed, else one record per
# field (None where absent or invalid).
_Reading = list[Generation | None] | None


class GenerationBook:
    """This process's view of a workspace's generation records, and their upkeep.

    `_lock` guards the dictionaries and is held only briefly (no I/O under it). `_io` makes
    each read-decide-write round (first load, invalidation, watcher tick) run alone, so one
    round never writes a record another round has already superseded.
    """

    def __init__(self, records: RecordFormat, tiers: Sequence[GuardedTier]) -> None:
        self.records = records
        self.tiers = list(tiers)
        #: The most shared persistent tier: the one that decides, and where an invalidation
        #: must land to be published.
        self.authority = self.tiers[-1] if self.tiers else None
        self._known: dict[str, Generation] = {}
        self._provisional: set[str] = set()
        # This process's invalidations the authority has not settled yet, by field.
        self._pending: dict[str, _Pending] = {}
        self._reported: set[tuple[str, str]] = set()  # (tier, field) integrity failures logged
        self._lock = threading.Lock()
        self._io = threading.Lock()
        _BOOKS.add(self)

    # -- what callers read ---------------------------------------------------------------
    def get(self, field: str) -> Generation | None:
        return self._known.get(field)

    def label(self, fields: Sequence[str]) -> str | None:
        """The generation string of these records (the workspace's first), or None until
        all of them are known."""
        known = self._known
        generations = [known.get(field) for field in fields]
        if any(g is None for g in generations):
            return None
        return namespace_label(*generations)  # type: ignore[arg-type]

    @property
    def pending(self) -> int:
        """Invalidations applied here that the authority has not taken yet."""
        return sum(1 for p in list(self._pending.values()) if not p.seen)

    def is_provisional(self, field: str) -> bool:
        return field in self._provisional

    # -- first load ------------------------------------------------------------------------
    def load(self, fields: Sequence[str]) -> None:
        """Know `fields`: from the tiers if the authority answers, else provisionally."""
        with self._io:
            wanted = [f for f in fields if f not in self._known or f in self._provisional]
            if wanted:
                self._round(wanted)

    def assume_provisional(self, fields: Sequence[str]) -> None:
        """Give unknown fields a provisional record at once, without I/O (a load is late)."""
        with self._lock:
            for field in fields:
                if field not in self._known:
                    self._known[field] = mint(0)
                    self._provisional.add(field)

    # -- invalidation ----------------------------------------------------------------------
    def advance(self, field: str) -> Invalidation:
        """A new generation for `field`, above every record this process can see."""
        with self._io:
            # Read first: a record another process published since our last tick must be
            # below the new one, or our invalidation could lose to a generation older than it.
            self._round([field])
            with self._lock:
                known = self._known.get(field)
                # A provisional record is no basis: it says nothing about the authority.
                basis = None if field in self._provisional else known
                new = mint(1 if known is None else known.counter + 1, basis.token if basis else "")
                self._known[field] = new
                self._provisional.discard(field)
                pending = _Pending(new, basis)
                if self.authority is not None:
                    self._pending[field] = pending
            published = False
            for tier in self.tiers:
                if self._write(tier, field, new) and tier is self.authority:
                    # Read it back: a concurrent writer may have put its own record over ours
                    # (the next rounds then settle it, above both).
                    published = self._read(tier, [field]) == [new]
                    with self._lock:
                        pending.seen += published
        return Invalidation(field, new.label, published)

    # -- the watcher's tick ----------------------------------------------------------------
    def refresh(self) -> bool:
        """Re-read every known field; adopt higher records, repair tiers that are behind.

        True if any field changed. A failed read changes nothing.
        """
        with self._io:
            fields = list(self._known)
            return self._round(fields) if fields else False

    # -- one round: read, decide, write ------------------------------------------------------
    def _round(self, fields: list[str]) -> bool:
        # One read per tier for all fields; None for a tier whose read failed.
        readings = [self._read(tier, fields) for tier in self.tiers]
        unclaimed = self._unclaimed(fields, readings)
        if unclaimed:
            claimed = self._claim(fields, unclaimed)
            if claimed is not None:
                readings[-1] = claimed
        with self._lock:
            before = [self._known.get(f) for f in fields]
            writes: list[tuple[GuardedTier, str, Generation]] = []
            for index, field in enumerate(fields):
                seen = [None if r is None else r[index] for r in readings]
                read = [r is not None for r in readings]
                writes += self._decide(field, seen, read, unclaimed.get(field))
            changed = [self._known.get(f) for f in fields] != before
        # A pending record is confirmed by a later round's read, not by its write: two
        # processes writing at once both succeed, and only one record stays.
        for tier, field, generation in writes:
            self._write(tier, field, generation)
        return changed

    def _unclaimed(self, fields: list[str], readings: list[_Reading]) -> dict[str, Generation]:
        """Fields this process is about to give a first record (`_decide`'s choice for each:
        the highest any tier holds, else a fresh one) while the authority holds none."""
        authority = readings[-1] if readings else None
        if authority is None:
            return {}  # no authority, or it did not answer: nothing to claim there
        unclaimed: dict[str, Generation] = {}
        with self._lock:
            for index, field in enumerate(fields):
                first_load = field not in self._known or field in self._provisional
                if authority[index] is None and first_load and field not in self._pending:
                    seen = [r[index] for r in readings if r is not None]
                    found = [g for g in seen if g is not None]
                    unclaimed[field] = max(found) if found else mint(1)
        return unclaimed

    def _claim(self, fields: list[str], unclaimed: dict[str, Generation]) -> _Reading:
        """Publish first records at the authority one process at a time; what it then holds.

        Without this, processes loading a field at once each read "none", each mint their
        own and each write it: the last write stays, but every process keeps its own record
        (so no entry is shared) until a watcher tick. Under the authority's lock, the first
        process writes its record and the others, which wait for it, adopt it. A lock or a
        write the tier refuses (busy: another process is writing) is tried again, briefly
        (see `_CLAIM_BUSY_WAIT`). None if the authority cannot take locks or cannot be read: then
        `_decide` mints as before, and the watcher settles on the highest record in a tick.
        """
        authority = self.authority
        if authority is None or not authority.backend.supports_locks:
            return None
        key = self.records.claim_key()
        started = time.monotonic()
        pause = 0.002
        while True:
            token = authority.call("try_lock", key, _CLAIM_TTL)
            if isinstance(token, str):
                try:
                    reading = self._claim_locked(fields, unclaimed)
                finally:
                    authority.call("unlock", key, token)
            else:  # another process holds it (None) or the tier was busy (FAILED)
                reading = self._read(authority, fields)
            if reading is None:
                return None
            if all(reading[fields.index(f)] is not None for f in unclaimed):
                return reading
            # Only a claim another process holds is worth the long wait: its record is on
            # its way. A refused lock, or our own write that did not land, is the tier's.
            waited = time.monotonic() - started
            if waited >= (_CLAIM_WAIT if token is None else _CLAIM_BUSY_WAIT):
                return reading
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _claim_locked(self, fields: list[str], unclaimed: dict[str, Generation]) -> _Reading:
        authority = self.authority
        assert authority is not None
        reading = self._read(authority, fields)  # another process may have claimed them first
        if reading is None:
            return None
        for index, field in enumerate(fields):
            if field in unclaimed and reading[index] is None:
                self._write(authority, field, unclaimed[field])
        return self._read(authority, fields)

    def _decide(
        self,
        field: str,
        seen: list[Generation | None],
        read: list[bool],
        first: Generation | None = None,
    ) -> list[tuple[GuardedTier, str, Generation]]:
        """Settle one field from what each tier holds (`seen`, where `read` succeeded).

        `first`: the record this round meant to claim for a field nobody had one of (the
        one to keep if the claim did not land, so the record this process writes is the one
        it tried to publish).

        Returns the writes that bring the tiers that are behind up to the settled record.
        """
        found = [r for r in seen if r is not None]
        highest = max(found) if found else None
        known = self._known.get(field)
        pending = self._pending.get(field)
        # The authority is the last tier; `read[-1]` is whether it answered.
        authority_read = bool(read) and read[-1]
        if pending is not None:
            self._settle(field, pending, seen[-1] if authority_read else _UNREAD)
            self._known[field] = pending.record
        elif known is None or field in self._provisional:
            if self.tiers and not authority_read:
                if known is None:  # unknown is never "generation 0": nothing old is served
                    self._known[field] = mint(0)
                    self._provisional.add(field)
                return []  # a provisional record is never published
            # Nobody has a record: a fresh one, so entries from before any lost record
            # can never be current again.
            self._known[field] = highest if highest is not None else first or mint(1)
            self._provisional.discard(field)
        elif highest is not None and highest > known:
            self._known[field] = highest
        current = self._known[field]
        # Repair the tiers that answered and are behind (missing, invalid or lower).
        return [
            (tier, field, current)
            for tier, was_read, held in zip(self.tiers, read, seen, strict=True)
            if was_read and (held is None or held < current)
        ]

    def _settle(self, field: str, pending: _Pending, held: Generation | object | None) -> None:
        """Move a pending invalidation on, given what the authority holds (`held`).

        Settled once the authority showed our record, or one made above it, in two rounds:
        one is not enough, as another process that read the tier just before our write may
        still put its own record over ours (that one is then not "above" ours, and ours is
        re-made above it).
        """
        if held is _UNREAD:
            return
        assert held is None or isinstance(held, Generation)
        record, basis = pending.record, pending.basis
        if held is not None and (held == record or held.above == record.token):
            pending.record = max(record, held)
            pending.seen += 1
            if pending.seen >= 2:
                del self._pending[field]
        elif held is not None and (basis is None or held > basis):
            # The authority holds a record we did not know when we invalidated: maybe a
            # concurrent invalidation, maybe the generation from before ours. Ours must end
            # up above it, and say so, so that its maker sees its own is covered.
            top = max(held, record)
            pending.record = mint(top.counter + 1, held.token)
            pending.basis = held
            pending.seen = 0
        else:  # missing, invalid, or one we knew: ours is written (again)
            pending.seen = 0

    def _read(self, tier: GuardedTier, fields: list[str]) -> _Reading:
        found = tier.call("get_many", [self.records.key(f) for f in fields])
        if found is FAILED or not isinstance(found, list) or len(found) != len(fields):
            return None
        readings: list[Generation | None] = []
        for field, data in zip(fields, found, strict=True):
            readings.append(None if data is None else self._open(tier, field, data))
        return readings

    def _open(self, tier: GuardedTier, field: str, data: object) -> Generation | None:
        try:
            generation = self.records.open(field, data)
        except InvalidRecord as error:
            tier.counters.integrity_failures += 1
            if (tier.name, field) not in self._reported:  # once, not every tick
                self._reported.add((tier.name, field))
                log.warning(
                    "llmcache: ignoring the generation record of %r in %s (%s); it is "
                    "replaced with this process's current one",
                    field,
                    tier.name,
                    error,
                )
            return None
        self._reported.discard((tier.name, field))
        return generation

    def _write(self, tier: GuardedTier, field: str, generation: Generation) -> bool:
        # `call`, not `GuardedTier.set`: a failed record write must not join the write-back
        # queue, whose late replay could put an older record over a newer one. The next
        # round re-publishes whatever is still missing.
        data = self.records.seal(field, generation)
        return tier.call("set", self.records.key(field), data, None) is not FAILED

    def _after_fork(self) -> None:
        # The parent's rounds may have held these locks at fork(): the child starts afresh.
        self._lock = threading.Lock()
        self._io = threading.Lock()


_UNREAD = object()  # the authority did not answer this round


@dataclasses.dataclass
class _Pending:
    """An invalidation of this process that the authority has not settled yet.

    `basis`: the record it was made above (None if made blind). `seen`: consecutive rounds
    in which the authority held it (or a record made above it).
    """

    record: Generation
    basis: Generation | None
    seen: int = 0


class SharedRuns:
    """One background run per name at a time, awaited by any number of threads and loops."""

    def __init__(self) -> None:
        self._running: dict[str, concurrent.futures.Future[None]] = {}
        self._lock = threading.Lock()
        _RUNS.add(self)

    def start(self, name: str, function: Callable[[], None]) -> concurrent.futures.Future[None]:
        import concurrent.futures  # at a cache's first load, not at `import llmcache`

        with self._lock:
            future = self._running.get(name)
            if future is not None:
                return future
            future = self._running[name] = concurrent.futures.Future()
            future.set_running_or_notify_cancel()  # a waiter giving up cannot cancel it
        # A thread of its own, not a pool: first loads are rare, and a pool whose workers
        # are all stuck on a hung tier would delay them past any deadline.
        threading.Thread(
            target=self._run, args=(name, future, function), name="llmcache-load", daemon=True
        ).start()
        return future

    def _run(
        self, name: str, future: concurrent.futures.Future[None], function: Callable[[], None]
    ) -> None:
        import concurrent.futures  # loaded by `start`

        try:
            function()
        except BaseException as error:  # handed to the waiters, who fail open
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_exception(error)
        else:
            future.set_result(None)
        finally:
            with self._lock:
                if self._running.get(name) is future:
                    del self._running[name]

    def _after_fork(self) -> None:
        self._running = {}  # their threads did not survive the fork
        self._lock = threading.Lock()


_BOOKS: weakref.WeakSet[GenerationBook] = weakref.WeakSet()
_RUNS: weakref.WeakSet[SharedRuns] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for book in list(_BOOKS):
        book._after_fork()
    for runs in list(_RUNS):
        runs._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
