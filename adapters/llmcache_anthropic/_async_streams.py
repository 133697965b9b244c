"""The streams a caller iterates: live ones (recorded) and replays, and the SDK's stream
helper around either, for `AsyncAnthropic`.

This file is the one source of both kinds: `scripts/unasync.py` writes `_sync_streams.py`
(``CachedStream``, ``ReplayStream``, ``open_stream``, ``StreamHelper``, for `Anthropic`)
from it, and CI checks that the copy is current. What both use (recordings, the `Recorder`)
is in `_streaming.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from anthropic import NOT_GIVEN
from anthropic.lib.streaming import AsyncMessageStream, BetaAsyncMessageStream

from llmcache.ext import MISS, CallSite

from ._streaming import NoExchange, Recorder, StreamRecording, leading_recorder, replay_items

__all__ = [
    "AsyncReplayStream",
    "AsyncStreamHelper",
    "CachedAsyncMessageStream",
    "CachedAsyncStream",
    "CachedBetaAsyncMessageStream",
    "aopen_stream",
]

_T = TypeVar("_T")


async def aopen_stream(
    site: CallSite,
    request: dict[str, Any],
    open_live: Callable[[], Awaitable[Any]],
    recording_type: type[StreamRecording],
) -> Any:
    """A replay of the recorded stream, or the live one (`open_live()`), recorded.

    Identical live streams of this process make one paid call: the first leads (the
    site's `claim`) and the others wait for its stream to end, then replay it. Waiting
    never blocks an event loop.
    """
    recording, release = await site.aclaim(request)
    if recording is not MISS:
        return AsyncReplayStream(replay_items(recording), recording)
    recorder = leading_recorder(site, request, release, recording_type)
    try:
        live = await open_live()
    except BaseException:
        recorder.ended()
        raise
    return CachedAsyncStream(live, recorder)


class _AsyncClosing:
    """``async with stream:`` closes it, as the SDK's streams do (both kinds below).

    ``__aexit__`` has the context-manager protocol's signature, which every context manager
    here repeats (the wrapped clients in `_client.py`, the stream helper below).
    """

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class CachedAsyncStream(_AsyncClosing, Generic[_T]):
    """A live stream from the API (a miss): iterate it like the SDK's stream."""

    def __init__(self, stream: Any, recorder: Recorder) -> None:
        self._stream = stream
        self._recorder: Recorder | None = recorder
        recorder.announce(self)

    @property
    def response(self) -> Any:
        """The HTTP response of the underlying SDK stream."""
        return self._stream.response

    def describe_too(self, face: Any) -> None:
        """`llmcache.info(face)` reports this stream's call too (the SDK helper's stream)."""
        if self._recorder is not None:
            self._recorder.announce(face)

    def __aiter__(self) -> AsyncIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        try:
            item: _T = await self._stream.__anext__()
        except StopAsyncIteration:
            recorder, self._recorder = self._recorder, None
            if recorder is not None:
                await recorder.astore()
            raise
        except BaseException:
            self._drop_recorder()  # an errored stream is never stored
            raise
        if self._recorder is not None:
            self._recorder.add(item)
        return item

    def _drop_recorder(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.ended()

    def __del__(self) -> None:  # abandoned unfinished: let identical waiting calls go on
        self._drop_recorder()

    async def close(self) -> None:
        """Release the connection; a stream closed before its end is not stored."""
        self._drop_recorder()
        await self._stream.close()


class AsyncReplayStream(_AsyncClosing, Generic[_T]):
    """A recorded stream replayed on a hit: the same event types, in order, no network."""

    response: Any = None  # no HTTP response behind a replay

    def __init__(self, items: list[_T], recording: Any = None) -> None:
        self._items = iter(items)
        if recording is not None:  # llmcache.info(stream) reports the recording's hit
            CallSite.share_info(recording, self)

    def describe_too(self, face: Any) -> None:
        """`llmcache.info(face)` reports this replay's hit too (the SDK helper's stream)."""
        CallSite.share_info(self, face)

    def __aiter__(self) -> AsyncIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        for item in self._items:
            return item
        raise StopAsyncIteration

    async def close(self) -> None:
        self._items = iter(())


class CachedAsyncMessageStream(AsyncMessageStream[Any]):
    """The SDK's `AsyncMessageStream` (what ``async with messages.stream(...)`` gives) over
    a cached stream: text_stream, get_final_message(), ... as the SDK has them. On a replay
    its ``response`` is a `NoExchange`: no request or workspace id."""

    request_headers: dict[str, str] = {}  # noqa: RUF012  # set by the helper, never mutated

    @property
    def response(self) -> Any:
        live = super().response
        return live if live is not None else NoExchange(self.request_headers)


class CachedBetaAsyncMessageStream(BetaAsyncMessageStream[Any]):
    """`CachedAsyncMessageStream` for ``beta.messages.stream(...)`` (whose accumulation reads
    the request's ``anthropic-beta`` header off the response)."""

    request_headers: dict[str, str] = {}  # noqa: RUF012  # set by the helper, never mutated

    @property
    def response(self) -> Any:
        live = super().response
        return live if live is not None else NoExchange(self.request_headers)


class AsyncStreamHelper:
    """What a wrapped ``messages.stream(...)`` returns, as the SDK's stream manager:
    ``async with`` opens the stream (a replay, or a live one that is recorded) and gives the
    SDK's own message stream over it; leaving the block closes it."""

    def __init__(
        self,
        open_raw: Callable[[], Awaitable[Any]],
        stream_type: type[Any],
        request_headers: dict[str, str],
    ) -> None:
        self._open_raw = open_raw
        self._stream_type = stream_type
        self._request_headers = request_headers
        self._stream: Any = None

    async def __aenter__(self) -> Any:
        raw = await self._open_raw()
        stream = self._stream_type(raw, output_format=NOT_GIVEN)
        stream.request_headers = self._request_headers
        if isinstance(raw, CachedAsyncStream | AsyncReplayStream):
            raw.describe_too(stream)
        self._stream = stream
        return stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.close()
