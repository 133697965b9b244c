# Written by scripts/unasync.py from adapters/llmcache_openai/_async_streams.py:
# edit that file, then run `python scripts/unasync.py`. CI fails when this copy is
# not current.
"""The streams a caller iterates: live ones (recorded) and replays, for `AsyncOpenAI`.

This file is the one source of both kinds: `scripts/unasync.py` writes `_sync_streams.py`
(``CachedStream``, ``ReplayStream``, ``open_stream``, for `OpenAI`) from it, and CI checks
that the copy is current. What both use (recordings, the `Recorder`) is in `_streaming.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from llmcache.ext import MISS, CallSite

from ._streaming import Recorder, leading_recorder, replay_items

__all__ = ["CachedStream", "ReplayStream", "open_stream"]

_T = TypeVar("_T")


def open_stream(
    site: CallSite,
    request: dict[str, Any],
    open_live: Callable[[], Any],
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
    recording, release = site.claim(request)
    if recording is not MISS:
        return ReplayStream(replay_items(recording, include_usage), recording)
    recorder = leading_recorder(site, request, release, chat, not include_usage)
    try:
        live = open_live()
    except BaseException:
        recorder.ended()
        raise
    return CachedStream(live, recorder)


class _Closing:
    """``with stream:`` closes it, as the SDK's streams do (both kinds below).

    ``__exit__`` has the context-manager protocol's signature, which every context manager
    here repeats (the wrapped clients in `_client.py`, the error translators of the Redis
    and Upstash adapters).
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

    def __iter__(self) -> Iterator[_T]:
        return self

    def __next__(self) -> _T:
        while True:
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
            recorder = self._recorder
            if recorder is None or recorder.add(item):
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
    """A recorded stream replayed on a hit: the same chunk types, no network."""

    response: Any = None  # no HTTP response behind a replay

    def __init__(self, items: list[_T], recording: Any = None) -> None:
        self._items = iter(items)
        if recording is not None:  # llmcache.info(stream) reports the recording's hit
            CallSite.share_info(recording, self)

    def __iter__(self) -> Iterator[_T]:
        return self

    def __next__(self) -> _T:
        for item in self._items:
            return item
        raise StopIteration

    def close(self) -> None:
        self._items = iter(())
