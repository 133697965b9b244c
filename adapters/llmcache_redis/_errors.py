"""redis-py's exceptions as llmcache's `BackendError`, in one place (httpx's `map_exceptions`).

Every operation of the tier runs inside ``with self._errors:``, except the sync hit path
(`RedisBackend.get`), which catches `REDIS_ERRORS` and raises `backend_error` itself to save
the context manager's two calls. The original exception stays
the error's cause: the core's breakers read the chain (`TimeoutError`, redis-py's
``TimeoutError``/``ConnectionError`` by name) to tell an unreachable tier from one that
refused this operation.
"""

from __future__ import annotations

from types import TracebackType

import redis
import redis.exceptions

from llmcache.ext import BackendError

__all__ = ["REDIS_ERRORS", "RedisErrors", "backend_error"]

# What redis-py raises: RedisError and its subclasses, and the cluster client's own base
# class, which is not a RedisError; OSError for what the socket raises under them (our
# deadline's TimeoutError included).
REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis.RedisError,
    redis.exceptions.RedisClusterException,
    OSError,
)


def backend_error(name: str, error: BaseException) -> BackendError:
    """A redis-py exception as llmcache's, naming the tier (never its password)."""
    return BackendError(f"{name}: {type(error).__name__}: {error}")


class RedisErrors:
    """A context manager raising `BackendError` from what redis-py raises inside it.

    A class rather than ``@contextlib.contextmanager``: every operation enters it, and a
    reusable instance with two plain methods costs no generator per operation. Anything that
    is not a client error (a bug, a cancellation, KeyboardInterrupt) passes through as it is.

    Its twin, `UpstashErrors` in llmcache_upstash/_errors.py, differs in what it translates
    (the SDK documents no exception types); adapters import only llmcache's public names,
    never each other, so each keeps its own.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name  # the tier, as the errors name it

    # The context-manager protocol (its `__exit__` signature is every context manager's,
    # e.g. the OpenAI adapter's streams and clients).
    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None and isinstance(error, REDIS_ERRORS):
            raise backend_error(self.name, error) from error
