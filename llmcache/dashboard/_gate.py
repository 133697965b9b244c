"""Who may see the dashboard: the token check, the allowed Host names, the security headers.

Bound to loopback, the dashboard needs no token (a token set anyway is checked), but it only
answers requests for a loopback Host name, so a web page elsewhere cannot read it through
DNS rebinding. Bound to any other address it needs the token: as a bearer token
(``Authorization: Bearer ...``, as Prometheus sends it), or once as ``?token=...``, which
sets a cookie and redirects to the same page without the token in its address.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["COOKIE", "LOOPBACK_HOSTS", "SECURITY_HEADERS", "Gate"]

COOKIE = "llmcache_dashboard_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
# Scripts and styles only from the dashboard itself: even markup that got through would not
# run. The page needs nothing from anywhere else (it works offline).
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]

Scope = dict[str, Any]


class Gate:
    """ASGI middleware in front of the app: Host, token, headers."""

    def __init__(self, app: Any, *, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.loopback_only and _host_name(headers.get("host", "")) not in LOOPBACK_HOSTS:
            await _plain(send, 421, "this dashboard answers only on 127.0.0.1 or localhost")
            return
        if self.token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if _matches(query.get("token"), self.token):
                await _set_cookie_and_redirect(send, scope["path"], query, self.token)
                return
            if not self._allowed(headers):
                await _plain(
                    send,
                    401,
                    "missing or wrong token: open the address `llmcache dashboard` printed "
                    "(?token=...), or send Authorization: Bearer <token>",
                )
                return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)

    def _allowed(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return _matches(authorization[7:].strip(), self.token)
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(headers.get("cookie", ""))
        found = cookie.get(COOKIE)
        return _matches(found.value if found is not None else None, self.token)


def _matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _host_name(host: str) -> str:
    """The Host header without its port ("[::1]:8765" -> "[::1]")."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


async def _plain(send: Any, status: int, text: str) -> None:
    body = (text + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _set_cookie_and_redirect(send: Any, path: str, query: dict[str, str], token: str) -> None:
    rest = urlencode({k: v for k, v in query.items() if k != "token"})
    # Only a path of this site: "//elsewhere" would be another site's address.
    location = ("/" + path.lstrip("/")) + (f"?{rest}" if rest else "")
    cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    headers = [
        (b"location", location.encode("latin-1")),
        (b"set-cookie", cookie.encode("latin-1")),
        *SECURITY_HEADERS,
    ]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
