"""Real ``redis-server`` processes for the test-suite, on loopback only.

Nothing here is mocked: :class:`RedisServer` runs a genuine ``redis-server`` binary on
``127.0.0.1`` with a throw-away working directory, and :class:`RedisCluster` joins three of
them into a real Redis Cluster with ``redis-cli --cluster create``.

Every process started here is closed at interpreter exit if a test forgot (``_lifecycle``)
and, on Linux, also receives SIGKILL if the Python process dies abruptly
(``PR_SET_PDEATHSIG``), so a crashed test run does not leave orphaned servers behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.servers._lifecycle import ManagedServer

#: Only ever listen on / connect to this address.
HOST = "127.0.0.1"
#: Poll interval while waiting for a server to come up.
POLL_INTERVAL = 0.02
#: Give up waiting for a server after this many seconds.
STARTUP_TIMEOUT = 10.0

_INSTALL_HINT = "install it: apt-get install redis-server"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    There is an unavoidable race between closing the probe socket and the server binding
    the port; :class:`RedisServer` retries with a new port when it loses that race.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


#: Redis Cluster nodes also listen on ``port + 10000`` (the cluster bus), so their port must be
#: <= 55535. Picking both below the kernel's ephemeral range (32768+ on Linux) also means
#: outgoing connections can never steal them.
CLUSTER_BUS_OFFSET = 10000
_CLUSTER_PORT_RANGE = (10000, 22767)


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A port P such that both P and its cluster-bus port P + 10000 are free right now."""
    for _ in range(200):
        port = random.randint(*_CLUSTER_PORT_RANGE)
        if _can_bind(port) and _can_bind(port + CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError("could not find a free port pair for a Redis Cluster node")


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _require_binary(name: str) -> str:
    """Absolute path of ``name`` on PATH, or a RuntimeError explaining how to install it."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"`{name}` was not found on PATH; {_INSTALL_HINT}")
    return path


def _die_with_parent_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when this process dies.

    PDEATHSIG fires when the *thread* that forked the child exits, so it is only used when
    starting from the main thread (which lives as long as the process).
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


class RedisServer(ManagedServer):
    """A real ``redis-server`` process listening on ``127.0.0.1:<port>``.

    Args:
        port: TCP port to use; a free one is picked when ``None``.
        extra_args: additional ``redis-server`` command-line arguments
            (e.g. ``["--maxmemory", "10mb"]``).
        port_factory: picks a port when ``port`` is None, and again if the picked port was
            taken by someone else before the server could bind it.
        start: start the server immediately (default) or wait for :meth:`start`.
        startup_timeout: seconds to wait for the server to answer PING.

    ``stop()`` / ``kill()`` keep the port and the working directory, so ``start()``
    brings the server back on the SAME port (data is not persisted: ``--save ''``).
    ``close()`` (also called by the context manager and at exit) stops the server and
    removes the working directory.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        extra_args: Sequence[str] = (),
        port_factory: Callable[[], int] = free_port,
        start: bool = True,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self._binary = _require_binary("redis-server")
        self._port_fixed = port is not None
        self._port_factory = port_factory
        self.port: int = port if port is not None else port_factory()
        self.extra_args: list[str] = list(extra_args)
        self.startup_timeout = startup_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="llmcache-redis-")
        self.dir = Path(self._tmp.name)
        self.log_path = self.dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False  # once started, the port never changes
        if start:
            try:
                self.start()
            except BaseException:
                self.close()  # nobody else holds a reference to clean up the temp dir
                raise

    # ------------------------------------------------------------------ properties

    @property
    def host(self) -> str:
        return HOST

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def patient_url(self) -> str:
        """`url` with 5 s deadlines, for tests of what the tier does rather than how fast: the
        production defaults (50 ms on loopback) are shorter than a pause of a loaded CI
        machine, and a timed-out read would be counted as an error, not what they assert."""
        return f"{self.url}?timeout=5&connect_timeout=5"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process is alive (it may not be accepting connections yet)."""
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        """Everything the server has written to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------ lifecycle

    def command_line(self) -> list[str]:
        return [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--protected-mode",
            "no",
            *self.extra_args,
        ]

    def start(self) -> Self:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if self.running:
            return self
        # Losing the free_port() race shows up as "Address already in use". Only a first
        # start on a port we picked ourselves may move to another port; a restart never does.
        attempts = 1 if self._port_fixed or self._started else 3
        for attempt in range(attempts):
            self._spawn()
            try:
                self._wait_ready()
            except RuntimeError:
                in_use = "already in use" in self.log()
                self._terminate(signal.SIGKILL)
                if in_use and attempt + 1 < attempts:
                    self.port = self._port_factory()
                    continue
                raise
            break
        self._started = True
        self._register_for_exit()
        return self

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.command_line(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                preexec_fn=_die_with_parent_preexec(),  # SIGKILL if pytest dies
            )

    def _wait_ready(self) -> None:
        """Poll PING every POLL_INTERVAL until it answers, the process dies or we time out."""
        deadline = time.monotonic() + self.startup_timeout
        probe = redis.Redis(
            host=HOST,
            port=self.port,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=_no_retry(),  # redis-py's default retries would make each probe take ~4 s
        )
        try:
            while True:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server on port {self.port} exited with code "
                        f"{self._proc.returncode} during startup; log:\n{self.log()}"
                    )
                try:
                    if probe.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    pass  # not listening yet, or still loading
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not answer PING within "
                        f"{self.startup_timeout}s; log:\n{self.log()}"
                    )
                time.sleep(POLL_INTERVAL)
        finally:
            probe.close()

    def _terminate(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM; SIGKILL after 5 s). The port is kept for start()."""
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the server, simulating a crash. The port is kept for start()."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> Self:
        """Stop and start again on the same port (the data set is lost)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server for good and delete its working directory."""
        self.kill()
        self._unregister_for_exit()
        self._tmp.cleanup()

    # ------------------------------------------------------------------ clients

    def client(self, **kwargs: Any) -> redis.Redis:
        """A fresh ``redis.Redis`` connected to this server (kwargs are passed through).

        Unlike redis-py's default (10 retries with exponential backoff: ~4 s against a dead
        server), it does not retry, so a stopped/killed server fails the call immediately.
        """
        kwargs.setdefault("retry", _no_retry())
        kwargs.setdefault("socket_connect_timeout", 2.0)
        kwargs.setdefault("socket_timeout", 5.0)
        return redis.Redis(host=HOST, port=self.port, **kwargs)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {HOST}:{self.port} {state}>"


class RedisCluster(ManagedServer):
    """A real three-master Redis Cluster on loopback (no replicas).

    Args:
        nodes: number of masters (Redis requires at least 3).
        node_timeout_ms: ``--cluster-node-timeout`` for every node.
        join: how the nodes are joined. ``"redis-cli"`` (default) runs
            ``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes``, which polls
            for the join in 1 s steps and so takes 1-4 s (rarely ~9 s). ``"meet"`` does the
            same thing by hand (ADDSLOTSRANGE, SET-CONFIG-EPOCH, a full mesh of CLUSTER MEET)
            and polls every 20 ms: a steady ~2.1 s, which is Redis's own fixed 2 s delay
            before a fresh master reports ``cluster_state:ok``.
        start: start the cluster immediately (default) or wait for :meth:`start`.
        startup_timeout: seconds to wait for ``cluster_state:ok`` on all nodes.

    ``.nodes`` holds the :class:`RedisServer` of every node, so a test can ``kill()`` one.
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        node_timeout_ms: int = 2000,
        join: Literal["redis-cli", "meet"] = "redis-cli",
        start: bool = True,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        if nodes < 3:
            raise ValueError("a Redis Cluster needs at least 3 master nodes")
        self._cli = _require_binary("redis-cli")
        _require_binary("redis-server")
        self.node_count = nodes
        self.node_timeout_ms = node_timeout_ms
        self.join = join
        self.startup_timeout = startup_timeout
        self.nodes: list[RedisServer] = []
        if start:
            self.start()

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:P1`` (the first node is the seed)."""
        return f"redis+cluster://{HOST}:{self.ports[0]}"

    @property
    def patient_url(self) -> str:
        """`url` with 5 s deadlines (see `RedisServer.patient_url`)."""
        return f"{self.url}?timeout=5&connect_timeout=5"

    def start(self) -> Self:
        """Start the nodes, create the cluster and wait until every node says it is ok."""
        if self.nodes:
            return self
        self._register_for_exit()
        try:
            for _ in range(self.node_count):
                self.nodes.append(
                    RedisServer(
                        extra_args=[
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            "nodes.conf",  # relative to the node's own --dir
                            "--cluster-node-timeout",
                            str(self.node_timeout_ms),
                        ],
                        port_factory=free_cluster_port,
                        startup_timeout=self.startup_timeout,
                    )
                )
            if self.join == "meet":
                self._create_by_meet()
            else:
                self._create_with_cli()
            self._wait_ok()
        except BaseException:
            self.close()
            raise
        return self

    def _create_by_meet(self) -> None:
        """Split the slots evenly, give each master its own epoch and MEET every pair."""
        clients = [node.client() for node in self.nodes]
        try:
            count = len(clients)
            per_node = 16384 // count
            for i, c in enumerate(clients):
                last = 16383 if i == count - 1 else (i + 1) * per_node - 1
                c.execute_command("CLUSTER ADDSLOTSRANGE", i * per_node, last)
                c.execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
            for i, c in enumerate(clients):
                for port in self.ports[i + 1 :]:
                    c.execute_command("CLUSTER MEET", HOST, port)
        finally:
            for c in clients:
                c.close()

    def _create_with_cli(self) -> None:
        cmd = [
            self._cli,
            "--cluster",
            "create",
            *(f"{HOST}:{port}" for port in self.ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        try:
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.startup_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"`{' '.join(cmd)}` timed out:\n{exc.stdout}") from exc
        if result.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{self._logs()}"
            )

    def _wait_ok(self) -> None:
        """Poll ``CLUSTER INFO`` on every node until all report ``cluster_state:ok``."""
        deadline = time.monotonic() + self.startup_timeout
        clients = [node.client(socket_timeout=0.5) for node in self.nodes]
        try:
            while True:
                states: list[str] = []
                for c in clients:
                    try:
                        # redis-py parses the reply into a dict ({"cluster_state": "ok", ...})
                        info = c.cluster("INFO")
                        states.append(str(info.get("cluster_state", "?")))
                    except redis.RedisError as exc:
                        states.append(f"error: {exc}")
                if all(s == "ok" for s in states):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"cluster on ports {self.ports} not ok after {self.startup_timeout}s "
                        f"(states {states}); logs:\n{self._logs()}"
                    )
                time.sleep(POLL_INTERVAL)
        finally:
            for c in clients:
                c.close()

    def _logs(self) -> str:
        return "\n".join(f"--- node {n.port} ---\n{n.log()}" for n in self.nodes)

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A fresh ``redis.cluster.RedisCluster`` seeded with the first node."""
        kwargs.setdefault("socket_connect_timeout", 2.0)
        kwargs.setdefault("socket_timeout", 5.0)
        return redis.cluster.RedisCluster(host=HOST, port=self.ports[0], **kwargs)

    def stop(self) -> None:
        """Stop every node and delete their working directories."""
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            node.close()
        self._unregister_for_exit()

    close = stop

    def __repr__(self) -> str:
        return f"<RedisCluster {HOST} ports={self.ports}>"
