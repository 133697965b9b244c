"""Spend budgets: a miss that would start once a budget is spent is refused.

``Cache(budget_usd=...)`` sets budgets per UTC day and/or month, for the whole workspace and
for namespaces (`parse_budgets`). Hits are always served: only a real call is checked.

What has been spent comes from two cross-process sources, and the larger is used:

* the ledger (`_ledger`): every process's priced misses, complete but flushed about once a
  second, so it lags;
* a budget record per period in the most shared tier, ``llmc-ledger:<scope>:budget:<period>``,
  to which every cache with a budget adds a call's cost as soon as the call returns (one
  atomic increment), and which a miss reads before it starts.

So once the budget is spent, every later miss of every process with a budget sees it at
once; the spend can pass the budget only by the calls already in flight when it was reached
(their cost is known only when they return). Each reads the record with one round trip
per period, on the miss path only. Field names in the record are sealed like the ledger's
(a reader of the shared tier sees no namespace name). When the shared tier cannot be read,
the ledger's figure (which includes this process's unflushed spend) is used alone.

A refused miss raises `BudgetExceeded`; under ``options(budget="stale")`` it is served an
entry that is still stored but no longer fresh (expired, or older than ``max_age``), if one
exists, and raises otherwise.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ._errors import BudgetExceeded, ConfigError
from ._gate import Substitute
from ._ledger import day_of
from ._record import Record, decode_entry
from ._render import format_usd
from ._resilience import FAILED

if TYPE_CHECKING:
    from ._cache import Cache
    from ._gate import PendingCall

__all__ = ["WORKSPACE", "BudgetCheck", "budget_status", "parse_budgets"]

PERIODS = ("day", "month")
WORKSPACE = "*"  # the budget of the whole workspace, all namespaces together
# Words for periods we do not have: as a key with an amount, a mistake, not a namespace.
_PERIOD_LIKE = frozenset(
    {"hour", "hourly", "daily", "week", "weekly", "monthly", "year", "yearly", "days", "months"}
)
_LEDGER_REFRESH_S = 5.0  # how stale the ledger's figure may be (it is the slower source)
_EXAMPLE = 'budget_usd=5.0, or {"day": 5.0, "month": 100.0}, or {"research": {"day": 2.0}}'


def parse_budgets(spec: Any) -> dict[str, dict[str, float]]:
    """{scope: {period: limit}} from `Cache(budget_usd=...)`; scope is a namespace or "*".

    A number is the workspace's daily budget; ``{"day": .., "month": ..}`` the workspace's;
    a namespace (or "*") mapped to such a dict (or a number: per day) one namespace's.
    """
    if _is_amount(spec):
        return {WORKSPACE: {"day": _amount("budget_usd", spec)}}
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(f"budget_usd must be a number of dollars or a dict, e.g. {_EXAMPLE}")
    if all(key in PERIODS for key in spec):
        return {WORKSPACE: _periods(WORKSPACE, spec)}
    budgets: dict[str, dict[str, float]] = {}
    for scope, value in spec.items():
        if scope in PERIODS:
            raise ConfigError(
                f"budget_usd mixes periods and namespaces ({scope!r} beside namespaces): put "
                f'the workspace\'s under "*", e.g. {{"*": {{"{scope}": 10.0}}, "research": ...}}'
            )
        if not isinstance(scope, str) or not scope:
            raise ConfigError(f"budget_usd keys are namespaces or '*', not {scope!r}")
        if scope in _PERIOD_LIKE and _is_amount(value):
            raise ConfigError(
                f"budget_usd has a period {scope!r}, which is not one: budgets are per 'day' "
                f"or 'month' (UTC), e.g. {{'day': 5.0, 'month': 100.0}} (a namespace named "
                f"{scope!r} takes a dict: {{{scope!r}: {{'day': 1.0}}}})"
            )
        if scope != WORKSPACE:
            from ._keys import check_name

            check_name("namespace", scope)
        if _is_amount(value):
            budgets[scope] = {"day": _amount(f"budget_usd[{scope!r}]", value)}
        elif isinstance(value, Mapping) and value:
            budgets[scope] = _periods(scope, value)
        else:
            raise ConfigError(
                f"budget_usd[{scope!r}] must be dollars per day or a dict of periods, e.g. "
                f'{{"day": 2.0, "month": 40.0}}; got {value!r}'
            )
    return budgets


def _is_amount(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _amount(label: str, value: Any) -> float:
    if not _is_amount(value) or not 0 <= value < float("inf"):
        raise ConfigError(f"{label} must be a finite number of dollars, 0 or more; got {value!r}")
    return float(value)


def _periods(scope: str, spec: Mapping[Any, Any]) -> dict[str, float]:
    unknown = [key for key in spec if key not in PERIODS]
    if unknown:
        raise ConfigError(
            f"budget_usd[{scope!r}] has unknown period(s) {unknown!r}: use 'day' and/or "
            f"'month' (UTC), e.g. {{'day': 2.0, 'month': 40.0}}"
        )
    return {period: _amount(f"budget_usd[{scope!r}][{period!r}]", v) for period, v in spec.items()}


def period_of(period: str, now: float) -> tuple[str, list[int]]:
    """(its name, e.g. "day:2026-12-02" or "month:2026-12", its epoch days so far)."""
    epoch_day = int(now // 86400)
    if period == "day":
        return f"day:{day_of(epoch_day)}", [epoch_day]
    epoch = datetime.date(1970, 1, 1)
    first = (epoch + datetime.timedelta(days=epoch_day)).replace(day=1)
    first_day = (first - epoch).days
    return f"month:{first:%Y-%m}", list(range(first_day, epoch_day + 1))


_DECLARED_TTL = 40 * 86400.0  # a declaration outlives a month's budget, then goes


def _declared_key(cache: Cache) -> str:
    return f"llmc-ledger:{cache.ledger.scope}:budget:declared"


def declare(cache: Cache, budgets: dict[str, dict[str, float]]) -> None:
    """Keep the budgets in the shared tier, encrypted, so that a report or dashboard of the
    workspace in another process (which was not given them) shows them too."""
    if cache._authority is None:
        return
    key = _declared_key(cache)
    nonce = os.urandom(12)
    sealed = nonce + cache._entry_aead.encrypt(nonce, orjson.dumps(budgets), key.encode())
    cache._authority.call("set", key, sealed, _DECLARED_TTL)


def declared(cache: Cache) -> dict[str, dict[str, float]] | None:
    """The budgets some process of the workspace declared, if any (and authentic)."""
    if cache._authority is None:
        return None
    key = _declared_key(cache)
    data = cache._authority.call("get", key)
    if not isinstance(data, bytes) or len(data) < 28:
        return None
    try:
        plain = cache._entry_aead.decrypt(data[:12], data[12:], key.encode())
        return parse_budgets(orjson.loads(plain))
    except Exception:  # forged, damaged, or from another secret: not ours to show
        return None


def budget_status(cache: Cache) -> list[dict[str, Any]]:
    """`Cache.budgets()`: this cache's budgets, else those another process declared."""
    if cache._budget is not None:
        return cache._budget.status()
    budgets = declared(cache)
    if not budgets:
        return []
    return BudgetCheck(cache, budgets, declare_them=False).status()


class BudgetCheck:
    """The `MissCheck` of `Cache(budget_usd=...)`."""

    def __init__(self, cache: Cache, spec: Any, declare_them: bool = True) -> None:
        self.cache = cache
        self.budgets = parse_budgets(spec)
        if declare_them:
            declare(cache, self.budgets)
        self._lock = threading.Lock()
        # The ledger's spend per (period name, scope), when it was read, and what this
        # process spent since (so a lagging or unreadable ledger still counts our own).
        self._ledger_spent: dict[tuple[str, str], float] = {}
        self._spent_since: dict[tuple[str, str], float] = {}
        self._ledger_read_at = -_LEDGER_REFRESH_S

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # a thread that held it at the fork is not here

    # -- the check -------------------------------------------------------------------------
    def enter(self, call: PendingCall) -> str | Substitute:
        """The call's namespace (the ticket `settle` adds its cost under), or a stale entry
        to serve instead; raises `BudgetExceeded` when a budget of it is spent."""
        refused = self.refusal(call.namespace.name)
        if refused is None:
            return call.namespace.name
        opts = call.opts
        if opts is not None and opts.budget == "stale":
            stale = self.stale_entry(call)
            if stale is not None:
                return stale
        raise refused

    async def aenter(self, call: PendingCall) -> str | Substitute:
        from ._backend import run_in_thread

        # Reading the shared tier blocks: off the event loop, like every tier call.
        return await run_in_thread(self.enter, call)

    def settle(self, ticket: Any, meta: Mapping[str, Any] | None) -> None:
        """Add a returned call's cost to the budget records at once (not with the ledger's
        batch), so the next miss of any process sees it."""
        cost = meta.get("cost_usd") if meta is not None else None
        if not isinstance(cost, int | float) or isinstance(cost, bool) or not cost > 0:
            return
        namespace = ticket if isinstance(ticket, str) else None
        now = self.cache.clock()
        for period in self.periods():
            name, _ = period_of(period, now)
            scopes = [WORKSPACE] if namespace is None else [WORKSPACE, namespace]
            with self._lock:
                for scope in scopes:
                    slot = (name, scope)
                    self._spent_since[slot] = self._spent_since.get(slot, 0.0) + float(cost)
            deltas = {self._field(scope): float(cost) for scope in scopes}
            self.cache._write_counters(self._key(name), deltas)

    # -- what is spent ---------------------------------------------------------------------
    def periods(self) -> list[str]:
        return [p for p in PERIODS if any(p in limits for limits in self.budgets.values())]

    def status(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every budget that applies (to `namespace`, or all): scope, period, its name,
        limit_usd, spent_usd, left_usd and used (a fraction)."""
        now = self.cache.clock()
        rows = []
        for scope, limits in self.budgets.items():
            if namespace is not None and scope not in (WORKSPACE, namespace):
                continue
            for period, limit in limits.items():
                name, days = period_of(period, now)
                spent = self.spent(scope, name, days)
                rows.append(
                    {
                        "scope": scope,
                        "period": period,
                        "name": name,
                        "limit_usd": limit,
                        "spent_usd": spent,
                        "left_usd": max(limit - spent, 0.0),
                        "used": spent / limit if limit else (1.0 if spent else 0.0),
                    }
                )
        return rows

    def refusal(self, namespace: str) -> BudgetExceeded | None:
        """The error of the first budget of `namespace` that is spent, or None."""
        for row in self.status(namespace):
            if row["spent_usd"] >= row["limit_usd"]:
                scope = (
                    f"workspace {self.cache.workspace!r}"
                    if row["scope"] == WORKSPACE
                    else f"namespace {row['scope']!r}"
                )
                adjective = "daily" if row["period"] == "day" else "monthly"
                return BudgetExceeded(
                    f"the {adjective} budget of {scope} is spent: "
                    f"{format_usd(row['spent_usd'], 1e-6)} of {format_usd(row['limit_usd'], 1e-6)} "
                    f"({row['name'].split(':', 1)[1]}, UTC). Hits are still served. Raise it "
                    f"with Cache(budget_usd=...), or serve stale entries under "
                    f"llmcache.options(budget='stale')",
                    spent_usd=row["spent_usd"],
                    limit_usd=row["limit_usd"],
                    period=row["period"],
                    scope=row["scope"],
                )
        return None

    def spent(self, scope: str, name: str, days: list[int]) -> float:
        """The larger of the budget record and the ledger, for one scope and period."""
        stored = self.cache.read_counters(self._key(name))
        recorded = stored.get(self._field(scope), 0.0) if isinstance(stored, dict) else 0.0
        return max(float(recorded), self._from_ledger(scope, name, days))

    def _from_ledger(self, scope: str, name: str, days: list[int]) -> float:
        now = time.monotonic()
        with self._lock:
            if now - self._ledger_read_at >= _LEDGER_REFRESH_S:
                self._ledger_spent = {}
                self._spent_since = {}
                self._ledger_read_at = now
            known = self._ledger_spent.get((name, scope))
            since = self._spent_since.get((name, scope), 0.0)
        if known is not None:
            return known + since
        total = 0.0
        for row in self.cache.ledger.rows(self.cache.read_counters, days):
            if scope in (WORKSPACE, row["namespace"]):
                total += row["spent_usd"]
        with self._lock:
            self._ledger_spent[(name, scope)] = total
        return total + since

    def _key(self, name: str) -> str:
        return f"llmc-ledger:{self.cache.ledger.scope}:budget:{name}"

    def _field(self, scope: str) -> str:
        return self.cache.ledger.fields.seal(f"budget|{scope}")

    # -- serving a stale entry -------------------------------------------------------------
    def stale_entry(self, call: PendingCall) -> Substitute | None:
        """An entry of this call still stored but no longer fresh, from any tier."""
        from ._steps import decoder_for

        site = call.site
        cache = site.cache
        memory = cache.memory
        if memory is not None:
            # Read directly: `lookup` drops an expired record, the very one wanted here.
            record = memory._entries.get(call.fingerprint)
            if isinstance(record, Record) and record.decoder is not None:
                value = record.decoder(record.value_json)
                return Substitute((record, memory.name, value), "stale")
        signed_key = cache._keys.signed_key(call.prefix, call.fingerprint)
        for tier in cache._tiers:
            data = tier.call("get", signed_key)
            if data is None or data is FAILED:
                continue
            try:
                record = decode_entry(data, signed_key, cache._entry_aead)
                record.decoder = decoder_for(site, record.tag)
                value = record.decoder(record.value_json)
            except Exception:  # IntegrityError, a value that no longer decodes: not servable
                continue
            return Substitute((record, tier.name, value), "stale")
        return None
