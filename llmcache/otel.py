"""OpenTelemetry: a span per cached call (the ``[otel]`` extra).

    import llmcache.otel
    llmcache.otel.instrument()  # the global tracer provider, or tracer_provider=...

Every cached call then gets a span named ``llmcache <function>`` (e.g. ``llmcache
openai.chat.completions.create``) with its outcome and tier:

* ``llmcache.outcome``: ``hit``, ``miss``, ``single_flight`` (served by an identical call in
  flight) or ``bypass``; ``llmcache.tier`` on a hit: ``memory``, ``disk``, ``redis``...;
  ``llmcache.namespace``, ``llmcache.workspace`` and ``llmcache.function``.
* A miss is a real call, so its span has the GenAI semantic conventions' attributes where
  they mean the same thing: ``gen_ai.provider.name``, ``gen_ai.response.model``,
  ``gen_ai.usage.input_tokens`` and ``gen_ai.usage.output_tokens``, and ``llmcache.cost_usd``.
  The span is current while the real call runs, so an instrumented HTTP client's span is
  its child.
* A hit consumed no tokens, so its span has no ``gen_ai.*`` attribute: what it avoided is in
  ``llmcache.model``, ``llmcache.saved.cost_usd``, ``llmcache.saved.time_s`` and
  ``llmcache.saved.input_tokens`` / ``llmcache.saved.output_tokens``.

A hit takes microseconds and making a span takes several, so a hit's span is made later:
the hit path only notes the time, the caller's current context (the span it belongs under)
and the entry (a few hundred nanoseconds; `benchmarks/bench_core.py` measures it), and a
background thread turns the notes into spans, with the hit's own timestamp, every
`FLUSH_SECONDS` (or at once: `flush()`). At most `MAX_PENDING` notes wait; beyond that the
oldest are dropped and counted in `dropped()`.

Metrics: ``llmcache.otel.observe(cache)`` reports the same counters and gauges as the
Prometheus collector (`llmcache.metrics`), as OpenTelemetry observable instruments read at
collection time (nothing on the hit path): ``llmcache.hits``, ``llmcache.saved_usd``,
``llmcache.tier_hits``, ... (the Prometheus name with its ``llmcache_`` prefix as
``llmcache.``, and a unit: ``s``, ``USD``, ``By`` or ``1``).

Nothing is imported from OpenTelemetry until `instrument()` or `observe()` is called, and
nothing is emitted before.
"""

from __future__ import annotations

import atexit
import collections
import functools
import importlib
import math
import os
import threading
import time
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError
from ._telemetry import OBSERVER

if TYPE_CHECKING:
    from ._cache import Cache
    from ._record import Record
    from ._site import CallSite

__all__ = [
    "FLUSH_SECONDS",
    "MAX_PENDING",
    "dropped",
    "flush",
    "instrument",
    "observe",
    "uninstrument",
]

FLUSH_SECONDS = 0.5
MAX_PENDING = 65_536
_SCOPE = "llmcache"


def instrument(*, tracer_provider: Any = None) -> None:
    """Make a span for every cached call from now on (idempotent).

    `tracer_provider`: an OpenTelemetry ``TracerProvider``; None takes the global one
    (``opentelemetry.trace.set_tracer_provider``).

    Raises:
        ConfigError: OpenTelemetry is not installed (``pip install "llmcache[otel]"``).
    """
    from . import __version__

    trace = _opentelemetry("trace")
    uninstrument()
    tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
    OBSERVER[0] = _SpanMaker(tracer)
    # At exit the last notes become spans, before the SDK shuts its exporters down: exit
    # handlers run last registered first, and the provider registered its own before.
    atexit.unregister(uninstrument)
    atexit.register(uninstrument)


def _opentelemetry(part: str) -> Any:
    """`opentelemetry.<part>`, or a ConfigError naming the extra that brings it."""
    try:
        importlib.import_module("opentelemetry")  # the package itself, not a cached part
        return importlib.import_module(f"opentelemetry.{part}")
    except ImportError as error:
        raise ConfigError(
            'llmcache.otel needs OpenTelemetry: pip install "llmcache[otel]"'
        ) from error


def observe(cache: Cache, *, meter_provider: Any = None) -> None:
    """Report `cache`'s metrics as OpenTelemetry instruments (read at each collection).

    `meter_provider`: an OpenTelemetry ``MeterProvider``; None takes the global one. The
    instruments hold the cache weakly: a cache that is gone reports nothing.

    Raises:
        ConfigError: OpenTelemetry is not installed (``pip install "llmcache[otel]"``).
    """
    from . import __version__

    metrics = _opentelemetry("metrics")
    from ._metric_families import families

    meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
    reading = _Reading(cache)
    for family in families(cache):
        if family.kind == "histogram":  # OpenTelemetry has no observable histogram
            continue
        make: Any = (
            meter.create_observable_counter
            if family.kind == "counter"
            else meter.create_observable_gauge
        )
        make(
            _metric_name(family.name),
            callbacks=[functools.partial(reading.observations, family.name)],
            unit=_unit(family.name),
            description=family.documentation,
        )


class _Reading:
    """One read of a cache's metrics, shared by the instruments of one collection."""

    FRESH_SECONDS = 0.5  # a collection calls every callback within this

    def __init__(self, cache: Cache) -> None:
        self._cache = weakref.ref(cache)
        self._lock = threading.Lock()
        self._read_at = -math.inf
        self._by_name: dict[str, Any] = {}

    def observations(self, name: str, options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        with self._lock:
            cache = self._cache()
            if cache is None:
                return []
            if time.monotonic() - self._read_at > self.FRESH_SECONDS:
                from ._metric_families import families

                self._by_name = {family.name: family for family in families(cache)}
                self._read_at = time.monotonic()
            family = self._by_name.get(name)
        if family is None:
            return []
        return [
            Observation(value, dict(zip(family.labels, values, strict=True)))
            for values, value in family.samples
        ]


def _metric_name(name: str) -> str:
    return "llmcache." + name.removeprefix("llmcache_")


def _unit(name: str) -> str:
    for suffix, unit in (("_seconds", "s"), ("_usd", "USD"), ("_bytes", "By")):
        if name.endswith(suffix):
            return unit
    return "1"


def uninstrument() -> None:
    """Stop making spans; the notes already taken become spans first."""
    observer = OBSERVER[0]
    OBSERVER[0] = None
    if isinstance(observer, _SpanMaker):
        observer.stop()


def flush() -> None:
    """Turn every hit noted so far into its span now (e.g. before a test checks them)."""
    observer = OBSERVER[0]
    if isinstance(observer, _SpanMaker):
        observer.drain()


def dropped() -> int:
    """Hits noted while `MAX_PENDING` notes were waiting: the oldest were dropped."""
    observer = OBSERVER[0]
    return observer.dropped if isinstance(observer, _SpanMaker) else 0


# A hit's note: (time in ns, the caller's context, site, record, tier, namespace, outcome).
_Note = tuple[int, Any, "CallSite", "Record | None", str, str, str]


class _SpanMaker:
    """The observer `instrument()` installs: notes on the hit path, spans off it."""

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context, trace

        self._tracer = tracer
        self._trace = trace
        self._current_context = context.get_current
        self._pending: collections.deque[_Note] = collections.deque()
        self.dropped = 0
        self._lock = threading.Lock()  # one drain at a time
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._start()

    # -- the hit path: note, nothing more ---------------------------------------------------
    def served(self, site: CallSite, record: Record | None, tier: str, namespace: str) -> None:
        pending = self._pending
        pending.append((time.time_ns(), self._current_context(), site, record, tier, namespace, ""))
        if len(pending) > MAX_PENDING:
            self._drop_oldest()

    def bypassed(self, site: CallSite, namespace: str) -> None:
        pending = self._pending
        now = time.time_ns()
        pending.append((now, self._current_context(), site, None, "", namespace, "bypass"))
        if len(pending) > MAX_PENDING:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        try:
            self._pending.popleft()
            self.dropped += 1
        except IndexError:  # drained meanwhile
            pass

    def recorded(self, site: CallSite, namespace: str, meta: Mapping[str, Any]) -> None:
        latency = meta.get("latency_s")
        end = time.time_ns()
        start = end - int(latency * 1e9) if isinstance(latency, int | float) else end
        attributes = {**_identity(site, namespace, "miss"), **_real_call_attributes(meta)}
        span = self._tracer.start_span(_span_name(site), start_time=start, attributes=attributes)
        span.end(end_time=end)

    # -- a miss: a live span around the real call ---------------------------------------------
    def real_call(self, site: CallSite, namespace: str) -> _RealCallSpan:
        return _RealCallSpan(self, site, namespace)

    # -- off the hit path: notes become spans -------------------------------------------------
    def drain(self) -> None:
        with self._lock:
            pending = self._pending
            while pending:
                try:
                    note = pending.popleft()
                except IndexError:  # taken meanwhile (after a fork, say)
                    break
                self._span_of(note)

    def _span_of(self, note: _Note) -> None:
        at, parent, site, record, tier, namespace, outcome = note
        if not outcome:
            outcome = "single_flight" if tier == "single-flight" else "hit"
        attributes = _identity(site, namespace, outcome)
        if outcome == "hit":
            attributes["llmcache.tier"] = tier.split(":", 1)[0]
        if record is not None:
            attributes.update(_saved_attributes(record.meta))
        span = self._tracer.start_span(
            _span_name(site), context=parent, start_time=at, attributes=attributes
        )
        span.end(end_time=at)

    def _start(self) -> None:
        self._stopped = False
        self._wake.clear()
        thread = threading.Thread(target=self._run, name="llmcache-otel", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(FLUSH_SECONDS)
            try:
                self.drain()
            except Exception:  # a broken exporter must not stop the spans that follow
                continue

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.drain()

    def after_fork_in_child(self) -> None:
        """The parent's thread is not in the child, nor are its notes to make."""
        self._pending.clear()
        self._lock = threading.Lock()
        self._start()


class _RealCallSpan:
    """The span of a miss's real call: current while the call runs."""

    __slots__ = ("_maker", "_namespace", "_site", "_span", "_token")

    def __init__(self, maker: _SpanMaker, site: CallSite, namespace: str) -> None:
        self._maker = maker
        self._site = site
        self._namespace = namespace
        self._span: Any = None
        self._token: Any = None

    def __enter__(self) -> _RealCallSpan:
        from opentelemetry import context

        maker = self._maker
        self._span = maker._tracer.start_span(
            _span_name(self._site), attributes=_identity(self._site, self._namespace, "miss")
        )
        self._token = context.attach(maker._trace.set_span_in_context(self._span))
        return self

    def done(self, meta: Mapping[str, Any]) -> None:
        self._span.set_attributes(_real_call_attributes(meta))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        context.detach(self._token)
        if exc is not None:
            self._span.record_exception(exc)
            self._span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        self._span.end()


def _span_name(site: CallSite) -> str:
    return f"llmcache {site.identity}"


def _identity(site: CallSite, namespace: str, outcome: str) -> dict[str, Any]:
    return {
        "llmcache.outcome": outcome,
        "llmcache.function": site.identity,
        "llmcache.namespace": namespace,
        "llmcache.workspace": site.cache.workspace,
    }


def _real_call_attributes(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A real call's GenAI attributes: it did consume these tokens."""
    attributes: dict[str, Any] = {}
    if meta.get("provider"):
        attributes["gen_ai.provider.name"] = str(meta["provider"])
    if meta.get("model"):
        attributes["gen_ai.response.model"] = str(meta["model"])
    if "input_tokens" in meta:
        attributes["gen_ai.usage.input_tokens"] = int(meta["input_tokens"])
        attributes["gen_ai.usage.output_tokens"] = int(meta.get("output_tokens", 0))
    if meta.get("cost_usd") is not None:
        attributes["llmcache.cost_usd"] = float(meta["cost_usd"])
    return attributes


def _saved_attributes(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What a hit avoided: never reported as tokens consumed (no ``gen_ai.usage``)."""
    attributes: dict[str, Any] = {}
    if meta.get("model"):
        attributes["llmcache.model"] = str(meta["model"])
    if meta.get("cost_usd") is not None:
        attributes["llmcache.saved.cost_usd"] = float(meta["cost_usd"])
    if meta.get("latency_s") is not None:
        attributes["llmcache.saved.time_s"] = float(meta["latency_s"])
    if "input_tokens" in meta:
        attributes["llmcache.saved.input_tokens"] = int(meta["input_tokens"])
        attributes["llmcache.saved.output_tokens"] = int(meta.get("output_tokens", 0))
    return attributes


def _after_fork_in_child() -> None:
    observer = OBSERVER[0]
    if isinstance(observer, _SpanMaker):
        observer.after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
