"""A local Anthropic-compatible HTTP server for tests and demos, built on the SDK's own types.

Each answer is deterministic (see ``_fake_claude``), has a fresh ``id``, and is validated as
the ``anthropic`` SDK's own type, then sent with the fields that were set. One handler per
endpoint: ``POST /v1/messages`` (with SSE streams), ``POST /v1/messages/count_tokens``,
``GET /v1/models`` and ``GET /v1/models/{id}``; anything else is a 404, and a request the
server cannot read a 400, with Anthropic's error body and a ``request-id`` header.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, Self, get_args

from anthropic import types as api
from pydantic import BaseModel, ValidationError

from llmcache.testing import _fake_claude as fake
from llmcache.testing._loopback import LoopbackHTTPServer

__all__ = ["FakeAnthropicServer"]

JSONDict = dict[str, Any]
Event = tuple[str, BaseModel | JSONDict]  # one SSE event: its ``event:`` name and its data
Reply = BaseModel | JSONDict | Iterator[Event]  # a JSON body, or a stream of events

MODELS = ("claude-opus-4-5", "claude-sonnet-4-6", "claude-haiku-4-5")  # what /v1/models lists
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_EVENTS: dict[str, type[BaseModel]] = {  # by their ``type``
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in get_args(get_args(api.RawMessageStreamEvent)[0])
}


class HTTPError(Exception):
    """An endpoint's failure, answered with an Anthropic error body."""

    def __init__(self, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        fallback = "api_error" if status >= 500 else "invalid_request_error"
        self.status, self.error_type = status, error_type or _ERROR_TYPES.get(status, fallback)

    def body(self, request_id: str) -> api.ErrorResponse:
        error = {"type": self.error_type, "message": str(self)}
        return api.ErrorResponse.model_validate(
            {"type": "error", "error": error, "request_id": request_id}
        )


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _messages(server: FakeAnthropicServer, body: JSONDict) -> Reply:
    prompt = fake.read_prompt(body)
    answer = fake.plan_message(body, prompt)  # before the cache: a rejected request writes none
    usage = {
        **server._cache_usage(body["model"], prompt),
        "output_tokens": answer.output_tokens,
        "service_tier": "standard",
    }
    message = {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [block.content() for block in answer.blocks],
        "stop_reason": answer.stop_reason,
        "stop_sequence": answer.stop_sequence,
        "usage": usage,
    }
    if not body.get("stream"):
        server._sleep(answer.output_tokens, first=True)
        return api.Message.model_validate(message)

    def event(event_type: str, **fields: Any) -> Event:
        return event_type, _EVENTS[event_type].model_validate({"type": event_type, **fields})

    def events() -> Iterator[Event]:
        unfinished: JSONDict = {"content": [], "stop_reason": None, "stop_sequence": None}
        yield event(
            "message_start",
            message={**message, **unfinished, "usage": {**usage, "output_tokens": 1}},
        )
        server._sleep(0, first=True)
        for index, block in enumerate(answer.blocks):
            yield event("content_block_start", index=index, content_block=block.content(empty=True))
            if index == 0:  # where the API sends its keep-alive
                yield "ping", {"type": "ping"}
            for delta in block.deltas():
                server._sleep(1)
                yield event("content_block_delta", index=index, delta=delta)
            yield event("content_block_stop", index=index)
        end = {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence}
        yield event(
            "message_delta",
            delta=end,
            usage={k: v for k, v in usage.items() if k.endswith("tokens")},
        )
        yield event("message_stop")

    return events()


def _count_tokens(server: FakeAnthropicServer, body: JSONDict) -> Reply:
    return api.MessageTokensCount(input_tokens=fake.read_prompt(body).total)


def _model_info(model_id: str) -> api.ModelInfo:
    family, *version = model_id.removeprefix("claude-").split("-")
    return api.ModelInfo.model_validate(
        {
            "type": "model",
            "id": model_id,
            "display_name": f"Claude {family.title()} {'.'.join(version)}",
            "created_at": "2025-10-01T00:00:00Z",
            "lifecycle": "active",
        }
    )


def _models(server: FakeAnthropicServer, body: JSONDict, model_id: str | None = None) -> Reply:
    if model_id is not None:
        if model_id not in MODELS:
            raise HTTPError(404, f"model: {model_id}")
        return _model_info(model_id)
    data = [_model_info(model).model_dump(mode="json", exclude_unset=True) for model in MODELS]
    return {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}


# (method, path pattern) -> the endpoint (its arguments: the path's groups) and required fields
_ROUTES: dict[tuple[str, str], tuple[Callable[..., Reply], tuple[str, ...]]] = {
    ("POST", "/v1/messages"): (_messages, ("model", "messages", "max_tokens")),
    ("POST", "/v1/messages/count_tokens"): (_count_tokens, ("model", "messages")),
    ("GET", "/v1/models(?:/([^/]+))?"): (_models, ()),
}


def _answer(server: FakeAnthropicServer, method: str, path: str, body: JSONDict) -> Reply:
    """What the endpoint for ``method`` and ``path`` answers to ``body``."""
    for (route_method, pattern), (endpoint, required) in _ROUTES.items():
        match = re.fullmatch(pattern, path)
        if match and route_method == method:
            if missing := [key for key in required if not body.get(key)]:
                raise HTTPError(400, f"{missing[0]}: Field required")
            try:
                return endpoint(server, body, *match.groups())
            except ValidationError as exc:  # the request echoes what the SDK's types reject
                where = exc.errors()[0]
                raise HTTPError(400, f"{where['loc']}: {where['msg']}") from exc
            except (LookupError, TypeError, ValueError) as exc:  # a field missing or malformed
                raise HTTPError(400, f"{type(exc).__name__}: {exc}") from exc
    raise HTTPError(404, f"Not found: {method} {path}")


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        owner: FakeAnthropicServer = self.server.owner
        request_id = _new_id("req_")
        try:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            path = self.path.split("?")[0].rstrip("/")
            abort = owner._record(path, body, dict(self.headers.items()))
            if body is not None and not isinstance(body, dict):
                raise HTTPError(400, "There was an error parsing the body of your request.")
            self._send(200, _answer(owner, self.command, path, body or {}), request_id, abort)
        except HTTPError as exc:
            self._send(exc.status, exc.body(request_id), request_id)
        except OSError:  # the client went away
            self.close_connection = True

    do_POST = do_GET

    def _send(
        self,
        status: int,
        reply: Reply,
        request_id: str,
        abort: tuple[int, str | None] | None = None,
    ) -> None:
        """A JSON body or Server-Sent Events, in HTTP/1.1 chunks. ``abort`` (events, error):
        after that many events, an ``error`` event of that type ends the stream, or without
        one the connection is cut without the last chunk (the client sees an incomplete body)."""
        streamed = isinstance(reply, Iterator)
        self.send_response(status)
        self.send_header("Content-Type", "text/event-stream" if streamed else "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", request_id)
        if status >= 400:  # how long the SDK waits before a retry
            self.send_header("retry-after-ms", "1")
        self.end_headers()
        events = reply if isinstance(reply, Iterator) else iter([("", reply)])
        for sent, (name, data) in enumerate(events):
            if streamed and abort is not None and sent == abort[0]:
                if abort[1] is None:
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                failure = HTTPError(500, f"Simulated {abort[1]} mid-stream.", abort[1])
                self._write("error", failure.body(request_id), streamed)
                break
            self._write(name, data, streamed)
        self.wfile.write(b"0\r\n\r\n")

    def _write(self, name: str, data: BaseModel | JSONDict, streamed: bool) -> None:
        if isinstance(data, BaseModel):  # as the API sends it: the fields that were set
            text = data.model_dump_json(exclude_unset=True, by_alias=True)
        else:
            text = json.dumps(data)
        if streamed:
            text = f"event: {name}\ndata: {text}\n\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(text.encode()), text.encode()))
        self.wfile.flush()


class FakeAnthropicServer:
    """An Anthropic-compatible HTTP server on ``127.0.0.1``, served from a daemon thread::

        with FakeAnthropicServer(latency_per_token=0.01) as server:
            client = Anthropic(base_url=server.base_url, api_key="test")
            client.messages.create(model="claude-sonnet-4-6", max_tokens=256, messages=[...])
            assert server.requests == 1

    ``latency_per_token`` is slept per output token (streams sleep between deltas, other
    answers the total up front), ``base_latency`` before any answer (the time to first token);
    ``port=0`` binds a free port; with ``api_key`` set, a request that carries another key (as
    ``x-api-key`` or ``Authorization: Bearer``) gets a 401. ``requests`` and
    ``requests_by_path`` count every request received, the ones failed on purpose by
    :meth:`fail_next` included. Prompt caching is simulated: a prefix ending at a
    ``cache_control`` breakpoint is written the first time a server sees it and read after
    (see :meth:`clear_prompt_cache`).
    """

    def __init__(
        self,
        *,
        latency_per_token: float = 0.0,
        base_latency: float = 0.0,
        port: int = 0,
        api_key: str | None = None,
    ) -> None:
        self.latency_per_token, self.base_latency = latency_per_token, base_latency
        self.api_key = api_key
        self.last_request_body: Any = None  # the parsed JSON body of the latest request
        self.last_request_headers: dict[str, str] = {}  # its headers, names lower-cased
        self._port, self._lock = port, threading.Lock()
        self._httpd: LoopbackHTTPServer | None = None
        self._by_path: Counter[str] = Counter()
        self._failing = (0, 500)  # how many of the next requests fail, and with what status
        self._abort: tuple[int, str | None] | None = None
        self._prompt_cache: dict[int, None] = {}  # the prefix keys seen, oldest first

    def start(self) -> Self:
        if self._httpd is None:  # clients hang up mid-stream on purpose: no tracebacks
            self._httpd = LoopbackHTTPServer(_Handler, self, port=self._port, report_errors=False)
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
            raise RuntimeError("FakeAnthropicServer is not running; call start() first")
        return self._httpd.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: pass it as ``base_url`` to ``Anthropic(...)``, whose
        paths (unlike OpenAI's) start with ``/v1``."""
        return f"http://127.0.0.1:{self.port}"

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

    def clear_prompt_cache(self) -> None:
        """Forget every cached prefix: the next request with breakpoints writes them again."""
        with self._lock:
            self._prompt_cache.clear()

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests (any path) with HTTP ``status`` and an error body
        (529: ``overloaded_error``). The SDK retries 408, 409, 429 and 5xx by default: its
        retries use up failures too."""
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("n must be >= 0 and status an HTTP error code")
        with self._lock:
            self._failing = (n, status)

    def abort_stream_after(self, n_events: int, *, error: str | None = None) -> None:
        """Make the next stream drop its connection after ``n_events`` SSE events (the
        ``ping`` after the first ``content_block_start`` counts), or, with ``error`` (such as
        ``"overloaded_error"``), send an ``error`` event then, as the API does mid-stream."""
        if n_events < 0 or (error is not None and error not in _ERROR_TYPES.values()):
            raise ValueError(f"n_events must be >= 0 and error one of {_ERROR_TYPES.values()}")
        with self._lock:
            self._abort = (n_events, error)

    def _sleep(self, tokens: int, *, first: bool = False) -> None:  # as if generating tokens
        time.sleep(self.latency_per_token * tokens + (self.base_latency if first else 0))

    def _cache_usage(self, model: str, prompt: fake.Prompt) -> JSONDict:
        with self._lock:
            return fake.cache_usage(prompt, model, self._prompt_cache)

    def _api_keys(self) -> tuple[str | None, str]:
        """The key a request carries: SDKs send ``x-api-key`` or a bearer token."""
        headers = self.last_request_headers
        return headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer ")

    def _record(
        self, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, str | None] | None:
        """Count a request and fail it if :meth:`fail_next` (or the API key) says so; else, for
        a stream, when to end it early (:meth:`abort_stream_after`), if at all."""
        with self._lock:
            self._by_path[path] += 1
            self.last_request_body = body
            self.last_request_headers = {k.lower(): v for k, v in headers.items()}
            failures, status = self._failing
            self._failing = (max(0, failures - 1), status)
            denied = self.api_key is not None and self.api_key not in self._api_keys()
            abort = None
            if not (failures or denied) and isinstance(body, dict) and body.get("stream"):
                abort, self._abort = self._abort, None
        if failures:
            raise HTTPError(status, f"Simulated failure (HTTP {status}).")
        if denied:
            raise HTTPError(401, "invalid x-api-key")
        return abort
