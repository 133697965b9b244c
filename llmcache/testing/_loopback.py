"""The start/stop shared by the loopback test servers (``FakeOpenAIServer``, the Upstash REST
test server): an HTTP server on 127.0.0.1, served from a daemon thread, whose ``stop()`` cuts
every open connection (idle keep-alive ones and handlers still writing included), so a client
sees the server go away instead of waiting on a socket nobody will answer.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


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
