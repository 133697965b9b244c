"""The ledger: what every miss cost and what every hit saved, per namespace, model and day.

A miss's usage and cost go into its entry's metadata, so every later hit, in any process,
knows what it saved. Counting happens in memory (a hit adds to a small list) and is flushed
in the background to the most shared tier as counter records, one per workspace and day::

    llmc-ledger:<scope>:<YYYY-MM-DD>          field E("<namespace>|<model>|<metric>") → number
    llmc-ledger:<scope>:days                  field "<YYYY-MM-DD>" → flushes that day (an index)
    llmc-ledger:<scope>:hour:<YYYY-MM-DDTHH>  field E("hour|<metric>") → number

where the scope (``<workspace>#<id from the secret>``) keeps two secrets' ledgers apart, so a
report covers every process and survives kernel restarts; the index lets a report of
"everything" read only the days that have counts. Money spent and money saved are kept
apart, and calls whose price is unknown are counted as such, never as $0.

The hourly records hold the workspace's totals per UTC hour (a few metrics, `HOUR_METRICS`,
not per namespace or model: they stay small), counted and flushed with the daily ones. They
have no index: the last N hours are N keys. Hours from before they were kept have no record,
and read as no data, not as zeros.

At rest, E is AES-SIV under the workspace's `KeySchedule.ledger_key`, as base64url text: a
reader of the shared tier sees no namespace or model name. It is deterministic, so every
process adds to the same field; the amounts and counts themselves are plain numbers, which
a reader can see (and a writer can change: see `Ledger.integrity_failures`).
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._record import Record, parse_meta

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

__all__ = [
    "HIT_BATCH",
    "HOUR_METRICS",
    "METRICS",
    "FieldCipher",
    "Ledger",
    "day_of",
    "epoch_day_of",
    "hour_of",
]

log = logging.getLogger("llmcache")

METRICS = (
    "calls",
    "hits",
    "misses",
    "spent_usd",
    "saved_usd",
    "spent_s",
    "saved_s",
    "input_tokens",
    "output_tokens",
    "saved_input_tokens",
    "saved_output_tokens",
    "unpriced_misses",
    "unpriced_hits",
    # Parts of input_tokens read from / written to the provider's prompt cache. Added after
    # the others: counters are stored by name, so days counted before read them as 0.
    "cache_read_tokens",
    "cache_write_tokens",
    "saved_cache_read_tokens",
    "saved_cache_write_tokens",
)
(
    _CALLS,
    _HITS,
    _MISSES,
    _SPENT_USD,
    _SAVED_USD,
    _SPENT_S,
    _SAVED_S,
    _IN,
    _OUT,
    _SAVED_IN,
    _SAVED_OUT,
    _UNPRICED_MISSES,
    _UNPRICED_HITS,
    _CACHE_READ,
    _CACHE_WRITE,
    _SAVED_CACHE_READ,
    _SAVED_CACHE_WRITE,
) = range(len(METRICS))
# What the hourly records keep, in this order (a bucket is a list of these).
HOUR_METRICS = (
    "calls",
    "hits",
    "misses",
    "spent_usd",
    "saved_usd",
    "spent_s",
    "saved_s",
    "unpriced_misses",
    "unpriced_hits",
)
(
    _H_CALLS,
    _H_HITS,
    _H_MISSES,
    _H_SPENT_USD,
    _H_SAVED_USD,
    _H_SPENT_S,
    _H_SAVED_S,
    _H_UNPRICED_MISSES,
    _H_UNPRICED_HITS,
) = range(len(HOUR_METRICS))
_NO_MODEL = "-"
HIT_BATCH = 4096  # noted hits that make the hit path drain them itself


_EPOCH = datetime.date(1970, 1, 1)


def day_of(epoch_day: int) -> str:
    return (_EPOCH + datetime.timedelta(days=epoch_day)).isoformat()


def hour_of(epoch_hour: int) -> str:
    """An epoch hour (hours since 1970-01-01, UTC) as "YYYY-MM-DDTHH"."""
    moment = datetime.datetime.fromtimestamp(epoch_hour * 3600, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H")


def epoch_day_of(day: str | datetime.date) -> int:
    """The epoch day of a date or of its ISO text ("YYYY-MM-DD"), in UTC like the ledger."""
    date = datetime.date.fromisoformat(day) if isinstance(day, str) else day
    return (date - _EPOCH).days


class FieldCipher:
    """Deterministic encryption of ledger field names (AES-SIV), both ways memoised.

    The distinct fields written are few (namespaces x models x metrics), so each is
    encrypted once. What is read back may be anything someone wrote: a name that does not
    decrypt reads as None, and the memo of those is bounded.
    """

    _MEMO_LIMIT = 4096

    def __init__(self, key: bytes, scope: str) -> None:
        # cryptography is loaded by the first cache built, not by `import llmcache`.
        from cryptography.hazmat.primitives.ciphers.aead import AESSIV

        self._aead: AESSIV = AESSIV(key)
        self._context = [b"llmc-ledger-field", scope.encode()]
        self._sealed: dict[str, str] = {}
        self._opened: dict[str, str | None] = {}

    def seal(self, field: str) -> str:
        sealed = self._sealed.get(field)
        if sealed is None:
            raw = self._aead.encrypt(field.encode(), self._context)
            sealed = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
            self._sealed[field] = sealed
            self._opened[sealed] = field
        return sealed

    def open(self, sealed: str) -> str | None:
        """The field name, or None if `sealed` is not one this key sealed."""
        if sealed in self._opened:
            return self._opened[sealed]
        from cryptography.exceptions import InvalidTag  # loaded with AESSIV, in __init__

        try:
            raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
            field: str | None = self._aead.decrypt(raw, self._context).decode()
        except (InvalidTag, ValueError, binascii.Error):
            field = None
        if len(self._opened) >= self._MEMO_LIMIT:
            self._opened = {v: k for k, v in self._sealed.items()}  # keep what we wrote
        self._opened[sealed] = field
        return field


def _amount(value: Any) -> float | None:
    """A stored count as a float; None if it is not a finite number (someone wrote it)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class Ledger:
    """In-memory counters per (day, namespace, model), flushed to a counter store.

    Counting is exact under threads: every change to the pending counts (a miss, a drain of
    noted hits, a flush taking them, a failed flush putting them back) holds `_lock`, so no
    increment races another or lands in a bucket a flush has already taken.
    """

    def __init__(self, scope: str, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self.scope = scope
        # Wall-clock seconds: the day a count falls in. The cache's clock (`Cache(clock=...)`),
        # so that a test that moves time moves the days too.
        self.clock = clock
        self.fields = FieldCipher(key, scope)
        # Stored fields skipped because they are not ours: a name that does not decrypt or
        # parse, or a value that is not a finite number. Counted, logged, never raised.
        self.integrity_failures = 0
        self._pending: dict[tuple[int, str, str], list[float]] = {}
        # The same counts per epoch hour, workspace-wide (`HOUR_METRICS`), under `_lock` too.
        self._pending_hours: dict[int, list[float]] = {}
        # Hits are noted as (namespace, record) and summed later, off the hit path. The
        # watcher drains them every half second, so they land in the right day's bucket.
        # Never rebound (drained in place): call sites hold this very list.
        self.noted_hits: list[tuple[str, Record | bytes]] = []
        self._lock = threading.Lock()
        # Two threads draining at once (the watcher, and a hit that filled the list) must not
        # both take the same prefix: that would count it twice and drop what followed.
        self._drain_lock = threading.Lock()

    def key_for(self, epoch_day: int) -> str:
        return f"llmc-ledger:{self.scope}:{day_of(epoch_day)}"

    def hour_key_for(self, epoch_hour: int) -> str:
        return f"llmc-ledger:{self.scope}:hour:{hour_of(epoch_hour)}"

    @property
    def days_key(self) -> str:
        return f"llmc-ledger:{self.scope}:days"

    def recorded_days(self, read: Callable[[str], Mapping[str, float] | None]) -> list[int]:
        """Epoch days that have stored counts (from the index), plus days with pending ones."""
        days = set()
        for day in read(self.days_key) or {}:
            try:
                days.add(epoch_day_of(day))
            except (TypeError, ValueError):
                self._reject(f"day {day!r} in the index")
        with self._lock:
            days.update(slot[0] for slot in self._pending)
        if self.noted_hits:
            days.add(int(self.clock() // 86400))
        return sorted(days)

    def _bucket(self, namespace: str, model: str) -> list[float]:
        """Today's pending counts of a namespace and model (the caller holds `_lock`)."""
        slot = (int(self.clock() // 86400), namespace, model)
        bucket = self._pending.get(slot)
        if bucket is None:
            bucket = self._pending[slot] = [0.0] * len(METRICS)
        return bucket

    def _hour_bucket(self) -> list[float]:
        """This hour's pending workspace totals (the caller holds `_lock`)."""
        epoch_hour = int(self.clock() // 3600)
        bucket = self._pending_hours.get(epoch_hour)
        if bucket is None:
            bucket = self._pending_hours[epoch_hour] = [0.0] * len(HOUR_METRICS)
        return bucket

    def _reject(self, what: str) -> None:
        self.integrity_failures += 1
        log.warning("llmcache: skipping %s of the ledger: not written by this workspace", what)

    def hit(self, namespace: str, record: Record) -> None:
        """Count a hit: one list append, summed in `drain_hits`.

        The hottest paths (`CallSite.memory_hit` and `CallSite.lower_hit`) inline these lines.
        """
        noted = self.noted_hits
        noted.append((namespace, record))
        if len(noted) >= HIT_BATCH:
            self.drain_hits()

    def drain_hits(self) -> None:
        """Sum the hits noted since the last drain into the per-day buckets."""
        # Take a prefix of the one list, in place: a hit appended meanwhile (from another
        # thread) lands after it and is kept for the next drain, never lost.
        noted = self.noted_hits
        with self._drain_lock:
            count = len(noted)
            batch = noted[:count]
            del noted[:count]
        # Counting in C first makes the drain cost per distinct entry, not per hit. A hit is
        # noted with its record (memory hits: one object per entry) or, for an entry decoded
        # afresh from a lower tier, with its stored metadata bytes; either way, hits on the
        # same stored entry fall into one group whose metadata is parsed once.
        by_meta: dict[tuple[str, Any], list[Any]] = {}
        for (namespace, source), count in collections.Counter(batch).items():
            group = (namespace, source if isinstance(source, bytes) else source.meta_identity)
            found = by_meta.get(group)
            if found is None:
                by_meta[group] = [source, count]
            else:
                found[1] += count
        counted = [
            (namespace, parse_meta(source) if isinstance(source, bytes) else source.meta, count)
            for (namespace, _), (source, count) in by_meta.items()
        ]
        with self._lock:
            for namespace, meta, count in counted:
                self._count_hits(namespace, meta, count)

    def _count_hits(self, namespace: str, meta: Mapping[str, Any], count: int) -> None:
        """Add `count` hits on one entry (the caller holds `_lock`)."""
        bucket = self._bucket(namespace, meta.get("model", _NO_MODEL))
        hour = self._hour_bucket()
        saved_s = meta.get("latency_s", 0.0) * count
        bucket[_CALLS] += count
        bucket[_HITS] += count
        bucket[_SAVED_S] += saved_s
        hour[_H_CALLS] += count
        hour[_H_HITS] += count
        hour[_H_SAVED_S] += saved_s
        cost = meta.get("cost_usd")
        if cost is None:
            if "input_tokens" in meta:
                bucket[_UNPRICED_HITS] += count
                hour[_H_UNPRICED_HITS] += count
        else:
            bucket[_SAVED_USD] += cost * count
            hour[_H_SAVED_USD] += cost * count
        # A hit avoids the whole original call: its stored cost above (cache reads and writes
        # priced as they were billed), and every token it used, cache parts included.
        bucket[_SAVED_IN] += meta.get("input_tokens", 0) * count
        bucket[_SAVED_OUT] += meta.get("output_tokens", 0) * count
        bucket[_SAVED_CACHE_READ] += meta.get("cache_read_tokens", 0) * count
        bucket[_SAVED_CACHE_WRITE] += meta.get("cache_write_tokens", 0) * count

    def miss(self, namespace: str, meta: Mapping[str, Any]) -> None:
        """Count a real call, what it cost and how long it took."""
        with self._lock:
            self._count_miss(namespace, meta)

    def _count_miss(self, namespace: str, meta: Mapping[str, Any]) -> None:
        bucket = self._bucket(namespace, meta.get("model", _NO_MODEL))
        hour = self._hour_bucket()
        spent_s = meta.get("latency_s", 0.0)
        bucket[_CALLS] += 1
        bucket[_MISSES] += 1
        bucket[_SPENT_S] += spent_s
        hour[_H_CALLS] += 1
        hour[_H_MISSES] += 1
        hour[_H_SPENT_S] += spent_s
        cost = meta.get("cost_usd")
        if cost is None:
            if "input_tokens" in meta:
                bucket[_UNPRICED_MISSES] += 1
                hour[_H_UNPRICED_MISSES] += 1
        else:
            bucket[_SPENT_USD] += cost
            hour[_H_SPENT_USD] += cost
        bucket[_IN] += meta.get("input_tokens", 0)
        bucket[_OUT] += meta.get("output_tokens", 0)
        bucket[_CACHE_READ] += meta.get("cache_read_tokens", 0)
        bucket[_CACHE_WRITE] += meta.get("cache_write_tokens", 0)

    def take_pending(self) -> dict[tuple[int, str, str], list[float]]:
        """Take the pending daily counts (the hourly ones stay: `take_pending_hours`)."""
        self.drain_hits()
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def take_pending_hours(self) -> dict[int, list[float]]:
        """Take the pending hourly totals (the daily counts stay: `take_pending`)."""
        self.drain_hits()
        with self._lock:
            hours, self._pending_hours = self._pending_hours, {}
        return hours

    def restore(
        self,
        pending: Mapping[tuple[int, str, str], list[float]],
        hours: Mapping[int, list[float]] | None = None,
    ) -> None:
        """Put back counts whose flush failed, so nothing is lost."""
        with self._lock:
            for slot, values in pending.items():
                bucket = self._pending.setdefault(slot, [0.0] * len(METRICS))
                for i, value in enumerate(values):
                    bucket[i] += value
            for epoch_hour, values in (hours or {}).items():
                bucket = self._pending_hours.setdefault(epoch_hour, [0.0] * len(HOUR_METRICS))
                for i, value in enumerate(values):
                    bucket[i] += value

    def flush(self, write: Callable[[str, dict[str, float]], bool]) -> bool:
        """Send pending counts through `write(key, deltas)`; keep those it could not send."""
        self.drain_hits()
        with self._lock:  # days and hours taken together: a count is in both or in neither
            pending, self._pending = self._pending, {}
            hours, self._pending_hours = self._pending_hours, {}
        by_day: dict[int, dict[str, float]] = {}
        for (epoch_day, namespace, model), values in pending.items():
            fields = by_day.setdefault(epoch_day, {})
            safe_model = model.replace("|", "/")
            for metric, value in zip(METRICS, values, strict=True):
                if value:
                    field = self.fields.seal(f"{namespace}|{safe_model}|{metric}")
                    fields[field] = fields.get(field, 0.0) + value
        failed: dict[tuple[int, str, str], list[float]] = {}
        written: dict[str, float] = {}
        for epoch_day, fields in by_day.items():
            if fields and not write(self.key_for(epoch_day), fields):
                failed.update({s: v for s, v in pending.items() if s[0] == epoch_day})
            elif fields:
                written[day_of(epoch_day)] = 1.0
        if written:
            write(self.days_key, written)  # best effort: a report also reads pending days
        failed_hours: dict[int, list[float]] = {}
        for epoch_hour, values in hours.items():
            deltas = {
                self.fields.seal(f"hour|{metric}"): value
                for metric, value in zip(HOUR_METRICS, values, strict=True)
                if value
            }
            if deltas and not write(self.hour_key_for(epoch_hour), deltas):
                failed_hours[epoch_hour] = values
        if failed or failed_hours:
            self.restore(failed, failed_hours)
        return not failed and not failed_hours

    def rows(
        self, read: Callable[[str], Mapping[str, float] | None], days: Iterable[int]
    ) -> list[dict[str, Any]]:
        """Stored counts plus unflushed ones, as one dict per (day, namespace, model)."""
        rows: dict[tuple[int, str, str], dict[str, Any]] = {}

        def row(epoch_day: int, namespace: str, model: str) -> dict[str, Any]:
            slot = (epoch_day, namespace, model)
            if slot not in rows:
                rows[slot] = {"day": day_of(epoch_day), "namespace": namespace, "model": model}
                rows[slot].update(dict.fromkeys(METRICS, 0.0))
            return rows[slot]

        self.drain_hits()
        wanted = set(days)
        for epoch_day in sorted(wanted):
            for sealed, stored in (read(self.key_for(epoch_day)) or {}).items():
                field = self.fields.open(sealed)
                parts = field.rsplit("|", 2) if field is not None else ()
                amount = _amount(stored)
                if len(parts) != 3 or parts[2] not in METRICS or amount is None:
                    self._reject(f"field {sealed!r} of {day_of(epoch_day)}")
                    continue
                namespace, model, metric = parts
                row(epoch_day, namespace, model)[metric] += amount
        with self._lock:
            pending = {s: list(v) for s, v in self._pending.items()}
        for (epoch_day, namespace, model), values in pending.items():
            if epoch_day in wanted:
                target = row(epoch_day, namespace, model.replace("|", "/"))
                for metric, value in zip(METRICS, values, strict=True):
                    target[metric] += value
        return [rows[slot] for slot in sorted(rows)]

    def hour_rows(
        self, read: Callable[[str], Mapping[str, float] | None], hours: Iterable[int]
    ) -> list[dict[str, Any]]:
        """Stored totals plus unflushed ones, one dict per epoch hour that has any, in order.

        A dict has "hour" ("YYYY-MM-DDTHH", UTC), "epoch_hour" and every `HOUR_METRICS`. An
        hour without a record (none of its counts flushed yet, or from before hours were
        kept) and without pending counts is left out, not given zeros.
        """
        rows: dict[int, dict[str, Any]] = {}

        def row(epoch_hour: int) -> dict[str, Any]:
            if epoch_hour not in rows:
                rows[epoch_hour] = {"hour": hour_of(epoch_hour), "epoch_hour": epoch_hour}
                rows[epoch_hour].update(dict.fromkeys(HOUR_METRICS, 0.0))
            return rows[epoch_hour]

        self.drain_hits()
        wanted = set(hours)
        for epoch_hour in sorted(wanted):
            stored = read(self.hour_key_for(epoch_hour)) or {}
            for sealed, value in stored.items():
                field = self.fields.open(sealed)
                metric = field[5:] if field is not None and field.startswith("hour|") else None
                amount = _amount(value)
                if metric not in HOUR_METRICS or amount is None:
                    self._reject(f"field {sealed!r} of hour {hour_of(epoch_hour)}")
                    continue
                row(epoch_hour)[metric] += amount
        with self._lock:
            pending = {h: list(v) for h, v in self._pending_hours.items() if h in wanted}
        for epoch_hour, values in pending.items():
            target = row(epoch_hour)
            for metric, value in zip(HOUR_METRICS, values, strict=True):
                target[metric] += value
        return [rows[epoch_hour] for epoch_hour in sorted(rows)]

    def forget_after_fork(self) -> None:
        """In a forked child: drop the counts copied from the parent, which flushes its own."""
        self._lock = threading.Lock()  # may have been held by a thread the child does not have
        self._drain_lock = threading.Lock()
        self._pending = {}
        self._pending_hours = {}
        del self.noted_hits[:]  # in place: call sites hold this very list
