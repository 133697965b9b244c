"""The lifecycle every test server shares: start, stop, close, ``with``, cleanup at exit.

A server subclasses :class:`ManagedServer`, implements ``start()`` (returning ``self``) and
``stop()``, and overrides ``close()`` when closing for good does more than stopping (deleting
a working directory, dropping a connection pool). ``start()`` calls ``_register_for_exit()``
and ``close()`` calls ``_unregister_for_exit()``: in between, the server is on a registry that
closes whatever a test forgot when the interpreter exits, so no process, thread or port
outlives the run.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from types import TracebackType
from typing import Self

_LIVE: set[ManagedServer] = set()
_LIVE_LOCK = threading.Lock()


class ManagedServer:
    """Base class: ``with server:`` starts it and closes it; leftovers are closed at exit."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop for good (the default: just stop)."""
        self.stop()
        self._unregister_for_exit()

    def _register_for_exit(self) -> None:
        with _LIVE_LOCK:
            _LIVE.add(self)

    def _unregister_for_exit(self) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@atexit.register
def _close_leftovers() -> None:
    with _LIVE_LOCK:
        leftovers = list(_LIVE)
    for server in leftovers:
        with contextlib.suppress(Exception):
            server.close()
