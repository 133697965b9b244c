"""Chaos soak: several processes share one cache while Redis is killed, hung, paused and filled.

    python scripts/soak.py [--seconds 600] [--seed 1] [--workers 4] [--callers 250] [--threads 2]

It starts its own redis-server (no persistence), then `--workers` processes, each with one
`Cache(tiers=["memory", "redis://..."])` used through the public API only by `--callers`
asyncio tasks and `--threads` threads. They call a cached "model" whose answer carries the
current version of its namespace, so a stale answer is detectable. Every 2-8 s (seeded) the
conductor does one of:

* kill -9 of redis-server, then a restart (empty: no persistence);
* SIGSTOP, then SIGCONT 1-3 s later (a hang);
* maxmemory at the current use + noeviction (every write fails with OOM) for 2-5 s;
* CLIENT PAUSE ALL for 1-3 s;
* a version bump of one namespace, then `cache.invalidate(namespace=...)` in one worker.

Each round of five faults takes every kind once, in a seeded random order.

An answer is **stale** when it is older than an invalidation that was acknowledged more than
`--grace` seconds before the call began. An invalidation is acknowledged when `invalidate()`
says it reached the shared tier, or, when it could only be applied locally, once
`health().pending_invalidations` says it has since been published. The report gives calls,
real calls, stale answers (with examples and the fault before each), caller exceptions, stuck
calls, latency p50/p99/max inside and outside faults, and each worker's RSS at start, half way
and end. It exits 1 on any stale answer, exception or stuck call, and stops every process and
server it started, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import random
import signal
import sys
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.servers

SECRET = "soak-secret-0123456789abcdef0123"
NAMESPACES = ("alpha", "beta", "gamma")
MAX_VERSIONS = 10_000  # invalidations per namespace a run can make
PROMPTS_PER_NAMESPACE = 400
SAMPLES_KEPT = 100_000  # latency samples kept per worker (reservoir): memory stays flat
STUCK_AFTER = 30.0  # a call still running this long after the end is stuck
FAULTS = ("kill", "hang", "oom", "pause", "invalidate")


# -- shared state between the conductor and the workers --------------------------------------
@dataclass
class Shared:
    """Namespace versions and the times their invalidations were acknowledged (wall clock)."""

    versions: Any  # multiprocessing.Array("q", len(NAMESPACES)): the current version
    acked: Any  # multiprocessing.Array("d", len(NAMESPACES) * MAX_VERSIONS): ack time, inf

    @classmethod
    def create(cls, context: Any) -> Shared:
        acked = context.Array("d", len(NAMESPACES) * MAX_VERSIONS, lock=False)
        for index in range(len(acked)):
            acked[index] = float("inf")
        return cls(context.Array("q", len(NAMESPACES), lock=False), acked)

    def ack_time(self, namespace: int, version: int) -> float:
        """When the invalidation that moved `namespace` to `version` was acknowledged."""
        if version >= MAX_VERSIONS:
            return float("inf")
        return float(self.acked[namespace * MAX_VERSIONS + version])


# -- a worker process ----------------------------------------------------------------------------
@dataclass
class WorkerReport:
    index: int
    calls: int = 0
    real_calls: int = 0
    stale: int = 0
    stale_examples: list[dict[str, Any]] = field(default_factory=list)
    exceptions: int = 0
    exception_examples: list[str] = field(default_factory=list)
    stuck: int = 0
    rss_mib: list[float] = field(default_factory=list)  # start, half way, end
    invalidations: int = 0
    local_invalidations: int = 0
    starts: list[float] = field(default_factory=list)  # wall-clock start of sampled calls
    latencies: list[float] = field(default_factory=list)  # their latency in seconds


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Worker:
    """One process: a cache, callers on an event loop, threads, and a command listener."""

    def __init__(self, index: int, options: dict[str, Any], shared: Shared, commands: Any):
        import llmcache

        self.index = index
        self.options = options
        self.shared = shared
        self.commands = commands
        self.random = random.Random(options["seed"] * 1000 + index)
        self.report = WorkerReport(index)
        self.lock = threading.Lock()
        self.samples_seen = 0
        self.starts = array("d")
        self.latencies = array("d")
        self.stop_at = time.time() + options["seconds"]
        self.cache = llmcache.Cache(
            workspace="soak",
            secret=SECRET,
            tiers=[f"memory://?max_bytes={options['memory_bytes']}", options["url"]],
        )
        self.async_models = [self._async_model(n) for n in range(len(NAMESPACES))]
        self.sync_models = [self._sync_model(n) for n in range(len(NAMESPACES))]

    # The "model": deterministic but for the namespace's version, read when the call starts.
    def _answer(self, namespace: int, prompt: int) -> str:
        with self.lock:
            self.report.real_calls += 1
        version = self.shared.versions[namespace]
        return f"{NAMESPACES[namespace]}|{prompt}|v{version}"

    def _async_model(self, namespace: int) -> Any:
        @self.cache.cached(namespace=NAMESPACES[namespace])
        async def ask(prompt: int) -> str:
            answer = self._answer(namespace, prompt)
            await asyncio.sleep(self.random.uniform(0.005, 0.03))
            return answer

        return ask

    def _sync_model(self, namespace: int) -> Any:
        @self.cache.cached(namespace=NAMESPACES[namespace])
        def ask(prompt: int) -> str:
            answer = self._answer(namespace, prompt)
            time.sleep(self.random.uniform(0.005, 0.03))
            return answer

        return ask

    def _pick(self, rng: random.Random) -> tuple[int, int]:
        # Popular prompts repeat (hits); a few are new to the cache (misses).
        return rng.randrange(len(NAMESPACES)), int(rng.paretovariate(1.2)) % PROMPTS_PER_NAMESPACE

    def _check(self, namespace: int, prompt: int, answer: Any, started: float) -> None:
        expected_head = f"{NAMESPACES[namespace]}|{prompt}|v"
        if not isinstance(answer, str) or not answer.startswith(expected_head):
            self._exception(f"wrong answer {answer!r} for {expected_head}")
            return
        version = int(answer[len(expected_head) :])
        acked = self.shared.ack_time(namespace, version + 1)
        if acked < started - self.options["grace"]:
            with self.lock:
                self.report.stale += 1
                if len(self.report.stale_examples) < 20:
                    self.report.stale_examples.append(
                        {
                            "namespace": NAMESPACES[namespace],
                            "answer_version": version,
                            "current_version": int(self.shared.versions[namespace]),
                            "call_started": started,
                            "newer_version_acked_s_before": round(started - acked, 3),
                        }
                    )

    def _exception(self, text: str) -> None:
        with self.lock:
            self.report.exceptions += 1
            if len(self.report.exception_examples) < 20:
                self.report.exception_examples.append(text[:500])

    def _record(self, started: float, latency: float) -> None:
        with self.lock:
            self.report.calls += 1
            self.samples_seen += 1
            if len(self.latencies) < SAMPLES_KEPT:
                self.starts.append(started)
                self.latencies.append(latency)
            else:
                slot = self.random.randrange(self.samples_seen)
                if slot < SAMPLES_KEPT:
                    self.starts[slot] = started
                    self.latencies[slot] = latency

    def _settle(
        self, who: str, namespace: int, prompt: int, answer: Any, started: float, clock: float
    ) -> None:
        """Judge one call's answer (or the exception it raised) and record its latency."""
        latency = time.perf_counter() - clock
        if isinstance(answer, Exception):
            self._exception(f"{who}: {type(answer).__name__}: {answer}")
        else:
            self._check(namespace, prompt, answer, started)
        self._record(started, latency)

    async def _caller(self, number: int) -> None:
        rng = random.Random(self.options["seed"] * 1_000_003 + self.index * 10_007 + number)
        while time.time() < self.stop_at:
            namespace, prompt = self._pick(rng)
            started, clock = time.time(), time.perf_counter()
            try:
                answer: Any = await self.async_models[namespace](prompt)
            except Exception as error:
                answer = error
            self._settle("async caller", namespace, prompt, answer, started, clock)
            await asyncio.sleep(rng.expovariate(1 / self.options["think"]))

    def _thread_caller(self, number: int) -> None:
        rng = random.Random(self.options["seed"] * 7_000_003 + self.index * 10_007 + number)
        while time.time() < self.stop_at:
            namespace, prompt = self._pick(rng)
            started, clock = time.time(), time.perf_counter()
            try:
                answer: Any = self.sync_models[namespace](prompt)
            except Exception as error:
                answer = error
            self._settle("thread caller", namespace, prompt, answer, started, clock)
            time.sleep(rng.expovariate(1 / self.options["think"]))

    def _listen(self) -> None:
        """Run the conductor's invalidations: bump the version, then invalidate."""
        while time.time() < self.stop_at + 1:
            try:
                namespace = self.commands.get(timeout=0.2)
            except queue.Empty:
                continue
            version = self.shared.versions[namespace] + 1
            self.shared.versions[namespace] = version
            try:
                result = self.cache.invalidate(namespace=NAMESPACES[namespace])
            except Exception as error:
                self._exception(f"invalidate: {type(error).__name__}: {error}")
                continue
            self.report.invalidations += 1
            if not getattr(result, "published", True):
                # Applied here only so far: acknowledged once the cache says it was published.
                self.report.local_invalidations += 1
                while self.cache.health().pending_invalidations:
                    time.sleep(0.05)
            self.shared.acked[namespace * MAX_VERSIONS + version] = time.time()

    def run(self) -> WorkerReport:
        self.report.rss_mib.append(rss_mib())
        threads = [
            threading.Thread(target=self._thread_caller, args=(n,), daemon=True)
            for n in range(self.options["threads"])
        ]
        threads.append(threading.Thread(target=self._listen, daemon=True))
        for thread in threads:
            thread.start()

        async def main() -> None:
            async def half_way() -> None:
                await asyncio.sleep(self.options["seconds"] / 2)
                self.report.rss_mib.append(rss_mib())

            tasks = [asyncio.create_task(self._caller(n)) for n in range(self.options["callers"])]
            watcher = asyncio.create_task(half_way())
            _, pending = await asyncio.wait(tasks, timeout=self.options["seconds"] + STUCK_AFTER)
            self.report.stuck += len(pending)
            watcher.cancel()

        asyncio.run(main())
        deadline = time.monotonic() + STUCK_AFTER
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            self.report.stuck += thread.is_alive()
        self.report.rss_mib.append(rss_mib())
        self.report.starts = list(self.starts)
        self.report.latencies = list(self.latencies)
        with contextlib.suppress(Exception):
            self.cache.close()
        return self.report


def worker_main(
    index: int, options: dict[str, Any], shared: Shared, commands: Any, out: Any
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the conductor handles Ctrl-C
    try:
        report = Worker(index, options, shared, commands).run()
    except BaseException as error:  # report it rather than vanish
        report = WorkerReport(index, exceptions=1, exception_examples=[repr(error)])
    out.put(report)


# -- the conductor -------------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    start: float
    end: float
    detail: str


class Conductor:
    """Starts Redis and the workers, injects faults, collects and judges the reports."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.random = random.Random(args.seed)
        self.faults: list[Fault] = []
        self.context = multiprocessing.get_context("spawn")
        self.shared = Shared.create(self.context)
        self.processes: list[Any] = []
        self.server: Any = None

    def admin(self) -> Any:
        return self.server.client(socket_timeout=2.0, socket_connect_timeout=1.0)

    def inject(self, kind: str, commands: list[Any]) -> Fault:
        rng = self.random
        start = time.time()
        if kind == "kill":
            self.server.kill()
            time.sleep(rng.uniform(0.0, 1.0))
            self.server.start()
            detail = "kill -9, restart empty"
        elif kind == "hang":
            hold = rng.uniform(1.0, 3.0)
            os.kill(self.server.pid, signal.SIGSTOP)
            time.sleep(hold)
            os.kill(self.server.pid, signal.SIGCONT)
            detail = f"SIGSTOP {hold:.1f}s"
        elif kind == "oom":
            hold = rng.uniform(2.0, 5.0)
            client = self.admin()
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", used)
            time.sleep(hold)
            client.config_set("maxmemory", 0)
            client.close()
            detail = f"OOM {hold:.1f}s"
        elif kind == "pause":
            hold = rng.uniform(1.0, 3.0)
            client = self.admin()
            client.execute_command("CLIENT", "PAUSE", int(hold * 1000), "ALL")
            client.close()
            time.sleep(hold)
            detail = f"CLIENT PAUSE {hold:.1f}s"
        else:
            namespace = rng.randrange(len(NAMESPACES))
            worker = rng.randrange(len(commands))
            commands[worker].put(namespace)
            detail = f"invalidate {NAMESPACES[namespace]} in worker {worker}"
        return Fault(kind, start, time.time(), detail)

    def run(self) -> int:
        from tests.servers.redis_server import RedisServer

        args = self.args
        self.server = RedisServer()
        options = {
            "url": self.server.url,
            "seconds": args.seconds,
            "seed": args.seed,
            "callers": args.callers,
            "threads": args.threads,
            "think": args.think,
            "grace": args.grace,
            "memory_bytes": args.memory_bytes,
        }
        out = self.context.Queue()
        commands = [self.context.Queue() for _ in range(args.workers)]
        for index in range(args.workers):
            process = self.context.Process(
                target=worker_main,
                args=(index, options, self.shared, commands[index], out),
                daemon=True,
            )
            process.start()
            self.processes.append(process)
        began = time.time()
        print(
            f"soak: seed {args.seed}, {args.seconds:.0f} s, {args.workers} workers x "
            f"({args.callers} asyncio callers + {args.threads} threads), redis {self.server.url}",
            flush=True,
        )
        time.sleep(min(2.0, args.seconds / 10))  # let the workers warm up
        upcoming: list[str] = []
        while time.time() < began + args.seconds - 3:
            time.sleep(self.random.uniform(2.0, 8.0) * args.fault_pace)
            if time.time() >= began + args.seconds - 3:
                break
            if not upcoming:  # every kind once per round, in a seeded order
                upcoming = self.random.sample(FAULTS, len(FAULTS))
            fault = self.inject(upcoming.pop(), commands)
            self.faults.append(fault)
            if not args.quiet:
                print(f"  {fault.start - began:7.1f}s  {fault.detail}", flush=True)
        reports: list[WorkerReport] = []
        deadline = time.time() + args.seconds + STUCK_AFTER + 60
        while len(reports) < args.workers and time.time() < deadline:
            try:
                reports.append(out.get(timeout=1.0))
            except queue.Empty:
                if not any(p.is_alive() for p in self.processes) and out.empty():
                    break
        missing = args.workers - len(reports)
        return self.judge(reports, missing, began)

    def fault_before(self, when: float) -> str:
        before = [f for f in self.faults if f.start <= when and f.kind != "invalidate"]
        if not before:
            return "none"
        last = before[-1]
        return f"{last.detail} at {when - last.start:.1f}s before"

    def in_fault(self, when: float) -> bool:
        return any(f.start <= when <= f.end + 1.0 for f in self.faults if f.kind != "invalidate")

    def judge(self, reports: list[WorkerReport], missing: int, began: float) -> int:
        totals: dict[str, int] = {
            "calls": sum(r.calls for r in reports),
            "real_calls": sum(r.real_calls for r in reports),
            "stale": sum(r.stale for r in reports),
            "exceptions": sum(r.exceptions for r in reports) + missing,
            "stuck": sum(r.stuck for r in reports),
            "invalidations": sum(r.invalidations for r in reports),
            "local_invalidations": sum(r.local_invalidations for r in reports),
        }
        inside: list[float] = []
        outside: list[float] = []
        for report in reports:
            for started, seconds in zip(report.starts, report.latencies, strict=True):
                (inside if self.in_fault(started) else outside).append(seconds)
        latency = {"in_faults": summary(inside), "outside_faults": summary(outside)}
        examples = [
            dict(example, fault_before=self.fault_before(example["call_started"]))
            for report in reports
            for example in report.stale_examples
        ][:10]
        errors = [text for report in reports for text in report.exception_examples][:10]
        counts = {kind: sum(f.kind == kind for f in self.faults) for kind in FAULTS}
        result: dict[str, Any] = {
            "seed": self.args.seed,
            "seconds": round(time.time() - began, 1),
            "faults": counts,
            **totals,
            "missing_workers": missing,
            "latency_ms": latency,
            "rss_mib": [[round(v, 1) for v in r.rss_mib] for r in reports],
            "stale_examples": examples,
            "exception_examples": errors,
        }
        print(render(result), flush=True)
        if self.args.json:
            print(json.dumps(result), flush=True)
        failed = totals["stale"] or totals["exceptions"] or totals["stuck"]
        return 1 if failed else 0

    def cleanup(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
        if self.server is not None:
            with contextlib.suppress(Exception):
                if self.server.pid is not None:
                    os.kill(self.server.pid, signal.SIGCONT)  # never leave it stopped
            self.server.close()


def summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"count": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": at(1.0)}


def render(result: dict[str, Any]) -> str:
    faults = ", ".join(f"{kind} {n}" for kind, n in result["faults"].items())
    lines = [
        f"soak seed {result['seed']}: {result['seconds']} s; faults: {faults}",
        f"  calls {result['calls']:,}, real calls {result['real_calls']:,}, "
        f"invalidations {result['invalidations']} ({result['local_invalidations']} local first)",
        f"  stale answers {result['stale']}, caller exceptions {result['exceptions']}, "
        f"stuck calls {result['stuck']}",
    ]
    for where, figures in result["latency_ms"].items():
        lines.append(
            f"  latency {where.replace('_', ' ')}: p50 {figures['p50']} ms, "
            f"p99 {figures['p99']} ms, max {figures['max']} ms ({figures['count']:,} sampled)"
        )
    rss = "; ".join(" -> ".join(f"{v:.0f}" for v in worker) for worker in result["rss_mib"])
    lines.append(f"  RSS MiB per worker (start -> half -> end): {rss}")
    for example in result["stale_examples"]:
        lines.append(f"  stale: {example}")
    for error in result["exception_examples"]:
        lines.append(f"  exception: {error}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--callers", type=int, default=250, help="asyncio callers per worker")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker")
    parser.add_argument("--think", type=float, default=0.05, help="mean pause between calls (s)")
    parser.add_argument("--grace", type=float, default=1.0, help="seconds an invalidation may take")
    parser.add_argument("--memory-bytes", type=int, default=6_000_000)
    parser.add_argument("--fault-pace", type=float, default=1.0, help="scale the 2-8 s gaps")
    parser.add_argument("--quiet", action="store_true", help="do not list faults as they happen")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args(argv)
    conductor = Conductor(args)
    try:
        return conductor.run()
    except KeyboardInterrupt:
        print("soak: interrupted; stopping workers and redis-server", file=sys.stderr)
        return 130
    finally:
        conductor.cleanup()


if __name__ == "__main__":
    sys.exit(main())
