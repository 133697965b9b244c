"""The streams a caller iterates: live ones (recorded) and replays, for `AsyncOpenAI`.

This file is the one source of both kinds: `scripts/unasync.py` writes `_sync_streams.py`
(``CachedStream``, ``ReplayStream``, ``open_stream``, for `OpenAI`) from it, and CI checks
that the copy is current. What both use (recordings, the `Recorder`) is in `_streaming.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from llmcache.ext import MISS, CallSite

from ._streaming import Recorder, leading_recorder, replay_items

__all__ = ["AsyncReplayStream", "CachedAsyncStream", "aopen_stream"]

_T = TypeVar("_T")


async def aopen_stream(
    site: CallSite,
    request: dict[str, Any],
    open_live: Callable[[], Awaitable[Any]],
    *,
    chat: bool,
    include_usage: bool,
) -> Any:
    """A replay of the recorded stream, or the live one (`open_live()`), recorded.

    (Its parameters reach `leading_recorder`, whose signature therefore looks like this one.)

    Identical live streams of this process make one paid call: the first leads (the
    site's `claim`) and the others wait for its stream to end, then replay it. Waiting
    never blocks an event loop.
    """
    recording, release = await site.aclaim(request)
    if recording is not MISS:
        return AsyncReplayStream(replay_items(recording, include_usage), recording)
    recorder = leading_recorder(site, request, release, chat, not include_usage)
    try:
        live = await open_live()
    except BaseException:
        recorder.ended()
        raise
    return CachedAsyncStream(live, recorder)


class _AsyncClosing:
    """``async with stream:`` closes it, as the SDK's streams do (both kinds below).

    ``__aexit__`` has the context-manager protocol's signature, which every context manager
    here repeats (the wrapped clients in `_client.py`, the error translators of the Redis
    and Upstash adapters).
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

    def __aiter__(self) -> AsyncIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        while True:
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
            recorder = self._recorder
            if recorder is None or recorder.add(item):
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
    """A recorded stream replayed on a hit: the same chunk types, no network."""

    response: Any = None  # no HTTP response behind a replay

    def __init__(self, items: list[_T], recording: Any = None) -> None:
        self._items = iter(items)
        if recording is not None:  # llmcache.info(stream) reports the recording's hit
            CallSite.share_info(recording, self)

    def __aiter__(self) -> AsyncIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        for item in self._items:
            return item
        raise StopAsyncIteration

    async def close(self) -> None:
        self._items = iter(())
