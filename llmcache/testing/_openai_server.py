"""A local OpenAI-compatible HTTP server for tests and demos, built on the SDK's own types.

``FakeOpenAIServer`` speaks enough of the OpenAI REST API for the real ``openai`` SDK
(sync ``OpenAI`` and ``AsyncOpenAI``) to work against it without any network access::

    with FakeOpenAIServer(latency_per_token=0.01) as server:
        client = OpenAI(base_url=server.base_url, api_key="test")
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        assert server.requests == 1

Answers are deterministic (see ``_fake_model``): the same request always gets the same
content, different requests get different content. Every response carries a fresh ``id``
(like the real API), so a cached response can be told apart from a freshly generated one.
Each answer is an ``openai.types`` object (``ChatCompletion``, ``ChatCompletionChunk``,
``Response`` and its stream events, ``CreateEmbeddingResponse``), so what the server sends
is what the SDK parses.

Endpoints (under ``/v1``), one handler each:

* ``POST /chat/completions`` - text, ``n``, ``max_tokens``/``max_completion_tokens``,
  function tools, ``logprobs``/``top_logprobs``, ``response_format`` (``json_schema``,
  ``json_object``), refusals (any message containing ``REFUSE``), SSE streaming (optional
  ``stream_options.include_usage``).
* ``POST /responses`` - string or item-list ``input``, ``instructions``,
  ``max_output_tokens``, ``text.format`` json_schema, function tools, refusals, streaming
  with typed ``event:`` lines.
* ``POST /embeddings`` - ``str``/``list[str]``/token-list inputs, ``dimensions``,
  ``encoding_format`` ``float`` or ``base64``.
* ``GET /models`` and ``GET /models/{id}``.

Anything else answers 404 with an OpenAI-style error body.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import urlsplit

from openai.types.shared import ErrorObject
from pydantic import BaseModel, ValidationError

from llmcache.testing._loopback import LoopbackHTTPServer
from llmcache.testing._openai_endpoints import HTTPError, JSONDict, SSEEvent, find_endpoint, new_id

__all__ = ["FakeOpenAIServer"]

_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout", "timeout"),
    409: ("conflict", "conflict"),
    422: ("invalid_request_error", None),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
}


def _error_body(status: int, message: str, param: str | None = None) -> JSONDict:
    error_type, code = _ERROR_TYPES.get(status, ("server_error", None))
    error = ErrorObject(message=message, type=error_type, param=param, code=code)
    return {"error": error.model_dump(exclude_unset=True, by_alias=True)}


def _dump(model: BaseModel) -> str:
    """The model as the API sends it: the fields that were set, under their wire names."""
    return model.model_dump_json(exclude_unset=True, by_alias=True)


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    timeout = 60  # idle keep-alive connections are closed after this many seconds

    @property
    def owner(self) -> FakeOpenAIServer:
        return cast(FakeOpenAIServer, self.server.owner)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            path = urlsplit(self.path).path.rstrip("/")
            fail_status = self.owner._record(path, body, dict(self.headers.items()))
            if fail_status is not None:
                message = f"Simulated failure (HTTP {fail_status})."
                self.send_json(fail_status, _error_body(fail_status, message), retry_ms="1")
                return
            if body is not None and not isinstance(body, dict):
                raise HTTPError(400, "We could not parse the JSON body of your request.")
            endpoint = find_endpoint(self.command, path)
            if endpoint is None:
                raise HTTPError(404, f"Invalid URL ({self.command} {self.path})")
            endpoint(self, body or {})
        except HTTPError as exc:
            self.send_json(exc.status, _error_body(exc.status, exc.message, exc.param))
        except ValidationError as exc:  # the request echoes something the SDK's types reject
            message = f"Invalid request: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
            self.send_json(400, _error_body(400, message))
        except OSError:  # the client went away
            self.close_connection = True

    def send_json(self, status: int, body: BaseModel | JSONDict, retry_ms: str = "") -> None:
        payload = _dump(body).encode() if isinstance(body, BaseModel) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", new_id("req_"))
        self.send_header("openai-processing-ms", "1")
        if retry_ms:
            self.send_header("retry-after-ms", retry_ms)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def send_events(self, events: Iterator[SSEEvent]) -> None:
        """Stream ``events`` as Server-Sent Events in HTTP/1.1 chunks.

        After ``abort_stream_after(n)`` the connection is cut after n events, without the
        terminating chunk, so the client sees an incomplete body.
        """
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", new_id("req_"))
        self.end_headers()
        abort_after = self.owner._take_abort()
        try:
            for sent, (name, data) in enumerate(events):
                if abort_after is not None and sent >= abort_after:
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                text = data if isinstance(data, str) else _dump(data)
                chunk = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
                self.wfile.write(f"{len(chunk.encode()):x}\r\n{chunk}\r\n".encode())
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:  # the client went away
            self.close_connection = True

    def sleep_for(self, tokens: int, *, first: bool = False) -> None:
        """Simulated generation time of ``tokens`` tokens, plus time to first token if first."""
        delay = self.owner.latency_per_token * tokens + (self.owner.base_latency if first else 0)
        if delay > 0:
            time.sleep(delay)


class FakeOpenAIServer:
    """An OpenAI-compatible HTTP server on ``127.0.0.1`` running in a daemon thread.

    Args:
        latency_per_token: seconds slept per generated output token (streamed responses
            sleep between chunks; non-streamed responses sleep the total up front).
        base_latency: seconds slept before any response body (time to first token).
        port: TCP port to bind; ``0`` (the default) picks a free port.

    Counters (``requests``, ``requests_by_path``) count every HTTP request received,
    including the ones failed on purpose via :meth:`fail_next`.
    """

    def __init__(
        self, *, latency_per_token: float = 0.0, base_latency: float = 0.0, port: int = 0
    ) -> None:
        self.latency_per_token = latency_per_token
        self.base_latency = base_latency
        self._requested_port = port
        self._lock = threading.Lock()
        self._httpd: LoopbackHTTPServer | None = None
        self._requests = 0
        self._by_path: dict[str, int] = {}
        self._fail_remaining = 0
        self._fail_status = 500
        self._abort_after: int | None = None
        self._last_body: Any = None
        self._last_headers: dict[str, str] = {}

    def start(self) -> Self:
        """Bind and start serving (idempotent). Returns ``self``."""
        if self._httpd is None:
            # Clients hang up mid-response on purpose (aborted streams): no tracebacks.
            self._httpd = LoopbackHTTPServer(
                _Handler, self, port=self._requested_port, report_errors=False
            )
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not running; call start() first")
        return self._httpd.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` - pass it as ``base_url`` to ``OpenAI(...)``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> int:
        """Total number of HTTP requests received since start / the last reset."""
        with self._lock:
            return self._requests

    @property
    def requests_by_path(self) -> dict[str, int]:
        """A snapshot of request counts keyed by URL path (e.g. ``/v1/chat/completions``)."""
        with self._lock:
            return dict(self._by_path)

    @property
    def last_request_body(self) -> Any:
        """The parsed JSON body of the most recent request (``None`` if it had none)."""
        with self._lock:
            return self._last_body

    @property
    def last_request_headers(self) -> dict[str, str]:
        """The headers of the most recent request (names lower-cased)."""
        with self._lock:
            return dict(self._last_headers)

    def reset_counts(self) -> None:
        """Zero ``requests`` and ``requests_by_path``."""
        with self._lock:
            self._requests, self._by_path = 0, {}

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests (any path) with HTTP ``status`` and an error body.

        The SDK retries 408/409/429/5xx by default; retries consume failures too.
        """
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("n must be >= 0 and status an HTTP error code")
        with self._lock:
            self._fail_remaining, self._fail_status = n, status

    def abort_stream_after(self, n_chunks: int) -> None:
        """Make the next streamed response drop its connection after ``n_chunks`` events."""
        if n_chunks < 0:
            raise ValueError("n_chunks must be >= 0")
        with self._lock:
            self._abort_after = n_chunks

    def _record(self, path: str, body: Any, headers: dict[str, str]) -> int | None:
        """Count a request; the HTTP status to fail it with, if ``fail_next`` asked for one."""
        with self._lock:
            self._requests += 1
            self._by_path[path] = self._by_path.get(path, 0) + 1
            self._last_body = body
            self._last_headers = {k.lower(): v for k, v in headers.items()}
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                return self._fail_status
            return None

    def _take_abort(self) -> int | None:
        with self._lock:
            abort, self._abort_after = self._abort_after, None
            return abort
