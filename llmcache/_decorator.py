"""`@cache.cached`: the wrapper is specialised once, at decoration time.

The hit path is the product, so the wrapper does the least it can: a contextvar read, the
argument binding, a look at the argument types and one orjson call (`fast_body`), one xxh3
call and one LRU lookup; everything else (options, the first read of a namespace's
generation, lower tiers, misses) goes through the `CallSite`.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from xxhash import xxh3_128_intdigest

from ._canonical import Binder, canonical_bytes, describe, fast_body
from ._options import check_seconds, current_options
from ._site import MISS, CallSite

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = ["CacheInfo", "CachedDecorator"]


class CacheInfo(NamedTuple):
    """Counters of one cached function in this process (like functools' CacheInfo)."""

    hits: int
    misses: int
    coalesced: int
    bypassed: int
    memory_hits: int
    unstorable: int


def _return_annotation(function: Callable[..., Any]) -> Any:
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # forward references that do not resolve: use the raw annotation
        annotation = inspect.signature(function).return_annotation
        return (
            None
            if annotation is inspect.Signature.empty or isinstance(annotation, str)
            else annotation
        )
    return hints.get("return")


class CachedDecorator:
    """Holds a decorator's arguments; calling it on a function returns the cached wrapper."""

    def __init__(
        self,
        cache: Cache,
        *,
        namespace: str | None,
        ttl: float | None,
        ignore: Iterable[str],
        version: str | int | None,
        usage: Callable[[Any], Mapping[str, Any] | None] | None,
    ) -> None:
        if isinstance(ignore, str):
            ignore = (ignore,)
        ttl = check_seconds("cached(ttl=...)", ttl)
        self.cache = cache
        self.namespace = namespace
        self.ttl = ttl
        self.ignore = tuple(ignore)
        self.version = version
        self.usage = usage

    def __call__(self, function: Callable[..., Any]) -> Any:
        if not callable(function):
            raise TypeError(f"cached() decorates functions, not {type(function).__qualname__}")
        site = CallSite(
            self.cache,
            describe(function),
            returns=_return_annotation(function),
            namespace=self.namespace,
            ttl=self.ttl,
            version=self.version,
            usage=self.usage,
        )
        binder = Binder(function, self.ignore)
        if inspect.iscoroutinefunction(function):
            wrapper = _async_wrapper(function, site, binder)
        else:
            wrapper = _sync_wrapper(function, site, binder)
        _attach(wrapper, site, binder)
        return wrapper


def _sync_wrapper(function: Callable[..., Any], site: CallSite, binder: Binder) -> Any:
    cache = site.cache
    namespace = site.namespace
    memory_hit = site.memory_hit
    lower_hit = site.lower_hit
    memory = site.cache.memory
    bind = binder.bind
    version = site.version
    head = (site.identity, version)
    where = site.identity

    def slow_body(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        return canonical_bytes(bind(args, kwargs), where, head)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_options() is None and cache.enabled and namespace.loaded:
            try:
                body = fast_body(where, version, bind(args, kwargs))
            except Exception:  # the slow path canonicalises it, or names the bad argument
                return site.run(lambda: slow_body(args, kwargs), lambda: function(*args, **kwargs))
            seed, prefix = namespace.state
            fingerprint = xxh3_128_intdigest(body, seed)
            if memory is not None:
                value = memory_hit(fingerprint)
                if value is not MISS:
                    return value
            value = lower_hit(fingerprint, namespace, prefix)
            if value is not MISS:
                return value
            compute = lambda: function(*args, **kwargs)  # noqa: E731 (made only on a miss)
            return site.miss(fingerprint, namespace, prefix, compute, None)
        return site.run(lambda: slow_body(args, kwargs), lambda: function(*args, **kwargs))

    return wrapper


def _async_wrapper(function: Callable[..., Any], site: CallSite, binder: Binder) -> Any:
    cache = site.cache
    namespace = site.namespace
    memory_hit = site.memory_hit
    memory = site.cache.memory
    bind = binder.bind
    version = site.version
    head = (site.identity, version)
    where = site.identity

    def slow_body(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        return canonical_bytes(bind(args, kwargs), where, head)

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_options() is None and cache.enabled and namespace.loaded:
            try:
                body = fast_body(where, version, bind(args, kwargs))
            except Exception:
                return await site.arun(
                    lambda: slow_body(args, kwargs), lambda: function(*args, **kwargs)
                )
            seed, prefix = namespace.state
            fingerprint = xxh3_128_intdigest(body, seed)
            if memory is not None:
                value = memory_hit(fingerprint)
                if value is not MISS:
                    return value
            return await site.aresolve(
                fingerprint, namespace, prefix, lambda: function(*args, **kwargs), None, False
            )
        return await site.arun(lambda: slow_body(args, kwargs), lambda: function(*args, **kwargs))

    return wrapper


def _attach(wrapper: Any, site: CallSite, binder: Binder) -> None:
    """Hang introspection off the wrapper, as cachetools and functools do."""

    def cache_key(*args: Any, **kwargs: Any) -> str:
        """The signed key this call would use (under the current `options`)."""
        return site.key(binder.bind(args, kwargs))

    def cache_info() -> CacheInfo:
        c = site.counters
        return CacheInfo(c.hits, c.misses, c.coalesced, c.bypassed, c.memory_hits, c.unstorable)

    wrapper.cache_key = cache_key
    wrapper.cache_info = cache_info
    wrapper.cache = site.cache
    wrapper.cache_site = site
