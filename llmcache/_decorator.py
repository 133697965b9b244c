"""`@cache.cached`: the wrapper is specialised once, at decoration time.

The hit path is the product, so the wrapper (`_hot.sync_wrapper` / `_hot.async_wrapper`)
does the least it can: a contextvar read, the argument binding, a look at the argument
types and one orjson call (`fast_body`), one xxh3 call and one LRU lookup; everything else
(options, the first read of a namespace's generation, misses) goes through the site's flow.

A module-level function's wrapper stays a plain Python function (the cheapest call there
is). A function defined in a class body gets a `CachedMethod` descriptor around it, so that
``obj.method.cache_key("q")`` binds ``obj`` like the call does. Type checkers see both as a
`CachedFunction[P, R]`.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    NamedTuple,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
)

from ._canonical import Binder, describe
from ._hot import async_wrapper, sync_wrapper
from ._options import check_seconds
from ._site import CallSite
from ._usage import UsageHook

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = ["CacheInfo", "CachedDecorator", "CachedFunction", "CachedMethod"]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")


class CacheInfo(NamedTuple):
    """Counters of one cached function in this process (like functools' CacheInfo)."""

    hits: int
    misses: int
    coalesced: int
    bypassed: int
    memory_hits: int
    unstorable: int


class CachedFunction(Protocol[P, R_co]):
    """What `cached` returns, for type checkers: the function's own signature, plus
    introspection in the style of functools and cachetools.

    For an ``async def``, `R_co` is the coroutine type, so ``await fn(...)`` keeps its type.
    On a method, ``obj.method`` is a `CachedFunction` of the remaining parameters.
    """

    @property
    def __wrapped__(self) -> Callable[P, R_co]:
        """The original, uncached function."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The signed key this call would use (under the current `options`)."""
        ...

    def cache_info(self) -> CacheInfo:
        """This function's counters in this process."""
        ...

    def cache_clear(self) -> None:
        """Drop this function's entries in this workspace, in every process and tier."""
        ...

    @overload
    def __get__(
        self, instance: None, owner: type[Any] | None = None
    ) -> CachedFunction[P, R_co]: ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, Q], R], instance: S, owner: type[Any] | None = None
    ) -> CachedFunction[Q, R]: ...


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
        usage: UsageHook | None,
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

    def __call__(self, function: Callable[P, R]) -> CachedFunction[P, R]:
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
            wrapper = async_wrapper(function, site, binder)
        else:
            wrapper = sync_wrapper(function, site, binder)
        _attach(wrapper, site, binder)
        if _defined_in_class_body(function):
            return typing.cast(CachedFunction[P, R], CachedMethod(wrapper))
        return typing.cast(CachedFunction[P, R], wrapper)


def _defined_in_class_body(function: Callable[..., Any]) -> bool:
    """True for ``class C: def f(...)`` (qualname ``C.f``), False for module-level and nested
    functions (``f``, ``outer.<locals>.f``): only methods need a binding descriptor, and a
    plain function's wrapper stays a plain function, the cheapest thing to call."""
    parts = getattr(function, "__qualname__", "").split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


def _attach(wrapper: Any, site: CallSite, binder: Binder) -> None:
    """Hang introspection off the wrapper, as cachetools and functools do."""

    def cache_key(*args: Any, **kwargs: Any) -> str:
        """The signed key this call would use (under the current `options`)."""
        return site.key(binder.bind(args, kwargs))

    def cache_info() -> CacheInfo:
        c = site.counters
        return CacheInfo(c.hits, c.misses, c.coalesced, c.bypassed, c.memory_hits, c.unstorable)

    def cache_clear() -> None:
        """Drop this function's entries in this workspace, in every process and tier.

        Like `Cache.invalidate` for one function: a new generation of the function's own
        record, so nothing is scanned, and other processes follow within a second.
        """
        site.clear()

    wrapper.cache_key = cache_key
    wrapper.cache_info = cache_info
    wrapper.cache_clear = cache_clear
    wrapper.cache = site.cache
    wrapper.cache_site = site


class CachedMethod:
    """A cached function defined in a class body: binds the instance like a function does.

    ``obj.method`` is a `BoundCachedMethod`, so ``obj.method(...)``,
    ``obj.method.cache_key(...)`` and ``obj.method.__wrapped__(...)`` all get ``obj`` first.
    The instance stays out of the key (see `Binder`), as with cachetools.cachedmethod.
    ``Class.method`` is this descriptor itself, called with the instance first.
    """

    def __init__(self, wrapper: Callable[..., Any]) -> None:
        functools.update_wrapper(self, wrapper)  # __name__, __doc__, __wrapped__, attributes
        self._wrapper = wrapper

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(*args, **kwargs)

    def __get__(self, instance: object, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        return BoundCachedMethod(self._wrapper, instance)

    def __repr__(self) -> str:
        return f"<cached method {getattr(self, '__qualname__', '?')}>"


class BoundCachedMethod(functools.partial[Any]):
    # ``obj.method`` of a `CachedMethod`: a partial (called in C, no Python frame of its own
    # on the hit path) that also binds the instance into the introspection methods. No
    # docstring: `__doc__` is the method's, as with a bound method.

    __slots__ = ()

    @property  # type: ignore[override]
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self.func.__doc__

    @property
    def __self__(self) -> object:
        return self.args[0]

    @property
    def __func__(self) -> Callable[..., Any]:
        return self.func

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        """The original, uncached method, bound to the instance."""
        return types.MethodType(self.func.__wrapped__, self.args[0])  # type: ignore[attr-defined]

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        """The signed key this call would use (under the current `options`)."""
        return self.func.cache_key(self.args[0], *args, **kwargs)  # type: ignore[attr-defined,no-any-return]

    def cache_info(self) -> CacheInfo:
        """The method's counters in this process (all instances together)."""
        return self.func.cache_info()  # type: ignore[attr-defined,no-any-return]

    def cache_clear(self) -> None:
        """Drop the method's entries (for all instances, as the key leaves them out)."""
        self.func.cache_clear()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        # __name__, __qualname__, __doc__, cache, cache_site...: the wrapper's, as a bound
        # method forwards them to its function.
        return getattr(self.func, name)

    def __repr__(self) -> str:
        return f"<bound cached method {self.func.__qualname__} of {self.args[0]!r}>"
