"""Configuration from LLMCACHE_* environment variables, secrets, and the default cache.

Variables:
    LLMCACHE_WORKSPACE   workspace (tenant) name, default "default"
    LLMCACHE_SECRET      the workspace secret (required when a shared tier is configured)
    LLMCACHE_TIERS       comma-separated tier URLs, default "memory,disk"
    LLMCACHE_DIR         folder of the disk tier and of a generated secret
    LLMCACHE_TTL         default time to live in seconds (unset: no expiry)
    LLMCACHE_DISABLE     "1" turns the default cache off (calls go straight through)
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._backend import Backend
    from ._cache import Cache

__all__ = ["env_settings", "get_default_cache", "load_or_create_secret", "set_default_cache"]

_SECRET_FILE = "secret"
_DEFAULT: Cache | None = None
_DEFAULT_LOCK = threading.Lock()
_TRUE = {"1", "true", "yes", "on"}


def load_or_create_secret(directory: Path) -> bytes:
    """The embedded default's secret: kept in the cache folder, readable by the owner only."""
    path = directory / _SECRET_FILE
    try:
        return _read_or_create_secret(path)
    except ValueError as error:
        raise ConfigError(
            f"{path} does not hold a hex secret; delete it to make a new one"
        ) from error
    except OSError as error:
        raise ConfigError(
            f"cannot read or create the cache's secret file {path} ({error}): make it readable "
            f"and its folder writable by this user, or set LLMCACHE_SECRET"
        ) from error


def _read_or_create_secret(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    # Written whole under a private name, then linked into place: link() fails if the file
    # exists, so when two processes race, both use the first one's secret, and neither can
    # read the other's half-written file.
    draft = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secret.hex())
        os.link(draft, path)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    finally:
        draft.unlink(missing_ok=True)
    return secret


def env_settings(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Cache keyword arguments from LLMCACHE_* variables."""
    env = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    if env.get("LLMCACHE_WORKSPACE"):
        settings["workspace"] = env["LLMCACHE_WORKSPACE"]
    if env.get("LLMCACHE_SECRET"):
        settings["secret"] = env["LLMCACHE_SECRET"]
    if env.get("LLMCACHE_TIERS"):
        settings["tiers"] = [t.strip() for t in env["LLMCACHE_TIERS"].split(",") if t.strip()]
    if env.get("LLMCACHE_TTL"):
        try:
            settings["ttl"] = float(env["LLMCACHE_TTL"])
        except ValueError:
            raise ConfigError(
                f"LLMCACHE_TTL={env['LLMCACHE_TTL']!r} is not a number of seconds"
            ) from None
    if env.get("LLMCACHE_DISABLE", "").strip().lower() in _TRUE:
        settings["enabled"] = False
    return settings


def get_default_cache() -> Cache:
    """The process-wide cache behind `llmcache.cached`, built from LLMCACHE_* on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = _build_default_cache()
    return _DEFAULT


def _build_default_cache() -> Cache:
    """The default cache; a disk tier that cannot work is left out with one warning.

    The default cache is built when a module using `@llmcache.cached` is imported, so a bad
    cache folder (read-only, a directory or a foreign file where the database belongs, an
    unreadable secret) must not crash the program: it runs from memory and says how to fix
    it. A Cache configured explicitly gets the ConfigError instead.
    """
    from ._cache import DEFAULT_TIERS, Cache
    from ._disk import DiskTier
    from ._registry import backend_from_url, scheme_of

    settings = env_settings()
    tiers: list[Backend] = []
    for url in settings.pop("tiers", DEFAULT_TIERS):
        try:
            tiers.append(backend_from_url(url))
        except ConfigError as error:
            # Only a folder or file that cannot be used; a mistake in the URL stays an error.
            import sqlite3  # loaded by the disk tier that failed; not at `import llmcache`

            unusable = isinstance(error.__cause__, (OSError, sqlite3.Error))
            if scheme_of(url).partition("?")[0] != "disk" or not unusable:
                raise
            _warn_without_disk(str(error))
    disks = [tier for tier in tiers if isinstance(tier, DiskTier)]
    if disks and "secret" not in settings:
        try:
            load_or_create_secret(disks[0].directory)  # what Cache will use: check it now
        except ConfigError as error:
            _warn_without_disk(str(error))
            for disk in disks:
                disk.close()
            tiers = [tier for tier in tiers if not isinstance(tier, DiskTier)]
    if not tiers:
        tiers.append(backend_from_url("memory"))
    return Cache(tiers=tiers, **settings)


def _warn_without_disk(reason: str) -> None:
    logging.getLogger("llmcache").warning(
        "llmcache: the default cache runs without its disk tier: %s", reason
    )


def set_default_cache(cache: Cache | None) -> None:
    """Replace the default cache (None: rebuild it from the environment on next use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        _DEFAULT = cache
