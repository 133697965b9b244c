"""Serving the dashboard: the address checks, the listening socket, uvicorn, Ctrl-C.

The socket is bound here, before uvicorn starts, so a port in use is one `DashboardError`
line rather than uvicorn's log and exit. uvicorn stops gracefully on Ctrl-C (SIGINT) or
SIGTERM.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError

if TYPE_CHECKING:
    from .._cache import Cache

__all__ = [
    "TOKEN_VARIABLE",
    "Binding",
    "DashboardError",
    "bind",
    "check_token",
    "is_loopback",
    "new_token",
    "serve",
]

TOKEN_VARIABLE = "LLMCACHE_DASHBOARD_TOKEN"
_TOKEN_TEXT = re.compile(r"[A-Za-z0-9._~-]{16,}")


class DashboardError(ConfigError):
    """The dashboard cannot start as asked (a port in use, a public address without a
    token); the message says what to do."""


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (127.0.0.0/8, ::1)."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in found)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def check_token(token: str) -> str:
    """`token` if it can be sent in a cookie and a URL as it is, and is long enough."""
    if not _TOKEN_TEXT.fullmatch(token):
        raise DashboardError(
            f"{TOKEN_VARIABLE} must be at least 16 characters among letters, digits and "
            f"._~-; e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )
    return token


@dataclass
class Binding:
    """A listening socket and the address to open in a browser."""

    sock: socket.socket
    url: str


def bind(host: str, port: int) -> Binding:
    """Listen on `host`:`port` (port 0: any free one)."""
    if not 0 <= port <= 65535:  # the socket layer would wrap 70000 to 4464
        raise DashboardError(f"--port takes 0 to 65535, not {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise DashboardError(f"--host {host}: not an address of this machine ({error})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        reason = "is in use" if error.errno == 98 else f"cannot be used ({error.strerror})"
        raise DashboardError(
            f"port {port} on {host} {reason}: pass another --port (or stop what holds it)"
        ) from None
    shown_host = f"[{host}]" if ":" in host else host
    return Binding(sock, f"http://{shown_host}:{sock.getsockname()[1]}/")


def serve(
    cache: Cache,
    *,
    binding: Binding,
    token: str | None = None,
    refresh_s: float = 2.0,
    on_server: Callable[[Any], None] | None = None,
) -> None:
    """Serve `cache`'s dashboard on `binding` until Ctrl-C or SIGTERM (then return).

    `on_server(server)` is given the uvicorn Server before it runs (whoever runs it in a
    thread stops it with ``server.should_exit = True``). The socket already listens, so a
    request made meanwhile waits for it rather than failing.
    """
    import uvicorn

    from ._app import create_app

    loopback = is_loopback(binding.sock.getsockname()[0])
    app = create_app(cache, token=token, loopback_only=loopback, refresh_s=refresh_s)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if on_server is not None:
        on_server(server)
    try:
        server.run(sockets=[binding.sock])
    finally:
        with contextlib.suppress(OSError):
            binding.sock.close()
