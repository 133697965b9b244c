"""A local OpenAI-compatible HTTP server for tests and demos, built on the SDK's own types.

Each answer is deterministic (see ``_fake_model``), has a fresh ``id``, and is validated as the
``openai`` SDK's own type, then sent with the fields that were set. One handler per endpoint,
under ``/v1``: ``POST /chat/completions``, ``POST /responses`` (both with SSE streams),
``POST /embeddings``, ``GET /models`` and ``GET /models/{id}``; anything else is a 404, and a
request the SDK's types reject or the server cannot read a 400, with OpenAI's error body.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, Self, get_args

from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.shared import ErrorObject
from pydantic import BaseModel, ValidationError

from llmcache.testing import _fake_model as fake
from llmcache.testing._loopback import LoopbackHTTPServer

__all__ = ["FakeOpenAIServer"]

JSONDict = dict[str, Any]
Event = tuple[str | None, BaseModel | str]  # one SSE event: its ``event:`` name and its data
Reply = BaseModel | JSONDict | Iterator[Event]  # a JSON body, or a stream of events

EMBEDDING_DIMENSIONS = 8  # when the request does not pass ``dimensions``
_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "o3-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
)
_ERROR_CODES = {
    401: "invalid_api_key",
    403: "unsupported_country_region_territory",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    429: "rate_limit_exceeded",
}
_RESPONSE_EVENTS: dict[str, type[BaseModel]] = {  # by their ``type``: the union has ~60 members
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in get_args(get_args(ResponseStreamEvent)[0])
}
# What a Response echoes of its request, with the defaults for what the request leaves out.
_ECHOED: JSONDict = {
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "temperature": 1.0,
    "tools": [],
    "tool_choice": "auto",
    "top_p": 1.0,
    "truncation": "disabled",
}


class HTTPError(Exception):
    """An endpoint's failure, answered with an OpenAI-style error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, code = status, _ERROR_CODES.get(status)
        kind = "server_error" if status >= 500 else "invalid_request_error"
        kind = code if code and status in (408, 409, 429) else kind
        self.error = ErrorObject(message=message, type=kind, param=None, code=code)


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def _chat_completions(server: FakeOpenAIServer, body: JSONDict) -> Reply:
    plans = [fake.plan_chat(body, index) for index in range(body.get("n") or 1)]
    head = {
        "id": _new_id("chatcmpl-"),
        "created": int(time.time()),
        "model": body["model"],
        "service_tier": "default",
        "system_fingerprint": "fp_llmcache_fake",
    }
    prompt, completion = plans[0].prompt_tokens, sum(plan.completion_tokens for plan in plans)
    reasoning = {"reasoning_tokens": sum(plan.reasoning_tokens for plan in plans)}
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": reasoning,
        "prompt_tokens_details": {"cached_tokens": 0},
    }

    def logprobs(plan: fake.Plan, start: int, pieces: list[str]) -> JSONDict | None:
        if not body.get("logprobs"):
            return None
        top_n = body.get("top_logprobs") or 0
        tokens = [fake.token_logprob(p, plan.seed, start + i, top_n) for i, p in enumerate(pieces)]
        return {"content": None if plan.content is None else tokens, "refusal": None}

    if not body.get("stream"):
        server._sleep(max(plan.completion_tokens for plan in plans), first=True)
        choices = []
        for index, plan in enumerate(plans):
            calls = {"tool_calls": [plan.tool_call.chat()]} if plan.tool_call else {}
            message = {
                "role": "assistant",
                "content": plan.content,
                "refusal": plan.refusal,
                "annotations": [],
                **calls,
            }
            lp = logprobs(plan, 0, plan.pieces)
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": lp,
                    "finish_reason": plan.finish_reason,
                }
            )
        reply = {**head, "object": "chat.completion", "choices": choices, "usage": usage}
        return ChatCompletion.model_validate(reply)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(choices: list[JSONDict], **fields: Any) -> Event:
        fields = {"usage": None, **fields} if include_usage else fields
        reply = {**head, "object": "chat.completion.chunk", "choices": choices, **fields}
        return None, ChatCompletionChunk.model_validate(reply)

    def deltas(plan: fake.Plan) -> Iterator[tuple[JSONDict, JSONDict | None]]:
        """One choice's (delta, logprobs): the role (and the call), then one per piece."""
        empty = None if plan.content is None else ""
        yield {"role": "assistant", "content": empty, "refusal": None}, None
        if plan.tool_call is not None:
            yield {"tool_calls": [{"index": 0, **plan.tool_call.chat(arguments="")}]}, None
        for position, piece in enumerate(plan.pieces):
            if plan.tool_call is not None:
                yield {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None
            elif plan.refusal is not None:
                yield {"refusal": piece}, None
            else:
                yield {"content": piece}, logprobs(plan, position, [piece])
        yield {}, None  # the finish reason

    def events() -> Iterator[Event]:
        server._sleep(max(plan.reasoning_tokens for plan in plans), first=True)
        for index, plan in enumerate(plans):
            for position, (delta, lp) in enumerate(deltas(plan)):
                server._sleep(1 if position else 0)
                end = None if delta else plan.finish_reason
                yield chunk(
                    [{"index": index, "delta": delta, "logprobs": lp, "finish_reason": end}]
                )
        if include_usage:
            yield chunk([], usage=usage)
        yield None, "[DONE]"

    return events()


def _responses(server: FakeOpenAIServer, body: JSONDict) -> Reply:
    plan, created = fake.plan_response(body), int(time.time())
    call, item_id = plan.tool_call, _new_id("fc_" if plan.tool_call is not None else "msg_")
    start = {
        **{key: body.get(key, default) for key, default in _ECHOED.items()},
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": created,
        "model": body["model"],
        "status": "in_progress",
        "output": [],
        "error": None,
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
        "service_tier": "default",
        "incomplete_details": None,
    }
    done: JSONDict
    if call is not None:
        kind, done, part = "function_call_arguments", {"arguments": call.arguments}, {}
        item: JSONDict = {
            "type": "function_call",
            "id": item_id,
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        }
    else:
        kind = "output_text" if plan.refusal is None else "refusal"
        done = {"text": plan.content} if plan.refusal is None else {"refusal": plan.refusal}
        text_only: JSONDict = {"annotations": [], "logprobs": []} if plan.refusal is None else {}
        part = {"type": kind, **done, **text_only}
        item = {"type": "message", "id": item_id, "role": "assistant", "content": [part]}
    usage = {
        "input_tokens": plan.prompt_tokens,
        "output_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
    }
    done_item = {**item, "status": "completed"}
    final = Response.model_validate(
        {
            **start,
            "status": "completed",
            "completed_at": created,
            "output": [done_item],
            "usage": usage,
        }
    )
    if not body.get("stream"):
        server._sleep(plan.completion_tokens, first=True)
        return final
    numbers = itertools.count()

    def event(event_type: str, **fields: Any) -> Event:
        fields.update(type=event_type, sequence_number=next(numbers))
        return event_type, _RESPONSE_EVENTS[event_type].model_validate(fields)

    def events() -> Iterator[Event]:
        yield event("response.created", response=Response.model_validate(start))
        yield event("response.in_progress", response=Response.model_validate(start))
        server._sleep(plan.reasoning_tokens, first=True)
        empty: JSONDict = {"arguments": ""} if call is not None else {"content": []}
        yield event(
            "response.output_item.added",
            output_index=0,
            item={**item, **empty, "status": "in_progress"},
        )
        where: JSONDict = {"item_id": item_id, "output_index": 0}
        if call is None:  # a message: its one content part, empty, then filled by the deltas
            where["content_index"] = 0
            yield event(
                "response.content_part.added", part={**part, **dict.fromkeys(done, "")}, **where
            )
        extra: JSONDict = {"logprobs": []} if kind == "output_text" else {}
        for piece in plan.pieces:
            server._sleep(1)
            yield event(f"response.{kind}.delta", delta=piece, **where, **extra)
        yield event(f"response.{kind}.done", **done, **where, **extra)
        if call is None:
            yield event("response.content_part.done", part=part, **where)
        yield event("response.output_item.done", output_index=0, item=done_item)
        yield event("response.completed", response=final)

    return events()


def _embeddings(server: FakeOpenAIServer, body: JSONDict) -> Reply:
    raw, dimensions = body["input"], body.get("dimensions") or EMBEDDING_DIMENSIONS
    one = isinstance(raw, str) or all(isinstance(token, int) for token in raw)
    inputs: list[Any] = [raw] if one else raw  # one string, one token list, or a list of either
    vectors = [fake.embedding_vector(item, dimensions) for item in inputs]
    tokens = sum(len(i) if isinstance(i, list) else max(1, fake.estimate_tokens(i)) for i in inputs)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    reply = {"object": "list", "data": data, "model": body["model"], "usage": usage}
    response = CreateEmbeddingResponse.model_validate(reply).model_dump(exclude_unset=True)
    if body.get("encoding_format") == "base64":  # the SDK's type holds floats, the wire bytes
        for entry, vector in zip(response["data"], vectors, strict=True):
            entry["embedding"] = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
    server._sleep(0, first=True)
    return response


def _models(server: FakeOpenAIServer, body: JSONDict, model_id: str | None = None) -> Reply:
    models = [
        Model(id=m, object="model", created=1_700_000_000, owned_by="llmcache")
        for m in ([model_id] if model_id else _MODELS)
    ]
    listed = [model.model_dump(exclude_unset=True) for model in models]
    return models[0] if model_id else {"object": "list", "data": listed}


# (method, path pattern) -> the endpoint (its arguments: the path's groups) and required fields
_ROUTES: dict[tuple[str, str], tuple[Callable[..., Reply], tuple[str, ...]]] = {
    ("POST", "/v1/chat/completions"): (_chat_completions, ("model", "messages")),
    ("POST", "/v1/responses"): (_responses, ("model",)),
    ("POST", "/v1/embeddings"): (_embeddings, ("model", "input")),
    ("GET", "/v1/models(?:/([^/]+))?"): (_models, ()),
}


def _answer(server: FakeOpenAIServer, method: str, path: str, body: JSONDict) -> Reply:
    """What the endpoint for ``method`` and ``path`` answers to ``body``."""
    for (route_method, pattern), (endpoint, required) in _ROUTES.items():
        match = re.fullmatch(pattern, path)
        if match and route_method == method:
            if missing := [key for key in required if not body.get(key)]:
                raise HTTPError(400, f"Missing required parameter: '{missing[0]}'.")
            try:
                return endpoint(server, body, *match.groups())
            except ValidationError as exc:  # the request echoes what the SDK's types reject
                where = exc.errors()[0]
                raise HTTPError(400, f"Invalid request: {where['msg']} at {where['loc']}") from exc
            except (LookupError, TypeError, ValueError) as exc:  # a field missing or malformed
                raise HTTPError(400, f"Invalid request: {type(exc).__name__}: {exc}") from exc
    raise HTTPError(404, f"Invalid URL ({method} {path})")


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        owner: FakeOpenAIServer = self.server.owner
        try:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            path = self.path.split("?")[0].rstrip("/")
            abort_after = owner._record(path, body, dict(self.headers.items()))
            if body is not None and not isinstance(body, dict):
                raise HTTPError(400, "We could not parse the JSON body of your request.")
            self._send(200, _answer(owner, self.command, path, body or {}), abort_after)
        except HTTPError as exc:
            self._send(exc.status, {"error": exc.error.model_dump(exclude_unset=True)})
        except OSError:  # the client went away
            self.close_connection = True

    do_POST = do_DELETE = do_GET

    def _send(self, status: int, reply: Reply, abort_after: int | None = None) -> None:
        """A JSON body or Server-Sent Events, in HTTP/1.1 chunks. After ``abort_after`` events
        the connection is cut without the last chunk: the client sees an incomplete body."""
        streamed = isinstance(reply, Iterator)
        self.send_response(status)
        self.send_header("Content-Type", "text/event-stream" if streamed else "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", _new_id("req_"))
        if status >= 400:  # how long the SDK waits before a retry
            self.send_header("retry-after-ms", "1")
        self.end_headers()
        events = reply if isinstance(reply, Iterator) else iter([(None, reply)])
        for sent, (name, data) in enumerate(events):
            if streamed and sent == abort_after:
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if isinstance(data, BaseModel):  # as the API sends it: the fields that were set
                data = data.model_dump_json(exclude_unset=True, by_alias=True)
            text = data if isinstance(data, str) else json.dumps(data)
            if streamed:
                text = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(text.encode()), text.encode()))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class FakeOpenAIServer:
    """An OpenAI-compatible HTTP server on ``127.0.0.1``, served from a daemon thread::

        with FakeOpenAIServer(latency_per_token=0.01) as server:
            client = OpenAI(base_url=server.base_url, api_key="test")
            client.chat.completions.create(model="gpt-4o-mini", messages=[...])
            assert server.requests == 1

    ``latency_per_token`` is slept per output token (streams sleep between chunks, other
    answers the total up front), ``base_latency`` before any answer (the time to first token);
    ``port=0`` binds a free port. ``requests`` and ``requests_by_path`` count every request
    received, the ones failed on purpose by :meth:`fail_next` included.
    """

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
        self._abort_after: int | None = None

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
            raise RuntimeError("FakeOpenAIServer is not running; call start() first")
        return self._httpd.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: pass it as ``base_url`` to ``OpenAI(...)``."""
        return f"http://127.0.0.1:{self.port}/v1"

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
        """Answer the next ``n`` requests (any path) with HTTP ``status`` and an error body.
        The SDK retries 408, 409, 429 and 5xx by default: its retries use up failures too."""
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("n must be >= 0 and status an HTTP error code")
        with self._lock:
            self._failing = (n, status)

    def abort_stream_after(self, n_chunks: int) -> None:
        """Make the next stream drop its connection after ``n_chunks`` events."""
        if n_chunks < 0:
            raise ValueError("n_chunks must be >= 0")
        with self._lock:
            self._abort_after = n_chunks

    def _sleep(self, tokens: int, *, first: bool = False) -> None:  # as if generating tokens
        time.sleep(self.latency_per_token * tokens + (self.base_latency if first else 0))

    def _record(self, path: str, body: Any, headers: dict[str, str]) -> int | None:
        """Count a request and fail it if :meth:`fail_next` says so; else, for a stream, the
        number of events after which to cut it (:meth:`abort_stream_after`), if any."""
        with self._lock:
            self._by_path[path] += 1
            self.last_request_body = body
            self.last_request_headers = {k.lower(): v for k, v in headers.items()}
            failures, status = self._failing
            self._failing = (max(0, failures - 1), status)
            abort = None
            if not failures and isinstance(body, dict) and body.get("stream"):
                abort, self._abort_after = self._abort_after, None
        if failures:
            raise HTTPError(status, f"Simulated failure (HTTP {status}).")
        return abort
