"""What a miss passes before its real call is made: the checks a user configured.

Replay mode, spend budgets and rate limits are checks (`MissCheck`) on the miss path only:
a leader about to make a real call enters each check, in order, and settles it when the
call has returned (with the call's metadata: its usage and cost) or failed (with None).
A check may wait (a rate limit's slot), refuse (raise a `CallRefused`: `CacheMiss`,
`BudgetExceeded`, `RateLimited`), or offer a `Substitute`, an entry to serve instead of the
call (a stale entry while a budget is spent). Hits never come here, so a check costs a hit
nothing; callers that wait for an identical call in flight (single-flight) do not enter
either: only the call that is really made counts against a limit.

A check gets the call as a `PendingCall`: its site and namespace, and the request (the
provider's request, or a cached function's arguments), decoded from the canonical bytes
only when a check asks for it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from ._namespaces import Namespace
    from ._options import Options
    from ._site import CallSite
    from ._steps import Found

__all__ = ["Gate", "MissCheck", "PendingCall", "Substitute", "Tickets", "call_fields"]

log = logging.getLogger("llmcache")


class PendingCall:
    """A miss about to make its real call, as the checks see it."""

    __slots__ = ("_body", "_request", "fingerprint", "namespace", "opts", "prefix", "site")

    def __init__(
        self,
        site: CallSite,
        namespace: Namespace,
        fingerprint: int,
        prefix: str,
        opts: Options | None,
        body: bytes | Callable[[], bytes] | None,
    ) -> None:
        self.site = site
        self.namespace = namespace
        self.fingerprint = fingerprint
        self.prefix = prefix
        self.opts = opts
        self._body = body
        self._request: Any = _UNREAD

    @property
    def identity(self) -> str:
        """The function or endpoint, e.g. "openai.chat.completions.create"."""
        return self.site.identity

    @property
    def body(self) -> bytes | None:
        """The canonical request bytes (``[identity, version, request]``), if known."""
        if callable(self._body):
            try:
                self._body = self._body()
            except Exception:  # keyed once already: a second failure only loses the detail
                self._body = None
        return self._body

    @property
    def request(self) -> Any:
        """The request data or the function's arguments (a dict by name), or None."""
        if self._request is _UNREAD:
            body = self.body
            try:
                decoded = orjson.loads(body) if body is not None else None
                self._request = decoded[2] if isinstance(decoded, list) else None
            except (orjson.JSONDecodeError, IndexError):  # pragma: no cover - we wrote it
                self._request = None
        return self._request

    @property
    def model(self) -> str | None:
        """The model the request names (a ``model`` field or argument), if any."""
        request = self.request
        model = request.get("model") if isinstance(request, Mapping) else None
        return model if isinstance(model, str) and model else None

    @property
    def max_tokens(self) -> int | None:
        """The most output tokens the request allows, if it says: the smallest positive
        integer among its top-level fields named ``max_...tokens``. The core knows no
        provider's field names; every provider names this cap so (``max_tokens``, and the
        newer ``max_..._tokens`` spellings)."""
        request = self.request
        if not isinstance(request, Mapping):
            return None
        caps = [
            value
            for name, value in request.items()
            if isinstance(name, str)
            and name.startswith("max_")
            and name.endswith("tokens")
            and isinstance(value, int)
            and not isinstance(value, bool)
            and value > 0
        ]
        return min(caps) if caps else None

    @property
    def digest(self) -> str | None:
        """SHA-256 (hex) of the canonical request, the sample id included: the same in every
        workspace, unlike the key. What an exported entry is matched by when imported."""
        body = self.body
        if body is None:
            return None
        hasher = hashlib.sha256(body)
        opts = self.opts
        if opts is not None and opts.sample is not None:
            hasher.update(b"\x00sample:" + orjson.dumps(opts.sample))
        return hasher.hexdigest()


_UNREAD: Any = object()


def call_fields(call: PendingCall) -> dict[str, Any]:
    """What a recorded entry's (encrypted) metadata says about the call that made it.

    ``site``: the function or endpoint; ``digest``: see `PendingCall.digest`; ``args``: a
    keyed 8-byte hash of each top-level argument or request field, so replay mode can say
    which differ from the nearest recorded call without storing any value. A field that is
    itself a small mapping (an adapter's ``{"call": {...}, "client": {...}}``, a function's
    dict argument) is hashed field by field instead, as ``name.field``: the hint then names
    ``call.max_tokens``, not ``call``.
    """
    digest = call.digest
    if digest is None:
        return {}
    fields: dict[str, Any] = {"site": call.identity, "digest": digest}
    request = call.request
    if isinstance(request, Mapping):
        key = call.site.cache._keys.argument_key
        args: dict[str, str] = {}
        for name, value in request.items():
            if isinstance(value, Mapping) and 0 < len(value) <= _SPLIT_FIELDS:
                for inner, part in value.items():
                    args[f"{name}.{inner}"] = _argument_hash(part, key)
            else:
                args[str(name)] = _argument_hash(value, key)
        fields["args"] = args
    return {"call": fields}


_SPLIT_FIELDS = 32  # a mapping argument with at most this many fields is hashed by field


def _argument_hash(value: Any, key: bytes) -> str:
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(data, key=key, digest_size=8).hexdigest()


class Substitute:
    """What a check offers instead of the real call: an entry to serve (e.g. a stale one)."""

    __slots__ = ("found", "reason")

    def __init__(self, found: Found, reason: str) -> None:
        self.found = found
        self.reason = reason


class MissCheck(Protocol):
    """One check on the miss path. `enter` may block (the sync flow) and `aenter` may await
    (the async flow); both return a ticket that `settle` gets back, or a `Substitute`."""

    def enter(self, call: PendingCall) -> Any: ...

    async def aenter(self, call: PendingCall) -> Any: ...

    def settle(self, ticket: Any, meta: Mapping[str, Any] | None) -> None:
        """The call returned (`meta`: its usage, cost and latency) or failed (None)."""
        ...


Tickets = list[tuple[MissCheck, Any]]


class Gate:
    """A cache's checks, in the order they run: replay, budget, rate limits."""

    __slots__ = ("checks",)

    def __init__(self) -> None:
        self.checks: list[MissCheck] = []

    def add(self, check: MissCheck, order: int | None = None) -> None:
        if order is None:
            self.checks.append(check)
        else:
            self.checks.insert(order, check)

    def remove(self, check: MissCheck) -> None:
        if check in self.checks:
            self.checks.remove(check)

    def enter(self, call: PendingCall) -> Tickets | Substitute:
        """Enter every check; on a refusal or a substitute, settle those already entered."""
        tickets: Tickets = []
        try:
            for check in list(self.checks):
                ticket = check.enter(call)
                if isinstance(ticket, Substitute):
                    self.settle(tickets, None)
                    return ticket
                tickets.append((check, ticket))
        except BaseException:
            self.settle(tickets, None)
            raise
        return tickets

    async def aenter(self, call: PendingCall) -> Tickets | Substitute:
        """`enter` for the async flow: a check's wait is awaited, never blocking the loop."""
        tickets: Tickets = []
        try:
            for check in list(self.checks):
                ticket = await check.aenter(call)
                if isinstance(ticket, Substitute):
                    self.settle(tickets, None)
                    return ticket
                tickets.append((check, ticket))
        except BaseException:
            self.settle(tickets, None)
            raise
        return tickets

    def after_fork_in_child(self) -> None:
        """In a forked child: each check that keeps locks or per-process state renews it
        (its optional ``after_fork_in_child``)."""
        for check in self.checks:
            renew = getattr(check, "after_fork_in_child", None)
            if renew is not None:
                renew()

    @staticmethod
    def settle(tickets: Tickets, meta: Mapping[str, Any] | None) -> None:
        """Tell each check how the call ended; a check that fails is logged, not raised:
        the caller's result is already paid for."""
        for check, ticket in tickets:
            try:
                check.settle(ticket, meta)
            except Exception as error:
                log.warning("llmcache: settling %r failed: %r", check, error)
