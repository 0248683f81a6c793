"""schemathesis against the running server's /openapi.json: no 5xx, and every answer documented
(its status, content type and body schema), for generated valid and invalid requests alike.

`fanline api` runs as a child on a free port (SQLite data directory in a temp dir), stopped by its
pid. Requests carry a producer token, so the routes behind auth are explored past the 401; the
rate limit is off, so the generated requests are not answered 429 instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.auth import Tokens
from fanline.emulators import free_port

SECRET = "schemathesis-secret-long-enough-for-hs256"
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance"]


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANLINE_")}
    env.update(FANLINE_SECRET=SECRET, FANLINE_DATA_DIR=str(data), FANLINE_RATE_LIMIT_PER_S="0",
               FANLINE_CONSISTENCY_WAIT_MS="100")
    with (Path(data) / "api.log").open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", "from fanline.cli import main; main()", "api", "--port", str(port)],
            env=env, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            assert process.poll() is None, (Path(data) / "api.log").read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "fanline api did not become ready"
            time.sleep(0.2)
        yield base
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


PRODUCER = Tokens(SECRET).issue("schemathesis", "producer")


def test_no_server_errors_and_every_answer_documented(server: str, tmp_path: Path) -> None:
    # The command line: its pytest plugin does not load fixtures under this pytest (AttributeError
    # '_nodeid' from schemathesis 4.32 on pytest 9), and the command is how a person runs it anyway.
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{server}/openapi.json",
        "--checks", ",".join(CHECKS), "--header", f"Authorization: Bearer {PRODUCER}",
        "--max-examples", "12", "--seed", "20261125", "--workers", "1", "--request-timeout", "10",
        "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all",
        "--generation-database", "none",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or "passed" in done.stdout.lower(), done.stdout[-3000:]
