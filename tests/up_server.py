"""`fanline up` as a child process for tests: started on a free port, stopped by its pid.

One helper for every test that needs the whole thing running (end to end, browser, graph): it
waits for /readyz, yields the base URL, then sends SIGTERM and requires a clean exit 0 in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from fanline import emulators
from fanline.benchmarks.wrk import free_port

START_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 30.0


def aws_env(kinesalite: emulators.Emulator, dynalite: emulators.Emulator, name: str) -> dict[str, str]:
    """The aws backend on the session's emulators, with a stream and tables of this run's own."""
    run = f"{name}-{uuid.uuid4().hex[:8]}"
    return {
        "FANLINE_BACKEND": "aws",
        "FANLINE_ENDPOINT_URL": dynalite.endpoint_url,
        "FANLINE_KINESIS_ENDPOINT_URL": kinesalite.endpoint_url,
        "FANLINE_STREAM_NAME": run,
        "FANLINE_TABLE_PREFIX": f"{run}-",
        "FANLINE_SHARDS": "2",
    }


@contextmanager
def running_up(tmp_path: Path, settings: Mapping[str, str], world: int | None = None) -> Iterator[str]:
    """Run `fanline up` with these FANLINE_* settings (none inherited); yield its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANLINE_")}
    env.update(settings)
    world_args = ["--no-world"] if world is None else ["--world", str(world)]
    output = tmp_path / "up.log"
    with output.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-c", "from fanline.cli import main; main()", "up", *world_args,
             "--data-dir", str(tmp_path / "data"), "--port", str(port)],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server, output)
        yield base
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            pytest.fail(f"fanline up did not stop within {STOP_TIMEOUT_S:g} s:\n{output.read_text()}")
    assert code == 0, output.read_text()


def _wait_ready(base: str, server: subprocess.Popen[bytes], output: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"fanline up exited with {server.returncode}:\n{output.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"fanline up was not ready within {START_TIMEOUT_S:g} s:\n{output.read_text()}")
