"""What the loopback test servers share.

* ``LoopbackHTTPServer``: the start/stop of every one (``FakeOpenAIServer``,
  ``FakeAnthropicServer``, the Upstash REST test server): an HTTP server on 127.0.0.1, served
  from a daemon thread, whose ``stop()`` cuts every open connection (idle keep-alive ones and
  handlers still writing included), so a client sees the server go away instead of waiting on
  a socket nobody will answer.
* ``LoopbackAPIServer`` and ``APIHandler``: the fake LLM APIs' common part: lifecycle, request
  counters, fault injection (``fail_next``, a stream cut short), latency, the last request,
  routing, and the JSON / Server-Sent Events writer. What differs between two APIs (error
  bodies and texts, the request-id header, the base path, routes) is a class attribute or a
  hook of the subclass.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, NamedTuple, Self

from pydantic import BaseModel, ValidationError

HOST = "127.0.0.1"

JSONDict = dict[str, Any]
Event = tuple[str | None, BaseModel | JSONDict | str]  # an SSE event: its ``event:`` and data
Reply = BaseModel | JSONDict | Iterator[Event]  # a JSON body, or a stream of events
# (method, path pattern) -> the endpoint (its arguments: the server, the body, the path's
# groups) and the body's required fields
Routes = dict[tuple[str, str], tuple[Callable[..., Reply], tuple[str, ...]]]


class LoopbackHTTPServer(ThreadingHTTPServer):
    """Serves ``handler_class`` on ``127.0.0.1:port`` (a free port for 0) from the moment it
    is made. The handler reaches ``owner`` as ``self.server.owner``; ``report_errors=False``
    keeps handler exceptions off stderr, for servers whose clients hang up on purpose."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # socketserver's default backlog of 5 drops bursts of clients

    def __init__(
        self,
        handler_class: type[BaseHTTPRequestHandler],
        owner: Any,
        *,
        port: int = 0,
        report_errors: bool = True,
    ) -> None:
        self.owner, self._report_errors = owner, report_errors
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((HOST, port), handler_class)
        name = f"{type(owner).__name__}:{self.port}"
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name=name)
        self._thread.daemon = True
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self._report_errors:
            super().handle_error(request, client_address)

    def stop(self) -> None:
        """Stop accepting, cut every open connection, and wait for the serving thread."""
        self.shutdown()
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.server_close()
        self._thread.join(timeout=5)


def new_id(prefix: str, digits: int = 32) -> str:
    """A fresh id: ``prefix`` and ``digits`` random hex digits."""
    return f"{prefix}{uuid.uuid4().hex[:digits]}"


class APIError(Exception, ABC):
    """An endpoint's failure: its HTTP ``status``, answered with the API's own error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    @abstractmethod
    def body(self, request_id: str) -> BaseModel | JSONDict:
        """The error body, as the API sends it (some carry the request's id)."""


class ErrorTexts(NamedTuple):
    """An API's wording of the 400s and 404s that ``LoopbackAPIServer`` answers itself."""

    missing: str  # a required field left out: {field}
    invalid: str  # what the SDK's types reject: {loc} (where) and {msg}
    malformed: str  # a field an endpoint cannot read: {kind} (the exception's type) and {exc}
    not_found: str  # no route: {method} and {path}
    unparsable: str  # a body that is not a JSON object


StreamCut = tuple[int, APIError | None]  # after that many events: this error event, or a hang-up


class APIHandler(BaseHTTPRequestHandler):
    """Reads a request, has its ``LoopbackAPIServer`` record and answer it, and writes the
    answer: a JSON body or Server-Sent Events, in HTTP/1.1 chunks."""

    server: LoopbackHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        api: LoopbackAPIServer = self.server.owner
        request_id = api._new_request_id()
        try:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            path = self.path.split("?")[0].rstrip("/")
            cut = api._record(path, body, dict(self.headers.items()))
            if body is not None and not isinstance(body, dict):
                raise api._error(400, api._texts.unparsable)
            self._send(200, api._answer(self.command, path, body or {}), request_id, cut)
        except APIError as exc:
            self._send(exc.status, exc.body(request_id), request_id)
        except OSError:  # the client went away
            self.close_connection = True

    do_POST = do_GET

    def _send(
        self, status: int, reply: Reply, request_id: str, cut: StreamCut | None = None
    ) -> None:
        """``cut`` (events, error): after that many events of a stream, ``error``'s body as an
        ``error`` event ends it, or without one the connection is cut without the last chunk
        (the client sees an incomplete body)."""
        api: LoopbackAPIServer = self.server.owner
        streamed = isinstance(reply, Iterator)
        self.send_response(status)
        self.send_header("Content-Type", "text/event-stream" if streamed else "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header(api._request_id_header, request_id)
        if status >= 400:  # how long the SDKs wait before a retry
            self.send_header("retry-after-ms", "1")
        self.end_headers()
        events = reply if isinstance(reply, Iterator) else iter([(None, reply)])
        for sent, (name, data) in enumerate(events):
            if streamed and cut is not None and sent == cut[0]:
                if cut[1] is None:
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._write("error", cut[1].body(request_id), streamed)
                break
            self._write(name, data, streamed)
        self.wfile.write(b"0\r\n\r\n")

    def _write(self, name: str | None, data: BaseModel | JSONDict | str, streamed: bool) -> None:
        if isinstance(data, BaseModel):  # as the API sends it: the fields that were set
            data = data.model_dump_json(exclude_unset=True, by_alias=True)
        text = data if isinstance(data, str) else json.dumps(data)
        if streamed:
            text = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(text.encode()), text.encode()))
        self.wfile.flush()


class LoopbackAPIServer:
    """A fake LLM API on ``127.0.0.1``, served from a daemon thread, with request counters,
    fault injection and simulated latency. Subclasses set the API's own parts below and
    offer their own ``abort_stream_after`` (its arguments differ between APIs)."""

    _routes: ClassVar[Routes]
    _error: ClassVar[type[APIError]]  # made as ``_error(status, message)``
    _texts: ClassVar[ErrorTexts]
    _request_id_header: ClassVar[str]
    _id_digits: ClassVar[int] = 32  # the length of the request ids, after ``req_``
    _base_path: ClassVar[str] = ""  # what ``base_url`` adds after the port
    _handler: ClassVar[type[APIHandler]] = APIHandler  # a subclass can take more methods

    def __init__(
        self, *, latency_per_token: float = 0.0, base_latency: float = 0.0, port: int = 0
    ) -> None:
        self.latency_per_token, self.base_latency = latency_per_token, base_latency
        self.last_request_body: Any = None  # the parsed JSON body of the latest request
        self.last_request_headers: dict[str, str] = {}  # its headers, names lower-cased
        self._port, self._lock = port, threading.Lock()
        self._httpd: LoopbackHTTPServer | None = None
        self._by_path: Counter[str] = Counter()
        self._failing = (0, 500)  # how many of the next requests fail, and with what status
        self._cut: StreamCut | None = None  # how the next stream ends early, if it does

    def start(self) -> Self:
        if self._httpd is None:  # clients hang up mid-stream on purpose: no tracebacks
            self._httpd = LoopbackHTTPServer(
                self._handler, self, port=self._port, report_errors=False
            )
        return self

    def stop(self) -> None:
        """Stop serving and cut every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return self._httpd.port

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to the API's SDK client."""
        return f"http://{HOST}:{self.port}{self._base_path}"

    @property
    def requests(self) -> int:
        with self._lock:
            return self._by_path.total()

    @property
    def requests_by_path(self) -> dict[str, int]:  # a snapshot
        with self._lock:
            return dict(self._by_path)

    def reset_counts(self) -> None:
        with self._lock:
            self._by_path.clear()

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests (any path) with HTTP ``status`` and the API's error
        body. The SDKs retry 408, 409, 429 and 5xx by default: their retries use up failures
        too."""
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("n must be >= 0 and status an HTTP error code")
        with self._lock:
            self._failing = (n, status)

    def _cut_next_stream(self, n_events: int, error: APIError | None = None) -> None:
        """End the next stream after ``n_events`` events: with ``error``'s body as an
        ``error`` event, or, without, by cutting the connection."""
        with self._lock:
            self._cut = (n_events, error)

    def _sleep(self, tokens: int, *, first: bool = False) -> None:  # as if generating tokens
        time.sleep(self.latency_per_token * tokens + (self.base_latency if first else 0))

    def _new_request_id(self) -> str:
        return new_id("req_", self._id_digits)

    def _refusal(self) -> APIError | None:
        """The error the latest request gets for what it carries (an API key, say), if any;
        called with the lock held, after ``last_request_*`` are set."""
        return None

    def _record(self, path: str, body: Any, headers: dict[str, str]) -> StreamCut | None:
        """Count a request and fail it if :meth:`fail_next` (or :meth:`_refusal`) says so;
        else, for a stream, how to end it early (``abort_stream_after``), if at all."""
        with self._lock:
            self._by_path[path] += 1
            self.last_request_body = body
            self.last_request_headers = {k.lower(): v for k, v in headers.items()}
            failures, status = self._failing
            self._failing = (max(0, failures - 1), status)
            simulated = f"Simulated failure (HTTP {status})."
            refusal = self._error(status, simulated) if failures else self._refusal()
            cut = None
            if refusal is None and isinstance(body, dict) and body.get("stream"):
                cut, self._cut = self._cut, None
        if refusal is not None:
            raise refusal
        return cut

    def _answer(self, method: str, path: str, body: JSONDict) -> Reply:
        """What the endpoint for ``method`` and ``path`` answers to ``body``."""
        texts = self._texts
        for (route_method, pattern), (endpoint, required) in self._routes.items():
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                if missing := [key for key in required if not body.get(key)]:
                    raise self._error(400, texts.missing.format(field=missing[0]))
                try:
                    return endpoint(self, body, *match.groups())
                except ValidationError as exc:  # the request echoes what the SDK's types reject
                    where = exc.errors()[0]
                    invalid = texts.invalid.format(loc=where["loc"], msg=where["msg"])
                    raise self._error(400, invalid) from exc
                except (LookupError, TypeError, ValueError) as exc:  # a field missing or bad
                    malformed = texts.malformed.format(kind=type(exc).__name__, exc=exc)
                    raise self._error(400, malformed) from exc
        raise self._error(404, texts.not_found.format(method=method, path=path))
