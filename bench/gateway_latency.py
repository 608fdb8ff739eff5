"""Added latency and throughput of the API gateway over calling the service directly, with nginx beside it.

    .venv/bin/python bench/gateway_latency.py [--rate R] [--duration S] [--repeat N] [--connections C]
                                              [--gateway-workers W] [--max-duration S] [--warmup S]
                                              [--gateway-env NAME=VALUE ...] [--tweak NAME ...]
                                              [--profile [--profile-rate R]] [--work-dir DIR]

One run starts everything it measures, on free ports, in a temporary directory:

* a nats-server (kit.natsserver, JetStream) for the gateway's usage records and revocations;
* the upstream: a constant service, a bare ASGI app under uvicorn (one process, httptools, uvloop, no
  access log) answering ``GET /organisations/{org_id}`` with a fixed JSON body of ~300 bytes and
  ``GET /.well-known/jwks.json`` with the public key of an RSA key made for this run;
* nginx (Debian's package) as a plain reverse proxy to it: one worker process, a keep-alive pool of
  64 upstream connections, no access log; the baseline for what proxying alone costs;
* the gateway as production runs it: ``python -m gateway migrate``, then ``python -m gateway serve``
  with its own SQLite file, usage spool directory and JSON logs, the upstream as the ``identity``
  service, this run's issuer and JWKS, and rate limits of 1,000,000/second, so that every request
  is checked against them but none is refused.

The same request goes to the three targets: ``GET /api/identity/organisations/{org_id}`` at the gateway
(a catalogue route needing ``org.read``, open to apps), ``GET /organisations/{org_id}`` directly and through
nginx, each with ``Authorization: Bearer <token>``, a token signed with the run's key carrying ``app_id``
(so the gateway verifies it, checks the scope, counts the call against both rate limits and produces a
usage record) and the scope ``org.read``. Only 200s with the upstream's body count as right answers.

Two loads, in rounds (``--repeat``, default 3); in each round the three targets take turns, the first
target rotating from round to round, so that a change of machine load hits all of them alike:

1. fixed rate (``--rate`` per second, default 1,000, for ``--duration`` seconds, default 15, after one
   ``--warmup`` per target before the first round): an open-loop generator in Node.js (written to the
   run's directory; the machine's ``node``; plain sockets, a few microseconds per request), which sends
   request i at start + i / rate whatever the answers do, on up to ``--connections`` keep-alive
   connections, and times each request from the moment it is handed to a connection until its last byte
   (a request that waits for a free connection is charged the wait). It reports how late its sends were
   against the schedule, so it shows when it did not hold the rate, and when the slowest requests were
   due (a periodic pause shows as evenly spaced times). p50, p90, p99 and max per target; the added
   latency is the gateway's (and nginx's) percentile minus the direct one of the same round, the median
   of the rounds reported. Not autocannon: its ``--overallRate`` gives each connection a budget per
   second that it spends back to back at the start of the second, a burst a second rather than a rate;
   wrk2 is not packaged by Debian.
2. maximum throughput (closed loop): Debian's ``wrk`` (installed with apt-get when missing and running
   as root), one thread, ``--connections`` connections, ``--max-duration`` seconds; ratio gateway / direct.

Every run prints the CPU, in % of one core, of the target's processes, of the upstream, of the load
generator (on a 2-core machine it competes with the servers) and of the whole machine, and the gateway's
CPU time per request. At the end the gateway is stopped (which flushes its usage records) and the
records in the EDU_GATEWAY stream are counted against the answers the gateway gave. ``--profile`` then
runs the gateway once more under cProfile (CPU time per thread, which slows it down about sixfold) at
``--profile-rate`` and prints where its CPU goes.

Experiments change the gateway without changing its code: ``--gateway-env`` adds to its environment
(``OTEL_SDK_DISABLED=true``, ``GATEWAY_UPSTREAM_KEEPALIVE_CONNECTIONS=8``), ``--tweak`` runs a snippet of
``TWEAKS`` at the start of every gateway process (``gc-freeze``; ``gc-log`` prints the collector's pauses).
The report says EXPERIMENT when either is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import pstats
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey
from machine import (
    cpu_seconds_of,
    describe_machine,
    ensure_debian_tool,
    load_average,
    machine_busy_seconds,
    process_tree,
)

from kit.natsserver import NatsServer, free_port

ROOT = Path(__file__).resolve().parent.parent
ISSUER = "https://id.gateway-bench.edu-platform.test"
AUDIENCE = "edu-platform"
KEY_ID = "gateway-bench-key"
APP_ID = "bench-app"
CLIENT_ID = "bench-vendor-app"
ORG_ID = "0d6c7f1e-5b1a-4e8e-9a4c-2b7f3c9d8e21"
SERVICE_PATH = f"/organisations/{ORG_ID}"
GATEWAY_PATH = f"/api/identity{SERVICE_PATH}"
UNLIMITED = "1000000/second"
TARGETS = ("direct", "nginx", "gateway")
TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 5.0
TARGET_THROUGHPUT_RATIO = 0.5
NGINX_KEEPALIVE = 64

# ``--tweak``: experiments on the gateway without changing its code, to show what a fix would buy before
# anyone makes it. Each is Python run at the start of every gateway process (workers included): it goes into
# a ``sitecustomize`` module on the gateway's PYTHONPATH.
TWEAKS = {
    # A full collection walks every object the imports made (tens of milliseconds with the event loop
    # stopped); frozen, they are left out of it (the gc module's advice for long-running servers).
    "gc-freeze": "import gc\nimport gateway.main\ngc.collect()\ngc.freeze()\n",
    # Diagnosis: every collection of the oldest generation, and any longer than 2 ms, with its pause.
    "gc-log": "import gc, os, sys, time\n"
    "_started = [0.0]\n"
    "def _pause(phase, info):\n"
    "    if phase == 'start':\n"
    "        _started[0] = time.perf_counter()\n"
    "        return\n"
    "    ms = (time.perf_counter() - _started[0]) * 1000\n"
    "    if info['generation'] == 2 or ms > 2:\n"
    "        sys.stderr.write(f'GC-PAUSE pid {os.getpid()} generation {info[\"generation\"]} {ms:.1f} ms '\n"
    "                         f'at {time.time():.3f}\\n')\n"
    "gc.callbacks.append(_pause)\n",
}

# ``--profile``: the gateway's own ``serve`` command under cProfile, every thread with a profiler of its
# own counting that thread's CPU time; merged and written out when the server stops.
PROFILED_GATEWAY = (
    "import cProfile, sys, threading, time, pstats\n"
    "from gateway.cli import main\n"
    "profiles = [cProfile.Profile(time.thread_time)]\n"
    "def start(frame, event, arg):\n"
    "    profile = cProfile.Profile(time.thread_time)\n"
    "    profiles.append(profile)\n"
    "    sys.setprofile(None)\n"
    "    profile.enable()\n"
    "threading.setprofile(start)\n"
    "profiles[0].enable()\n"
    "main(['serve'])\n"
    "profiles[0].disable()\n"
    "stats = pstats.Stats(profiles[0])\n"
    "for profile in profiles[1:]:\n"
    "    stats.add(profile)\n"
    "stats.dump_stats(sys.argv[1])\n"
)

# The open-loop generator. Request i is due at start + i / rate; a 1 ms timer hands every due request to
# a free keep-alive connection (opening one while fewer than ``connections`` are open), else to a queue
# that connections drain in order. Latency runs from that hand-over to the last byte of the answer, so
# waiting for a connection counts; ``lag`` is how late the hand-over was against the schedule. HTTP/1.1
# is spoken over plain sockets (one prebuilt request, answers framed by Content-Length or chunked), so
# the generator costs a few microseconds per request, not the tens of Node's http client.
FIXED_RATE_GENERATOR = r"""
'use strict';
const fs = require('fs');
const net = require('net');
const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const target = new URL(config.url);
const headerLines = Object.entries(config.headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
const requestBytes = Buffer.from(`GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\n${headerLines}\r\n`);
const total = Math.round(config.rate * config.seconds);
const intervalNs = 1e9 / config.rate;
const latencies = new Float64Array(total).fill(-1);
const lags = new Float64Array(total);
const statuses = {};
const idle = [];
const queue = [];  // [index, handed over at] of requests waiting for a connection
let open = 0, sent = 0, answered = 0, ok = 0, errors = 0, finished = false;
const cpuBefore = process.cpuUsage();
const start = process.hrtime.bigint();

function settle() { if (answered + errors === total) finish(); }

function connection() {
  const socket = net.connect({ host: target.hostname, port: Number(target.port) });
  socket.setNoDelay(true);
  const state = { socket, index: -1, since: 0n, buffer: Buffer.alloc(0) };
  open += 1;
  socket.on('data', (chunk) => { state.buffer = Buffer.concat([state.buffer, chunk]); parse(state); });
  const lost = () => {
    open -= 1;
    const at = idle.indexOf(state);
    if (at >= 0) idle.splice(at, 1);
    if (state.index >= 0) { state.index = -1; errors += 1; settle(); }
  };
  socket.on('error', () => {});
  socket.on('close', lost);
  return state;
}

function send(state, index, since) {
  state.index = index;
  state.since = since;
  state.socket.write(requestBytes);
}

function bodyEnd(buffer, headerEnd, head) {
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (length) {
    const end = headerEnd + Number(length[1]);
    return buffer.length >= end ? [end, Number(length[1])] : null;
  }
  if (!/\r\ntransfer-encoding:\s*chunked/i.test(head)) return [headerEnd, 0];
  let at = headerEnd, bytes = 0;
  for (;;) {
    const lineEnd = buffer.indexOf('\r\n', at);
    if (lineEnd < 0) return null;
    const size = parseInt(buffer.toString('latin1', at, lineEnd), 16);
    if (size === 0) {
      const end = buffer.indexOf('\r\n\r\n', lineEnd);
      return end < 0 ? null : [end + 4, bytes];
    }
    if (buffer.length < lineEnd + 2 + size + 2) return null;
    bytes += size;
    at = lineEnd + 2 + size + 2;
  }
}

function parse(state) {
  for (;;) {
    const headerEnd = state.buffer.indexOf('\r\n\r\n');
    if (headerEnd < 0 || state.index < 0) return;
    const head = state.buffer.toString('latin1', 0, headerEnd);
    const framed = bodyEnd(state.buffer, headerEnd + 4, head);
    if (framed === null) return;
    const [end, bytes] = framed;
    const status = head.slice(9, 12);
    latencies[state.index] = Number(process.hrtime.bigint() - state.since) / 1e6;
    statuses[status] = (statuses[status] || 0) + 1;
    if (status === '200' && bytes === config.expectBytes) ok += 1;
    answered += 1;
    state.buffer = state.buffer.subarray(end);
    state.index = -1;
    if (queue.length > 0) { const [index, since] = queue.shift(); send(state, index, since); }
    else idle.push(state);
    settle();
  }
}

function handOver(index) {
  const now = process.hrtime.bigint();
  lags[index] = Number(now - (start + BigInt(Math.round(index * intervalNs)))) / 1e6;
  if (idle.length > 0) send(idle.pop(), index, now);
  else {
    queue.push([index, now]);
    if (open < config.connections) {
      const state = connection();
      state.socket.on('connect', () => {
        if (queue.length > 0) { const [queued, since] = queue.shift(); send(state, queued, since); }
        else idle.push(state);
      });
    }
  }
}

function tick() {
  const elapsed = Number(process.hrtime.bigint() - start);
  while (sent < total && sent * intervalNs <= elapsed) { handOver(sent); sent += 1; }
  if (sent < total) setTimeout(tick, 1);
  else setTimeout(finish, config.graceSeconds * 1000);  // answers still missing then count as errors
}

function percentile(sorted, fraction) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))];
}

function finish() {
  if (finished) return;
  finished = true;
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  const done = Array.from(latencies.filter((value) => value >= 0)).sort((a, b) => a - b);
  const lag = Array.from(lags.subarray(0, sent)).sort((a, b) => a - b);
  // When the slowest requests were due (s after the start): evenly spaced times point at a periodic task.
  const slowest = Array.from(latencies.keys()).sort((a, b) => latencies[b] - latencies[a]).slice(0, 8)
    .map((index) => [Math.round(index / config.rate * 1000) / 1000, Math.round(latencies[index] * 10) / 10]);
  const result = {
    answered: done.length, ok, errors: total - done.length, statuses, seconds: elapsed,
    p50: percentile(done, 0.5), p90: percentile(done, 0.9), p99: percentile(done, 0.99),
    max: done.length ? done[done.length - 1] : 0,
    lag_p99: percentile(lag, 0.99), lag_max: lag.length ? lag[lag.length - 1] : 0,
    cpu_seconds: (cpu.user + cpu.system) / 1e6, slowest,
  };
  process.stdout.write('BENCH-RESULT ' + JSON.stringify(result) + '\n');
  process.exit(0);
}

setTimeout(tick, 0);
"""


# --- the constant upstream ---------------------------------------------------------------------


def organisation_body(org_id: str) -> bytes:
    """What an identity service might answer for one school: ~300 bytes of JSON."""
    return json.dumps(
        {
            "id": org_id,
            "kind": "school",
            "name": "滨海小学",
            "parent_id": "7c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e",
            "path": f"/a1b2c3d4/7c1d2e3f/{org_id}",
            "school_code": "2135020301",
            "school_type": "primary",
            "active": True,
            "created_at": "2026-09-01T08:00:00Z",
            "updated_at": "2026-11-20T16:45:12Z",
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def serve_upstream(port: int, jwks_file: Path) -> int:
    """The constant service: a bare ASGI app, so that what the bench measures is the proxies, not it."""
    import uvicorn

    jwks = jwks_file.read_bytes()
    prefix = "/organisations/"

    def head(body: bytes, status: int = 200) -> dict[str, Any]:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        return {"type": "http.response.start", "status": status, "headers": headers}

    async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith(prefix) and "/" not in path[len(prefix) :]:
            body, status = organisation_body(path[len(prefix) :]), 200
        elif path == "/.well-known/jwks.json":
            body, status = jwks, 200
        else:
            body, status = b'{"detail":"not found"}', 404
        await send(head(body, status))
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop="uvloop", lifespan="off",
                access_log=False, log_level="warning", server_header=False)  # fmt: skip
    return 0


# --- processes and their CPU -------------------------------------------------------------------


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - our own loopback servers
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


class Child:
    """A server in a child process of its own session, stopped by its pid."""

    def __init__(
        self, name: str, command: list[str], log_file: Path, env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGINT,
    ) -> None:  # fmt: skip
        self.name = name
        self.stop_signal = stop_signal
        self.command = command
        self.log_file = log_file
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []

    def start(self, ready: Callable[[], bool], timeout: float = 60.0) -> None:
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, urllib.error.URLError, ConnectionError, TimeoutError):
                if ready():
                    break
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} was not ready within {timeout:.0f} s; see {self.log_file}")
            time.sleep(0.2)
        self.pids = process_tree(self.process.pid)

    def cpu_seconds(self) -> dict[int, float]:
        return cpu_seconds_of(self.pids)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def nginx_config(work_dir: Path, listen_port: int, upstream_port: int) -> str:
    temp = {name: work_dir / f"nginx-{name}" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return f"""
worker_processes 1;
pid {work_dir / "nginx.pid"};
error_log {work_dir / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    upstream service {{
        server 127.0.0.1:{upstream_port};
        keepalive {NGINX_KEEPALIVE};
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


# --- the bench's setup -------------------------------------------------------------------------


def mint_token(key: RSAKey, lifetime_seconds: int) -> str:
    """An RFC 9068 access token of a vendor's app, as the identity provider issues it."""
    now = int(time.time())
    claims = {
        "iss": ISSUER, "sub": CLIENT_ID, "aud": AUDIENCE, "exp": now + lifetime_seconds, "iat": now,
        "jti": uuid.uuid4().hex, "client_id": CLIENT_ID, "scope": "org.read", "roles": [], "app_id": APP_ID,
    }  # fmt: skip
    return jwt.encode({"alg": "RS256", "kid": KEY_ID, "typ": "at+jwt"}, claims, key, algorithms=["RS256"])


@dataclass
class Target:
    name: str
    url: str  # the whole URL of the request
    server: Child
    note: str

    def cpu_seconds(self) -> dict[int, float]:
        return self.server.cpu_seconds()


@dataclass
class Setup:
    work_dir: Path
    nats: NatsServer
    upstream: Child
    nginx: Child
    gateway: Child
    gateway_env: dict[str, str]
    gateway_port: int
    targets: dict[str, Target] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body_bytes: int = 0


def gateway_command(workers: int) -> list[str]:
    return [sys.executable, "-m", "gateway", "serve", *(["--workers", str(workers)] if workers > 1 else [])]


def start_gateway(child: Child, port: int, workers: int) -> None:
    def ready() -> bool:
        status, _, _ = http_get(f"http://127.0.0.1:{port}/readyz")
        # /readyz answers from one worker; each worker logs "gateway started" once its lifespan has run.
        return status == 200 and child.log_file.read_text(errors="replace").count("gateway started") >= workers

    child.start(ready)


# --- load --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One load on one target."""

    target: str
    kind: str  # "rate" | "max"
    answered: int  # answers of any status
    ok: int  # 200s with the upstream's body
    errors: int  # no answer: socket errors, timeouts, cut off at the end
    statuses: dict[str, int]
    seconds: float
    p50: float  # ms
    p90: float
    p99: float
    max: float
    target_cpu: float  # CPU seconds of the target's processes (the upstream itself for direct)
    process_cpu: list[float]  # the same per process, busiest first
    upstream_cpu: float
    generator_cpu: float
    machine_cpu: float
    wall: float = 0.0  # seconds the load generator ran, start-up included: what CPU shares are taken over
    lag_p99: float = 0.0  # ms the fixed-rate sends were late against the schedule
    lag_max: float = 0.0
    slowest: list[tuple[float, float]] = field(default_factory=list)  # (due at s, ms) of the slowest requests
    load: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def percent(self, cpu_seconds: float) -> str:
        return f"{cpu_seconds / self.wall:.0%}"

    def target_percent(self) -> str:
        """The target's CPU, split by process when more than one of them was busy (uvicorn's workers)."""
        busy = [self.percent(cpu) for cpu in self.process_cpu if cpu / self.wall >= 0.02]
        total = self.percent(self.target_cpu)
        return f"{total} ({'+'.join(busy)})" if len(busy) > 1 else total

    @property
    def cpu_per_request_ms(self) -> float:
        return self.target_cpu / max(1, self.answered) * 1000


def measured(setup: Setup, target: str, command: list[str], parse: Callable[[dict[str, Any]], dict[str, Any]],
             kind: str) -> Run:  # fmt: skip
    """Run one load generator to completion, with the CPU of everything around it."""
    server, upstream = setup.targets[target], setup.upstream
    before = (server.cpu_seconds(), sum(upstream.cpu_seconds().values()), machine_busy_seconds())
    children_before, started = os.times(), time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    children_after, wall = os.times(), time.perf_counter() - started
    after = (server.cpu_seconds(), sum(upstream.cpu_seconds().values()), machine_busy_seconds())
    process_cpu = sorted((after[0][pid] - before[0][pid] for pid in after[0]), reverse=True)
    match = re.search(r"^BENCH-RESULT (.*)$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"load generator failed ({completed.returncode}): {completed.stdout}\n{completed.stderr}")
    raw = parse(json.loads(match.group(1)))
    generator_cpu = raw.pop("cpu_seconds", None)
    if generator_cpu is None:
        generator_cpu = (children_after.children_user + children_after.children_system) - (
            children_before.children_user + children_before.children_system
        )
    return Run(
        target=target, kind=kind, **raw, target_cpu=sum(process_cpu), process_cpu=process_cpu,
        upstream_cpu=after[1] - before[1],
        generator_cpu=generator_cpu, machine_cpu=after[2] - before[2], wall=wall, load=load_average(),
    )  # fmt: skip


def fixed_rate(setup: Setup, target: str, rate: float, seconds: float, connections: int) -> Run:
    config = {
        "url": setup.targets[target].url, "headers": setup.headers, "rate": rate, "seconds": seconds,
        "connections": connections, "expectBytes": setup.body_bytes, "graceSeconds": 10,
    }  # fmt: skip
    config_file = setup.work_dir / f"rate-{target}.json"
    config_file.write_text(json.dumps(config))
    script = setup.work_dir / "fixed_rate.js"

    def parse(raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "answered": raw["answered"], "ok": raw["ok"], "errors": raw["errors"], "statuses": raw["statuses"],
            "seconds": raw["seconds"], "p50": raw["p50"], "p90": raw["p90"], "p99": raw["p99"], "max": raw["max"],
            "lag_p99": raw["lag_p99"], "lag_max": raw["lag_max"], "cpu_seconds": raw["cpu_seconds"],
            "slowest": [tuple(pair) for pair in raw["slowest"]],
        }  # fmt: skip

    return measured(setup, target, ["node", str(script), str(config_file)], parse, "rate")


def wrk_script(headers: dict[str, str], expect_bytes: int) -> str:
    """Headers, a right-answer count (200 with the upstream's body) and a JSON summary line."""
    header_lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    return f"""
{header_lines}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; statuses = {{}} end
function response(status, headers, body)
  statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
  if status == 200 and #body == {expect_bytes} then ok = ok + 1 end
end
function done(summary, latency, requests)
  local total_ok, merged, parts = 0, {{}}, {{}}
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    for status, count in pairs(thread:get("statuses")) do merged[status] = (merged[status] or 0) + count end
  end
  for status, count in pairs(merged) do table.insert(parts, string.format('"%s": %d', status, count)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {{"answered": %d, "duration_us": %d, "ok": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "errors": %d, "statuses": {{%s}}}}\\n', summary.requests, summary.duration, total_ok,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ", ")))
end
"""


def max_throughput(setup: Setup, target: str, wrk: str, seconds: float, connections: int) -> Run:
    script = setup.work_dir / "max.lua"
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script),
               setup.targets[target].url]  # fmt: skip

    def parse(raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "answered": raw["answered"], "ok": raw["ok"], "errors": raw["errors"], "statuses": raw["statuses"],
            "seconds": raw["duration_us"] / 1e6, "p50": raw["p50_us"] / 1000, "p90": raw["p90_us"] / 1000,
            "p99": raw["p99_us"] / 1000, "max": raw["max_us"] / 1000,
        }  # fmt: skip

    return measured(setup, target, command, parse, "max")


def print_run(run: Run) -> None:
    late = ""
    if run.kind == "rate":
        slowest = " ".join(f"{ms:g}@{due:g}s" for due, ms in sorted(run.slowest))
        late = f"  late sends p99 {run.lag_p99:5.2f} max {run.lag_max:6.2f} ms  slowest (ms@due) {slowest}"
    upstream = f"  upstream {run.percent(run.upstream_cpu):>4}" if run.target != "direct" else ""
    print(f"  {run.kind:<4} {run.target:<7} {run.rate:>8,.0f} /s  p50 {run.p50:6.2f}  p90 {run.p90:6.2f}  "
          f"p99 {run.p99:7.2f}  max {run.max:7.2f} ms  right {run.ok:,}/{run.answered:,}  errors {run.errors}  "
          f"statuses {run.statuses}  CPU: {run.target} {run.target_percent():>4}{upstream}  "
          f"generator {run.percent(run.generator_cpu):>4}  machine {run.percent(run.machine_cpu):>4}  "
          f"{run.target} CPU/req {run.cpu_per_request_ms:.3f} ms{late}  load {run.load}")  # fmt: skip


# --- usage records -----------------------------------------------------------------------------


async def count_usage_records(nats_url: str) -> tuple[int, int]:
    """Messages in the gateway's stream, and the usage records they carry."""
    import nats

    from gateway.usage import USAGE_STREAM

    client = await nats.connect(nats_url)
    try:
        stream = client.jetstream()
        info = await stream.stream_info(USAGE_STREAM)
        records = 0
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            message = await stream.get_msg(USAGE_STREAM, sequence)
            records += len(json.loads(message.data or b"{}")["data"]["records"])
        return info.state.messages, records
    finally:
        await client.close()


def gc_pauses(log_file: Path) -> str:
    """The gc-log tweak's lines in the gateway's log, summed up per generation."""
    pauses: dict[str, list[float]] = {}
    for match in re.finditer(r"GC-PAUSE pid \d+ generation (\d) ([\d.]+) ms", log_file.read_text(errors="replace")):
        pauses.setdefault(match.group(1), []).append(float(match.group(2)))
    return (
        "; ".join(
            f"generation {generation}: {len(values)} pauses, median {statistics.median(values):.1f} ms, "
            f"max {max(values):.1f} ms"
            for generation, values in sorted(pauses.items())
        )
        or "none logged"
    )


# --- profile -----------------------------------------------------------------------------------


def profile_gateway(setup: Setup, args: argparse.Namespace) -> str:
    """The gateway (one process) under cProfile at the fixed rate; its top functions by own and total time."""
    profile_file = setup.work_dir / "gateway.pstats"
    child = Child("gateway under cProfile", [sys.executable, "-c", PROFILED_GATEWAY, str(profile_file)],
                  setup.work_dir / "gateway-profiled.log", setup.gateway_env)  # fmt: skip
    start_gateway(child, setup.gateway_port, 1)
    setup.targets["gateway"] = Target("gateway", setup.targets["gateway"].url, child, "under cProfile")
    try:
        fixed_rate(setup, "gateway", args.profile_rate, args.warmup, args.connections)
        run = fixed_rate(setup, "gateway", args.profile_rate, args.duration, args.connections)
        print("\nprofiled run (cProfile slows the gateway; these latencies are not the gateway's):")
        print_run(run)
    finally:
        child.stop()
    out = io.StringIO()
    stats = pstats.Stats(str(profile_file), stream=out)
    stats.strip_dirs()
    for order in (pstats.SortKey.TIME, pstats.SortKey.CUMULATIVE):
        out.write(f"\n--- cProfile of the gateway at {args.profile_rate:g}/s, every thread, by {order.value} ---\n")
        stats.sort_stats(order).print_stats(args.profile_lines)
    return out.getvalue()


# --- main --------------------------------------------------------------------------------------


def start_everything(args: argparse.Namespace, work_dir: Path, nginx: str, started: list[Child | NatsServer]) -> Setup:
    """Key, NATS, upstream, nginx and gateway; each one goes into ``started`` as it starts, to be stopped."""
    key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID})
    jwks_file = work_dir / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=False) | {"use": "sig", "alg": "RS256"}]}))
    nats_server = NatsServer(work_dir / "nats", log_file=work_dir / "nats.log")
    started.append(nats_server)
    nats_server.start()

    upstream_port, nginx_port, gateway_port = free_port(), free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    upstream = Child("upstream", [sys.executable, str(Path(__file__).resolve()), "--serve-upstream",
                                  str(upstream_port), str(jwks_file)], work_dir / "upstream.log")  # fmt: skip
    started.append(upstream)
    upstream.start(lambda: http_get(f"{upstream_url}/.well-known/jwks.json")[0] == 200)

    config_file = work_dir / "nginx.conf"
    config_file.write_text(nginx_config(work_dir, nginx_port, upstream_port))
    nginx_child = Child("nginx", [nginx, "-p", str(work_dir), "-c", str(config_file), "-e",
                                  str(work_dir / "nginx-error.log"), "-g", "daemon off;"],
                        work_dir / "nginx.log", stop_signal=signal.SIGQUIT)  # fmt: skip
    started.append(nginx_child)
    nginx_child.start(lambda: http_get(f"http://127.0.0.1:{nginx_port}{SERVICE_PATH}")[0] == 200)

    values = {
        "environment": "local", "database_url": f"sqlite:///{work_dir / 'gateway.db'}", "nats_url": nats_server.url,
        "http_host": "127.0.0.1", "http_port": str(gateway_port), "public_base_url": f"http://127.0.0.1:{gateway_port}",
        "upstreams": json.dumps({"identity": upstream_url}), "jwks_url": f"{upstream_url}/.well-known/jwks.json",
        "token_issuer": ISSUER, "usage_spool_dir": str(work_dir / "usage-spool"), "log_json": "true",
        "app_rate_limit": UNLIMITED, "route_rate_limit": UNLIMITED,
    }  # fmt: skip
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env = {**inherited, **{f"GATEWAY_{name.upper()}": value for name, value in values.items()}}
    for assignment in args.gateway_env:
        name, _, value = assignment.partition("=")
        env[name] = value
    if args.tweak:
        tweaks = work_dir / "tweaks"
        tweaks.mkdir()
        (tweaks / "sitecustomize.py").write_text("".join(TWEAKS[name] for name in args.tweak))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tweaks), env.get("PYTHONPATH")]))
    subprocess.run([sys.executable, "-m", "gateway", "migrate"], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    gateway = Child("gateway", gateway_command(args.gateway_workers), work_dir / "gateway.log", env)
    started.append(gateway)
    start_gateway(gateway, gateway_port, args.gateway_workers)

    setup = Setup(work_dir, nats_server, upstream, nginx_child, gateway, env, gateway_port)
    workers = f"{args.gateway_workers} worker(s)"
    setup.targets = {
        "direct": Target("direct", upstream_url + SERVICE_PATH, upstream, "uvicorn, bare ASGI app, 1 process"),
        "nginx": Target("nginx", f"http://127.0.0.1:{nginx_port}{SERVICE_PATH}", nginx_child,
                        f"nginx {nginx_version(nginx)}, 1 worker, keepalive {NGINX_KEEPALIVE}"),
        "gateway": Target("gateway", f"http://127.0.0.1:{gateway_port}{GATEWAY_PATH}", gateway,
                          f"python -m gateway serve, {workers}"),
    }  # fmt: skip
    setup.headers = {"Authorization": f"Bearer {mint_token(key, lifetime_seconds=6 * 3600)}"}
    return setup


def code_version() -> str:
    """The commit the gateway ran from, and whether its code had changes not committed yet."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()  # fmt: skip
    changed = subprocess.run(["git", "status", "--porcelain", "--", "gateway", "kit", "contracts"], cwd=ROOT,
                             capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return f"commit {commit or 'unknown'}" + (" with uncommitted changes in gateway/kit/contracts" if changed else "")


def nginx_version(nginx: str) -> str:
    shown = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    return (shown.stderr or shown.stdout).strip().rsplit("/", 1)[-1]


def check_answers(setup: Setup) -> None:
    """The three targets give the same body; the gateway checks the token (401 without one) and limits."""
    bodies = {}
    for name, target in setup.targets.items():
        status, headers, body = http_get(target.url, setup.headers)
        if status != 200:
            raise RuntimeError(f"{name}: {status} {body[:300]!r}")
        bodies[name] = body
        if name == "gateway" and "ratelimit-limit" not in headers:
            raise RuntimeError(f"the gateway answered without RateLimit headers: {headers}")
    if len(set(bodies.values())) != 1:
        raise RuntimeError(f"the targets answer differently: {bodies}")
    status, _, _ = http_get(setup.targets["gateway"].url)
    if status != 401:
        raise RuntimeError(f"the gateway answered {status} to a call without a token, not 401")
    setup.body_bytes = len(bodies["direct"])


def paired_median(runs: list[Run], target: str, attribute: str) -> float:
    """Median over rounds of ``target``'s figure minus direct's figure in the same round."""
    by_round: dict[int, dict[str, Run]] = {}
    for index, run in enumerate(runs):
        by_round.setdefault(index // len(TARGETS), {})[run.target] = run
    return statistics.median(
        getattr(round_[target], attribute) - getattr(round_["direct"], attribute) for round_ in by_round.values()
    )


def by_target(runs: list[Run], target: str) -> list[Run]:
    return [run for run in runs if run.target == target]


def share(runs: list[Run], cpu_attribute: str) -> float:
    """CPU seconds over wall seconds of ``runs`` together: the share of one core."""
    return sum(getattr(run, cpu_attribute) for run in runs) / sum(run.wall for run in runs)


def median_of(runs: list[Run], target: str, attribute: str) -> float:
    return statistics.median(getattr(run, attribute) for run in runs if run.target == target)


def print_report(args: argparse.Namespace, rate_runs: list[Run], max_runs: list[Run], setup: Setup) -> bool:
    print(f"\nload average at the end {load_average()}")
    print(f"\nfixed rate {args.rate:g}/s, {args.duration:g} s per target, median of {args.repeat} round(s), "
          "latency in ms (added = minus direct in the same round, median over rounds);")  # fmt: skip
    print("CPU in % of one core (the machine has 200 %); CPU/req = the target's own processes' CPU per answer\n")
    header = (f"{'target':<8} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>8} {'+p50':>7} {'+p99':>7} {'rate /s':>8} "
              f"{'CPU/req ms':>10} {'target':>7} {'upstr.':>7} {'gen.':>6} {'machine':>8}  what")  # fmt: skip
    print(header)
    print("-" * len(header))
    for name in TARGETS:
        runs = [run for run in rate_runs if run.target == name]
        added = ("-", "-") if name == "direct" else (f"{paired_median(rate_runs, name, 'p50'):+.2f}",
                                                      f"{paired_median(rate_runs, name, 'p99'):+.2f}")  # fmt: skip
        print(f"{name:<8} {median_of(runs, name, 'p50'):>7.2f} {median_of(runs, name, 'p90'):>7.2f} "
              f"{median_of(runs, name, 'p99'):>7.2f} {median_of(runs, name, 'max'):>8.2f} {added[0]:>7} {added[1]:>7} "
              f"{median_of(runs, name, 'rate'):>8,.0f} {median_of(runs, name, 'cpu_per_request_ms'):>10.3f} "
              f"{share(runs, 'target_cpu'):>7.0%} {share(runs, 'upstream_cpu'):>7.0%} "
              f"{share(runs, 'generator_cpu'):>6.0%} {share(runs, 'machine_cpu'):>8.0%}  "
              f"{setup.targets[name].note}")  # fmt: skip

    print(f"\nmaximum throughput: wrk, 1 thread, {args.connections} connections, {args.max_duration:g} s per target, "
          "median of the rounds; ratio = over direct in the same round\n")  # fmt: skip
    header = (f"{'target':<8} {'rate /s':>9} {'ratio':>6} {'p50':>7} {'p99':>8} {'CPU/req ms':>10} {'target':>7} "
              f"{'upstr.':>7} {'wrk':>6} {'machine':>8}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for name in TARGETS:
        runs = [run for run in max_runs if run.target == name]
        ratios = [run.rate / direct.rate for run, direct in zip(runs, by_target(max_runs, "direct"), strict=True)]
        print(f"{name:<8} {median_of(runs, name, 'rate'):>9,.0f} {statistics.median(ratios):>6.2f} "
              f"{median_of(runs, name, 'p50'):>7.2f} {median_of(runs, name, 'p99'):>8.2f} "
              f"{median_of(runs, name, 'cpu_per_request_ms'):>10.3f} {share(runs, 'target_cpu'):>7.0%} "
              f"{share(runs, 'upstream_cpu'):>7.0%} {share(runs, 'generator_cpu'):>6.0%} "
              f"{share(runs, 'machine_cpu'):>8.0%}")  # fmt: skip

    added_p50 = paired_median(rate_runs, "gateway", "p50")
    added_p99 = paired_median(rate_runs, "gateway", "p99")
    gateway_max, direct_max = by_target(max_runs, "gateway"), by_target(max_runs, "direct")
    ratio = statistics.median(g.rate / d.rate for g, d in zip(gateway_max, direct_max, strict=True))
    verdict = {True: "PASS", False: "FAIL"}
    checks = [
        (f"added latency p50 <= {TARGET_ADDED_P50_MS:g} ms at {args.rate:g}/s", f"{added_p50:+.2f} ms",
         added_p50 <= TARGET_ADDED_P50_MS),
        (f"added latency p99 <= {TARGET_ADDED_P99_MS:g} ms at {args.rate:g}/s", f"{added_p99:+.2f} ms",
         added_p99 <= TARGET_ADDED_P99_MS),
        (f"throughput through the gateway >= {TARGET_THROUGHPUT_RATIO:.0%} of direct", f"{ratio:.0%}",
         ratio >= TARGET_THROUGHPUT_RATIO),
    ]  # fmt: skip
    print("\ntargets:")
    for text, figure, passed in checks:
        print(f"  {text:<52} {figure:>10}  {verdict[passed]}")
    return all(passed for _, _, passed in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second of the fixed-rate load")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per target at the fixed rate")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load per target first")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over the three targets; medians reported")
    parser.add_argument("--connections", type=int, default=32,
                        help="connections: the most the fixed-rate load opens, and wrk's (default 32)")  # fmt: skip
    parser.add_argument("--max-duration", type=float, default=10.0, help="seconds per target of the wrk load")
    parser.add_argument("--gateway-workers", type=int, default=1, help="python -m gateway serve --workers")
    parser.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra gateway environment, e.g. OTEL_SDK_DISABLED=true")  # fmt: skip
    parser.add_argument("--tweak", action="append", default=[], choices=sorted(TWEAKS),
                        help="experiment: this change in every gateway process (see TWEAKS)")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="then profile the gateway under cProfile")
    parser.add_argument("--profile-rate", type=float, default=250.0,
                        help="fixed rate of the profiled gateway (default 250)")  # fmt: skip
    parser.add_argument("--profile-lines", type=int, default=30)
    parser.add_argument("--work-dir", type=Path, help="keep the logs, configs and databases here")
    parser.add_argument("--serve-upstream", nargs=2, metavar=("PORT", "JWKS_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream is not None:
        return serve_upstream(int(args.serve_upstream[0]), Path(args.serve_upstream[1]))
    if args.rate <= 0 or args.duration < 1 or args.repeat < 1 or args.connections < 1 or args.gateway_workers < 1:
        parser.error("--rate, --connections and --gateway-workers must be positive, --duration >= 1, --repeat >= 1")
    if shutil.which("node") is None:
        parser.error("the fixed-rate load runs on Node.js: install it (apt-get install nodejs)")
    nginx = ensure_debian_tool("nginx", "nginx")
    wrk = ensure_debian_tool("wrk", "wrk")
    if nginx is None or wrk is None:
        parser.error("nginx and wrk are needed (apt-get install nginx wrk)")

    if args.work_dir is not None:
        work_dir = args.work_dir / time.strftime("gateway-%Y%m%d-%H%M%S")
        work_dir.mkdir(parents=True)
    else:
        work_dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    started: list[Child | NatsServer] = []
    try:
        setup = start_everything(args, work_dir, nginx, started)
        (work_dir / "fixed_rate.js").write_text(FIXED_RATE_GENERATOR)
        check_answers(setup)
        (work_dir / "max.lua").write_text(wrk_script(setup.headers, setup.body_bytes))
        node_version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout
        wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        print(describe_machine())
        print(f"command: {shlex.join([sys.executable, *sys.argv])}; code: {code_version()}")
        for target in setup.targets.values():
            print(f"  {target.name:<7} GET {target.url}  ({target.note}; pids {target.server.pids})")
        print(f"answer: 200, {setup.body_bytes} bytes of JSON; Authorization: Bearer <RS256 token, scope org.read, "
              f"app_id {APP_ID}>; gateway limits {UNLIMITED} per app and per route; logs in {work_dir}")  # fmt: skip
        print(f"fixed rate: open loop on Node.js {node_version.strip()}, {args.rate:g}/s, up to {args.connections} "
              f"keep-alive connections; max: {(wrk_version.stdout or wrk_version.stderr).split(' [')[0].strip()}, "
              f"1 thread, {args.connections} connections")  # fmt: skip
        if args.gateway_env or args.tweak:
            print(f"EXPERIMENT: gateway environment {' '.join(args.gateway_env) or '-'}; tweaks {args.tweak or '-'}")

        print(f"\nwarm-up: {args.warmup:g} s per target at {args.rate:g}/s, then {args.repeat} round(s)")
        answered_by_gateway = 1  # check_answers' call with the token
        for name in TARGETS:
            warm = fixed_rate(setup, name, args.rate, args.warmup, args.connections)
            if name == "gateway":
                answered_by_gateway += warm.answered
        rate_runs: list[Run] = []
        max_runs: list[Run] = []
        for round_ in range(args.repeat):
            order = TARGETS[round_ % len(TARGETS) :] + TARGETS[: round_ % len(TARGETS)]
            print(f"round {round_ + 1}:")
            for name in order:
                run = fixed_rate(setup, name, args.rate, args.duration, args.connections)
                print_run(run)
                rate_runs.append(run)
            for name in order:
                run = max_throughput(setup, name, wrk, args.max_duration, args.connections)
                print_run(run)
                max_runs.append(run)
            # Rounds list targets in their turn's order; the report pairs them by round, so sort each round.
            rate_runs[-3:] = sorted(rate_runs[-3:], key=lambda run: TARGETS.index(run.target))
            max_runs[-3:] = sorted(max_runs[-3:], key=lambda run: TARGETS.index(run.target))
        answered_by_gateway += sum(run.answered for run in rate_runs + max_runs if run.target == "gateway")

        passed = print_report(args, rate_runs, max_runs, setup)
        wrong = [run for run in rate_runs + max_runs if run.ok < run.answered or run.errors]
        setup.gateway.stop()  # a clean stop publishes the records still held
        messages, records = asyncio.run(count_usage_records(setup.nats.url))
        # A load generator that stops (wrk at its end, ours after its grace period) may leave a request in
        # flight on each connection: the gateway still answers and records it, but nobody counts the answer.
        cut_off = (1 + 2 * args.repeat) * args.connections
        usage_ok = answered_by_gateway <= records <= answered_by_gateway + cut_off
        print(f"\nusage records in the EDU_GATEWAY stream: {records:,} in {messages:,} message(s), for "
              f"{answered_by_gateway:,} answers the gateway gave with an app's token (up to {cut_off} more may have "
              f"been in flight when a load generator stopped): {'OK' if usage_ok else 'MISSING OR EXTRA'}")  # fmt: skip
        if "gc-log" in args.tweak:
            print(f"garbage collector pauses in the gateway (start-up included): {gc_pauses(setup.gateway.log_file)}")
        if args.profile:
            print(profile_gateway(setup, args))
        if wrong:
            print("\nWRONG ANSWERS: " + ", ".join(f"{r.kind}/{r.target} {r.statuses} errors {r.errors}" for r in wrong))
        print(f"\nall targets {'PASS' if passed else 'FAIL'}")
        return 1 if wrong or not usage_ok else 0
    finally:
        for server in reversed(started):  # NATS last: the gateway publishes its last records on the way out
            server.stop()
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
