"""A TCP proxy on 127.0.0.1 that makes a healthy server slow in the ways real networks do.

:class:`DripProxy` forwards every connection to a real server (a ``redis-server``, the
Upstash REST test server, ...) and, depending on ``proxy.mode`` (switchable while a test
runs):

* ``"pass"``: forwards both ways as fast as it can.
* ``"drip"``: forwards requests at once, and the server's replies one byte every
  ``drip_interval`` seconds (30 ms by default): no single socket read ever waits long,
  so only a deadline per operation stops a client from waiting for the whole reply.
* ``"hang"``: accepts connections and reads requests, and never answers (a server that is
  paused, stopped with SIGSTOP, or behind a dead link): new connections hang too.

``close()`` stops listening and drops every connection. Nothing is mocked: the bytes that
do arrive are the real server's.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Literal, Self

from tests.servers._lifecycle import ManagedServer

HOST = "127.0.0.1"
Mode = Literal["pass", "drip", "hang"]


class DripProxy(ManagedServer):
    """Listens on ``127.0.0.1:<port>`` and forwards to ``target_port``, slowed per `mode`."""

    def __init__(self, target_port: int, *, mode: Mode = "pass", drip_interval: float = 0.03):
        self.target_port = target_port
        self.mode: Mode = mode
        self.drip_interval = drip_interval
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.connections = 0  # accepted so far
        threading.Thread(target=self._accept, name="drip-accept", daemon=True).start()
        self._register_for_exit()

    def start(self) -> Self:
        """Already listening since construction (kept for ``with``)."""
        return self

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((HOST, self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
        self._pump(upstream, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        """Copy `source` to `sink`; `replies` is the server-to-client direction."""
        try:
            while not self._closed.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if replies:
                    self._forward_reply(data, sink)
                else:
                    self._hold_while_hanging()  # a hung server processes nothing
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _hold_while_hanging(self) -> None:
        while self.mode == "hang" and not self._closed.is_set():
            time.sleep(0.01)

    def _forward_reply(self, data: bytes, sink: socket.socket) -> None:
        for index in range(len(data)):
            self._hold_while_hanging()
            if self._closed.is_set():
                return
            if self.mode == "pass":
                sink.sendall(data[index:])
                return
            sink.sendall(data[index : index + 1])
            time.sleep(self.drip_interval)

    def stop(self) -> None:
        """Stop listening and drop every connection, both ways."""
        self._closed.set()
        # close() alone leaves the socket listening while the accept thread is blocked in
        # accept(); shutdown() stops listening and wakes it.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
