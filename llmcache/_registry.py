"""Tier URL schemes → backend classes, and provider names → provider adapters.

Built-in tiers are named here as lazy "module:Class" strings; everything else is found
through the ``llmcache.backends`` and ``llmcache.providers`` entry point groups, which is
also how our own Redis, Upstash and OpenAI adapters are found: the core never imports an
adapter by name.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from ._backend import Backend
from ._errors import ConfigError, MissingDependencyError

__all__ = [
    "backend_from_url",
    "known_schemes",
    "load_providers",
    "register_backend",
    "register_provider",
]

_BUILTIN: dict[str, str] = {
    "memory": "llmcache._memory:MemoryTier",
    "disk": "llmcache._disk:DiskTier",
}
_REGISTERED: dict[str, type[Backend]] = {}
_REGISTERED_PROVIDERS: list[Any] = []
_INSTALLED_PROVIDERS: list[Any] | None = None  # the entry points', loaded once
# The pip extra that brings each of our adapters' client libraries.
_EXTRAS = {
    "redis": "redis",
    "rediss": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
    "upstash": "upstash",
}


def register_backend(scheme: str, backend: type[Backend]) -> None:
    """Register a backend class for a URL scheme at run time (entry points do it at install)."""
    if not (isinstance(backend, type) and issubclass(backend, Backend)):
        raise TypeError("register_backend expects a Backend subclass")
    _REGISTERED[scheme] = backend


def _entry_points(group: str) -> dict[str, Any]:
    # Read only when a scheme is not built in, or providers are loaded: scanning the installed
    # distributions (and importing importlib.metadata) is not for `import llmcache`.
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=group)}


def known_schemes() -> list[str]:
    return sorted({*_BUILTIN, *_REGISTERED, *_entry_points("llmcache.backends")})


def _load(reference: str) -> Any:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def backend_class(scheme: str) -> type[Backend]:
    if scheme in _REGISTERED:
        return _REGISTERED[scheme]
    if scheme in _BUILTIN:
        loaded: type[Backend] = _load(_BUILTIN[scheme])
        return loaded
    found = _entry_points("llmcache.backends").get(scheme)
    if found is None:
        raise ConfigError(
            f"unknown tier scheme {scheme!r}; known schemes: {', '.join(known_schemes())}. "
            f"Third-party backends register under the 'llmcache.backends' entry point group."
        )
    try:
        cls: type[Backend] = found.load()
    except MissingDependencyError:
        raise  # the adapter already says what to install
    except ImportError as error:
        raise MissingDependencyError(
            f"the {scheme}:// tier needs a package that is not installed ({error}); "
            f"install it with: pip install 'llmcache[{_EXTRAS.get(scheme, scheme)}]'"
        ) from error
    return cls


def scheme_of(url: str) -> str:
    if "://" not in url:
        # "memory" and "disk" may be written bare, options too: "memory?max_bytes=2000000".
        return url.strip().partition("?")[0].lower()
    return urlsplit(url).scheme.lower()


def backend_from_url(url: str, **options: Any) -> Backend:
    """Build a tier from its URL, e.g. ``memory``, ``disk:///tmp/c``, ``redis://host:6379/0``."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"a tier must be a URL string like 'memory' or 'redis://...', got {url!r}"
        )
    scheme = scheme_of(url)
    cls = backend_class(scheme)
    if "://" not in url:
        url = f"{scheme}://?{url.strip().partition('?')[2]}"
    return cls.from_url(url, **options)


def register_provider(provider: Any) -> None:
    """Register a provider adapter at run time (entry points do it at install).

    A provider has a ``name``, ``can_wrap(client)`` and ``wrap(cache, client, **options)``,
    and may have ``usage_of(result) -> Usage | None`` (see `llmcache.ext.Provider`).
    Registered providers are asked before installed ones.
    """
    for method in ("can_wrap", "wrap"):
        if not callable(getattr(provider, method, None)):
            raise TypeError(f"register_provider expects a provider with a {method}() method")
    if provider not in _REGISTERED_PROVIDERS:
        _REGISTERED_PROVIDERS.insert(0, provider)


def load_providers() -> list[Any]:
    """Providers registered at run time, then those under ``llmcache.providers`` that import.

    The entry points are read and loaded once per process.
    """
    global _INSTALLED_PROVIDERS
    if _INSTALLED_PROVIDERS is None:
        installed = []
        for entry_point in _entry_points("llmcache.providers").values():
            try:
                installed.append(entry_point.load())
            except ImportError:
                continue  # its client library is not installed: it cannot wrap anything anyway
        _INSTALLED_PROVIDERS = installed
    return [*_REGISTERED_PROVIDERS, *_INSTALLED_PROVIDERS]
