"""Streams: record a live stream as it reaches the caller, replay a recorded one on a hit.

The streams handed to callers are in `_async_streams.py` (and `_sync_streams.py`, written
from it by `scripts/unasync.py`); this module holds what both use: the recordings, the
`Recorder`, and what a replay yields.

On a miss the caller iterates the SDK's stream through `CachedStream` (or `CachedAsyncStream`):
each chunk is passed on as it arrives and a JSON snapshot of it is kept (so a caller that
mutates its chunks cannot change what is stored). When, and only when, the stream ends
normally and is complete (every choice has its finish reason; for the Responses API, a
``response.completed`` or ``response.incomplete`` event arrived), the recording is stored. A
stream that raised, was closed early, or ended short is never stored.

On a hit `ReplayStream` (or `AsyncReplayStream`) yields freshly decoded chunks of the same
types. Replays have no HTTP response: their ``response`` is None.
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
from typing import Any, TypeVar

import pydantic
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage
from openai.types.responses import ResponseStreamEvent, ResponseUsage

from llmcache.ext import CallSite

__all__ = [
    "ChatStreamRecording",
    "Recorder",
    "ResponseStreamRecording",
    "leading_recorder",
    "replay_items",
]

log = logging.getLogger("llmcache")
_T = TypeVar("_T")


def _discriminated(union: Any) -> Any:
    """The SDK's stream-event union, discriminated by ``type`` for pydantic.

    The SDK marks the discriminator in its own metadata, which pydantic does not read; without
    it every stored event would be tried against each of the ~60 event types.
    """
    members: Any = typing.get_args(typing.get_args(union)[0])
    try:
        tagged = typing.Annotated[typing.Union[members], pydantic.Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
        pydantic.TypeAdapter(tagged)
    except Exception:  # pragma: no cover - an SDK whose events lack a literal ``type``
        return union
    return tagged


_ResponseEvent = _discriminated(ResponseStreamEvent)


class ChatStreamRecording(pydantic.BaseModel):
    """A completed chat completion stream as stored: its chunks, and its model and usage at
    the top, where the cache's ledger reads them to price the call."""

    chunks: list[ChatCompletionChunk]
    model: str | None = None
    usage: CompletionUsage | None = None


class ResponseStreamRecording(pydantic.BaseModel):
    """A completed Responses API stream as stored: its events, model and usage."""

    events: list[_ResponseEvent]  # type: ignore[valid-type]
    model: str | None = None
    usage: ResponseUsage | None = None


def _snapshot(request: dict[str, Any]) -> dict[str, Any]:
    try:
        return copy.deepcopy(request)
    except Exception:  # an argument deepcopy cannot handle: keep the request as it is
        return request


def leading_recorder(
    site: CallSite,
    request: dict[str, Any],
    release: Callable[[], None],
    chat: bool,
    hide_usage: bool,
) -> Recorder:
    """A recorder that lets identical waiting calls go (`release`) when its stream ends.

    Its parameters are those `open_stream` / `aopen_stream` pass on (hence the same shape).
    """
    recorder = Recorder(site, request, chat=chat, hide_usage=hide_usage)
    recorder.on_end = release
    return recorder


class Recorder:
    """Collects a live stream's items and stores them if the stream completes normally.

    The options in force when the call was made (namespace, sample, ttl, no_store...) are
    captured with the context, because the stream is often consumed after the caller's
    ``with llmcache.options(...)`` block has ended.
    """

    __slots__ = (
        "_choices",
        "_context",
        "_finished",
        "_hide_usage",
        "_parts",
        "_request",
        "_site",
        "_started",
        "_terminal",
        "chat",
        "on_end",
        "stream",
    )

    def __init__(
        self,
        site: CallSite,
        request: dict[str, Any],
        *,
        chat: bool,
        hide_usage: bool = False,
        started: float | None = None,
    ) -> None:
        self._site = site
        # A snapshot: the stream is stored under the key it was looked up with, even if the
        # caller changes its messages list while it consumes the stream.
        self._request = _snapshot(request)
        self._context = contextvars.copy_context()
        self._started = time.perf_counter() if started is None else started
        self._parts: list[bytes] = []
        self.chat = chat
        self._hide_usage = hide_usage
        self._choices: set[int] = set()
        self._finished: set[int] = set()
        self._terminal = False
        # The stream handed to the caller, held weakly: the stream holds its recorder, and a
        # dropped stream must go at once (its `__del__` lets waiters go), not when the
        # garbage collector gets to a stream-recorder cycle.
        self.stream: weakref.ref[Any] | None = None
        self.on_end: Callable[[], None] | None = None  # lets waiting identical calls go

    def ended(self) -> None:
        """The stream is over (stored, aborted, closed or dropped): release any waiters."""
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end()

    def announce(self, stream: Any) -> None:
        """The live stream handed to the caller: `llmcache.info` on it reports this call."""
        self.stream = weakref.ref(stream)
        self._site.note_miss(stream)

    def add(self, item: Any) -> bool:
        """Record one item; True if the caller should see it."""
        self._parts.append(item.model_dump_json(warnings=False).encode())
        if self.chat:
            for choice in item.choices:
                self._choices.add(choice.index)
                if choice.finish_reason is not None:
                    self._finished.add(choice.index)
            if item.usage is not None and not item.choices:
                return not self._hide_usage
            return True
        if item.type in ("response.completed", "response.incomplete"):
            self._terminal = True
        return True

    def complete(self) -> bool:
        if self.chat:
            # The usage chunk is not required: some OpenAI-compatible servers ignore
            # stream_options. A connection lost before it raises, and is not stored anyway.
            return bool(self._choices) and self._finished == self._choices
        return self._terminal

    def recording(self) -> pydantic.BaseModel:
        body = b",".join(self._parts)
        if self.chat:
            chat = ChatStreamRecording.model_validate_json(b'{"chunks":[' + body + b"]}")
            chat.model = chat.chunks[0].model if chat.chunks else None
            chat.usage = next((c.usage for c in reversed(chat.chunks) if c.usage), None)
            return chat
        events = ResponseStreamRecording.model_validate_json(b'{"events":[' + body + b"]}")
        final = getattr(events.events[-1], "response", None) if events.events else None
        if final is not None:
            events.model = final.model
            events.usage = final.usage
        return events

    def _store_call(self) -> tuple[Any, ...] | None:
        """What to hand to `CallSite.put`, or None if the stream must not be stored."""
        if not self.complete():
            return None
        try:
            value = self.recording()
        except Exception as error:  # a chunk the SDK's own types do not accept: skip it
            log.warning("llmcache: a %s stream is not cached: %s", self._site.identity, error)
            return None
        return (self._request, value, time.perf_counter() - self._started)

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
            stream = self.stream() if self.stream is not None else None
            if stream is not None:
                self._site.share_info(value, stream)
        except Exception as error:  # the caller already has its chunks: never fail it here
            log.warning("llmcache: storing a %s stream failed: %r", self._site.identity, error)


def replay_items(recording: Any, include_usage: bool) -> list[Any]:
    """The items a hit replays; the usage-only chunk only if the caller asked for it."""
    if isinstance(recording, ChatStreamRecording):
        if include_usage:
            return list(recording.chunks)
        return [c for c in recording.chunks if c.choices or c.usage is None]
    return list(recording.events)
