"""Kinesis and DynamoDB emulators (kinesalite, dynalite from infra/local) as child processes.

Used by the tests, the benchmarks and `fanline up --aws-emulators`. Each emulator listens on
127.0.0.1, keeps its data under `--path` when given one (so a restart resumes), and is stopped
by its process id.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

NODE_BIN = Path(__file__).resolve().parents[1] / "infra" / "local" / "node_modules" / ".bin"

EmulatorName = Literal["kinesalite", "dynalite"]

# No artificial delays: tables and streams are ACTIVE at once.
_FLAGS: dict[EmulatorName, list[str]] = {
    "kinesalite": ["--createStreamMs", "0", "--deleteStreamMs", "0", "--updateStreamMs", "0",
                   "--shardLimit", "1000"],
    "dynalite": ["--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Emulator:
    name: EmulatorName
    port: int
    process: subprocess.Popen[bytes]
    data_dir: Path | None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start(name: EmulatorName, data_dir: Path | None = None, port: int | None = None) -> Emulator:
    """Start an emulator and return once it accepts connections."""
    executable = NODE_BIN / name
    if not executable.exists():
        raise RuntimeError(f"{executable} is missing: run `make` (npm ci in infra/local) first")
    port = port or free_port()
    args = [str(executable), "--host", "127.0.0.1", "--port", str(port), *_FLAGS[name]]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--path", str(data_dir)]
    # A session of its own: a Ctrl-C in the terminal reaches its owner, which stops it by pid after
    # everything that still talks to it (e.g. processors releasing their leases) has finished.
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    emulator = Emulator(name, port, process, data_dir)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return emulator
        except OSError:
            time.sleep(0.05)
    emulator.stop()
    raise RuntimeError(f"{name} did not listen on port {port} within 20 s")
