# Written by scripts/unasync.py from adapters/llmcache_anthropic/_async_streams.py:
# edit that file, then run `python scripts/unasync.py`. CI fails when this copy is
# not current.
"""The streams a caller iterates: live ones (recorded) and replays, and the SDK's stream
helper around either, for `AsyncAnthropic`.

This file is the one source of both kinds: `scripts/unasync.py` writes `_sync_streams.py`
(``CachedStream``, ``ReplayStream``, ``open_stream``, ``StreamHelper``, for `Anthropic`)
from it, and CI checks that the copy is current. What both use (recordings, the `Recorder`)
is in `_streaming.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from anthropic import NOT_GIVEN
from anthropic.lib.streaming import BetaMessageStream, MessageStream

from llmcache.ext import MISS, CallSite

from ._streaming import NoExchange, Recorder, StreamRecording, leading_recorder, replay_items

__all__ = [
    "CachedBetaMessageStream",
    "CachedMessageStream",
    "CachedStream",
    "ReplayStream",
    "StreamHelper",
    "open_stream",
]

_T = TypeVar("_T")


def open_stream(
    site: CallSite,
    request: dict[str, Any],
    open_live: Callable[[], Any],
    recording_type: type[StreamRecording],
) -> Any:
    """A replay of the recorded stream, or the live one (`open_live()`), recorded.

    Identical live streams of this process make one paid call: the first leads (the
    site's `claim`) and the others wait for its stream to end, then replay it. Waiting
    never blocks an event loop.
    """
    recording, release = site.claim(request)
    if recording is not MISS:
        return ReplayStream(replay_items(recording), recording)
    recorder = leading_recorder(site, request, release, recording_type)
    try:
        live = open_live()
    except BaseException:
        recorder.ended()
        raise
    return CachedStream(live, recorder)


class _Closing:
    """``with stream:`` closes it, as the SDK's streams do (both kinds below).

    ``__exit__`` has the context-manager protocol's signature, which every context manager
    here repeats (the wrapped clients in `_client.py`, the stream helper below).
    """

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class CachedStream(_Closing, Generic[_T]):
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

    def __iter__(self) -> Iterator[_T]:
        return self

    def __next__(self) -> _T:
        try:
            item: _T = self._stream.__next__()
        except StopIteration:
            recorder, self._recorder = self._recorder, None
            if recorder is not None:
                recorder.store()
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

    def close(self) -> None:
        """Release the connection; a stream closed before its end is not stored."""
        self._drop_recorder()
        self._stream.close()


class ReplayStream(_Closing, Generic[_T]):
    """A recorded stream replayed on a hit: the same event types, in order, no network."""

    response: Any = None  # no HTTP response behind a replay

    def __init__(self, items: list[_T], recording: Any = None) -> None:
        self._items = iter(items)
        if recording is not None:  # llmcache.info(stream) reports the recording's hit
            CallSite.share_info(recording, self)

    def describe_too(self, face: Any) -> None:
        """`llmcache.info(face)` reports this replay's hit too (the SDK helper's stream)."""
        CallSite.share_info(self, face)

    def __iter__(self) -> Iterator[_T]:
        return self

    def __next__(self) -> _T:
        for item in self._items:
            return item
        raise StopIteration

    def close(self) -> None:
        self._items = iter(())


class CachedMessageStream(MessageStream[Any]):
    """The SDK's `MessageStream` (what ``with messages.stream(...)`` gives) over
    a cached stream: text_stream, get_final_message(), ... as the SDK has them. On a replay
    its ``response`` is a `NoExchange`: no request or workspace id."""

    request_headers: dict[str, str] = {}  # noqa: RUF012  # set by the helper, never mutated

    @property
    def response(self) -> Any:
        live = super().response
        return live if live is not None else NoExchange(self.request_headers)


class CachedBetaMessageStream(BetaMessageStream[Any]):
    """`CachedMessageStream` for ``beta.messages.stream(...)`` (whose accumulation reads
    the request's ``anthropic-beta`` header off the response)."""

    request_headers: dict[str, str] = {}  # noqa: RUF012  # set by the helper, never mutated

    @property
    def response(self) -> Any:
        live = super().response
        return live if live is not None else NoExchange(self.request_headers)


class StreamHelper:
    """What a wrapped ``messages.stream(...)`` returns, as the SDK's stream manager:
    ``with`` opens the stream (a replay, or a live one that is recorded) and gives the
    SDK's own message stream over it; leaving the block closes it."""

    def __init__(
        self,
        open_raw: Callable[[], Any],
        stream_type: type[Any],
        request_headers: dict[str, str],
    ) -> None:
        self._open_raw = open_raw
        self._stream_type = stream_type
        self._request_headers = request_headers
        self._stream: Any = None

    def __enter__(self) -> Any:
        raw = self._open_raw()
        stream = self._stream_type(raw, output_format=NOT_GIVEN)
        stream.request_headers = self._request_headers
        if isinstance(raw, CachedStream | ReplayStream):
            raw.describe_too(stream)
        self._stream = stream
        return stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream.close()
