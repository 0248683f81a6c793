"""What the HTTP benches share: the API server in a child process, and wrk driving load at it.

wrk runs in its own process (2 threads, 32 connections by default) with a Lua script; the
script's `done` prints one `WRKJSON {...}` line (requests, duration, latency percentiles,
socket and status errors, and a per-thread counter the script may keep, e.g. empty pages),
which is what we read, not wrk's human-readable table.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import httpx

THREADS = 2
CONNECTIONS = 32

# Appended to every bench script: collects the threads' counters and prints the figures.
LUA_DONE = r"""
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  local counted = 0
  for _, t in ipairs(threads) do counted = counted + (t:get("counted") or 0) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"socket_errors":%d,' ..
    '"status_errors":%d,"counted":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status, counted))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    status_errors: int
    counted: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise click.ClickException("wrk is not installed: `apt-get install -y wrk` (Debian), then run again")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_wrk(url: str, script: str, seconds: float, *, threads: int = THREADS,
            connections: int = CONNECTIONS) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script + LUA_DONE)
    try:
        done = subprocess.run(
            [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
             "--timeout", "5s", "-s", file.name, url],
            capture_output=True, text=True, timeout=seconds + 30, check=True,
        )
    finally:
        os.unlink(file.name)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(
        requests=raw["requests"], seconds=raw["duration_us"] / 1e6, p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000, socket_errors=raw["socket_errors"],
        status_errors=raw["status_errors"], counted=raw["counted"],
    )


def lua_strings(values: list[str]) -> str:
    """A Lua table literal of ids (they are plain [A-Za-z0-9_-] strings)."""
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@contextlib.contextmanager
def api_server(
    data_dir: Path, secret: str, statics: list[tuple[str, str, bytes, int]], *, page_cache_mib: int = 64
) -> Iterator[Server]:
    """The API on a free port in a child process; yields its URL and pid; stops it by pid."""
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        args = [sys.executable, "-m", "fanline.benchmarks.api_server", "--data-dir", str(data_dir),
                "--port", str(port), "--secret", secret, "--page-cache-mib", str(page_cache_mib)]
        for n, (method, path, body, status) in enumerate(statics):
            body_file = Path(scratch) / f"static-{n}"
            body_file.write_bytes(body)
            args += ["--static", method, path, str(body_file), str(status)]
        server = subprocess.Popen(args)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, server)
            yield Server(base, server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def metric_values(base: str, names: tuple[str, ...]) -> dict[str, float]:
    """Samples of the server's /metrics, by their full name with labels (0 when absent)."""
    text = httpx.get(f"{base}/metrics", timeout=5.0).text
    figures = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in figures:
            figures[name] = float(value)
    return figures


def append_batches(base: str) -> tuple[float, float]:
    """The server's log appends so far and the records in them (the batcher's histogram)."""
    names = ("fanline_append_batch_records_count", "fanline_append_batch_records_sum")
    figures = metric_values(base, names)
    return figures[names[0]], figures[names[1]]


def _wait_ready(base: str, server: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API server exited with {server.returncode} before answering")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the API server did not answer /healthz within {timeout_s:g} s")


def profile(pid: int, seconds: float, output: Path) -> str:
    """py-spy samples of process `pid` for `seconds` into `output` (raw stacks); a short summary.

    Run it while load is on. The summary: each thread's share of the samples and the frames
    with the most samples of their own (where the CPU time is spent, not who called it).
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise click.ClickException("py-spy is not installed: `pip install py-spy` into the venv")
    subprocess.run([spy, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-f", "raw",
                    "-o", str(output), "--threads", "--nonblocking"],
                   check=True, capture_output=True, timeout=seconds + 30)
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in output.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        total += int(count)
        threads[frames[0].split(": ", 1)[-1]] += int(count)
        own[frames[-1]] += int(count)
    lines = [f"py-spy: {total} samples in {output}"]
    lines += [f"  thread {name}: {n / total:.0%}" for name, n in threads.most_common()]
    lines += [f"  {n / total:5.1%} {frame}" for frame, n in own.most_common(12)]
    return "\n".join(lines)


def profiled_load(server: Server, script: str, seconds: float, output: Path) -> str:
    """Load the server with wrk for `seconds` + 2 while py-spy samples it for `seconds`."""
    results: list[WrkResult] = []
    load = threading.Thread(target=lambda: results.append(run_wrk(server.url, script, seconds + 2)))
    load.start()
    try:
        time.sleep(1)  # let wrk connect and the server settle
        summary = profile(server.pid, seconds, output)
    finally:
        load.join()
    return f"{summary}\n  (under load: {results[0].rps:.0f} req/s)" if results else summary
