"""Streams: record a live stream as it reaches the caller, replay a recorded one on a hit.

The streams handed to callers are in `_async_streams.py` (and `_sync_streams.py`, written
from it by `scripts/unasync.py`); this module holds what both use: the recordings, the
`Recorder`, and what a replay yields.

On a miss the caller iterates the SDK's stream through `CachedStream` (or
`CachedAsyncStream`): each event is passed on as it arrives and a JSON snapshot of it is kept
(so a caller that mutates its events cannot change what is stored). When, and only when, the
stream ends normally and is complete (a ``message_start`` and a ``message_stop`` event
arrived), the recording is stored. A stream that raised (a cut connection, an ``error``
event), was closed early, or ended short is never stored.

On a hit `ReplayStream` (or `AsyncReplayStream`) yields freshly decoded events of the same
types, in the same order (the SDK drops ``ping`` events before its caller sees them, so a
recording has none). Replays have no HTTP response: their ``response`` is None.

A recording carries the message's model and final usage at the top, where the usage hook
reads them to price the call: the ``message_start`` event's usage, updated with what the
``message_delta`` events report (the output count, and the input counts when the API sends
them there).
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
import time
import typing
import weakref
from collections.abc import Callable
from typing import Any

import pydantic
from anthropic.types import RawMessageStreamEvent
from anthropic.types import Usage as MessageUsage
from anthropic.types.beta import BetaRawMessageStreamEvent, BetaUsage

from llmcache.ext import CallSite

__all__ = [
    "BetaMessageStreamRecording",
    "MessageStreamRecording",
    "NoExchange",
    "Recorder",
    "StreamRecording",
    "leading_recorder",
    "replay_items",
]

log = logging.getLogger("llmcache")


def _discriminated(union: Any) -> Any:
    """The SDK's stream-event union, discriminated by ``type`` for pydantic.

    The SDK marks the discriminator in its own metadata, which pydantic does not read; without
    it every stored event would be tried against each event type in turn.
    """
    members: Any = typing.get_args(typing.get_args(union)[0])
    try:
        tagged = typing.Annotated[typing.Union[members], pydantic.Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
        pydantic.TypeAdapter(tagged)
    except Exception:  # pragma: no cover - an SDK whose events lack a literal ``type``
        return union
    return tagged


_Event = _discriminated(RawMessageStreamEvent)
_BetaEvent = _discriminated(BetaRawMessageStreamEvent)


class StreamRecording(pydantic.BaseModel):
    """A completed Messages API stream as stored: its events, and the message's model and
    final usage at the top (see the module docstring)."""

    events: list[Any]
    model: str | None = None
    usage: Any = None


class MessageStreamRecording(StreamRecording):
    """A completed ``messages.create(stream=True)`` / ``messages.stream(...)`` stream."""

    events: list[_Event]  # type: ignore[valid-type]
    usage: MessageUsage | None = None


class BetaMessageStreamRecording(StreamRecording):
    """A completed ``beta.messages`` stream (the beta event and usage types)."""

    events: list[_BetaEvent]  # type: ignore[valid-type]
    usage: BetaUsage | None = None


def _snapshot(request: dict[str, Any]) -> dict[str, Any]:
    try:
        return copy.deepcopy(request)
    except Exception:  # an argument deepcopy cannot handle: keep the request as it is
        return request


def leading_recorder(
    site: CallSite,
    request: dict[str, Any],
    release: Callable[[], None],
    recording_type: type[StreamRecording],
) -> Recorder:
    """A recorder that lets identical waiting calls go (`release`) when its stream ends."""
    recorder = Recorder(site, request, recording_type)
    recorder.on_end = release
    return recorder


class Recorder:
    """Collects a live stream's events and stores them if the stream completes normally.

    The options in force when the call was made (namespace, sample, ttl, no_store...) are
    captured with the context, because the stream is often consumed after the caller's
    ``with llmcache.options(...)`` block has ended.
    """

    __slots__ = (
        "_context",
        "_parts",
        "_recording_type",
        "_request",
        "_site",
        "_started",
        "_stopped",
        "faces",
        "on_end",
        "opened",
    )

    def __init__(
        self, site: CallSite, request: dict[str, Any], recording_type: type[StreamRecording]
    ) -> None:
        self._site = site
        # A snapshot: the stream is stored under the key it was looked up with, even if the
        # caller changes its messages list while it consumes the stream.
        self._request = _snapshot(request)
        self._recording_type = recording_type
        self._context = contextvars.copy_context()
        self.opened = time.perf_counter()
        self._parts: list[bytes] = []
        self._started = False
        self._stopped = False
        # The objects `llmcache.info` describes this call by, held weakly: a stream holds its
        # recorder, and a dropped stream must go at once (its `__del__` lets waiters go), not
        # when the garbage collector gets to a cycle.
        self.faces: list[weakref.ref[Any]] = []
        self.on_end: Callable[[], None] | None = None  # lets waiting identical calls go

    def ended(self) -> None:
        """The stream is over (stored, aborted, closed or dropped): release any waiters."""
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end()

    def announce(self, face: Any) -> None:
        """An object handed to the caller for this stream (the stream, or the SDK helper's
        stream around it): `llmcache.info` on it reports this call, a miss until stored."""
        self.faces.append(weakref.ref(face))
        self._site.note_miss(face)

    def add(self, event: Any) -> None:
        """Record one event."""
        self._parts.append(event.model_dump_json(warnings=False).encode())
        kind = event.type
        if kind == "message_start":
            self._started = True
        elif kind == "message_stop":
            self._stopped = True

    def complete(self) -> bool:
        return self._started and self._stopped

    def recording(self) -> StreamRecording:
        body = b",".join(self._parts)
        recording = self._recording_type.model_validate_json(b'{"events":[' + body + b"]}")
        start = next(e for e in recording.events if e.type == "message_start")
        recording.model = start.message.model
        recording.usage = _final_usage(start.message.usage, recording.events)
        return recording

    def _store_call(self) -> tuple[Any, ...] | None:
        """What to hand to `CallSite.put`, or None if the stream must not be stored."""
        if not self.complete():
            return None
        try:
            value = self.recording()
        except Exception as error:  # an event the SDK's own types do not accept: skip it
            log.warning("llmcache: a %s stream is not cached: %s", self._site.identity, error)
            return None
        return (self._request, value, time.perf_counter() - self.opened)

    def store(self) -> None:
        try:
            call = self._store_call()
            if call is not None:
                request, value, latency = call
                self._context.run(self._put, request, value, latency)
        finally:
            self.ended()

    async def astore(self) -> None:
        try:
            call = self._store_call()
            if call is None:
                return
            request, value, latency = call
            if self._site.stores_below_memory:  # writing to disk or a server: keep it off the loop
                await asyncio.to_thread(self._context.run, self._put, request, value, latency)
            else:
                self._context.run(self._put, request, value, latency)
        finally:
            self.ended()

    def _put(self, request: dict[str, Any], value: Any, latency: float) -> None:
        try:
            self._site.put(request, value, latency_s=latency)
            for ref in self.faces:
                face = ref()
                if face is not None:
                    self._site.share_info(value, face)
        except Exception as error:  # the caller already has its events: never fail it here
            log.warning("llmcache: storing a %s stream failed: %r", self._site.identity, error)


def _final_usage(start: Any, events: list[Any]) -> Any:
    """The message's usage at the end: ``message_start``'s, with what every
    ``message_delta`` reports laid over it (counts it does not send stay as they were)."""
    fields = start.model_dump(exclude_unset=True)
    for event in events:
        if event.type == "message_delta" and event.usage is not None:
            reported = event.usage.model_dump(exclude_unset=True)
            fields.update({name: value for name, value in reported.items() if value is not None})
    return type(start).model_validate(fields)


def replay_items(recording: StreamRecording) -> list[Any]:
    """The events a hit replays."""
    return list(recording.events)


class NoExchange:
    """The ``response`` of the SDK's stream helper over a replay: no HTTP exchange happened.

    It has no headers (so ``request_id`` and ``workspace_id`` are None) and, as its
    ``request``, the feature headers the call would have sent (``anthropic-beta``), which
    the beta helper reads while it accumulates the message.
    """

    status_code = None

    def __init__(self, request_headers: dict[str, str]) -> None:
        self.headers: dict[str, str] = {}
        self.request = _Request(request_headers)


class _Request:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
