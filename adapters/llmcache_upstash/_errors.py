"""What the upstash-redis SDK raises as llmcache's `BackendError`, in one place (httpx's
`map_exceptions`).

The SDK documents no exception types: a failed request surfaces as httpx errors,
``UpstashError``, or a JSON/KeyError/AttributeError on an unexpected body (e.g. an HTML error
page from a proxy). All of them mean the tier failed this call, so every ``Exception`` is
translated. The original stays the error's cause: the core's breakers read the chain
(httpx's ``ConnectTimeout``, ``ReadTimeout``, our deadline's `TimeoutError`) to tell an
unreachable tier from one that refused this operation.
"""

from __future__ import annotations

from types import TracebackType

from llmcache.ext import BackendError

__all__ = ["UpstashErrors"]


class UpstashErrors:
    """A context manager raising `BackendError` from any error raised inside it.

    A reusable instance with two plain methods (no generator per operation, as
    ``@contextlib.contextmanager`` would make). A cancellation, KeyboardInterrupt or
    SystemExit is not an ``Exception`` and passes through as it is.

    Its twin, `RedisErrors` in llmcache_redis/_errors.py, differs in what it translates
    (redis-py's own classes only); adapters import only llmcache's public names, never each
    other, so each keeps its own.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name  # the tier, as the errors name it (never its token)

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
        if error is not None and isinstance(error, Exception):
            raise BackendError(f"{self.name}: {type(error).__name__}: {error}") from error
